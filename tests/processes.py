"""`nnbench` commands as processes of their own, forked from a process that has already
imported nnbench, torch, MLflow and Optuna (multiprocessing's forkserver, with this module
preloaded).

A fresh `python -m nnbench.cli worker ...` spends 4-5 s of CPU importing before it does
anything (a forked one answered a worker command with nothing to do in 1.1 s, against
5 s); the worker, tuning and interruption scenarios start 1-4 of them each. A forked
command is still a process of its own: its own pid, stores, heartbeats and signals
(SIGKILL, SIGSTOP, SIGINT as a terminal sends it), and its exit code is what `nnbench`
returns. What it skips is the interpreter's start; the real command line stays covered
where that is the point (local workers and submitit jobs start `python -m nnbench.cli
worker`, and tests/test_cli.py, tests/config/test_corpus.py and the benchmarks run
`nnbench` itself).
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# what every command imports before it reads its arguments: loaded once, in the forkserver
import mlflow
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (opening a store: 1-2 s)
import optuna
import optuna.importance  # noqa: F401  (a tuned suite's report and summaries)
import torch._dynamo  # noqa: F401  (torch.optim imports it on first use: 1.5-2 s)

import nnbench.cli
import nnbench.queue
import nnbench.report
import nnbench.runner
import nnbench.tracking
import nnbench.tuning

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload([__name__])


def start_forkserver() -> None:
    """Start the forkserver now (its imports take a few seconds), not inside a test."""
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _command(argv: Sequence[str], cwd: str, env: dict[str, str], log: str) -> None:
    """In the forked process: become `nnbench ARGV` run from a terminal in `cwd`, its
    output (stdout and stderr, line by line) appended to `log`."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # a terminal's foreground process: Ctrl-C raises KeyboardInterrupt (the forkserver
    # ignores SIGINT, and a test run started in the background inherits it ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = nnbench.cli.main(list(argv))
    finally:
        atexit._run_exitfuncs()  # what the interpreter's exit would run
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)


class Command:
    """A running `nnbench` command; the parts of subprocess.Popen the tests use."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, log: Path) -> None:
        self.argv = list(argv)
        self.log = log
        log.touch()
        self._process = _context.Process(
            target=_command, args=(self.argv, str(cwd), dict(os.environ), str(log)),
            daemon=False)
        self._process.start()
        assert self._process.pid is not None
        self.pid: int = self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or -N for a process ended by signal N (as Popen's); None while
        it runs."""
        return self._process.exitcode

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.argv, timeout or 0.0)
        return self._process.exitcode

    def send_signal(self, signum: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, signum)

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(errors="replace")

    def finish(self, timeout: float | None = None) -> str:
        """Wait for the exit; the whole output."""
        self.wait(timeout)
        return self.output()


def start(*argv: str, cwd: Path, log: Path | None = None) -> Command:
    """Start `nnbench ARGV` in `cwd`, with this process's environment; its output goes to
    `log` (default: a new file in `cwd` named after the command)."""
    return Command(argv, cwd=cwd, log=log or cwd / f"{argv[0]}-{next(_logs)}.log")


_logs = itertools.count()


def _call(target: Callable[..., object], cwd: str, env: dict[str, str],
          args: tuple[object, ...]) -> None:
    """In the forked process: `target(*args)` in `cwd` with `env` (the test's, not the
    forkserver's), then what the interpreter's exit would run."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    try:
        target(*args)
    finally:
        atexit._run_exitfuncs()


def spawn(target: Callable[..., object], *args: object) -> multiprocessing.process.BaseProcess:
    """`target(*args)` in a process of its own, forked from the forkserver (so it starts
    with nnbench, torch, MLflow and Optuna imported: a fresh interpreter spent 4-9 s of CPU
    importing them before it did what the test is about), in this process's working
    directory and environment. `target` is a module-level function of an importable module;
    the process's exit code is 0 once it returns, 1 if it raised (its traceback goes to the
    forkserver's stderr, which pytest captures with the test's output)."""
    process = _context.Process(target=_call, args=(target, os.getcwd(), dict(os.environ), args),
                               daemon=False)
    process.start()
    return process


def ready_then_wait(ready: Path, go: Path) -> None:
    """In a spawned process: say it is ready (make `ready`), then wait until `go` exists,
    so that processes racing for one store start the race at the same instant."""
    ready.touch()
    while not go.exists():
        time.sleep(0.005)


def release_at_once(procs: Sequence[multiprocessing.process.BaseProcess], ready: Sequence[Path],
                    go: Path, *, ready_within: float, end_within: float = 300) -> list[int | None]:
    """Wait until every spawned process has made its `ready` file (failing the test if one
    ends first, or they are not ready within `ready_within` s), make `go`, and wait for
    their ends: their exit codes."""
    deadline = time.monotonic() + ready_within
    while not all(path.exists() for path in ready):
        assert all(p.exitcode is None for p in procs), [p.exitcode for p in procs]
        assert time.monotonic() < deadline, f"not all ready within {ready_within} s"
        time.sleep(0.01)
    go.touch()
    for p in procs:
        p.join(timeout=end_within)
    return [p.exitcode for p in procs]
