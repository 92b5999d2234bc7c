"""Where a result came from: git commit, library versions, plugins, device, host.

Recorded as tags on every MLflow run and shown in the report.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterable
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

__all__ = ["device_name", "git_commit", "library_versions", "plugin_tags"]

PLUGIN_TAG = "nnbench.plugin."  # + module: "<version> sha256:<hash> (<n> files)"

LIBRARIES = ("nnbench", "torch", "torchvision", "numpy", "mlflow", "optuna", "pandas",
             "seaborn", "scikit-learn", "mnist1d", "pydantic")


@lru_cache(maxsize=1)
def git_commit() -> str:
    """Commit of the nnbench source tree, with `-dirty` when it has uncommitted changes."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["torch"] = torch.__version__  # with its build tag, e.g. 2.14.1+cu130
    versions["cuda"] = str(torch.version.cuda)
    return versions


def device_name(device: torch.device) -> str:
    """`cpu (x86_64, 2 cores)` or the GPU's marketing name (the threads a trial trained
    with are its own provenance: `nnbench.threads`)."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    from nnbench.train.engine import cpu_cores

    return f"cpu ({platform.machine()}, {cpu_cores()} cores)"


def plugin_tags(specs: Iterable[Any]) -> dict[str, str]:
    """`nnbench.plugin.<module>` -> "<version> sha256:<hash> (<n> files)" for every plugin
    whose components the given TrialSpecs use (read from their `digests`)."""
    from nnbench import plugins

    used = sorted({key.removeprefix("plugin:") for spec in specs for key, _ in spec.digests
                   if key.startswith("plugin:")})
    loaded = plugins.loaded()
    tags = {}
    for module in used:
        plugin = loaded.get(module)
        version, sha256, files = ((plugin.version, plugin.sha256, plugin.files) if plugin
                                  else plugins.describe_source(module))
        tags[f"{PLUGIN_TAG}{module}"] = f"{version} sha256:{sha256} ({files} files)"
    return tags
