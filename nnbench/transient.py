"""Storage calls that meet another worker's transaction: retried, not fatal.

Workers on one or many machines share an Optuna storage and an MLflow store. A write
can meet another worker's lock ("database is locked" on SQLite, a serialization
failure or deadlock on PostgreSQL), and two workers opening a fresh store at the same
instant both try to create its schema or experiment (a unique-key violation for the
second). A worker suspended inside a transaction on PostgreSQL may find on resuming that
the server ended its session (`idle_in_transaction_session_timeout`, a restart): that
transaction was rolled back, and the pool opens a new connection for the retry. A server
that restarts (or a network that drops) refuses connections for a while: a worker waits
for it rather than failing the trial it was recording. Each of these succeeds when tried
again a moment later; `retrying` does that, with jittered backoff, for up to two minutes,
and lets every other error through. (A store that cannot be reached at all is reported
before any of this: the commands connect to each database once, up front, and say so at
once when they cannot: `cli_checks`.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

from nnbench.messages import UsageError, first_line

__all__ = [
    "INTERRUPTS",
    "RETRY_SECONDS",
    "QuietTransient",
    "bookkeeping",
    "interrupt",
    "interrupted",
    "is_transient",
    "pid_gone_here",
    "process_gone",
    "process_identity",
    "reason",
    "retrying",
    "retrying_once",
    "worker_label",
]

T = TypeVar("T")
RETRY_SECONDS = 120.0  # how long transient storage errors (locks, races, outages) are retried
SAY_AFTER = 3.0  # a call still failing this long is said on stderr (and its recovery)
_log = logging.getLogger(__name__)


def worker_label() -> str:
    """`host:pid` of this process: shown in progress and stored on claims and runs (with
    `process_identity`, what tells that a worker of this machine has ended)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _machine() -> str:
    """This boot of this machine (`/proc/sys/kernel/random/boot_id`) and this process's pid
    namespace (`pid:[4026531836]`: the initial one has that number on every host); "" where
    there is none to read. A pid means one process only within both."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    boot = _read("/proc/sys/kernel/random/boot_id")
    return f"{boot}/{namespace}" if boot else ""


def _started(pid: int) -> str:
    """When process `pid` started, in clock ticks since boot (`/proc/<pid>/stat`, field 22:
    never moved by a change of the wall clock, as psutil's create_time is); "" where it
    cannot be read (no such process)."""
    stat = _read(f"/proc/{pid}/stat")
    if ")" not in stat:
        return ""
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name: field 3 on
    return fields[19] if len(fields) > 19 else ""


def process_identity(pid: int | None = None) -> str:
    """`<boot id>/<pid namespace>|<pid>|<start tick>` of process `pid` (default: this one),
    as seen from this process; "" where it cannot be read. Recorded with each claim, so
    that a worker of the same machine can tell, at once, that the holder has ended: a pid
    alone may be reused by another process, but not with the same start tick."""
    machine, pid = _machine(), pid or os.getpid()
    started = _started(pid) if machine else ""
    return f"{machine}|{pid}|{started}" if started else ""


def process_gone(worker: str, identity: str) -> bool:
    """Whether the process a claim recorded (`worker` = `host:pid`, `identity` =
    `process_identity()` there) has certainly ended: it ran on this host, in this boot and
    pid namespace, and no process with its pid and start tick exists. Anything else
    (another host, another container, an identity an earlier nnbench never recorded) is
    False: its heartbeats decide."""
    host, _, _ = worker.rpartition(":")
    machine, _, rest = identity.partition("|")
    pid, _, started = rest.partition("|")
    if host != socket.gethostname() or not machine or machine != _machine() \
            or not pid.isdigit() or not started:
        return False
    if not _exists(int(pid)):
        return True
    now = _started(int(pid))
    return bool(now) and now != started  # the pid is another process's now


def pid_gone_here(worker: str) -> bool:
    """Whether `worker` (`host:pid`) names this host and no process has its pid now (the
    pid alone: `status` says so; `process_gone` decides whether its claims are reaped)."""
    host, _, pid = worker.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _exists(int(pid))


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: it exists
        return True
    return True


_TRANSIENT = (
    "database is locked", "database table is locked", "deadlock", "could not serialize",
    "duplicate key", "unique constraint", "already exists", "lock timeout",
    "storageinternalerror", "integrityerror",
    # the server ended the session (its open transaction was rolled back)
    "server closed the connection", "terminating connection", "connection already closed",
    "connection has been closed unexpectedly", "the connection is lost",
    "the connection is closed", "no connection to the server",
    # the server is down, restarting or unreachable for a moment (PostgreSQL, MySQL)
    "connection refused", "could not connect to server", "connection timed out",
    "timeout expired", "connection timeout",  # libpq's, psycopg's connect_timeout
    "the database system is starting up", "the database system is shutting down",
    "the database system is in recovery mode", "the database system is not yet accepting",
    "lost connection to mysql server", "mysql server has gone away",
    "can't connect to mysql server")


# what makes a connection fail for good, whatever else the message says: libpq joins the
# errors of every address it tried ("localhost": ::1 refused, 127.0.0.1 a wrong password)
_PERMANENT = (
    "password authentication failed", "authentication failed", "no pg_hba.conf entry",
    "does not exist", "access denied for user", "unknown database", "permission denied",
    "could not translate host name", "name or service not known",
    "nodename nor servname provided", "no address associated with hostname",
    "_alembic_tmp_")  # a schema migration left half-done: retrying never mends it


def is_transient(err: BaseException) -> bool:
    """Errors another worker's concurrent transaction, the server ending a session, or a
    server restarting or out of reach for a while can cause; worth a retry. Read from the
    error's type and message and its cause's, never from the SQL statement or the values
    it carried (a tag quoting "Connection refused" is not a refused connection); nnbench's
    own usage errors never (their message may quote a path that reads "locked")."""
    if isinstance(err, UsageError):
        return False
    return _says_transient(" ".join(_words(e) for e in (err, err.__cause__) if e is not None))


def _words(err: BaseException) -> str:
    text = str(err)
    cut = text.find("[SQL:")  # SQLAlchemy appends the statement and its parameters
    return f"{type(err).__name__}: {text[:cut] if cut >= 0 else text}"


def _says_transient(text: str) -> bool:
    text = text.lower()
    return (any(s in text for s in _TRANSIENT)
            and not any(s in text for s in _PERMANENT))


def reason(err: BaseException) -> str:
    """The error at the bottom of `err`'s chain of causes, as one line: Optuna's
    StorageInternalError reads "An exception is raised during the commit..." whatever the
    database said (a refused connection, a lock)."""
    for _ in range(8):
        if err.__cause__ is None:
            break
        err = err.__cause__
    return first_line(err, with_type=True)


def retrying(call: Callable[[], T], what: str, seconds: float = RETRY_SECONDS, *,
             say: bool = True) -> T:
    """`call()` (`what` it does, for the error), retried with jittered backoff while it fails
    with a transient error. One still failing after SAY_AFTER s is said on stderr once (a
    lock is over in a moment; a server that restarts is not), and so is its success after
    that (`say=False`: the caller says it its own way)."""
    started = time.monotonic()
    delay = 0.05
    said = False
    while True:
        try:
            result = call()
        except Exception as err:
            if not is_transient(err):
                raise
            waited = time.monotonic() - started
            if waited > seconds:
                raise RuntimeError(f"{what}: still failing after {seconds:.0f} s of retries: "
                                   f"{reason(err)}") from err
            if say and not said and waited >= SAY_AFTER:
                said = True
                _log.warning("nnbench: %s: %s keeps failing (%s); retrying for up to %.0f s",
                             worker_label(), what, reason(err), seconds)
        else:
            if said:
                _log.warning("nnbench: %s: %s succeeded after %.0f s of retries",
                             worker_label(), what, time.monotonic() - started)
            return result
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)  # at most 1.5 s from a server's return to the retry


def retrying_once(what: str, make: Callable[[], T], find: Callable[[], T | None]) -> T:
    """`make()`, retried as `retrying` does, never made twice: a retry first asks `find()`
    for what its earlier try may have committed before the connection was lost (the answer
    lost, not the write: a run, a logged model, a claim, a queued copy); None: not there."""
    tries = 0

    def attempt() -> T:
        nonlocal tries
        tries += 1
        if tries > 1 and (found := find()) is not None:
            return found
        return make()

    return retrying(attempt, what)


class QuietTransient(logging.Filter):
    """Drops a library's log record of an error `retrying` retries: MLflow's SQL store logs
    every OperationalError with its traceback before raising it (a record with the
    exception), Optuna's storage warns of one it falls back from (`messages`: a record
    whose message quotes it); a server's restart would print a traceback per retry, and
    `retrying` says it once. Other records pass (MLflow's own "retrying" warnings while it
    cannot create its engine: they are what says a long wait)."""

    def __init__(self, *, messages: bool = False) -> None:
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        if err is not None:
            return not is_transient(err)
        return not (self.messages and _says_transient(record.getMessage()))


# what stops a command as Ctrl-C does (the CLI makes SIGTERM, SIGUSR2 and SIGHUP one): SIGUSR2
# is what Slurm sends a submitit job (and every process of it) shortly before its time
# limit; SIGHUP what a terminal sends when it closes (an ssh session dropped: the command
# died outright, its runs left RUNNING and its claims held); under nohup it is ignored, and
# left so
INTERRUPTS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR2", "SIGHUP")
                   if hasattr(signal, name))


_SIGNALLED: list[int] = []  # interrupts `interrupt` raised (the CLI clears it per command)


def interrupt(signum: int, _frame: FrameType | None) -> None:
    """The CLI's handler of Ctrl-C, SIGTERM and SIGUSR2: raise KeyboardInterrupt, and
    remember the signal. Python ignores one raised inside a garbage-collection callback
    ("Exception ignored in: <function WeakKeyDictionary...>"): the command went on, and
    exited 0, as if never interrupted; `interrupted()` still says so."""
    _SIGNALLED.append(signum)
    raise KeyboardInterrupt


def interrupted(clear: bool = False) -> bool:
    """Did `interrupt` raise since the last clear (`clear`: and forget it)?"""
    said = bool(_SIGNALLED)
    if clear:
        _SIGNALLED.clear()
    return said


@contextmanager
def bookkeeping(saying: str | None = None) -> Iterator[None]:
    """Hold Ctrl-C (and SIGTERM, SIGUSR2, which the CLI makes a Ctrl-C) until a block of
    MLflow and queue writes is complete, then raise it. `saying`: a block that can take
    seconds (a fresh MLflow store's migrations, 6 s here) says at the first interrupt
    what it finishes first, rather than seeming to ignore it.

    Training is interruptible at any point (the engine turns the interrupt into a
    `killed` result); bookkeeping is not, so a run is never left half-recorded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        if saying and not received:  # (a raw write: safe inside a signal handler)
            with contextlib.suppress(OSError):
                os.write(2, f"interrupted: stopping once {saying}\n".encode())
        received.append(signum)

    previous: dict[int, Any] = {}
    for signum in INTERRUPTS:  # (one ignored, or handled outside Python, is left alone)
        if signal.getsignal(signum) not in (None, signal.SIG_IGN):
            previous[signum] = signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:  # also when the block raised: the signal is never lost
            handler = previous[received[0]]  # Python's for SIGINT raises KeyboardInterrupt
            if handler is signal.SIG_DFL:  # SIGTERM outside the CLI: the process ends now
                signal.raise_signal(received[0])
            elif callable(handler):
                handler(received[0], None)
