"""Arrays that take seconds to make, kept between processes (MNIST-1D's generated examples).

The cache lives under `$NNBENCH_CACHE` (default `~/.cache/nnbench`), one file per dataset,
parameters and the package versions its values depend on: an upgraded package makes new
files, it never reads stale ones. Files are written whole (a temporary name, then a rename),
so workers starting at the same moment never read half a file. A file that cannot be read
is made again; a cache that cannot be written (a read-only home) costs only the time to
generate, every time.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "cached_file", "read_arrays", "write_arrays"]


def cache_dir() -> Path:
    return Path(os.environ.get("NNBENCH_CACHE") or Path.home() / ".cache" / "nnbench")


def cached_file(dataset: str, versions: str, name: str) -> Path:
    """`<cache>/<dataset>/<versions>/<name>`."""
    return cache_dir() / dataset / versions / name


def read_arrays(path: Path, keys: tuple[str, ...]) -> tuple[np.ndarray, ...] | None:
    """The arrays `keys` of the .npz at `path`; None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return tuple(data[key] for key in keys)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save `arrays` to `path` atomically; an unwritable cache is skipped. Whatever stops
    the write (a full disk, Ctrl-C) leaves no temporary file behind; only an OSError is
    swallowed."""
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp", delete=False) as out:
            temporary = out.name
            np.savez(out, **arrays)  # type: ignore[arg-type]
        os.replace(temporary, path)
    except BaseException as err:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        if not isinstance(err, OSError):
            raise
