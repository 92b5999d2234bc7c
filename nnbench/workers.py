"""Starting workers: local processes on this machine, or a job array through submitit.

Every worker is the same command, `nnbench worker SUITE --storage URL ...`: it queues
what is not done (idempotently), then claims and trains trials from the suite's queue
until nothing is left for anyone (nnbench.queue). Workers need nothing from the process
that started them, so they can be started in any way:

- `nnbench run SUITE --workers N` starts N local processes (`spawn_local`), each with
  its share of the cores, and shows the whole suite's progress;
- `nnbench worker SUITE --storage URL` by hand, on as many machines as you like;
- `nnbench submit SUITE --storage URL --workers N` submits a job array through submitit
  (`submit`): on Slurm when `sbatch` is there, otherwise as local processes (or
  `--local`).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

__all__ = ["SlurmOptions", "spawn_local", "submit", "wait_for_jobs", "watch_coordinator",
           "worker_job", "worker_options"]


def worker_options(*, storage: str, tracking_uri: str, device: str, engine: str,
                   precision: str, heartbeat_interval: int, grace_period: int,
                   system_metrics: str, log_models: bool, lanes: int | None = None,
                   threads: int | None = None, parent_run: str | None = None,
                   source: str | None = None) -> list[str]:
    """The `nnbench worker` options that join a suite's queue as the starting command
    would train it (`run`/`tune --workers`, `submit`); `source`: the suite file's text as
    that command read it (the worker refuses a file that differs: `suite_digest`)."""
    return ["--storage", storage, "--tracking-uri", tracking_uri, "--device", device,
            "--engine", engine, "--precision", precision,
            "--heartbeat-interval", str(heartbeat_interval), "--grace-period", str(grace_period),
            "--system-metrics", system_metrics, *(["--log-models"] if log_models else []),
            *(["--lanes", str(lanes)] if lanes is not None else []),
            *(["--threads", str(threads)] if threads else []),
            *(["--parent-run", parent_run] if parent_run else []),
            *(["--suite-digest", suite_digest(source)] if source is not None else [])]


def suite_digest(source: str) -> str:
    """The short digest of a suite file's text: a worker started by a command checks that
    it reads the file that command read (one edited in between trained the new version,
    while the command reported the old one: "no finished trials", exit 0)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def watch_coordinator(pid: int, every: float = 0.5) -> None:
    """In a worker that `spawn_local` started: stop it as SIGTERM does (its trials in flight
    recorded as killed, its claims released and queued again at once) when its coordinator,
    process `pid`, is gone. A SIGKILLed `run --workers` left its workers training on unseen
    (their output gone with it) and, re-run, started as many again beside them."""

    def gone() -> bool:
        return os.getppid() != pid  # an orphan is adopted by init (or a subreaper)

    def watch() -> None:
        while not gone():
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)

    if gone():
        raise KeyboardInterrupt  # it died before this worker began
    threading.Thread(target=watch, name="nnbench-coordinator", daemon=True).start()


def worker_command(suite_path: str, options: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "nnbench.cli", "worker", suite_path, *options]


def spawn_local(suite_path: str, options: Sequence[str], workers: int, console: Console,
                progress: Callable[[], str] | None = None) -> list[int]:
    """Run `workers` local `nnbench worker` processes; echo their output, prefixed with
    the worker's number; return their exit codes. Ctrl-C reaches them (a terminal sends
    it to the whole process group; a `kill -INT` or `kill` (SIGTERM) of this process is
    forwarded, as SIGINT). Each
    worker's OpenMP threads are capped at its share of the cores (`OMP_NUM_THREADS`), the
    most its engine's thread policy then takes."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **_share_of_cores(workers)}
    options = [*options, "--coordinator", str(os.getpid())]  # they stop when it is gone
    procs = [subprocess.Popen(worker_command(suite_path, options), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env)
             for _ in range(workers)]
    echoes = [threading.Thread(target=_echo, args=(p, i + 1, console), daemon=True)
              for i, p in enumerate(procs)]
    for echo in echoes:
        echo.start()
    from nnbench.transient import interrupted

    last = time.monotonic()
    try:
        while any(p.poll() is None for p in procs):
            if interrupted():  # one Python swallowed (wait_for_jobs): still forwarded
                raise KeyboardInterrupt
            time.sleep(0.5)
            if progress is not None and time.monotonic() - last > 30:
                console.print(f"suite progress: {progress()}", highlight=False)
                last = time.monotonic()
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
    for echo in echoes:
        echo.join(timeout=5)
    codes = []
    for number, p in enumerate(procs, 1):  # a worker that died is said, not only counted
        code = int(p.returncode)
        if code in (-signal.SIGINT, -signal.SIGTERM):
            code = 130  # interrupted before its handlers were in place (still starting)
        elif code == 2:
            console.print(f"[worker {number}] refused its input (exit code 2)",
                          highlight=False, markup=False)
        elif code not in (0, 130):
            how = (f"signal {signal.Signals(-code).name}" if code < 0
                   else f"exit code {code}")
            console.print(f"[worker {number}] ended with {how}; a trial it held is trained "
                          f"again by another worker once its claim goes stale",
                          highlight=False, markup=False)
        codes.append(code)
    return codes


def all_refused(codes: Sequence[int]) -> bool:
    """Every worker refused its input (exit 2, each saying what): a usage error of the
    whole command, not a failed trial."""
    return bool(codes) and all(code == 2 for code in codes)


def _echo(proc: subprocess.Popen[str], number: int, console: Console) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        console.print(f"[worker {number}] {line.rstrip()}", highlight=False, markup=False)


def _share_of_cores(workers: int) -> dict[str, str]:
    """`OMP_NUM_THREADS` for each of `workers` processes on this machine: its share of the
    cores (at most the one already set), the most its engine's thread policy takes."""
    import torch

    from nnbench.train.engine import shared_cores

    return {"OMP_NUM_THREADS": str(shared_cores(torch.device("cpu"), workers))}


def worker_job(suite_path: str, options: list[str], cwd: str,
               env: dict[str, str] | None = None) -> int:
    """What one submitit job runs: an `nnbench worker` process (its exit code); `env`:
    variables it gets on top of the job's. Slurm warns a job of its time limit with SIGUSR2
    (submitit asks for it), to which submitit's handler in this process answers by raising
    here: the worker is then interrupted (SIGINT), and waited for, so that it releases its
    claims at once (its trials queued again for the other workers) rather than being
    killed with them held for a grace period."""
    # the worker takes Ctrl-C as a command does, even where this job's process ignores it
    # (a local job's: `submit`); a handler set here is reset to the default in the worker
    ignoring = signal.getsignal(signal.SIGINT) == signal.SIG_IGN and \
        threading.current_thread() is threading.main_thread()
    if ignoring:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        proc = subprocess.Popen(worker_command(suite_path, options), cwd=cwd,
                                env={**os.environ, **env} if env else None)
    finally:
        if ignoring:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return int(proc.wait())
    except BaseException:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


@dataclass(frozen=True)
class SlurmOptions:
    """What a Slurm job array asks for (submitit's AutoExecutor parameters)."""

    partition: str | None = None
    timeout_min: int = 60  # each worker's time limit, minutes
    cpus_per_task: int = 2
    gpus_per_node: int = 0
    mem_gb: float = 8.0
    parallelism: int | None = None  # most array tasks running at once


def submit(suite_path: str, options: list[str], workers: int, folder: Path,
           slurm: SlurmOptions, *, local: bool = False) -> list[Any]:
    """Submit `workers` worker jobs as one array through submitit; returns the jobs.

    Slurm when it is there (or `local=False` and `sbatch` on PATH), else submitit's
    local executor, which runs the same jobs as processes of this machine.
    """
    import submitit

    cluster = "local" if local else None
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    parameters: dict[str, Any] = {"name": f"nnbench-{Path(suite_path).stem}",
                                  "timeout_min": slurm.timeout_min,
                                  "cpus_per_task": slurm.cpus_per_task,
                                  "gpus_per_node": slurm.gpus_per_node, "mem_gb": slurm.mem_gb}
    if executor.cluster == "slurm":
        if slurm.partition:
            parameters["slurm_partition"] = slurm.partition
        if slurm.parallelism:
            parameters["slurm_array_parallelism"] = slurm.parallelism
    else:  # the local executor knows no memory or cpu limits
        parameters = {"name": parameters["name"], "timeout_min": slurm.timeout_min,
                      "gpus_per_node": slurm.gpus_per_node}
    executor.update_parameters(**parameters)
    cwd = str(Path.cwd())
    local_jobs = executor.cluster != "slurm"
    env = _share_of_cores(workers) if local_jobs else {}  # one machine
    # local jobs' processes ignore a terminal's Ctrl-C, which reaches the whole process
    # group: submitit's controller would print a traceback and kill its job a second
    # later. Each worker itself takes it (worker_job), and this command forwards it.
    ignored = local_jobs and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if ignored else None
    try:
        jobs: list[Any] = executor.map_array(worker_job, [suite_path] * workers,
                                             [options] * workers, [cwd] * workers,
                                             [env] * workers)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, previous)
    return jobs


def wait_for_jobs(jobs: Sequence[Any], console: Console, *, local: bool) -> list[int]:
    """Wait for submitted worker jobs; each one's exit code (`job_code`).

    Ctrl-C (or a `kill` of this process, SIGTERM) while waiting: the workers of local jobs
    are interrupted as Ctrl-C would (SIGINT: the trials in flight recorded as killed, their
    claims released at once) and waited for; then their codes (130). Slurm jobs go on:
    the command says how to cancel them, and stops waiting.

    An interrupt that Python swallowed (raised inside a garbage-collection callback or a
    `__del__` while submitit polled) is still one: the wait looks at `interrupted()`
    between polls. Without that a killed `submit --local` waited for workers that trained
    on, and a terminal's Ctrl-C said nothing of interrupting them."""
    from nnbench.transient import interrupted

    try:
        for job in jobs:
            while not job.done():
                if interrupted():
                    raise KeyboardInterrupt
                time.sleep(1)  # (submitit's own poll)
    except KeyboardInterrupt:
        if not local:
            console.print(f"stopped waiting; the worker jobs go on (scancel "
                          f"{' '.join(str(j.job_id) for j in jobs)} cancels them)",
                          highlight=False, markup=False)
            raise
        console.print("interrupting the workers: their trials in flight are recorded as "
                      "killed", highlight=False, markup=False)
        _interrupt_local_workers(jobs)
        for job in jobs:
            job.wait()
        # a job whose process submitit killed (a terminal's Ctrl-C reaches its controller
        # too, which kills it a second later) wrote no result: interrupted, as its worker
        return [job_code(job, console) if job.paths.result_pickle.exists() else 130
                for job in jobs]
    return [job_code(job, console) for job in jobs]


def job_code(job: Any, console: Console) -> int:
    """A finished job's worker's exit code; a job that ended without one (its time limit,
    a cancel, a crash of the job itself) is said, with its log, and counts as interrupted
    (130: whatever its worker held is queued again) or, where the job raised, failed (1)."""
    from submitit.core.utils import UncompletedJobError

    try:
        return int(job.result())
    except Exception as e:  # the job's own error, or submitit's (UncompletedJobError)
        text = str(e)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if "timed-out" in text:  # submitit interrupted the job at its time limit
            reason = ("at its time limit (--slurm-time), less submitit's 30 s warning: its "
                      "worker was interrupted, its trials in flight queued again")
        else:
            reason = lines[-1] if lines else type(e).__name__
        console.print(f"worker job {job.job_id} ended without an exit code: {reason}; its "
                      f"log: {job.paths.stdout}", highlight=False, markup=False)
        # (a time limit reached inside the job comes wrapped, its traceback in the text)
        return 130 if isinstance(e, UncompletedJobError) or "UncompletedJobError" in text \
            else 1


def _interrupt_local_workers(jobs: Sequence[Any]) -> None:
    """SIGINT to the `nnbench worker` processes of local submitit jobs (each job's id is
    its controller process; the worker is a process under it), and wait until they end.
    Not through submitit's cancel: its controller kills the job's processes a second after
    interrupting them, while a worker may still be recording its trials."""
    import psutil

    workers = []
    for job in jobs:
        if job.done():  # its controller's pid may be another process's by now
            continue
        try:
            below = psutil.Process(int(job.job_id)).children(recursive=True)
        except (psutil.Error, ValueError):  # ended already
            continue
        for proc in below:
            try:  # the job's own worker: started under its controller, for its job id
                if "nnbench.cli" in proc.cmdline() and "worker" in proc.cmdline() and \
                        proc.environ().get("SUBMITIT_LOCAL_JOB_ID") == str(job.job_id):
                    proc.send_signal(signal.SIGINT)
                    workers.append(proc)
            except psutil.Error:
                continue
    psutil.wait_procs(workers, timeout=120)
