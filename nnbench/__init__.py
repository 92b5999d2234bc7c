"""nnbench: reproducible ablations of neural-network training components.

    suite = load_suite("suites/default.yaml")   # validate + expand
    run_suite(suite)                            # train what is not finished; log to MLflow
    render_report(suite)                        # reports/default.html from MLflow
    tune_suite(suite)                           # Optuna per scientific point, then re-runs

The heavy parts (MLflow, seaborn) are imported on first use.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP (nnbench.config imports torch): threads of a parallel region
# that wait for each other sleep instead of spinning. Where another process keeps a core
# busy, spinning threads take turns with it and every step waits on the slowest: the
# default suite through `nnbench run --engine stacked` on 2 cores with one busy loop
# alongside took 184 s spinning against 102 s sleeping; quiet, 96 s against 92 s (one
# run each). An explicit OMP_WAIT_POLICY is kept; results do not depend on it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import TYPE_CHECKING, Any

from nnbench.config import load_suite

if TYPE_CHECKING:
    from nnbench.report import render_report
    from nnbench.runner import run_suite
    from nnbench.tuning import tune_suite

__all__ = ["load_suite", "render_report", "run_suite", "tune_suite"]


def __getattr__(name: str) -> Any:
    if name == "run_suite":
        from nnbench.runner import run_suite

        return run_suite
    if name == "render_report":
        from nnbench.report import render_report

        return render_report
    if name == "tune_suite":
        from nnbench.tuning import tune_suite

        return tune_suite
    raise AttributeError(f"module 'nnbench' has no attribute {name!r}")
