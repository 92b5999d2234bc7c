"""nox sessions: ablate (the main job), tune, report, bench, tests, benchmarks, gpu-bench,
chaos, lint, setup.

Every session runs in one shared virtual environment, `.venv/`, installed from
`constraints.txt` (exact versions, torch==2.14.1 / torchvision==0.29.1): torch
is large, so it is installed once, not once per session. Where uv is installed (`pip
install nox uv`, as .ci/run does), nox installs with `uv pip install --compile-bytecode`:
the same packages, 46 s against pip's 123 s on the 2-core machine (cold caches); otherwise
with pip. The environment is re-installed when constraints.txt or pyproject.toml change.

    nox -s ablate                              # suites/default.yaml
    nox -s ablate -- suites/x.yaml --device cuda
    nox -s tune -- suites/tune_optimizers.yaml [--storage postgresql://...]
    nox -s report [-- suites/x.yaml]
    nox -s bench [-- benchmarks/x.yaml --engine serial]
    nox -s tests [-- -k expr]
    nox -s benchmarks
    nox -s gpu-bench [-- --device cpu --smoke]
    nox -s chaos [-- --workers 4 --kills 4 --terms 1 --stops 2 --outages 1 --seed X --tune]
    nox -s lint
    nox -s setup                               # only install .venv (each session does first)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
DEFAULT_SUITE = "suites/default.yaml"
DEFAULT_BENCHMARK = "benchmarks/optimizers.yaml"

nox.options.sessions = ["tests", "lint"]


def _env(session: nox.Session) -> None:
    """Create/refresh the shared environment (installed again only when constraints.txt or
    pyproject.toml changed), then nnbench's bytecode. Where PYTHONDONTWRITEBYTECODE is set,
    as on these machines, every fresh interpreter (a worker, a submitit job, a command)
    compiled nnbench from source: its modules took 0.39 s to import that way, 0.15 s
    compiled. compileall writes only what changed."""
    inputs = b"".join((ROOT / name).read_bytes() for name in ("constraints.txt", "pyproject.toml"))
    wanted = hashlib.sha256(inputs).hexdigest()
    stamp = VENV / ".nnbench-installed"
    if not (stamp.exists() and stamp.read_text() == wanted):
        _install(session)
        stamp.write_text(wanted)
    session.run(str(BIN / "python"), "-m", "compileall", "-q", "nnbench", "tests",
                external=True, silent=True)


def _install(session: nox.Session) -> None:
    if not (BIN / "python").exists():
        session.run(sys.executable, "-m", "venv", str(VENV), external=True)
    uv = _uv()
    if uv:
        session.run(uv, "pip", "install", "--quiet", "--python", str(BIN / "python"),
                    "--compile-bytecode", "-c", "constraints.txt", "-e", ".[dev]",
                    external=True)
    else:
        session.run(str(BIN / "python"), "-m", "pip", "install", "--quiet", "-c",
                    "constraints.txt", "-e", ".[dev]", external=True)


def _uv() -> str | None:
    """uv's executable: the uv package beside nox, else one on PATH, else None."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return shutil.which("uv")
    return str(find_uv_bin())


def _suites_first(posargs: list[str]) -> list[str]:
    """Pass-through args, with the default suite when none is named: a suite is named by a
    YAML file among them, or by a first argument that is no option (`nox -s report --
    default` passed `suites/default.yaml default`, training or reporting a suite not asked
    for; now nnbench says that `default` is no suite file, and which one is)."""
    if posargs[:1] and not posargs[0].startswith("-"):
        return posargs
    if any(arg.endswith((".yaml", ".yml")) for arg in posargs):
        return posargs
    return [DEFAULT_SUITE, *posargs]


@nox.session(venv_backend="none")
def ablate(session: nox.Session) -> None:
    """Train every unfinished trial of the suites (default: suites/default.yaml), then report."""
    _env(session)
    session.run(str(BIN / "nnbench"), "run", *_suites_first(session.posargs), external=True)


@nox.session(venv_backend="none")
def tune(session: nox.Session) -> None:
    """Tune nuisance hyperparameters with Optuna (suites with a tune: block), then report."""
    _env(session)
    if not any(arg.endswith((".yaml", ".yml")) for arg in session.posargs):
        session.error("name a suite with a tune: block, e.g. nox -s tune -- "
                      "suites/tune_optimizers.yaml")
    session.run(str(BIN / "nnbench"), "tune", *session.posargs, external=True)


@nox.session(venv_backend="none")
def report(session: nox.Session) -> None:
    """Re-render reports/<suite>.html from MLflow."""
    _env(session)
    session.run(str(BIN / "nnbench"), "report", *_suites_first(session.posargs), external=True)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Run every suite of a benchmark file (default: benchmarks/optimizers.yaml), then
    reports/<benchmark>.html: time-to-target and performance profiles across tasks."""
    _env(session)
    args = session.posargs
    if not any(arg.endswith((".yaml", ".yml")) for arg in args):
        args = [DEFAULT_BENCHMARK, *args]
    session.run(str(BIN / "nnbench"), "bench", *args, external=True)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite (benchmarks run once each, untimed; see the benchmarks session).

    One pytest process per core (pytest-xdist; each test module stays in one process, so
    its module fixtures are made once), each with torch on one thread (OMP_NUM_THREADS=1,
    which the engines' thread policy follows): the tests' models are tiny, and where other
    jobs keep the cores busy two OpenMP threads spin waiting for each other (test_suites.py
    and test_stacked.py took 432 s on two threads against 66 s on one, with two CPU-bound
    processes alongside; 39 s on a quiet machine). `-- -n 0` runs every test in one pytest
    process (for breakpoint() or -s)."""
    _env(session)
    scratch = _memory_scratch()
    env = {"OMP_NUM_THREADS": "1"}
    args = []
    if scratch is not None:  # the tests' stores, their processes' temporary files
        env["TMPDIR"] = str(scratch)
        args = ["--basetemp", str(scratch / "pytest")]
    try:
        session.run(str(BIN / "pytest"), "--benchmark-disable", "-n", str(_test_processes()),
                    "--dist", "loadscope", "--no-loadscope-reorder", *args, *session.posargs,
                    external=True, env=env)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _memory_scratch() -> Path | None:
    """A private directory in /dev/shm for the tests' temporary files, where it is a
    memory file system with room (4 GiB; a full run writes about 200 MB); else None (the
    system's temporary directory). The tests write hundreds of MLflow and Optuna SQLite
    stores, and each commit waits for the disk: making one MLflow store took 19.5 s on
    disk against 7.5 s in /dev/shm on the 2-core machine. What is tested is unchanged:
    only where the throw-away files live."""
    shm = Path("/dev/shm")
    try:
        if shutil.disk_usage(shm).free < 4 * 2**30 or not os.access(shm, os.W_OK):
            return None
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="nnbench-tests-", dir=shm))
        scratch.chmod(0o711)  # the tests' PostgreSQL server runs as `postgres` under root
        return scratch
    except OSError:
        return None


def _test_processes() -> int:
    """pytest-xdist workers: one per CPU this process may use, at most 8. Each holds torch,
    MLflow and Optuna twice (itself and the forkserver of tests/processes.py: 2.2 GB
    resident in all), and past 8 the longest test module, which one worker runs whole, sets
    the time anyway (tests/test_workers.py: 68 s of the 470 s of CPU the suite takes)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return min(len(cpus) if cpus else os.cpu_count() or 1, 8)


@nox.session(venv_backend="none")
def benchmarks(session: nox.Session) -> None:
    """Timed benchmarks (pytest-benchmark) in tests/benchmarks."""
    _env(session)
    session.run(str(BIN / "pytest"), "tests/benchmarks", "--benchmark-only",
                "--benchmark-columns=min,median,mean,stddev,rounds", *session.posargs,
                external=True, env={"NNBENCH_BENCH_FULL": "1"})  # full size: scale.py


@nox.session(name="gpu-bench", venv_backend="none")
def gpu_bench(session: nox.Session) -> None:
    """The GPU benchmark (tests/benchmarks/gpu.py): the stacked engine end to end on an
    MNIST-shaped MLP at 32, 128 and 512 lanes, 5 epochs (`-- --device cpu --smoke`: a check
    in seconds). It needs only torch, numpy, pyyaml and pydantic, so it installs nothing: it
    runs on .venv's Python where there is one, else on the `python3` on PATH (a GPU
    machine's own torch)."""
    python = BIN / "python"
    interpreter = str(python) if python.exists() else shutil.which("python3") or "python"
    session.run(interpreter, "-m", "tests.benchmarks.gpu", *session.posargs, external=True)


@nox.session(venv_backend="none")
def chaos(session: nox.Session) -> None:
    """The chaos test at full size (tests/chaos.py; its CI-sized cases, tests/test_chaos.py, run
    in the tests session): 4 `nnbench worker` processes on a fresh PostgreSQL store drain a
    48-trial suite while 4 random ones are SIGKILLed and 1 SIGTERMed (each replaced) and 2
    SIGSTOPped past the grace period, and the server is stopped for a few seconds once; then
    every trial must have finished once (never twice, deleted runs included) with the
    fingerprints of an undisturbed run, every worker not killed must have exited 0 (130 if
    SIGTERMed), and MLflow must show each trial as the queue holds it. Prints the seed, the
    schedule as carried out and a summary. `-- --workers N --kills K --terms T --stops S
    --outages O --seed X --trials T --epochs E --engine stacked` changes the run, `-- --tune`
    disturbs `nnbench tune` processes on a tuned suite instead (`python -m tests.chaos --help`).
    Needs PostgreSQL's initdb and pg_ctl on PATH."""
    _env(session)
    scratch = _memory_scratch()
    env = {"OMP_NUM_THREADS": "1"}
    if scratch is not None:  # the stores and logs (pytest's basetemp follows TMPDIR)
        env["TMPDIR"] = str(scratch)
    try:
        session.run(str(BIN / "python"), "-m", "tests.chaos", *session.posargs, external=True,
                    env=env)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@nox.session(venv_backend="none")
def setup(session: nox.Session) -> None:
    """Install (or refresh) the shared environment, `.venv/`, and nothing else: what every
    other session does first. CI runs it before starting the tests and the lint side by
    side, which must not both install at once."""
    _env(session)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff + mypy (strict)."""
    _env(session)
    session.run(str(BIN / "ruff"), "check", ".", external=True)
    session.run(str(BIN / "mypy"), external=True)
