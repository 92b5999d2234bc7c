"""The report's figures (seaborn on matplotlib's Agg backend), each returned as a PNG data URI.

Every function takes tidy tables and returns `data:image/png;base64,...`, so the report
stays one self-contained file.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap

import matplotlib

matplotlib.use("Agg")  # no display: render to memory

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from nnbench import registry
from nnbench.registry import ComponentSpec
from nnbench.results.stats import ema

__all__ = ["activations", "curves", "diagnostics", "interaction", "leaderboard", "lr_curves",
           "main_effects", "performance_profile"]

DPI = 80
sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)


def _png(fig: Figure) -> str:
    """The figure cropped to what it draws, as `bbox_inches="tight"` crops it: the same box
    (pixel for pixel the same image on every figure of a three-axis report, a test checks),
    measured without the whole draw, with rendering switched off, that "tight" makes first
    (a fifth of the report's savefig time): Axes.get_tightbbox makes the updates of ticks,
    labels, titles and legends that draw would. A figure with a layout engine, which that
    draw lays out, or off matplotlib's Agg canvas is left to "tight"."""
    buffer = io.BytesIO()
    box: Bbox | str = "tight"
    if fig.get_layout_engine() is None and isinstance(fig.canvas, FigureCanvasAgg):
        fig.set_dpi(DPI)  # text is measured at the resolution it is drawn at
        renderer = fig.canvas.get_renderer()  # type: ignore[no-untyped-call]  # (stubs)
        box = fig.get_tightbbox(renderer).padded(matplotlib.rcParams["savefig.pad_inches"])
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches=box)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def leaderboard(trials: pd.DataFrame, table: pd.DataFrame, metric: str) -> str:
    """Every finished seed as a dot, each configuration's mean and 95% interval as a bar."""
    finished = trials[trials["status"] == "finished"]
    order = [c for c in table["config"] if c in set(finished["config"])]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(order) + 1.3))
    sns.stripplot(data=finished, y="config", x="metric", order=order, color="#4c72b0",
                  size=4, alpha=0.6, ax=ax)
    rows = table.set_index("config").loc[order]
    y = np.arange(len(order))
    ax.errorbar(rows["mean"], y, xerr=[rows["mean"] - rows["low"], rows["high"] - rows["mean"]],
                fmt="|", color="black", markersize=14, capsize=3, lw=1.2)
    ax.set_xlabel(f"{metric} (dots: seeds; black: mean and 95% t interval)")
    ax.set_ylabel("")
    return _png(fig)


def main_effects(levels: pd.DataFrame, metric: str) -> str:
    """For each varied axis, the metric by level with its 95% interval; baseline in orange."""
    axes = list(dict.fromkeys(levels["axis"]))
    fig, grid = plt.subplots(1, len(axes), figsize=(3.6 * len(axes), 3.0), squeeze=False)
    for ax, axis in zip(grid[0], axes, strict=True):
        rows = levels[levels["axis"] == axis].reset_index(drop=True)
        x = np.arange(len(rows))
        colors = ["#dd8452" if b else "#4c72b0" for b in rows["baseline"]]
        low = (rows["mean"] - rows["low"]).fillna(0)
        high = (rows["high"] - rows["mean"]).fillna(0)
        ax.errorbar(x, rows["mean"], yerr=[low, high], fmt="none", ecolor="grey", capsize=4)
        ax.scatter(x, rows["mean"], c=colors, zorder=3)
        ax.set_xticks(x, [str(v)[:28] for v in rows["level"]], rotation=35, ha="right")
        ax.set_title(axis)
        ax.set_ylabel(metric if ax is grid[0][0] else "")
    return _png(fig)


def interaction(means: pd.DataFrame, widths: pd.DataFrame, metric: str) -> str:
    """Heatmaps of the mean metric and of its 95% interval width for two axes."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.45 * len(means) + 2.2))
    # 4 decimals, as the report's tables (3 showed 0.237 beside a table's 0.2375)
    sns.heatmap(means.astype(float), annot=True, fmt=".4f", cmap="viridis", ax=left,
                cbar_kws={"label": metric})
    left.set_title(f"mean {metric}")
    if widths.astype(float).isna().all().all():  # one seed per cell: no interval at all
        right.set_axis_off()
        right.text(0.5, 0.5, "no 95% interval:\nfewer than 2 seeds per cell",
                   ha="center", va="center", transform=right.transAxes)
    else:
        sns.heatmap(widths.astype(float), annot=True, fmt=".4f", cmap="rocket_r", ax=right,
                    cbar_kws={"label": "CI width"})
        right.set_title("95% interval width")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=30)
    return _png(fig)


def curves(history: pd.DataFrame, keys: tuple[str, str], beta: float, label: str) -> str:
    """Train and validation curves per configuration: mean over seeds, band ±1 sd.

    With beta > 0 each trial's curve is first smoothed with the notes' EMA. The mean and
    sd are computed once with pandas and drawn on a grid of small multiples.
    """
    frame = history[["config", "seed", "epoch", *keys]].copy()
    if beta > 0:
        for key in keys:
            frame[key] = frame.groupby(["config", "seed"])[key].transform(
                lambda s: ema(s, beta))
    stats = frame.groupby(["config", "epoch"], sort=False)[list(keys)].agg(["mean", "std"])
    configs = list(dict.fromkeys(frame["config"]))
    cols = min(4, len(configs))
    rows = math.ceil(len(configs) / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), sharey=True,
                             squeeze=False)
    colors = sns.color_palette("colorblind", 2)
    for ax, config in zip(grid.flat, configs, strict=False):
        block = stats.loc[config]
        for key, color in zip(keys, colors, strict=True):
            mean, sd = block[(key, "mean")], block[(key, "std")].fillna(0)
            ax.plot(block.index, mean, color=color, lw=1.2, label=key)
            ax.fill_between(block.index, mean - sd, mean + sd, color=color, alpha=0.25, lw=0)
        ax.set_title(textwrap.fill(str(config), 44), fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in grid.flat[len(configs):]:
        ax.set_visible(False)
    for ax in grid[:, 0]:
        ax.set_ylabel(label)
    for ax in grid[-1, :]:
        ax.set_xlabel("epoch")
    grid.flat[0].legend(fontsize=7)
    fig.subplots_adjust(hspace=0.65, wspace=0.12)  # cheaper than tight_layout on many axes
    return _png(fig)


def lr_curve_labels(first: pd.DataFrame) -> dict[str, str]:
    """For one configuration of each distinct learning-rate curve (of `first`, one seed's
    history), the curve's label: the configurations that share it, shortened; one label
    per curve (two shortened alike are numbered: seaborn would draw them as one)."""
    users: dict[tuple[float, ...], list[str]] = {}
    for config, group in first.groupby("config", sort=False):
        users.setdefault(tuple(group.sort_values("epoch")["lr"]), []).append(str(config))
    total = first["config"].nunique()
    labels: dict[str, str] = {}
    for configs in users.values():
        base = label = ("every configuration" if len(configs) == total else
                        textwrap.shorten("; ".join(configs), 60, placeholder=" …"))
        number = 1
        while label in labels.values():
            number += 1
            label = f"{base} ({number})"
        labels[configs[0]] = label
    return labels


def lr_curves(history: pd.DataFrame) -> str:
    """Each distinct learning-rate curve of the suite, epoch by epoch (first seed),
    labelled with the configurations that used it."""
    first = history[history["seed"] == history["seed"].min()]
    # one configuration per curve, drawn as is: seaborn bootstrapped a confidence band over
    # configurations sharing a curve, 1,000 resamples per epoch (a minute at 5,000 epochs)
    labels = lr_curve_labels(first)
    first = first[first["config"].isin(labels)].assign(schedule=first["config"].map(labels))
    fig, ax = plt.subplots(figsize=(8, 3))
    # a marker on each epoch where a curve is short: a 1-epoch curve is a point, invisible
    # as a line (markers on 5,000 epochs would hide the lines)
    few = first.groupby("config")["epoch"].nunique().min() <= 100
    sns.lineplot(data=first, x="epoch", y="lr", hue="schedule", ax=ax, legend="brief",
                 errorbar=None, marker="o" if few else None, markersize=3)
    if ax.get_legend() is not None:
        sns.move_legend(ax, "center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, title="")
    lrs = first["lr"].astype(float)
    if (lrs > 0).all() and lrs.max() > 100 * lrs.min():  # 0.01 beside 1e5: log, or it is flat
        ax.set_yscale("log")
    ax.set_ylabel("learning rate")
    return _png(fig)


def activations(specs: list[ComponentSpec]) -> str:
    """Each activation of the suite with its derivative, as the notes plot them. One that is
    no function of each number alone (a plugin's GroupSort sorts pairs of features, and
    raised on the curve's 1-D input, with no report written) says so in its panel."""
    fig, grid = plt.subplots(1, len(specs), figsize=(2.6 * len(specs), 2.4), squeeze=False)
    for ax, spec in zip(grid[0], specs, strict=True):
        ax.set_title(registry.label("activation", spec), fontsize=9)
        curve = _curve(spec)
        if isinstance(curve, str):
            ax.set_axis_off()
            ax.text(0.5, 0.5, textwrap.fill(f"not drawn: {curve}", 30), ha="center",
                    va="center", fontsize=7, transform=ax.transAxes)
            continue
        x, y, slope = curve
        ax.plot(x, y, label="f(x)")
        ax.plot(x, slope, label="f'(x)", linestyle="--")
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    return _png(fig)


def _curve(spec: ComponentSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """An activation's f(x) and f'(x) on [-5, 5], or why it has no such curve: it is no
    function of each number alone (the same numbers as a column of single features give
    other values: a softmax over the features drew a wrong curve)."""
    x = torch.linspace(-5, 5, 401, requires_grad=True)
    try:
        module = registry.build("activation", spec)
        y = module(x)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            return (f"it maps 401 numbers to "
                    f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}, "
                    f"not each number to one")
        with torch.no_grad():
            alone = module(x.detach().view(-1, 1)).reshape(-1)
        if alone.shape != x.shape or not torch.allclose(alone, y.detach(), rtol=1e-5,
                                                          atol=1e-6, equal_nan=True):
            return "its value at a number depends on the numbers beside it"
        slope = (torch.autograd.grad(y.sum(), x)[0] if y.requires_grad
                 else torch.zeros_like(x))  # a step function: no gradient anywhere
    except Exception as e:  # a plugin's activation of whole feature vectors
        return f"it does not act on one number at a time ({type(e).__name__}: {e})"
    return x.detach().numpy(), y.detach().numpy(), slope.numpy()


def diagnostics(history: pd.DataFrame, trials: pd.DataFrame,
                varied: set[str]) -> list[tuple[str, str]]:
    """Per-layer gradient norms, dead/saturated units over epochs, and weight sparsity where
    the suite varies L1 (`varied`: the varied axes' heads): a figure only for what varies."""
    out = []
    layers = sorted((c for c in history.columns if c.startswith("grad_norm.layer")),
                    key=lambda c: int(c.rsplit("layer", 1)[1]))
    # of finished trials: a diverged one's last gradients are inf or nan (with every trial
    # diverged, the heatmap was all nan and seaborn warned into the command's output)
    finished = history[history["trial_id"].isin(
        trials.loc[trials["status"] == "finished", "trial_id"])] if layers else history
    if layers and not finished.empty:
        last = finished[finished["epoch"]
                        == finished.groupby("trial_id")["epoch"].transform("max")]
        table = last.groupby("config", sort=False)[layers].mean()
        table.columns = [c.replace("grad_norm.", "") for c in table.columns]
        fig, ax = plt.subplots(figsize=(1.0 * len(layers) + 4, 0.4 * len(table) + 1.5))
        sns.heatmap(np.log10(table.clip(lower=1e-12)), annot=table.map(lambda v: f"{v:.1e}"),
                    fmt="", cmap="mako", ax=ax, cbar_kws={"label": "log10 gradient norm"})
        ax.set_title("gradient norm per layer at the last epoch of finished trials (input "
                     "layer first)")
        ax.set_ylabel("")
        out.append(("Gradient norm per layer: vanishing gradients show as a dark input side",
                    _png(fig)))
    for key, title in (("dead_fraction", "share of dead units (ReLU family)"),
                       ("saturated_fraction", "share of saturated activations (sigmoid/tanh)")):
        if key in history.columns and history[key].notna().any():
            fig, ax = plt.subplots(figsize=(8, 3))
            # the configurations it applies to (a tanh trial has no dead units: its config
            # was in the legend, with no line)
            sns.lineplot(data=history[history[key].notna()], x="epoch", y=key, hue="config",
                         errorbar=None, ax=ax)
            if ax.get_legend() is not None:
                sns.move_legend(ax, "center left", bbox_to_anchor=(1.02, 0.5), fontsize=7,
                                title="")
            ax.set_title(title)
            out.append((title, _png(fig)))
    if "l1" in varied and "weight_sparsity" in trials.columns:
        done = trials[trials["status"] == "finished"]
        fig, ax = plt.subplots(figsize=(8, 0.3 * done["config"].nunique() + 1.2))
        sns.barplot(data=done, y="config", x="weight_sparsity", errorbar="sd", ax=ax,
                    color="#55a868")
        ax.set_xlabel("share of weights with |w| < 1e-3 at the end (bar: mean, line: ±1 sd)")
        ax.set_ylabel("")
        out.append(("Weight sparsity (the L1 claim)", _png(fig)))
    return out


def best_so_far(tuning: pd.DataFrame, names: dict[str, str], maximize: bool) -> str:
    """Per scientific point: the best objective found so far against the Optuna trial number."""
    done = tuning[tuning["state"] == "complete"].sort_values(["study", "trial"])
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for study, rows in done.groupby("study", sort=False):
        best = rows["objective"].cummax() if maximize else rows["objective"].cummin()
        ax.step(rows["trial"], best, where="post", label=names.get(str(study), str(study)))
        ax.scatter(rows["trial"], rows["objective"], s=8, alpha=0.4)
    ax.set_xlabel("Optuna trial number")
    ax.set_ylabel("objective (best so far)")
    if done.empty:  # (every trial diverged or failed: matplotlib warned of an empty legend)
        ax.text(0.5, 0.5, "no Optuna trial completed", ha="center", va="center",
                transform=ax.transAxes)
    else:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)


def isolation(tuning: pd.DataFrame, trials: pd.DataFrame, names: dict[str, str], metric: str,
              objective: str, maximize: bool) -> str:
    """The isolation plot: per scientific value, the best tuned objective (diamond) and the
    compared metric of its re-runs over seeds (dots). Where the two are different metrics
    (val_loss tuned, test_accuracy compared), the objective has an axis of its own, on the
    right: on one axis the two read as one scale."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    tuned_ax = ax if objective == metric else ax.twinx()
    order = list(names.values())
    done = tuning[tuning["state"] == "complete"]
    best = (done.groupby("study")["objective"].max() if maximize
            else done.groupby("study")["objective"].min())
    for i, (study, label) in enumerate(names.items()):
        if study in best:
            tuned_ax.scatter([i], [best[study]], marker="D", color="#dd8452", zorder=3,
                             label=f"best tuning trial ({objective})")
        reruns = trials[(trials["point"] == label) & (trials["status"] == "finished")]
        ax.scatter([i] * len(reruns), reruns["metric"], color="#4c72b0", s=14, alpha=0.8,
                   label=f"re-runs over seeds ({metric})")
    ax.set_xticks(range(len(order)), [textwrap.shorten(o, 30) for o in order], rotation=25,
                  ha="right")
    ax.set_ylabel(metric)
    if tuned_ax is not ax:
        tuned_ax.set_ylabel(f"{objective} (best tuning trial)", color="#dd8452")
    handles, labels = [], []
    for axis in dict.fromkeys((ax, tuned_ax)):
        for handle, text in zip(*axis.get_legend_handles_labels(), strict=True):
            if text not in labels:  # one entry per kind of mark
                handles.append(handle)
                labels.append(text)
    ax.legend(handles, labels, fontsize=7)
    return _png(fig)


def performance_profile(curve: pd.DataFrame, per_seed: pd.DataFrame, measure: str,
                        tau_min: float, tau_max: float) -> str:
    """Dolan-Moré profiles. Top: every configuration's mean over seeds of the share of
    tasks solved within a factor tau of the best (steps). Below, one panel per
    configuration: that mean, its 95% band (`curve` low/high: the stratified bootstrap's,
    `nnbench.results.profiles`; clipped to [0, 1]) and each seed's own profile (thin
    lines)."""
    configs = list(dict.fromkeys(curve["config"]))
    n = max(1, len(configs))
    fig = plt.figure(figsize=(8, 6.2))
    grid = fig.add_gridspec(2, n, height_ratios=[1.6, 1], hspace=0.45, wspace=0.08)
    top = fig.add_subplot(grid[0, :])
    styles = ["-", "--", "-.", ":"]
    palette = sns.color_palette("tab10", n_colors=n)
    log = tau_max / tau_min > 4
    for i, config in enumerate(configs):
        rows = curve[curve["config"] == config]
        color, style = palette[i % len(palette)], styles[i % len(styles)]
        taus = rows["tau"].to_numpy(float)
        top.step(taus, rows["mean"], where="post", color=color, lw=2, ls=style,
                 label=str(config))
        ax = fig.add_subplot(grid[1, i], sharey=top)
        ax.step(taus, rows["mean"], where="post", color=color, lw=1.8, ls=style)
        if rows["n"].max() > 1:
            ax.fill_between(taus, rows["low"].clip(0, 1), rows["high"].clip(0, 1),
                            step="post", color=color, alpha=0.18, lw=0)
        for _, seed_rows in per_seed[per_seed["config"] == config].groupby("seed"):
            ax.step(seed_rows["tau"], seed_rows["rho"], where="post", color=color, lw=0.7,
                    alpha=0.5)
        ax.set_title(textwrap.shorten(str(config), 34, placeholder="…"), fontsize=7)
        ax.tick_params(labelsize=7)
        if i:
            ax.tick_params(labelleft=False)
        _tau_axis(ax, tau_min, tau_max, log, [tau_min, tau_max])
        ax.set_xticklabels([f"{tau_min:g}", f"{tau_max:g}"], fontsize=7)
    ticks = [t for t in (1, 1.25, 1.5, 2, 3, 5, 10, 20, 50, 100) if tau_min < t < tau_max]
    _tau_axis(top, tau_min, tau_max, log, [tau_min, *ticks, tau_max])
    top.set_ylim(-0.02, 1.02)
    top.set_xlabel(f"τ: {measure} to target within a factor τ of the best configuration's")
    top.set_ylabel("share of tasks (mean over seeds)")
    top.legend(fontsize=8, loc="lower right")
    return _png(fig)


def _tau_axis(ax: Axes, tau_min: float, tau_max: float, log: bool,
              ticks: list[float]) -> None:
    if log:
        ax.set_xscale("log")
    ax.set_xlim(tau_min, tau_max)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
