"""Storage calls that meet another worker's transaction: retried, not fatal.

Workers on one or many machines share an Optuna storage and an MLflow store. A write
can meet another worker's lock ("database is locked" on SQLite, a serialization
failure or deadlock on PostgreSQL), and two workers opening a fresh store at the same
instant both try to create its schema or experiment (a unique-key violation for the
second). A worker suspended inside a transaction on PostgreSQL may find on resuming that
the server ended its session (`idle_in_transaction_session_timeout`, a restart): that
transaction was rolled back, and the pool opens a new connection for the retry. Each of
these succeeds when tried again a moment later; `retrying` does that, with jittered
backoff, for up to two minutes, and lets every other error through.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["RETRY_SECONDS", "is_transient", "retrying", "worker_label"]

T = TypeVar("T")
RETRY_SECONDS = 120.0  # how long transient storage errors (locks, schema races) are retried


def worker_label() -> str:
    """`host:pid` of this process: shown in progress and stored on claims and runs (never
    used to decide whether a worker is alive: heartbeats decide that)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_transient(err: BaseException) -> bool:
    """Errors another worker's concurrent transaction (or the server ending an idle
    session) can cause; worth a retry."""
    text = f"{err!r} {err.__cause__!r}".lower()
    return any(s in text for s in (
        "database is locked", "database table is locked", "deadlock", "could not serialize",
        "duplicate key", "unique constraint", "already exists", "lock timeout",
        "storageinternalerror", "integrityerror",
        # the server ended the session (its open transaction was rolled back)
        "server closed the connection", "terminating connection", "connection already closed",
        "connection has been closed unexpectedly"))


def retrying(call: Callable[[], T], what: str, seconds: float = RETRY_SECONDS) -> T:
    """`call()` (`what` it does, for the error), retried with jittered backoff while it fails
    with a transient error."""
    deadline = time.monotonic() + seconds
    delay = 0.05
    while True:
        try:
            return call()
        except Exception as err:
            if not is_transient(err):
                raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: still failing after {seconds:.0f} s of retries: "
                                   f"{err}") from err
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)
