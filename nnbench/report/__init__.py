"""HTML reports: statistics over seeds, seaborn figures, one self-contained file per suite.

`render_report(suite)` reads the suite's runs back from MLflow (nothing else), and
writes `<report_dir>/<suite>.html` with every figure embedded as PNG data, so the
file can be mailed or archived alone. `nnbench report SUITE` regenerates it any time.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render to memory

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure

from nnbench import registry
from nnbench.config import AXES, Suite
from nnbench.registry import ComponentSpec
from nnbench.results import Results, load_results, summarize

__all__ = ["render_report"]

_ENV = Environment(loader=PackageLoader("nnbench.report", "templates"),
                   autoescape=select_autoescape(["html", "j2"]))


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _curve_keys(history: pd.DataFrame) -> tuple[str, str]:
    """val_loss and the validation metric the trials report (accuracy, else rmse)."""
    for key in ("val_accuracy", "val_rmse", "val_mae"):
        if key in history.columns:
            return "val_loss", key
    return "val_loss", "train_loss"


def _curves_figure(history: pd.DataFrame, config: str) -> str:
    """Validation loss and metric over epochs, one line per seed."""
    frame = history[history["config"] == config]
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 2.8))
    for ax, key in zip(axes, _curve_keys(history), strict=True):
        sns.lineplot(data=frame, x="epoch", y=key, hue="seed", palette="colorblind",
                     ax=ax, legend=ax is axes[-1])
        ax.set_title(key)
        ax.set_ylabel("")
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "center left", bbox_to_anchor=(1.02, 0.5), title="seed")
    return _png(fig)


def _metric_figure(trials: pd.DataFrame, order: list[str], metric: str) -> str:
    """The compared metric per configuration: every seed as a dot, mean ± sd as a bar."""
    finished = trials[trials["status"] == "finished"]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(order) + 1.2))
    sns.pointplot(data=finished, y="config", x="metric", order=order, errorbar="sd",
                  linestyle="none", color="black", marker="|", markersize=14, ax=ax)
    sns.stripplot(data=finished, y="config", x="metric", order=order, hue="seed",
                  palette="colorblind", size=5, alpha=0.8, ax=ax)
    ax.set_xlabel(f"{metric} (dots: seeds; bar: mean ± sd)")
    ax.set_ylabel("")
    sns.move_legend(ax, "center left", bbox_to_anchor=(1.02, 0.5), title="seed")
    return _png(fig)


def _fixed_settings(suite: Suite) -> list[dict[str, Any]]:
    varied = {axis.partition(".")[0] for axis in suite.varied_axes}
    rows = []
    for name, axis in AXES.items():
        value = suite.base.value(name)
        text = registry.label(axis.kind, value) if isinstance(value, ComponentSpec) and axis.kind \
            else str(value)
        rows.append({"axis": name, "value": text, "varied": name in varied})
    return rows


def render_report(suite: Suite, *, tracking_uri: str | None = None,
                  report_dir: str | Path = "reports", results: Results | None = None) -> Path:
    """Write `<report_dir>/<suite.name>.html` from what MLflow holds; returns its path."""
    results = results or load_results(suite, tracking_uri)
    trials, history = results.trials, results.history
    table = summarize(trials, suite.higher_is_better)
    order = table["config"].tolist()
    figures = []
    if not history.empty:
        figures = [{"config": c, "png": _curves_figure(history, c)} for c in order
                   if (history["config"] == c).any()]
    statuses = trials["status"].value_counts().to_dict() if not trials.empty else {}
    num_params = sorted(set(trials["num_params"])) if not trials.empty else []
    latest = (results.invocations.sort_values("start_time").iloc[-1].to_dict()
              if not results.invocations.empty else {})
    html = _ENV.get_template("report.html.j2").render(
        suite=suite, results=results, table=table.to_dict("records"),
        best=order[0] if order and table["n"].iloc[0] > 0 else None,
        metric_png=_metric_figure(trials, order, suite.metric)
        if (not trials.empty and (trials["status"] == "finished").any()) else None,
        figures=figures, statuses=statuses, fixed=_fixed_settings(suite),
        varied=suite.varied_axes, num_params=num_params,
        trial_rows=trials.to_dict("records"), latest=latest,
        versions={k.removeprefix("nnbench.version."): v for k, v in latest.items()
                  if k.startswith("nnbench.version.")},
        flags={k.removeprefix("nnbench.deterministic."): v for k, v in latest.items()
               if k.startswith("nnbench.deterministic.")},
        commits=sorted(set(trials["git_commit"])) if not trials.empty else [],
        devices=sorted(set(trials["device"])) if not trials.empty else [],
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    out = Path(report_dir) / f"{suite.name}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)  # never leave a half-written report behind
    return out
