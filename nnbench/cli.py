"""The `nnbench` command (nox sessions call it).

    nnbench validate SUITE...        check suite files; exit 2 on any problem
    nnbench show SUITE               the trial table
    nnbench list [KIND] [PATTERN] [--plugin MODULE]   registered components (and a plugin's)
    nnbench run SUITE... [--device auto|cpu|cuda] [--report-dir DIR]
    nnbench tune SUITE... [--storage URL] [--device ...] [--report-dir DIR]
    nnbench report SUITE... [--report-dir DIR]
    nnbench evaluate RUN_ID          reload a trial's checkpoint, evaluate it on test

MLflow location: `--tracking-uri`, else MLFLOW_TRACKING_URI, else MLflow's default
(`sqlite:///mlflow.db` in the working directory). Exit codes: 0 ok, 1 a trial
failed, 2 invalid input (nothing run or logged), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from nnbench import registry
from nnbench.config import Suite, SuiteError, load_suite

if TYPE_CHECKING:
    import torch

EXIT_OK, EXIT_TRIAL_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class _UsageError(Exception):
    """Bad input found before any work: printed, exit 2."""


def _load_all(paths: Sequence[str]) -> list[Suite]:
    """Load every suite first, so no suite runs when any one is invalid."""
    suites, problems = [], []
    for path in paths:
        try:
            suites.append(load_suite(path))
        except SuiteError as e:
            problems += e.lines()
    if problems:
        raise _UsageError("\n".join(problems))
    names = [s.name for s in suites]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _UsageError(f"two suite files share the name(s) {dupes}; names must be unique "
                          f"(they name the MLflow experiment and the report)")
    return suites


def _cmd_validate(args: argparse.Namespace) -> int:
    for suite in _load_all(args.suites):
        points = len(suite.configurations())
        if suite.tune is not None:
            out.print(f"{suite.path}: ok — {points} scientific points × {suite.tune.trials} "
                      f"Optuna trials, then {points} × {len(suite.tune.seeds)} seeds = "
                      f"{points * len(suite.tune.seeds)} re-run trials (nnbench tune)")
        else:
            out.print(f"{suite.path}: ok — {points} configurations × {len(suite.seeds)} seeds "
                      f"= {len(suite.trials())} trials")
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    (suite,) = _load_all([args.suite])
    axes = suite.varied_axes
    table = Table(title=f"{suite.name}: {len(suite.trials())} trials")
    for column in ("#", "trial_id", *axes, "seed"):
        table.add_column(column)
    for i, spec in enumerate(suite.trials(), 1):
        values = [spec.label([a]).partition("=")[2] for a in axes]
        table.add_row(str(i), spec.trial_id, *values, str(spec.seed))
    out.print(table)
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    from nnbench import plugins

    for module in args.plugin:
        plugins.load_plugin(module, [Path.cwd()])
    try:
        infos = list(registry.list_components(args.kind, args.pattern))
    except registry.UnknownComponentError as e:
        raise _UsageError(str(e)) from None
    kind = None
    for info in infos:
        if info.kind != kind:
            kind = info.kind
            out.print(f"[bold]{kind}[/bold]")
        source = "" if info.source == registry.BUILTIN else f" [plugin {info.source}]"
        out.print(f"  {info.name:<16} {info.doc}{source}", markup=False)
        for param in registry.describe_params(info):
            out.print(f"  {'':<16}   {param}", markup=False)
    return EXIT_OK


def _report(suite: Suite, args: argparse.Namespace) -> Path:
    from nnbench.report import render_report

    return render_report(suite, tracking_uri=args.tracking_uri, report_dir=args.report_dir)


def _device(args: argparse.Namespace) -> torch.device:
    """`--device` resolved, or a usage error (e.g. cuda without a GPU) before any work."""
    from nnbench.train import resolve_device

    try:
        return resolve_device(args.device)
    except ValueError as e:
        raise _UsageError(str(e)) from None


def _preflight(suites: Sequence[Suite]) -> None:
    """Load every dataset the suites use once, so missing files fail before any training."""
    import torch

    from nnbench.data.files import DatasetFileError
    from nnbench.data.vision import DatasetNotFoundError

    problems = []
    for suite in suites:
        for spec in {c.dataset: c for c in suite.configurations()}.values():
            try:
                registry.build("dataset", spec.dataset, seed=spec.seed, device=torch.device("cpu"))
            except (DatasetNotFoundError, DatasetFileError) as e:
                problems.append(f"{suite.path}: task.dataset: {e}")
    if problems:
        raise _UsageError("\n".join(problems))


def _cmd_run(args: argparse.Namespace) -> int:
    suites = _load_all(args.suites)
    tuned = [s.path for s in suites if s.tune is not None]
    if tuned:
        raise _UsageError("\n".join(f"{p}: tune: the suite tunes its nuisance axes; run it "
                                     f"with `nnbench tune {p}` (nox -s tune -- {p})"
                                     for p in tuned))
    from nnbench.runner import run_suite

    _device(args)
    _preflight(suites)
    code = EXIT_OK
    for suite in suites:
        summary = run_suite(suite, device=args.device, tracking_uri=args.tracking_uri,
                            console=err)
        if summary.trained:
            counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items()))
            err.print(f"suite {suite.name}: trained {summary.trained} ({counts})")
        if summary.interrupted:
            err.print(f"suite {suite.name}: interrupted; finished trials are kept, re-run to "
                      f"train the rest")
            return EXIT_INTERRUPTED
        if summary.statuses.get("failed"):
            code = EXIT_TRIAL_FAILED
        path = _report(suite, args)
        out.print(f"report: {path.resolve()}")
        out.print(f"MLflow store: {summary.tracking_uri} (experiment '{suite.name}'); "
                  f"view with: mlflow ui --backend-store-uri {summary.tracking_uri}")
    return code


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Reload a finished trial's checkpoint from MLflow and evaluate it on the test split."""
    import tempfile

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from nnbench.tracking import CHECKPOINT
    from nnbench.train import evaluate_checkpoint

    client = MlflowClient(args.tracking_uri)
    try:
        run = client.get_run(args.run_id)
        with tempfile.TemporaryDirectory() as tmp:
            blob = Path(client.download_artifacts(args.run_id, CHECKPOINT, tmp)).read_bytes()
    except (MlflowException, OSError) as e:
        raise _UsageError(f"run {args.run_id}: no {CHECKPOINT} in {client.tracking_uri} "
                          f"({str(e).splitlines()[0]}); set `checkpoint: true` in the suite "
                          f"and run it again") from None
    device = _device(args)
    _warn_if_changed(blob)
    metrics = evaluate_checkpoint(blob, device)
    out.print(f"run {args.run_id} ({run.data.tags.get('nnbench.config', '')}, seed "
              f"{run.data.tags.get('nnbench.seed', '?')}), test split on {device}:")
    for key, value in metrics.items():
        logged = run.data.metrics.get(key)
        note = f"  (logged {logged:.6f})" if logged is not None else ""
        out.print(f"  {key} = {value:.6f}{note}")
    return EXIT_OK


def _warn_if_changed(blob: bytes) -> None:
    """Say so when a plugin or data file the trial used is not what it was at training."""
    import io

    import torch

    from nnbench.config import TrialSpec
    from nnbench.config.spec import stamped

    canonical = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)["spec"]
    recorded = TrialSpec.from_canonical(canonical)
    now = dict(stamped(recorded).digests)
    for key, digest in recorded.digests:
        if now.get(key) != digest:
            err.print(f"warning: {key} changed since this trial trained ({digest} -> "
                      f"{now.get(key, 'gone')}); the numbers below use the current one",
                      markup=False)


def _cmd_tune(args: argparse.Namespace) -> int:
    suites = _load_all(args.suites)
    untuned = [s.path for s in suites if s.tune is None]
    if untuned:
        raise _UsageError("\n".join(f"{p}: tune: missing; `nnbench tune` needs a tune: block "
                                     f"(space, trials, objective, ...)" for p in untuned))
    from nnbench.tuning import tune_suite

    _device(args)
    _preflight(suites)
    for suite in suites:
        summary = tune_suite(suite, storage=args.storage, tracking_uri=args.tracking_uri,
                             device=args.device, console=err)
        for point in summary.points:
            states = ", ".join(f"{n} {s}" for s, n in sorted(point.states.items()))
            err.print(f"{point.name} ({point.label}): {point.counted}/{suite.tune.trials if suite.tune else 0} "  # noqa: E501
                      f"trials ({states}); best {point.best}")
        if summary.interrupted:
            err.print(f"suite {suite.name}: interrupted; re-run to continue the studies")
            return EXIT_INTERRUPTED
        out.print(f"Optuna storage: {summary.storage}")
        out.print(f"report: {_report(suite, args).resolve()}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    for suite in _load_all(args.suites):
        out.print(f"report: {_report(suite, args).resolve()}")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnbench", description="Reproducible ablations of neural-network training components.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check suite files without running anything")
    p.add_argument("suites", nargs="+", metavar="SUITE")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("show", help="list a suite's trials")
    p.add_argument("suite", metavar="SUITE")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("list", help="list registered components")
    p.add_argument("kind", nargs="?", help="activation, init, optimizer, schedule, ...")
    p.add_argument("pattern", nargs="?", default="*", help="glob over names, e.g. 'adam*'")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import a plugin module first (searched in the working directory, "
                        "then sys.path); repeatable")
    p.set_defaults(func=_cmd_list)

    for name, func, text in (("run", _cmd_run, "train every unfinished trial, then report"),
                             ("tune", _cmd_tune, "tune nuisance axes with Optuna, re-run, report"),
                             ("report", _cmd_report, "render reports from MLflow")):
        p = sub.add_parser(name, help=text)
        p.add_argument("suites", nargs="+", metavar="SUITE")
        p.add_argument("--report-dir", default="reports", help="where <suite>.html goes")
        p.add_argument("--tracking-uri", default=None,
                       help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
        if name in ("run", "tune"):
            p.add_argument("--device", default="auto",
                           help="auto (cuda if available), cpu, cuda or cuda:N")
        if name == "tune":
            p.add_argument("--storage", default=None,
                           help="Optuna storage URL (default: optuna.db next to the MLflow "
                                "store); e.g. postgresql://user@host/db for several workers")
        p.set_defaults(func=func)
    p = sub.add_parser("evaluate", help="reload a trial's checkpoint, evaluate it on test")
    p.add_argument("run_id", metavar="RUN_ID", help="the trial's MLflow run id")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from nnbench.plugins import PluginError, load_entry_points

    args = _parser().parse_args(argv)
    try:
        load_entry_points()  # installed plugins: a broken one stops every command here
        code: int = args.func(args)
    except (_UsageError, PluginError) as e:
        err.print(str(e), markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
