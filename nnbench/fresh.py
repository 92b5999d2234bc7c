"""Is a suite's report already up to date? Answered before anything heavy is imported.

A `nnbench run` that finds every trial done used to validate the suite, open MLflow
and re-render the report (tens of seconds on a small CPU) although nothing had
changed. After each run that leaves a suite complete, nnbench records what its report
was made from, in `<report_dir>/.nnbench-inputs.json`:

- the suite file's bytes (sha256);
- nnbench itself: a digest of its source files (a code change can change validation,
  trial ids or the report);
- the files the suite's trials depend on beyond it (plugin modules, data files);
- the MLflow store: for a SQLite store its size and modification time (any run written
  by anyone changes them); other stores are never taken as unchanged;
- the report file it wrote (sha256), and a digest of the results it was rendered from.

The next `nnbench run` of that suite compares these first (a few file reads and hashes,
no torch, no MLflow): when all match, nothing can have changed, it says so and is done.
When the store changed but the results read back are the same (another suite wrote to
it), the report is not re-rendered either (`results_unchanged`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nnbench.cli_checks import default_tracking_uri, sqlite_file

__all__ = ["fresh_report", "record", "recorded_runs_url",
           "results_unchanged", "source_digest"]

MANIFEST = ".nnbench-inputs.json"
STALE_TEMPORARY_S = 3600  # a report's temporary file this old: its writer was killed


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def source_digest() -> str:
    """sha256 over nnbench's own source and templates (names and bytes)."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".j2", ".yaml")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def store_token(tracking_uri: str) -> str | None:
    """What changes whenever a SQLite MLflow store is written; None for other stores."""
    path = sqlite_file(tracking_uri)
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    wal = path.with_name(path.name + "-wal")
    wal_part = f":{wal.stat().st_size}:{wal.stat().st_mtime_ns}" if wal.exists() else ""
    return f"{stat.st_size}:{stat.st_mtime_ns}{wal_part}"


def _manifest(report_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((report_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _inputs(suite_path: Path, tracking_uri: str, dependencies: Iterable[Path]) -> dict[str, Any]:
    return {"suite": _sha(suite_path), "nnbench": source_digest(), "tracking_uri": tracking_uri,
            "store": store_token(tracking_uri),
            "dependencies": {str(p): _sha(p) for p in sorted(set(dependencies))}}


def fresh_report(suite_path: str, report_dir: str, tracking_uri: str | None) -> Path | None:
    """The suite's report when nothing it was made from changed since; else None."""
    path = Path(suite_path).resolve()
    uri = tracking_uri or default_tracking_uri()
    entry = _manifest(Path(report_dir)).get(str(path))
    if not entry or entry.get("store") is None:
        return None
    recorded = entry.get("inputs", {})
    now = _inputs(path, uri, [Path(p) for p in recorded.get("dependencies", {})])
    report = Path(entry.get("report", ""))
    if now != recorded or _sha(report) != entry.get("report_sha"):
        return None
    return report


def results_unchanged(suite_path: str, report_dir: str, results_digest: str,
                      report: Path) -> bool:
    """Was the report rendered from these very results (and is it still that file)?"""
    entry = _manifest(Path(report_dir)).get(str(Path(suite_path).resolve()), {})
    return bool(entry.get("results") == results_digest
                and entry.get("report") == str(report.resolve())
            and _sha(report) == entry.get("report_sha")
            and entry.get("inputs", {}).get("suite") == _sha(Path(suite_path).resolve())
            and entry.get("inputs", {}).get("nnbench") == source_digest())


@contextmanager
def _updating(directory: Path) -> Iterator[dict[str, Any]]:
    """The manifest, read and written back under an exclusive lock on
    `<report_dir>/.nnbench-inputs.json.lock`: processes that finish suites into one report
    directory at once (workers, or two `nnbench run`s) each add their entry, none lost."""
    from filelock import FileLock

    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / f"{MANIFEST}.lock"), timeout=120):
        manifest = _manifest(directory)
        before = json.dumps(manifest, sort_keys=True)
        yield manifest
        if json.dumps(manifest, sort_keys=True) != before:
            write_atomic(directory / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def record(suite_path: str, report_dir: str, tracking_uri: str, report: Path,
           results_digest: str, dependencies: Iterable[Path] = (),
           runs_url: str | None = None) -> None:
    """Remember what the suite's (complete) report was made from (and, to print it again
    without MLflow, the address of the experiment's runs in MLflow's UI)."""
    path = Path(suite_path).resolve()
    inputs = _inputs(path, tracking_uri, dependencies)
    entry = {"inputs": inputs, "store": inputs["store"], "report": str(report.resolve()),
             "report_sha": _sha(report), "results": results_digest, "runs_url": runs_url}
    with _updating(Path(report_dir)) as manifest:
        manifest[str(path)] = entry


def recorded_runs_url(suite_path: str, report_dir: str) -> str | None:
    """The MLflow runs address `record` kept for the suite, if any."""
    url = _manifest(Path(report_dir)).get(str(Path(suite_path).resolve()), {}).get("runs_url")
    return url if isinstance(url, str) else None


def forget(suite_path: str, report_dir: str) -> None:
    """A suite that is not complete (or was not rendered by run) has no fresh report."""
    directory = Path(report_dir)
    if not (directory / MANIFEST).exists():
        return
    with _updating(directory) as manifest:
        manifest.pop(str(Path(suite_path).resolve()), None)


def write_together(files: Mapping[Path, str], then: Callable[[], object] | None = None) -> None:
    """Write a set of files that describe one thing (a report, its tables, its summary),
    each atomically, with Ctrl-C and SIGTERM held until the last is in place (and `then`,
    which reads them, has run): an interrupt leaves the set as it was or the new one whole.
    Everything slow (figures, statistics) is made before; the writes take milliseconds. A
    report interrupted between its CSV tables and its HTML left tables of 6 trials beside a
    page of 4."""
    from nnbench.transient import bookkeeping

    with bookkeeping():
        for path, text in files.items():
            write_atomic(path, text)
        if then is not None:
            then()


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file of its own, renamed into place: a
    reader never sees a half-written file, and workers writing the same report at once
    (several `nnbench tune` / `worker` processes in one directory) each replace it whole.
    The file gets the mode a plain write would give it (the umask applies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with open(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    # a writer killed outright (SIGKILL, out of memory) left its temporary file: gone once
    # an hour old (a writer on another host sharing the directory may still be writing a
    # younger one)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > STALE_TEMPORARY_S:
                stale.unlink()
