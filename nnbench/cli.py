"""The `nnbench` command (nox sessions call it).

    nnbench validate FILE...         check suite (and benchmark) files; exit 2 on any problem
    nnbench show SUITE               the trial table
    nnbench list [KIND] [PATTERN] [--plugin MODULE|FILE.py]   registered components
    nnbench run SUITE... [--device auto|cpu|cuda] [--engine serial|stacked|auto]
                     [--precision fp32|tf32] [--lanes N] [--workers N] [--threads N]
                     [--storage URL] [--report-dir DIR] [--log-models]
    nnbench tune SUITE... [--storage URL] [--workers N] [--device ...] [--engine ...]
                     [--precision fp32|tf32]
    nnbench worker SUITE [--storage URL] ...   one worker on the suite's queue
    nnbench submit SUITE --storage URL --workers N [--local | --slurm-...]
    nnbench status SUITE [--storage URL] [--tracking-uri URI]   the queue, all workers
    nnbench report SUITE... [--report-dir DIR]
    nnbench bench BENCHMARK [--validate | --report-only] [the options of run]
                     every suite of a benchmark file, then reports/<benchmark>.html
    nnbench evaluate RUN_ID          reload a trial's checkpoint, evaluate it on test
    nnbench --version                the version (and git commit of a checkout)

MLflow location: `--tracking-uri`, else MLFLOW_TRACKING_URI, else MLflow's default
(`sqlite:///mlflow.db` in the working directory). Exit codes: 0 ok, 1 a trial
failed, 2 invalid input (nothing run or logged), 130 interrupted (Ctrl-C, or SIGTERM, which
stops a command the same way).

Every suite and every option is checked before anything is created (`nnbench.config`
for suites, `nnbench.cli_checks` for the tracking URI, storage, report directory, run
id and device; argparse the ranges of numeric options, e.g. `--slurm-gpus` >= 0); all
problems are printed together, then the command exits 2. The data every suite uses is
checked next (`nnbench.data.checks`, once per content): missing files with the paths
expected, damaged files, non-finite values, labels out of range, empty splits; `validate`
reports the same, loading only the user's own files (and, under `data: {on_leakage:
error}`, counting the examples they share between splits).
`validate` imports neither MLflow nor Optuna.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import os
import pickle
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from rich.console import Console
from rich.table import Table

from nnbench import cli_checks, registry
from nnbench.cli_checks import UsageError
from nnbench.config import Suite, SuiteError, TrialSpec, load_suite
from nnbench.messages import closest, count, first_line, mlflow_ui
from nnbench.train.engines import engine_docs, engine_names, stacking_engines
from nnbench.workers import SlurmOptions

if TYPE_CHECKING:
    import torch

    from nnbench.config.benchmark import Benchmark
    from nnbench.queue import Liveness

EXIT_OK, EXIT_TRIAL_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_UsageError = UsageError  # the name the commands below raise


def _load_all(paths: Sequence[str]) -> list[Suite]:
    """Load every suite first, so no suite runs when any one is invalid."""
    suites, problems = _load_each(paths)
    if problems:
        raise _UsageError("\n".join(problems))
    return suites


def _load_each(paths: Sequence[str]) -> tuple[list[Suite], list[str]]:
    """(the valid suites, one line per problem): every file is checked, whatever the others
    hold (a plugin's own exception is one file's problem, never a traceback), then the
    names the valid ones share."""
    from nnbench.config.benchmark import is_benchmark_file
    from nnbench.plugins import describe_error

    suites, problems = [], []
    for path in paths:
        try:
            suites.append(load_suite(path))
        except SuiteError as e:
            if is_benchmark_file(path):  # not a suite's unknown keys: the wrong command
                problems.append(f"{path}: a benchmark file (it lists `tasks:`), not a suite; "
                                f"run it with `nnbench bench {path}`")
            else:
                problems += e.lines()
        except Exception as e:  # a plugin's own bug (a validator raising TypeError, ...)
            problems.append(f"{path}: could not be checked: {describe_error(e)}")
    return suites, problems + _shared_names(suites)


def _shared_names(suites: Sequence[Suite]) -> list[str]:
    """One problem per name given to more than one suite file (compared ignoring case)."""
    groups: dict[str, list[Suite]] = {}
    for suite in suites:
        groups.setdefault(suite.name.lower(), []).append(suite)
    problems = []
    for group in groups.values():
        if len(group) < 2:
            continue
        files = list({str(Path(s.path).resolve()): s for s in group}.values())  # each once
        if len(files) == 1:
            problems.append(f"{group[0].path}: given {len(group)} times; name each suite "
                            f"file once")
            continue
        case = "" if len({s.name for s in files}) == 1 else (
            f" (names are compared ignoring case, as file names are on macOS and Windows: "
            f"{', '.join(f'{s.path} says {s.name!r}' for s in files)})")
        problems.append(f"{', '.join(s.path for s in files)}: {len(files)} suite files share "
                        f"the name {files[0].name!r}{case}; names must be unique (they name "
                        f"the MLflow experiment and the report): rename all but one")
    return problems


def _lanes_problem(args: argparse.Namespace) -> list[str]:
    """`--lanes N` (N > 1) given to an engine that trains one trial at a time: it was
    silently ignored."""
    if getattr(args, "lanes", None) in (None, 1) or args.engine in stacking_engines():
        return []
    return [f"--lanes {args.lanes}: --engine {args.engine} trains one trial at a time, so it "
            f"has no lanes; drop --lanes, or choose an engine that stacks trials: "
            f"{', '.join(stacking_engines())}"]


def _checked(args: argparse.Namespace, *, tracking: bool = False, reading: bool = False,
             report_dir: bool = False, device: bool = False, storage: bool = False,
             run_id: bool = False, machines: bool = False) -> list[Suite]:
    """Every suite and option of the command checked; all problems raised together.
    `machines`: a worker started by hand, which may be one of several machines'."""
    problems: list[str] = []
    suites: list[Suite] = []
    paths = args.suites if hasattr(args, "suites") else [args.suite] \
        if hasattr(args, "suite") else []
    if paths:
        try:
            suites = _load_all(paths)
        except UsageError as e:
            problems.append(str(e))
    if hasattr(args, "grace_period") and args.grace_period <= args.heartbeat_interval:
        problems.append(f"--grace-period: {args.grace_period} s must be longer than "
                        f"--heartbeat-interval ({args.heartbeat_interval} s): a worker would "
                        f"be declared dead between two of its heartbeats")
    problems += _lanes_problem(args)
    if not hasattr(args, "local"):  # run, tune, bench: local workers (submit: if --local)
        problems += filter(None, [cli_checks.local_workers_problem(getattr(args, "workers", 1))])
    checks: list[Callable[[], object]] = []
    if run_id:
        def run_id_check() -> None:  # MLflow's ids are lower case: a copy in upper case too
            args.run_id = cli_checks.check_run_id(args.run_id)

        checks.append(run_id_check)
    # (a command that only reads takes stores it cannot write: a read-only copy, a
    # colleague's; `status` and `report` refused them as "not writable")
    if tracking:
        checks.append(lambda: cli_checks.check_tracking_uri(args.tracking_uri,
                                                             must_exist=reading,
                                                             writes=not reading))
    if storage and args.storage is not None:
        checks.append(lambda: cli_checks.check_storage_url(args.storage, writes=not reading))
    if report_dir:
        checks.append(lambda: cli_checks.check_report_dir(args.report_dir))
        problems += cli_checks.check_report_files(args.report_dir, [s.name for s in suites])
    if device:
        checks.append(lambda: cli_checks.check_device(
            args.device, precision=getattr(args, "precision", "fp32")))
    # at once: each store's check may wait for its server (CONNECT_WAIT), and the waits
    # of an unreachable MLflow store and storage added up to 22 s
    with ThreadPoolExecutor(max_workers=max(1, len(checks))) as pool:
        futures = [pool.submit(check) for check in checks]
    for future in futures:
        try:
            future.result()
        except UsageError as e:
            problems.append(str(e))
    if storage and args.storage is None and not problems:  # the default: next to the store
        from nnbench.queue import default_storage

        uri = args.tracking_uri or cli_checks.default_tracking_uri()
        if machines and not uri.startswith("sqlite:"):
            problems.append(
                f"--storage is needed with the MLflow store {uri} (not a SQLite file): "
                f"workers share their trial queue through it, and without it each machine "
                f"would have its own ({default_storage(uri)}, in this directory) and train "
                f"every trial; give a database all of them reach, e.g. --storage "
                f"postgresql://USER@HOST/DB (one of its own, not the MLflow store's), or, for "
                f"workers on this machine only, --storage {default_storage(uri)}")
        try:
            cli_checks.check_storage_url(default_storage(uri), given=False,
                                         writes=not reading)
        except UsageError as e:
            problems.append(str(e))
    if storage and tracking and not problems:
        from nnbench.queue import default_storage

        uri = args.tracking_uri or cli_checks.default_tracking_uri()
        try:
            cli_checks.check_separate_stores(args.tracking_uri,
                                             args.storage or default_storage(uri),
                                             storage_given=args.storage is not None)
        except UsageError as e:
            problems.append(str(e))
    if getattr(args, "system_metrics", "off") == "on" and not problems:
        from nnbench.tracking import system_metrics_problem

        problem = system_metrics_problem(gpu=_device(args).type == "cuda")
        if problem is not None:
            problems.append(f"--system-metrics on: {problem}")
    if problems:
        raise UsageError("\n".join(problems))
    return suites


def _system_metrics(args: argparse.Namespace) -> bool:
    """`--system-metrics`: on, off, or auto (on where trials train on a GPU). `on` was checked
    by `_checked`; auto without the packages it needs says so and stays off."""
    if args.system_metrics != "auto":
        return bool(args.system_metrics == "on")
    if _device(args).type != "cuda":
        return False
    from nnbench.tracking import system_metrics_problem

    problem = system_metrics_problem(gpu=True)
    if problem is not None:
        err.print(f"--system-metrics auto: off ({problem})")
        return False
    return True


def _cmd_validate(args: argparse.Namespace) -> int:
    """Check suite files (and benchmark files, with the suites they list). Every file is
    checked whatever the others hold: each valid one is reported ok, then every problem is
    printed and the command exits 2."""
    from nnbench.config.benchmark import is_benchmark_file, load_benchmark
    from nnbench.plugins import describe_error

    benchmark_files = {p for p in args.suites if is_benchmark_file(p)}
    benches: list[Benchmark] = []
    problems: list[str] = []
    for path in (p for p in args.suites if p in benchmark_files):
        try:
            bench = load_benchmark(path)
        except SuiteError as e:
            problems += e.lines()
            continue
        except Exception as e:  # a plugin's own bug in one of its suites: this file's problem
            problems.append(f"{path}: could not be checked: {describe_error(e)}")
            continue
        # what `run` would refuse about the data: missing files (with the paths expected),
        # and the content of the user's own files (checked once per content)
        data = _data_problems(bench.suites, load=False)
        problems += data
        if not data:
            benches.append(bench)
    suites, load_problems = _load_each([p for p in args.suites if p not in benchmark_files])
    problems += load_problems
    for bench in benches:
        _describe_benchmark(bench)
    names = [s.name.lower() for s in suites]
    for suite in suites:
        if names.count(suite.name.lower()) > 1:  # its problem is among load_problems
            continue
        data = _data_problems([suite], load=False) or _leakage_refused(suite)
        if data:
            problems += data
            continue
        points = len(suite.configurations())
        if suite.tune is not None:
            out.print(f"{suite.path}: ok — {count(points, 'scientific point')} × "
                      f"{count(suite.tune.trials, 'Optuna trial')}, then {points} × "
                      f"{count(len(suite.tune.seeds), 'seed')} = "
                      f"{count(points * len(suite.tune.seeds), 're-run trial')} (nnbench tune)")
        else:
            seeds = f"seeds {suite.design.describe()}" if suite.seed_design else \
                count(len(suite.seeds), "seed")
            out.print(f"{suite.path}: ok — {count(points, 'configuration')} × {seeds} "
                      f"= {count(len(suite.trials()), 'trial')}")
    if problems:
        raise _UsageError("\n".join(problems))
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    (suite,) = _load_all([args.suite])
    axes = suite.varied_axes
    if suite.tune is not None:
        return _show_tuned(suite, axes)
    table = Table(title=f"{suite.name}: {len(suite.trials())} trials")
    for column in ("#", "trial_id", *axes, "seed"):
        table.add_column(column)
    for i, spec in enumerate(suite.trials(), 1):
        values = [spec.label([a]).partition("=")[2] for a in axes]
        table.add_row(str(i), spec.trial_id, *values, suite.design.label(spec))
    out.print(table)
    return EXIT_OK


def _show_tuned(suite: Suite, axes: Sequence[str]) -> int:
    """A tuned suite's table: its points, each tuned by its own study and then re-run over
    `tune.seeds` (its top-level seeds are not trained)."""
    tune = suite.tune
    assert tune is not None
    points = suite.configurations()
    seeds = ", ".join(map(str, tune.seeds))
    searched = ", ".join(d.path for d in tune.space)
    table = Table(title=f"{suite.name}: {len(points)} point{'s' * (len(points) != 1)}, "
                        f"each tuned by Optuna "
                        f"({tune.trials} trials over {searched}; {tune.sampler} sampler, "
                        f"{tune.direction} {tune.metric}), then its best values re-run over "
                        f"seeds {seeds}: {len(points) * tune.trials} tuning trials and "
                        f"{len(points) * len(tune.seeds)} re-runs")
    for column in ("#", "point", *axes, "re-run seeds"):
        table.add_column(column)
    for i, point in enumerate(points, 1):
        values = [point.label([a]).partition("=")[2] for a in axes]
        table.add_row(str(i), point.config_id, *values, seeds)
    out.print(table)
    return EXIT_OK


def _load_plugins(args: argparse.Namespace) -> None:
    """Import the `--plugin` modules given (list, evaluate)."""
    from nnbench import plugins

    for given in args.plugin:
        module, search = _plugin_argument(given)
        try:
            plugins.load_plugin(module, search)
        except plugins.PluginError as e:
            if "no module named" not in str(e):
                raise
            raise _UsageError(f"{e}; or give the module's file: --plugin "
                              f"path/to/{module.replace('.', '/')}.py") from None


def _cmd_list(args: argparse.Namespace) -> int:
    _load_plugins(args)
    from nnbench.config import AXES
    from nnbench.messages import did_you_mean

    # a suite's axis names its kind (the README's axis table says grad_clip, the kind clip)
    axis = AXES.get(args.kind) if args.kind else None
    if axis is not None and axis.kind and axis.kind != args.kind:
        args.kind = axis.kind
    try:
        infos = list(registry.list_components(args.kind, args.pattern))
    except registry.UnknownComponentError as e:
        if args.kind == "engine":  # not a component kind: a choice of `run --engine`
            raise _UsageError(f"engines are not components: choose one with --engine "
                              f"({', '.join(engine_names())}) on run, tune, worker, bench; "
                              f"'nnbench run --help' says what each does") from None
        raise _UsageError(f"unknown component kind {args.kind!r}; "
                          f"{did_you_mean(args.kind, e.known)}known: {', '.join(e.known)}"
                          ) from None
    if not infos:  # a pattern that matches nothing: said, not an empty exit 0
        names = [i.name for i in registry.list_components(args.kind)]
        raise _UsageError(f"no {args.kind or 'component'} matches {args.pattern!r} (a glob "
                          f"pattern, e.g. 'ada*'); {did_you_mean(args.pattern, names)}"
                          f"there are: {', '.join(names)}")
    kind = None
    for info in infos:
        if info.kind != kind:
            kind = info.kind
            out.print(f"[bold]{kind}[/bold]")
        source = "" if info.source == registry.BUILTIN else f" [plugin {info.source}]"
        out.print(f"  {info.name:<16} {info.doc}{source}", markup=False)
        for param in registry.describe_params(info):
            out.print(f"  {'':<16}   {param}", markup=False)
        if info.defaults:
            out.print(f"  {'':<16}   defaults: {info.defaults}", markup=False)
    return EXIT_OK


def _plugin_argument(given: str) -> tuple[str, list[Path]]:
    """`--plugin`: a module name (searched in the working directory, then sys.path) or a
    module's file, `examples/own_model/mylab_nets.py` (imported as `mylab_nets` from its
    folder, as a suite beside it names it)."""
    path = Path(given)
    if not given.endswith(".py"):
        if path.is_file() or "/" in given or os.sep in given:  # a path, not a module name
            raise _UsageError(f"--plugin {given!r}: a plugin is a Python module; give its "
                              f"name (such as mylab.nets) or the path of its .py file")
        return given, [Path.cwd()]
    if not path.is_file():
        raise _UsageError(f"--plugin {given!r}: no such file (give a module name such as "
                          f"mylab.nets, or the path of a module's .py file)")
    return path.stem, [path.resolve().parent, Path.cwd()]


class _InterruptedSaid(KeyboardInterrupt):
    """An interrupt the command has already explained: `main` exits 130 without adding
    "interrupted"."""


def _report_interrupted(what: str, again: str, *, rerun: bool = False) -> _InterruptedSaid:
    """Ctrl-C while a report was made: its files are written together (fresh.write_together),
    so the directory holds a whole report (the one from before, or the new one where the
    interrupt came while its files were written), or none yet."""
    err.print(f"{what}: interrupted while its report was made; every trained result is "
              f"recorded, and the report there (if any) is whole but may be the one from "
              f"before: `{again}`{' (or re-running this command)' if rerun else ''} writes it",
              highlight=False, markup=False)
    return _InterruptedSaid()


def _report(suite: Suite, args: argparse.Namespace) -> Path:
    from nnbench.report import render_report

    try:
        return render_report(suite, tracking_uri=args.tracking_uri, report_dir=args.report_dir)
    except KeyboardInterrupt:
        raise _report_interrupted(f"suite {suite.name}", _report_command(suite, args)) \
            from None


def _report_command(suite: Suite, args: argparse.Namespace) -> str:
    """The `nnbench report` command that writes this suite's report again."""
    return _writing_again(["nnbench", "report", str(suite.path)], args)


def _writing_again(words: list[str], args: argparse.Namespace) -> str:
    """`words`, a command that writes a report again, with the store and report directory
    this one was given."""
    if getattr(args, "tracking_uri", None):
        words = [*words, "--tracking-uri", str(args.tracking_uri)]
    if str(args.report_dir) != "reports":
        words = [*words, "--report-dir", str(args.report_dir)]
    return shlex.join(words)


def _report_if_changed(suite: Suite, args: argparse.Namespace, complete: bool,
                       runs_url: str | None = None) -> Path:
    """After a run: re-render the report only when its inputs changed, and remember what a
    complete suite's report was made from (the next `run` then answers at once)."""
    from nnbench import fresh
    from nnbench.report import render_report
    from nnbench.results import load_results, results_digest

    results = load_results(suite, args.tracking_uri)
    digest = results_digest(results)
    report = Path(args.report_dir) / f"{suite.name}.html"
    if complete and fresh.results_unchanged(suite.path, args.report_dir, digest, report):
        err.print(f"suite {suite.name}: results, suite file and nnbench unchanged; the report "
                  f"is up to date")
    else:
        report = render_report(suite, report_dir=args.report_dir, results=results)
    if complete and _as_loaded(suite):
        fresh.record(suite.path, args.report_dir, results.tracking_uri, report, digest,
                     _dependencies(suite), runs_url=runs_url)
    else:  # incomplete, or the file was edited while it ran: the next run looks again
        fresh.forget(suite.path, args.report_dir)
    return report


def _as_loaded(suite: Suite) -> bool:
    """Is the suite file still what this run loaded? (One edited while the run trained,
    recorded as the fresh report's input, made the next run skip its new trials.)"""
    from nnbench.config.loading import read_suite_text

    try:
        return read_suite_text(Path(suite.path)) == suite.source
    except Exception:  # gone, unreadable, or broken now: not what was loaded
        return False


def _dependencies(suite: Suite) -> list[Path]:
    """Files a suite's trials depend on beyond the suite file and nnbench itself: the
    source of the plugins whose components they use, and data files (`attrs["files"]`)."""
    from nnbench import plugins

    paths: set[Path] = set()
    for config in suite.configurations():
        for kind, spec in config.components():
            info = registry.get(kind, spec.name)
            if info.source != registry.BUILTIN:
                paths.update(plugins.source_paths(info.source))
            files = info.attrs.get("files")
            if files is not None:
                paths.update(files(info.params.model_validate(spec.kwargs)))
    return sorted(paths)


def _quick_problems(args: argparse.Namespace) -> bool:
    """Whether an option that `_checked` refuses is wrong, of those checked without torch
    and without reaching a server: --grace-period against --heartbeat-interval, a given
    --storage's form (and that it is not the MLflow store). Then `run` takes its full
    path, which says what is wrong."""
    if hasattr(args, "grace_period") and args.grace_period <= args.heartbeat_interval:
        return True
    if _lanes_problem(args) or cli_checks.local_workers_problem(getattr(args, "workers", 1)):
        return True
    if getattr(args, "storage", None) is None:
        return False
    try:
        cli_checks.check_storage_url(args.storage, connect=False)
        cli_checks.check_separate_stores(args.tracking_uri, args.storage, storage_given=True)
    except UsageError:
        return True
    return False


def _fresh_reports(args: argparse.Namespace) -> list[Path] | None:
    """Every suite's report, when none of their inputs changed since it was made (checked
    from file hashes alone: no validation, no MLflow); else None."""
    from nnbench import fresh

    reports = [fresh.fresh_report(p, args.report_dir, args.tracking_uri) for p in args.suites]
    if any(r is None for r in reports):
        return None
    return [r for r in reports if r is not None]


def _device(args: argparse.Namespace) -> torch.device:
    """`--device` resolved, or a usage error (e.g. cuda without a GPU) before any work."""
    return cli_checks.check_device(args.device, precision=getattr(args, "precision", "fp32"))


def _data_problems(suites: Sequence[Suite], *, load: bool) -> list[str]:
    """Every dataset the suites use, checked once (`nnbench.data.checks.check_dataset`):
    missing files with the paths expected, unreadable files, data that cannot be trained
    on. `load=False` (validate) loads only the user's own files, never a generator."""
    from nnbench.data.checks import DataError, check_dataset
    from nnbench.plugins import describe_error

    problems = []
    for suite in suites:
        for spec in {c.dataset: c for c in suite.configurations()}.values():
            try:
                check_dataset(spec.dataset, seed=spec.seed, load=load)
            except (FileNotFoundError, DataError) as e:
                problems.append(f"{suite.path}: task.dataset: {e}")
            except Exception as e:  # a plugin dataset's own bug, or a file nothing foresaw
                path = spec.dataset.kwargs.get("path")  # (a nested tensor, a vast header)
                what = f"dataset {spec.dataset.name!r}" + (f", file {path}" if path else "")
                problems.append(f"{suite.path}: task.dataset: {what} could not be checked: "
                                f"{describe_error(e)}")
    return problems


def _leakage_refused(suite: Suite) -> list[str]:
    """What `run` would refuse about a suite with `data: {on_leakage: error}` whose data is
    the user's own files (validate loads those anyway); generated and downloaded data is
    counted by `run`'s preflight, since validate imports no data generator."""
    if suite.data.on_leakage != "error" or any(
            c.dataset.name != "file" for c in suite.configurations()):
        return []
    from nnbench.data.hygiene import check_suites

    return check_suites([suite], quiet=True)[1]


def _preflight(suites: Sequence[Suite], *, quiet: bool = False) -> None:
    """Check every dataset the suites use before anything is created or trained: missing
    or damaged files and bad data (non-finite values, labels out of range, empty splits)
    are exit 2; data whose content passed before costs nothing (checked once per content).
    Then its hygiene (nnbench.data.hygiene): examples shared between splits and the class
    balance are printed (not by a coordinator's worker, `quiet`), leakage under
    `data: {on_leakage: error}` is exit 2."""
    problems = _data_problems(suites, load=True)
    if problems:
        raise _UsageError("\n".join(problems))
    from nnbench.data.hygiene import check_suites

    lines, problems = check_suites(suites, quiet=quiet)
    if problems:
        raise _UsageError("\n".join(problems))
    for line in lines:
        err.print(line, markup=False)


def _cmd_run(args: argparse.Namespace) -> int:
    # the fast answer only where the options need no torch to check: a CPU in fp32 (a GPU,
    # tf32, are checked on the device), and the options checked without torch first
    reports = _fresh_reports(args) if args.device in ("auto", "cpu") and \
        args.precision == "fp32" else None
    if reports is not None and _quick_problems(args):
        reports = None  # the full checks say what is wrong
    if reports is not None:  # nothing to train, nothing to re-render: say so at once
        from nnbench.fresh import recorded_runs_url

        uri = args.tracking_uri or cli_checks.default_tracking_uri()
        for path, report in zip(args.suites, reports, strict=True):
            err.print(f"{path}: every trial is done and nothing changed since its report "
                      f"(suite file, results, nnbench); nothing to train or re-render")
            _note_no_models(args, trained=0)
            out.print(f"report: {report}")  # (the report's file is named after its suite)
            _print_mlflow(report.stem, uri, recorded_runs_url(path, args.report_dir))
        return EXIT_OK
    suites = _checked(args, tracking=True, report_dir=True, device=True, storage=True)
    tuned = [s.path for s in suites if s.tune is not None]
    if tuned:
        raise _UsageError("\n".join(f"{p}: tune: the suite tunes its nuisance axes; run it "
                                     f"with `nnbench tune {p}` (nox -s tune -- {p})"
                                     for p in tuned))
    _preflight(suites)
    code = EXIT_OK
    for suite in suites:
        result = _run_one(suite, args)
        if result == EXIT_INTERRUPTED:
            return result
        code = max(code, result)
    return code


def _note_no_models(args: argparse.Namespace, trained: int) -> None:
    """--log-models with nothing trained: say that it logged nothing (it was silent)."""
    if getattr(args, "log_models", False) and not trained:
        err.print("--log-models: no model logged; models are logged as trials train, and a "
                  "finished trial is not trained again")


def _run_one(suite: Suite, args: argparse.Namespace) -> int:
    """Train a suite's unfinished trials (`run` and `bench`), re-render its report if its
    inputs changed; EXIT_OK, EXIT_TRIAL_FAILED or EXIT_INTERRUPTED."""
    from nnbench.runner import run_suite

    try:
        summary = run_suite(suite, device=args.device, tracking_uri=args.tracking_uri,
                            storage=args.storage, engine=args.engine, lanes=args.lanes,
                            precision=args.precision, workers=args.workers,
                            threads=args.threads, liveness=_liveness(args), console=err,
                            system_metrics=_system_metrics(args), log_models=args.log_models)
    except KeyboardInterrupt:  # held through a block of bookkeeping, raised at its end (in
        # the seed summaries, after the last trial): it only said "interrupted"
        # (or while the stores were opened, before any trial: nothing trained then)
        err.print(f"suite {suite.name}: interrupted; every trial that finished training (if "
                  f"any) is recorded; a re-run trains what is left and brings the seed "
                  f"summaries and the report up to date")
        return EXIT_INTERRUPTED
    if summary.trained:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items()))
        # (not "trained 24 (24 killed)": a killed or failed trial did not train)
        err.print(f"suite {suite.name}: ran {summary.trained} trial"
                  f"{'s' if summary.trained != 1 else ''} ({counts})")
    _note_no_models(args, summary.trained)
    if summary.refused:  # every local worker said what it refused
        return EXIT_USAGE
    if summary.interrupted:
        err.print(f"suite {suite.name}: interrupted; finished trials are kept, re-run to "
                  f"train the rest")
        return EXIT_INTERRUPTED
    # a worker that died is a failure only if the others did not finish its trials
    failed = bool(summary.statuses.get("failed")) or (
        any(c not in (0, 130) for c in summary.worker_codes) and not summary.complete)
    url = _mlflow_runs_url(summary.tracking_uri, summary.experiment_id)
    try:
        path = _report_if_changed(suite, args, complete=not failed and summary.complete,
                                  runs_url=url)
    except KeyboardInterrupt:  # it only said "interrupted"
        _report_interrupted(f"suite {suite.name}", _report_command(suite, args), rerun=True)
        return EXIT_INTERRUPTED
    out.print(f"report: {path.resolve()}")
    _print_mlflow(suite.name, summary.tracking_uri, url)
    return EXIT_TRIAL_FAILED if failed else EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    """Run every suite of a benchmark file (the normal runner), then its cross-task report."""
    from nnbench.config.benchmark import load_benchmark

    problems: list[str] = []
    bench: Benchmark | None = None
    try:
        bench = load_benchmark(args.benchmark)
    except SuiteError as e:
        problems += e.lines()
    training = not (args.validate or args.report_only)
    try:
        _checked(args, tracking=not args.validate, reading=args.report_only,
                 report_dir=not args.validate, device=not args.report_only, storage=training)
    except UsageError as e:
        problems.append(str(e))
    if bench is not None and not args.validate:
        problems += cli_checks.check_report_files(
            args.report_dir, [] if args.report_only else [s.name for s in bench.suites])
        problems += cli_checks.check_report_files(args.report_dir, [bench.name],
                                                  cli_checks.BENCHMARK_REPORT_FILES)
    if problems or bench is None:
        raise _UsageError("\n".join(problems))
    if args.validate:
        problems = _data_problems(bench.suites, load=False)  # as `nnbench validate` does
        if problems:
            raise _UsageError("\n".join(problems))
        _describe_benchmark(bench)
        return EXIT_OK
    code = EXIT_OK
    if training:
        _preflight(bench.suites)
        for i, suite in enumerate(bench.suites, 1):
            err.print(f"benchmark {bench.name}: task {i}/{len(bench.suites)}: {suite.name}")
            result = _run_one(suite, args)
            if result == EXIT_INTERRUPTED:
                err.print(f"benchmark {bench.name}: interrupted; re-run it to train the rest")
                return result
            code = max(code, result)
    from nnbench.report.benchmark import render_benchmark

    never = _never_trained(bench.suites, args.tracking_uri) if args.report_only else ""
    if never and len(never.splitlines()) == len(bench.suites):
        raise _UsageError(f"{args.benchmark}: --report-only: no task of the benchmark was "
                          f"trained into this store yet; run it first (nnbench bench "
                          f"{shlex.quote(args.benchmark)})\n{never}")
    try:
        path = render_benchmark(bench, tracking_uri=args.tracking_uri,
                                report_dir=args.report_dir)
    except KeyboardInterrupt:
        again = ["nnbench", "bench", str(args.benchmark), "--report-only"]
        raise _report_interrupted(f"benchmark {bench.name}", _writing_again(again, args)) \
            from None
    out.print(f"benchmark report: {path.resolve()}")
    return code


def _describe_benchmark(bench: Benchmark) -> None:
    trials = sum(len(s.trials()) for s in bench.suites)
    out.print(f"{bench.path}: ok — {count(len(bench.tasks), 'task')} × "
              f"{count(len(bench.levels), 'configuration')} of {', '.join(bench.axes)} × "
              f"{count(len(bench.seeds), 'seed')} = {count(trials, 'trial')}")
    for task in bench.tasks:
        out.print(f"  {task.suite.path}: {task.describe()}; target {task.target.label()}",
                  markup=False)


def _mlflow_runs_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's runs table: on the tracking server itself when the store is one,
    else where a plain `mlflow ui` serves."""
    from nnbench.tracking import UI_ADDRESS, runs_url

    remote = tracking_uri.startswith(("http://", "https://"))
    return runs_url(experiment_id, tracking_uri if remote else UI_ADDRESS)


def _print_mlflow(suite_name: str, tracking_uri: str, url: str | None) -> None:
    if tracking_uri.startswith(("http://", "https://")):
        out.print(f"MLflow server: {tracking_uri} (experiment '{suite_name}')")
    else:
        out.print(f"MLflow store: {tracking_uri} (experiment '{suite_name}'); view with: "
                  f"{mlflow_ui(tracking_uri)}", markup=False, highlight=False)
    if url is not None:
        out.print(f"MLflow runs: {url}")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Reload a finished trial's checkpoint from MLflow and evaluate it on the test split."""
    _checked(args, run_id=True, tracking=True, reading=True, device=True)
    from nnbench.tracking import CHECKPOINT, trial_checkpoint
    from nnbench.train import evaluate_checkpoint

    _load_plugins(args)
    try:
        run, blob = trial_checkpoint(args.tracking_uri, args.run_id)
    except LookupError as e:  # (RunNotFound too)
        raise _UsageError(str(e)) from None
    if run.info.lifecycle_stage == "deleted":
        err.print(f"run {args.run_id} is deleted (MLflow keeps it until `mlflow gc`; `mlflow "
                  f"runs restore --run-id {args.run_id}` brings it back): evaluating it anyway",
                  markup=False)
    device = _device(args)
    from nnbench.plugins import PluginError
    from nnbench.registry import ComponentError

    def unbuildable(e: Exception) -> _UsageError:
        why = ("give the plugin's file (--plugin path/to/module.py) or run evaluate from the "
               "suite's folder" if "no module named" in str(e)
               else "a plugin it used changed since?")
        return _UsageError(f"run {args.run_id}: its trial cannot be rebuilt as it trained: "
                           f"{first_line(e)} ({why})")

    try:  # the checkpoint read, its spec parsed: a damaged file fails here
        recorded, written = _warn_if_changed(blob)
    except (ComponentError, PluginError) as e:  # (before KeyError: an unknown name is both)
        raise unbuildable(e) from None
    except (RuntimeError, EOFError, KeyError, pickle.UnpicklingError) as e:
        raise _UsageError(f"run {args.run_id}: its {CHECKPOINT} cannot be read as an nnbench "
                          f"checkpoint ({type(e).__name__}: {first_line(e)}): is it damaged, "
                          f"or written by something else?") from None
    tagged = run.data.tags.get("nnbench.trial_id")
    if tagged is not None and tagged != written:  # another trial's, put there
        raise _UsageError(f"run {args.run_id}: its {CHECKPOINT} is another trial's (trial "
                          f"{written}, seed {recorded.seed_label}), not this run's "
                          f"(trial {tagged}: {run.data.tags.get('nnbench.config', '?')}, seed "
                          f"{run.data.tags.get('nnbench.seed', '?')}); was it replaced by "
                          f"hand? Nothing evaluated")
    _evaluate_in_its_precision(run.data.tags.get("nnbench.precision", "fp32"), device)
    try:
        metrics = evaluate_checkpoint(blob, device)
    except (ComponentError, PluginError) as e:
        raise unbuildable(e) from None
    except FileNotFoundError as e:  # its data file is gone (or elsewhere): a traceback
        raise _UsageError(f"run {args.run_id}: its test split cannot be rebuilt: "
                          f"{first_line(e)}; run evaluate where the trial's data is, or put "
                          f"the file back") from None
    except RuntimeError as e:  # the weights do not fit the model as it is built now
        if "state_dict" not in str(e):
            raise
        raise _UsageError(f"run {args.run_id}: its weights do not fit the model as it is "
                          f"built now ({first_line(e)}); a plugin model or a data file it "
                          f"used changed shape since it trained?") from None
    out.print(f"run {args.run_id} ({run.data.tags.get('nnbench.config', '')}, seed "
              f"{run.data.tags.get('nnbench.seed', '?')}), test split on {device}:")
    for key, value in metrics.items():
        logged = run.data.metrics.get(key)
        note = f"  (logged {logged:.6f})" if logged is not None else ""
        out.print(f"  {key} = {value:.6f}{note}")
    return EXIT_OK


def _evaluate_in_its_precision(precision: str, device: torch.device) -> None:
    """Evaluate in the precision the trial trained in (`--precision`), so its test metrics
    compare with those logged; where this device cannot (tf32 on a CPU), fp32, and say so."""
    from nnbench import seeding

    tf32 = precision == "tf32" and seeding.tf32_problem(device) is None
    if precision == "tf32" and not tf32:
        err.print(f"the trial trained in tf32; {device} computes fp32, so its metrics may "
                  f"differ from those logged by rounding")
    # and with the deterministic algorithms it trained with (cuBLAS's workspace, cuDNN's
    # choice of kernels: on a GPU, other kernels than training's round otherwise)
    seeding.configure_determinism("tf32" if tf32 else "fp32", device)


def _warn_if_changed(blob: bytes) -> tuple[TrialSpec, str]:
    """The checkpoint's trial, and the id its stored spec was written under (the digest of
    that dict, not of the spec as this nnbench rebuilds it); said when a plugin or data file
    it used is not what it was at training."""
    import io

    import torch

    from nnbench.config.spec import spec_digest, stamped

    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not isinstance(state.get("spec"), dict):
        raise KeyError(f"no trial spec (a dict under 'spec') in this {type(state).__name__}")
    recorded = TrialSpec.from_canonical(state["spec"])
    now = dict(stamped(recorded).digests)
    for key, digest in recorded.digests:
        if now.get(key) != digest:
            err.print(f"warning: {key} changed since this trial trained ({digest} -> "
                      f"{now.get(key, 'gone')}); the numbers below use the current one",
                      markup=False)
    return recorded, spec_digest(state["spec"])


def _cmd_tune(args: argparse.Namespace) -> int:
    suites = _checked(args, tracking=True, report_dir=True, device=True, storage=True)
    untuned = [s.path for s in suites if s.tune is None]
    if untuned:
        raise _UsageError("\n".join(f"{p}: tune: missing; `nnbench tune` needs a tune: block "
                                     f"(space, trials, objective, ...)" for p in untuned))
    _preflight(suites)
    from nnbench.tuning import budget_text, tune_suite

    failed = False
    for suite in suites:
        if args.workers > 1:
            code = _tune_with_workers(suite, args)
            if code in (EXIT_INTERRUPTED, EXIT_USAGE):  # (the workers said why)
                return code
            failed = failed or code == EXIT_TRIAL_FAILED
            out.print(f"report: {_report(suite, args).resolve()}")
            from nnbench.tracking import Tracker

            tracking_uri, _ = _stores(args)
            tracker = Tracker(suite, tracking_uri)
            experiment_id = tracker.experiment_id(create=False)
            if experiment_id is not None:
                _print_mlflow(suite.name, tracker.tracking_uri,
                              _mlflow_runs_url(tracker.tracking_uri, experiment_id))
            continue
        summary = tune_suite(suite, storage=args.storage, tracking_uri=args.tracking_uri,
                             device=args.device, engine=args.engine, lanes=args.lanes,
                             precision=args.precision,
                             liveness=_liveness(args), console=err,
                             system_metrics=_system_metrics(args), log_models=args.log_models)
        for point in summary.points:
            states = ", ".join(f"{n} {s}" for s, n in sorted(point.states.items()))
            budget = budget_text(point.counted, suite.tune.trials if suite.tune else 0)
            best = point.best if point.best is not None else \
                "none (no trial completed: nothing to re-run)"  # (it printed "best None")
            err.print(f"{point.name} ({point.label}): {budget} ({states}); best {best}")
        if summary.interrupted:
            # (interrupted in its studies, the summary has no points yet)
            tuned = suite.tune is not None and bool(summary.points) and all(
                p.counted >= suite.tune.trials for p in summary.points)
            err.print(f"suite {suite.name}: interrupted; " + (
                "its studies are complete: re-run to train the rest of the tuned points' "
                "re-runs" if tuned else "re-run to continue the studies"))
            return EXIT_INTERRUPTED
        if summary.failed:
            err.print(f"suite {suite.name}: {summary.failed} re-run trial(s) failed; their runs "
                      f"say why (nnbench.reason), and the next run trains them again")
            failed = True
        out.print(f"Optuna storage: {summary.storage}")
        out.print(f"report: {_report(suite, args).resolve()}")
        _print_mlflow(suite.name, summary.tracking_uri,
                      _mlflow_runs_url(summary.tracking_uri, summary.experiment_id))
    return EXIT_TRIAL_FAILED if failed else EXIT_OK


def _liveness(args: argparse.Namespace) -> Liveness:
    """The heartbeat settings (checked by `_checked`: the grace outlasts the interval)."""
    from nnbench.queue import Liveness

    return Liveness(args.heartbeat_interval, args.grace_period)


def _worker_options(args: argparse.Namespace, suite: Suite, *, storage: str,
                    tracking_uri: str) -> list[str]:
    """The options a worker started elsewhere needs to join this suite's queue, reading
    the suite file as this command read it."""
    from nnbench.workers import worker_options

    return worker_options(storage=storage, tracking_uri=tracking_uri, device=args.device,
                          engine=args.engine, precision=args.precision,
                          heartbeat_interval=args.heartbeat_interval,
                          grace_period=args.grace_period, system_metrics=args.system_metrics,
                          log_models=args.log_models, lanes=args.lanes, source=suite.source)


def _stores(args: argparse.Namespace) -> tuple[str, str]:
    """(MLflow tracking URI, Optuna storage URL) as this command resolves them, without
    creating either."""
    from nnbench.queue import default_storage

    tracking_uri = args.tracking_uri or cli_checks.default_tracking_uri()
    return tracking_uri, args.storage or default_storage(tracking_uri)


def _tune_with_workers(suite: Suite, args: argparse.Namespace) -> int:
    """`nnbench tune --workers N`: N local `nnbench worker` processes share the studies."""
    from nnbench.workers import all_refused, spawn_local

    tracking_uri, storage = _stores(args)
    options = [*_worker_options(args, suite, storage=storage, tracking_uri=tracking_uri),
               "--coordinated"]  # it printed the data facts
    codes = spawn_local(suite.path, options, args.workers, err)
    if EXIT_INTERRUPTED in codes:
        err.print(f"suite {suite.name}: interrupted; re-run to continue (the studies, then "
                  f"the tuned points' re-runs)")
        return EXIT_INTERRUPTED
    if all_refused(codes):
        return EXIT_USAGE
    return EXIT_OK if all(c == 0 for c in codes) else EXIT_TRIAL_FAILED


def _cmd_worker(args: argparse.Namespace) -> int:
    """One worker on a suite's queue (started by hand, by `--workers`, or by submitit)."""
    if args.coordinator is not None:  # started by `run`/`tune --workers`: ends with it
        from nnbench.workers import watch_coordinator

        watch_coordinator(args.coordinator)
    (suite,) = _checked(args, tracking=True, device=True, storage=True,
                        machines=args.parent_run is None and not args.coordinated)
    from nnbench.workers import suite_digest

    if args.suite_digest is not None and suite_digest(suite.source) != args.suite_digest:
        raise _UsageError(f"{suite.path}: the suite file changed after the command that "
                          f"started this worker read it; nothing was trained from it (the "
                          f"command would report the version it read): run that command "
                          f"again")
    if args.parent_run is not None:
        args.parent_run = _parent_run(suite, args.parent_run, args.tracking_uri)
    # a coordinator (run/tune --workers) printed the data's facts: the worker only refuses
    _preflight([suite], quiet=args.parent_run is not None or args.coordinated)
    liveness = _liveness(args)
    if suite.tune is not None:
        from nnbench.tuning import tune_suite

        tuned = tune_suite(suite, storage=args.storage, tracking_uri=args.tracking_uri,
                           device=args.device, engine=args.engine, lanes=args.lanes,
                           precision=args.precision,
                           liveness=liveness, console=err, system_metrics=_system_metrics(args),
                           log_models=args.log_models)
        if tuned.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_TRIAL_FAILED if tuned.failed else EXIT_OK
    from nnbench.runner import run_suite

    summary = run_suite(suite, device=args.device, tracking_uri=args.tracking_uri,
                        storage=args.storage, engine=args.engine, lanes=args.lanes,
                        precision=args.precision,
                        threads=args.threads, liveness=liveness,
                        parent_run_id=args.parent_run, console=err,
                        system_metrics=_system_metrics(args), log_models=args.log_models)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items())) or "nothing"
    err.print(f"worker done: trained {counts}" + (f"; {summary.lost} claim(s) lost"
                                                  if summary.lost else ""))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_TRIAL_FAILED if summary.statuses.get("failed") else EXIT_OK


def _parent_run(suite: Suite, run_id: str, tracking_uri: str | None) -> str:
    """`worker --parent-run`: the id of an invocation run of this suite in the store (its
    trials are tagged with it, and its coordinator reads them back by it)."""
    try:
        run_id = cli_checks.check_run_id(run_id)
    except UsageError as e:
        raise _UsageError(f"--parent-run: {e}") from None
    uri = tracking_uri or cli_checks.default_tracking_uri()
    what = f"--parent-run {run_id}: a coordinator's invocation run of suite {suite.name}"
    if cli_checks.sqlite_without(uri, "runs"):
        raise _UsageError(f"{what}, but {uri} holds no runs yet")
    from mlflow.exceptions import MlflowException

    from nnbench.tracking import open_client

    client = open_client(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise _UsageError(f"{what}, but {uri} has no such run ({first_line(e)})") from None
    experiment = client.get_experiment(run.info.experiment_id)
    role = run.data.tags.get("nnbench.role")
    if role != "suite" or experiment.name != suite.name:
        raise _UsageError(f"{what}, but that run is {'a ' + role if role else 'not nnbench'}'s "
                          f"run of experiment {experiment.name!r}; a worker started by hand "
                          f"takes no --parent-run")
    return run_id


def _cmd_status(args: argparse.Namespace) -> int:
    """The suite's queue across all workers, and its tuning studies."""
    from nnbench.queue import DEFAULT_LIVENESS, TrialQueue, open_storage

    # (the storage checked as run checks it, before it is opened: a plain path, or the
    # MLflow store's database, is refused: Optuna wrote its tables into an MLflow store)
    (suite,) = _checked(args, storage=True, reading=True)
    tracking_uri, storage = _stores(args)
    # the MLflow store as a reader's: reached only where it is read (a tuned suite's best
    # values); else its form alone (a plain path, an Optuna file)
    try:
        cli_checks.check_tracking_uri(args.tracking_uri, connect=suite.tune is not None,
                                      writes=False)
        cli_checks.check_separate_stores(args.tracking_uri, storage,
                                         storage_given=args.storage is not None)
    except UsageError as e:
        raise _UsageError(str(e)) from None
    if cli_checks.sqlite_without(storage, "studies"):
        out.print(f"{suite.name}: no queue at {storage} yet (nothing has run)")
        return EXIT_OK
    import optuna

    rdb = open_storage(storage, DEFAULT_LIVENESS, reading=True)
    if f"{suite.name}/trials" not in optuna.study.get_all_study_names(storage=rdb):
        # (status only reads: it made the study, and hung on a read-only storage)
        out.print(f"{suite.name}: no queue at {storage} yet (nothing has run)")
        return EXIT_OK
    queue = TrialQueue(suite.name, rdb, DEFAULT_LIVENESS, reading=True)
    if suite.tune is not None:  # its re-runs are read from MLflow: from the queue's store
        _same_store(suite, storage, tracking_uri)
    mine = {t.trial_id for t in suite.trials()} if suite.tune is None else \
        _tuned_reruns(suite, tracking_uri)
    counts = queue.counts(only=mine)
    if suite.tune is None:
        out.print(f"{suite.name} ({storage}): {counts.line()}")
    elif not (counts.queued_ids if mine is None else counts.queued_ids & mine):
        # (it read "0 done, 0 running on 0 worker(s), ..." while the studies below were
        # tuned: the queue holds a tuned suite's re-runs alone)
        out.print(f"{suite.name} ({storage}): no re-runs of tuned points queued yet (each "
                  f"tuned point is re-run over its seeds once the studies below are done)")
    else:
        out.print(f"{suite.name} ({storage}): re-runs of tuned points: {counts.line()}")
    if mine is not None:  # the file's trials: those not queued yet, and the others
        unqueued, other = len(mine - counts.queued_ids), len(counts.queued_ids - mine)
        if unqueued:
            out.print(f"  {unqueued} trial(s) of this file not queued yet " + (
                "(the next run queues them)" if suite.tune is None else
                "(a tune queues them once its studies are done)"))
        if other:
            out.print(f"  {other} trial(s) in the queue that this file no longer has "
                      f"(another version of the suite)")
    silence = queue.silence() if counts.workers else {}
    graces = queue.graces() if counts.workers else {}
    for worker in sorted(counts.workers):
        out.print(f"  worker {worker}" + _worker_state(worker, silence.get(worker),
                                                         *graces.get(worker, (None, ""))))
    if suite.tune is not None:
        from nnbench.tuning import status_lines

        lines, tuning = status_lines(suite, rdb)
        for line in lines:
            out.print(f"  {line}")
        for worker, (silent, grace, holder) in sorted(tuning.items()):  # tuning the studies
            out.print(f"  tuning worker {worker}" + _worker_state(worker, silent, grace,
                                                                  holder, "tune"))
    return EXIT_OK


def _worker_state(worker: str, silent: float | None, grace: int | None = None,
                  holder: str = "", command: str = "run") -> str:
    """What status adds to a worker holding a claim or running a tuning trial: how long
    since its last heartbeat, and, for a worker of this machine whose process is gone,
    that it has stopped (a SIGKILLed worker's claims stay RUNNING until some worker or
    `command` reaps them). `grace`: the grace period it recorded with its claims, which
    reapers wait for where it is longer than theirs; `holder`: the process it recorded,
    whose claims a worker of this machine queues again at once once it has ended."""
    from nnbench.queue import DEFAULT_LIVENESS
    from nnbench.transient import pid_gone_here, process_gone

    gone = pid_gone_here(worker)
    if silent is None:
        return ": no heartbeat recorded" if gone else ""
    said = f": last heartbeat {silent:.0f} s ago"
    default = DEFAULT_LIVENESS.grace_period
    waits = max(default, grace or 0)
    if gone and process_gone(worker, holder):
        said += (f" (no such process on this machine: it has stopped); the next {command} or "
                 f"worker started on this machine queues its trials again at once")
    elif gone or silent > waits:
        said += " (no such process on this machine: it has stopped)" if gone else \
            f" (silent past {'the default' if waits == default else 'its own'} grace " \
            f"period: it may have stopped)"
        said += (f"; the next {command} or worker queues its trials again once it has been "
                 f"silent for the grace period ({default} s unless --grace-period says "
                 f"otherwise)" if waits == default else
                 f"; the next {command} or worker queues its trials again once it has been "
                 f"silent for its own grace period ({waits} s, or a reaping worker's longer "
                 f"--grace-period)")
    return said


def _same_store(suite: Suite, storage: str, tracking_uri: str) -> None:
    """Refuse to count a tuned suite's re-runs from an MLflow store other than the one its
    queue records (as `run` refuses to train into it): another suite's store gave "0 done"
    and "4 trial(s) in the queue that this file no longer has"."""
    from nnbench.queue import queue_owner
    from nnbench.tracking import Tracker

    owner = queue_owner(storage, suite.name)
    if owner is None or cli_checks.sqlite_without(tracking_uri, "experiments"):
        return
    if Tracker(suite, tracking_uri).existing_identity() != owner:
        raise _UsageError(f"--storage {storage}: its queue of suite {suite.name!r} records the "
                          f"trials of another MLflow store's experiment than {tracking_uri}'s; "
                          f"the re-runs' counts would be read from the wrong store: give "
                          f"--tracking-uri the store the suite was tuned into")


def _tuned_reruns(suite: Suite, tracking_uri: str) -> set[str] | None:
    """The trial ids of a tuned suite's re-runs: its tuned points' current best values
    over its seeds, as MLflow holds them (None: no MLflow store to read them from)."""
    from nnbench.tracking import Tracker
    from nnbench.tuning import tuned_points, tuned_trials

    if cli_checks.sqlite_without(tracking_uri, "experiments"):
        return None
    return {t.trial_id for t in tuned_trials(suite, tuned_points(suite, Tracker(
        suite, tracking_uri)))}


def _cmd_submit(args: argparse.Namespace) -> int:
    """A job array of workers through submitit (Slurm, or local processes)."""
    (suite,) = _checked(args, tracking=True, report_dir=True, device=True, storage=True)
    if args.storage is None:
        raise _UsageError("--storage: required; every worker must reach the same Optuna "
                          "storage, e.g. postgresql+psycopg://user@host/db (a sqlite:/// file "
                          "only for --local workers on this machine)")
    # before the store and the queue are made
    cli_checks.check_report_dir(args.folder, "--folder", "the job scripts and logs")
    # submitit's local executor (--local, or no Slurm here: no srun on PATH) knows no
    # partition, cpu or memory limits
    local = args.local or shutil.which("srun") is None
    if local and args.workers > MAX_LOCAL_WORKERS:  # processes of this machine, all at once
        raise _UsageError(f"--workers {args.workers}: the jobs run as processes of this "
                          f"machine, all at once "
                          f"{'with --local' if args.local else '(no Slurm here: no srun on PATH)'}"
                          f"; allowed: 1 to {MAX_LOCAL_WORKERS}, as for run and tune")
    memory = cli_checks.local_workers_problem(args.workers) if local else None
    if memory is not None:
        raise _UsageError(memory)
    if local:
        unused = [option for option, value, default in (
            ("--slurm-partition", args.slurm_partition, _SLURM.partition),
            ("--slurm-cpus", args.slurm_cpus, _SLURM.cpus_per_task),
            ("--slurm-mem", args.slurm_mem, _SLURM.mem_gb),
            ("--slurm-parallelism", args.slurm_parallelism, _SLURM.parallelism))
            if value != default]
        if unused:
            err.print(f"{', '.join(unused)}: Slurm's only; ignored "
                      f"{'with --local' if args.local else '(no Slurm here: no srun on PATH)'}"
                      f" (every worker runs at once, on this machine's cores and memory)",
                      markup=False)
    _preflight([suite])
    tracking_uri, storage = _stores(args)
    if suite.tune is None:  # queue the trials now, so the first worker finds them
        from nnbench.runner import open_queue, open_tracker

        tracker, _ = open_tracker(suite, tracking_uri, storage)
        queue = open_queue(suite, tracker, storage, _liveness(args))
        queued = queue.sync(suite.trials(), keep={t.trial_id for t in suite.trials()},
                            store=tracker.identity(), tracking_uri=tracker.tracking_uri)
        queue.close()
        err.print(f"suite {suite.name}: {queued} trial(s) queued in {storage}")
    codes = _submit_jobs(suite, args, storage=storage, tracking_uri=tracking_uri)
    if codes is None:
        return EXIT_OK
    err.print(f"workers ended with exit codes {codes}")
    from nnbench.workers import all_refused

    if all_refused(codes):
        return EXIT_USAGE
    out.print(f"report: {_report(suite, args).resolve()}")
    if EXIT_INTERRUPTED in codes:
        return EXIT_INTERRUPTED
    return EXIT_OK if all(c == 0 for c in codes) else EXIT_TRIAL_FAILED


def _submit_jobs(suite: Suite, args: argparse.Namespace, *, storage: str,
                 tracking_uri: str) -> list[int] | None:
    """Submit the workers' job array; with --wait or --local, wait for it and return the
    workers' exit codes (else None).

    The submitit job objects live only in this function's frame, which is gone when it
    returns: the frames of `_cmd_submit` and its callers are kept until the interpreter's
    end (Optuna keeps the ImportError of an optional dependency, and its traceback holds
    every frame that was on the stack when Optuna was first imported). A job held there is
    deleted only at the interpreter's end, when submitit's `LocalJob.__del__` finds its
    module's globals cleared and prints "Exception ignored ... TypeError"."""
    from nnbench.workers import submit

    slurm = SlurmOptions(partition=args.slurm_partition, timeout_min=args.slurm_time,
                         cpus_per_task=args.slurm_cpus, gpus_per_node=args.slurm_gpus,
                         mem_gb=args.slurm_mem, parallelism=args.slurm_parallelism)
    options = _worker_options(args, suite, storage=storage, tracking_uri=tracking_uri)
    jobs = submit(str(Path(suite.path).resolve()), options, args.workers,
                  Path(args.folder), slurm, local=args.local)
    err.print(f"submitted {len(jobs)} worker job(s): {', '.join(str(j.job_id) for j in jobs)}; "
              f"logs in {args.folder}; progress: nnbench status {suite.path} --storage "
              f"{storage}")
    if not (args.wait or args.local):
        return None
    from nnbench.workers import wait_for_jobs

    return wait_for_jobs(jobs, err, local=args.local or all(
        type(job).__name__ == "LocalJob" for job in jobs))


def _cmd_report(args: argparse.Namespace) -> int:
    suites = _checked(args, tracking=True, reading=True, report_dir=True)
    never = _never_trained(suites, args.tracking_uri)
    if never:
        raise _UsageError(never)
    for suite in suites:
        out.print(f"report: {_report(suite, args).resolve()}")
    return EXIT_OK


def _never_trained(suites: Sequence[Suite], tracking_uri: str | None) -> str:
    """What to say of the suites the MLflow store has no experiment of (nothing of them was
    ever run into it), or "": their report was written, listed in the index, and the
    command exited 0, with "no finished trials yet" in every section."""
    from nnbench.tracking import Tracker

    lines = []
    for suite in suites:
        tracker = Tracker(suite, tracking_uri)
        if tracker.experiment_id(create=False) is None:
            names = sorted(e.name for e in tracker.client.search_experiments()
                           if e.tags.get("nnbench.suite"))
            lines.append(f"{suite.path}: {tracker.tracking_uri} has no experiment "
                         f"{suite.name!r}: nothing of the suite was trained into this store; "
                         f"train it first (nnbench run {shlex.quote(str(suite.path))}), or give "
                         f"the --tracking-uri it was trained into"
                         + (f" (this store's suites: {', '.join(names)})" if names else ""))
    return "\n".join(lines)


# Numeric options and their ranges, checked by argparse before any command runs (exit 2,
# naming the option, the value given and the range; nothing created). Upper bounds keep a
# typo from starting thousands of processes or threads, or a wait longer than a timer holds.
_positive_int = cli_checks.whole_number(1)
MAX_LOCAL_WORKERS = 1024  # processes on one machine
MAX_WORKERS = 100_000  # array jobs of `submit` (Slurm caps arrays lower: MaxArraySize)
MAX_THREADS = 1024  # torch intra-op threads
MAX_HEARTBEAT_S = 86_400  # a day
MAX_GRACE_S = 30 * 86_400  # 30 days
MAX_SLURM_MINUTES = 366 * 24 * 60  # a year
_SLURM = SlurmOptions()  # what a job asks for where --slurm-* are not given


class _Version(argparse.Action):
    """`nnbench --version`: the installed version and, from a git checkout, its commit
    (computed only when asked: no git call on other commands)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        out.print(version_line(), markup=False)
        parser.exit()


def version_line() -> str:
    """`nnbench 0.1.0 (git 1a2b3c4d5e6f, with uncommitted changes)`, or without the
    parenthesis where nnbench is not running from a git checkout of itself."""
    import subprocess
    from importlib import metadata

    try:
        version = metadata.version("nnbench")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    source = Path(__file__).resolve().parent

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(source), *argv], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()

    try:  # only nnbench's own checkout: not a repository the environment happens to sit in
        if Path(git("rev-parse", "--show-toplevel")).resolve() != source.parent:
            return f"nnbench {version}"
        commit = git("rev-parse", "HEAD")
        dirty = ", with uncommitted changes" if git("status", "--porcelain", "--", ".") else ""
    except (OSError, subprocess.SubprocessError):
        return f"nnbench {version}"
    return f"nnbench {version} (git {commit[:12]}{dirty})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnbench", description="Reproducible ablations of neural-network training components.")
    parser.add_argument("--version", action=_Version,
                        help="print nnbench's version (and git commit) and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check suite and benchmark files without running anything")
    p.add_argument("suites", nargs="+", metavar="FILE")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("show", help="list a suite's trials")
    p.add_argument("suite", metavar="SUITE")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("list", help="list registered components")
    p.add_argument("kind", nargs="?", help="activation, init, optimizer, schedule, ...")
    p.add_argument("pattern", nargs="?", default="*", help="glob over names, e.g. 'adam*'")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py",
                   help="import a plugin module first: a module name (searched in the "
                        "working directory, then sys.path) or its .py file; repeatable")
    p.set_defaults(func=_cmd_list)

    commands = (
        ("run", _cmd_run, "train every unfinished trial, then report"),
        ("bench", _cmd_bench, "run a benchmark file's suites, then the cross-task report"),
        ("tune", _cmd_tune, "tune nuisance axes with Optuna, re-run, report"),
        ("report", _cmd_report, "render reports from MLflow"),
        ("worker", _cmd_worker, "one worker on a suite's trial queue (any machine)"),
        ("submit", _cmd_submit, "a job array of workers through submitit (Slurm or local)"),
        ("status", _cmd_status, "the suite's queue across all workers"),
    )
    for name, func, text in commands:
        p = sub.add_parser(name, help=text)
        if name in ("run", "tune", "report"):
            p.add_argument("suites", nargs="+", metavar="SUITE")
        elif name == "bench":
            p.add_argument("benchmark", metavar="BENCHMARK",
                           help="a benchmark file, e.g. benchmarks/optimizers.yaml")
            only = p.add_mutually_exclusive_group()
            only.add_argument("--validate", action="store_true",
                              help="check the benchmark file and its suites; run nothing")
            only.add_argument("--report-only", action="store_true",
                              help="re-render the benchmark report from MLflow; train nothing")
        else:
            p.add_argument("suite", metavar="SUITE")
        if name in ("run", "tune", "report", "submit", "bench"):
            # "~/reports" quoted (the shell expands it unquoted) made a directory named "~"
            p.add_argument("--report-dir", default="reports", type=os.path.expanduser,
                           help="where <suite>.html goes")
        p.add_argument("--tracking-uri", default=None,
                       help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
        if name == "report":
            p.set_defaults(func=func)
            continue
        p.add_argument("--storage", default=None, metavar="URL",
                       help="Optuna storage holding the suite's trial queue and studies "
                            "(default: sqlite optuna.db next to a SQLite MLflow store); for "
                            "workers on several machines, PostgreSQL: "
                            "postgresql://user@host/db (psycopg 3)")
        if name == "status":
            p.set_defaults(func=func)
            continue
        p.add_argument("--device", default="auto",
                       help="auto (cuda if available), cpu, cuda or cuda:N")
        p.add_argument("--engine", default="auto", choices=engine_names(), help=engine_docs())
        p.add_argument("--precision", default="fp32", choices=cli_checks.PRECISIONS,
                       help="of matrix products and convolutions on a GPU: fp32 (default) or "
                            "tf32 (TensorFloat-32 inputs, fp32 sums: several times faster on "
                            "Ampere and later GPUs; still bitwise repeatable). Recorded in "
                            "each trial's numerics, which the report never pools across; a "
                            "trial done in one precision is not trained again in the other "
                            "(use another --tracking-uri/--storage to compare them)")
        p.add_argument("--lanes", type=_positive_int, default=None, metavar="N",
                       help="most lanes of a stacked group (default: 64 on CPU, 512 on a GPU)")
        p.add_argument("--heartbeat-interval", type=cli_checks.whole_number(1, MAX_HEARTBEAT_S),
                       default=10, metavar="S",
                       help="seconds between a worker's heartbeats (default 10)")
        p.add_argument("--grace-period", type=cli_checks.whole_number(1, MAX_GRACE_S),
                       default=60, metavar="S",
                       help="seconds without a heartbeat after which a worker's trials are "
                            "queued again for the others (default 60)")
        p.add_argument("--system-metrics", default="auto", choices=("on", "off", "auto"),
                       help="log CPU/GPU utilisation and memory with MLflow's system-metrics "
                            "monitor, one per training process on its invocation run; auto "
                            "(default): on when training on a GPU (needs psutil, and "
                            "nvidia-ml-py for GPUs)")
        p.add_argument("--log-models", action="store_true",
                       help="log every trial finished now as an MLflow model "
                            "(runs:/<run id>/model) with its checkpoint.pt, as `checkpoint: "
                            "true` does, without editing the suite; trial ids do not change. "
                            "Costs about 0.5 s per trial on the default MLP, 2-core CPU, and "
                            "about 4 s more for a process's first model (torch.export's "
                            "import)")
        if name in ("run", "tune", "submit", "bench"):
            most = MAX_WORKERS if name == "submit" else MAX_LOCAL_WORKERS
            p.add_argument("--workers", type=cli_checks.whole_number(1, most), default=1,
                           metavar="N",
                           help="worker processes: local ones for run/tune (each with its "
                                "share of the cores), array jobs for submit")
        if name in ("run", "bench", "worker"):
            p.add_argument("--threads", type=cli_checks.whole_number(1, MAX_THREADS),
                           default=None, metavar="N",
                           help="torch intra-op threads of each worker (default: the engine's "
                                "thread policy, capped by $OMP_NUM_THREADS: serial 1 under 1 "
                                "GFLOP per step, else the worker's share of the cores where "
                                "no other process runs, or the fastest of 1, 2, 4, ... up to "
                                "it, timed; chosen once and kept by the suite's queue; "
                                "stacked the worker's share)")
        if name == "worker":
            p.add_argument("--parent-run", default=None, metavar="RUN_ID",
                           help="a coordinator's invocation run: this worker's trials are "
                                "tagged with it (nnbench.invocation) instead of a run of "
                                "its own")
            p.add_argument("--coordinated", action="store_true", help=argparse.SUPPRESS)
            p.add_argument("--suite-digest", default=None, help=argparse.SUPPRESS)
            p.add_argument("--coordinator", type=_positive_int, default=None,
                           help=argparse.SUPPRESS)
        if name == "submit":
            p.add_argument("--local", action="store_true",
                           help="run the jobs as processes of this machine (submitit's local "
                                "executor) and wait for them")
            p.add_argument("--wait", action="store_true", help="wait for the jobs, then report")
            p.add_argument("--folder", default="submitit", type=os.path.expanduser,
                           help="job scripts and logs")
            p.add_argument("--slurm-partition", default=_SLURM.partition, metavar="P",
                           help="Slurm partition (default: the cluster's)")
            p.add_argument("--slurm-time", type=cli_checks.whole_number(1, MAX_SLURM_MINUTES),
                           default=_SLURM.timeout_min, metavar="MIN",
                           help=f"each worker's time limit in minutes (default "
                                f"{_SLURM.timeout_min}; also with --local); submitit "
                                f"interrupts the worker 30 s before it: its trials in flight "
                                f"are queued again")
            p.add_argument("--slurm-cpus", type=_positive_int, default=_SLURM.cpus_per_task,
                           metavar="N", help=f"CPUs per worker (default {_SLURM.cpus_per_task})")
            p.add_argument("--slurm-gpus", type=cli_checks.whole_number(0),
                           default=_SLURM.gpus_per_node, metavar="N",
                           help=f"GPUs per worker (default {_SLURM.gpus_per_node})")
            p.add_argument("--slurm-mem", type=cli_checks.real_number(0.0),
                           default=_SLURM.mem_gb, metavar="GB",
                           help=f"memory per worker in GB (default {_SLURM.mem_gb:g})")
            p.add_argument("--slurm-parallelism", type=_positive_int,
                           default=_SLURM.parallelism, metavar="N",
                           help="most array jobs running at once")
        p.set_defaults(func=func)
    p = sub.add_parser("evaluate", help="reload a trial's checkpoint, evaluate it on test")
    p.add_argument("run_id", metavar="RUN_ID", help="the trial's MLflow run id")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py",
                   help="import the plugin module the trial used first, when it is not "
                        "found from here: a module name (searched in the working directory, "
                        "then sys.path) or its .py file; repeatable")
    p.set_defaults(func=_cmd_evaluate)
    # an option is spelled out: `--engin stacked` was taken for --engine, and a prefix that
    # a later option makes ambiguous would change meaning
    for command in (parser, *_commands(parser).values()):
        command.allow_abbrev = False
    return parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a.choices for a in parser._actions
                if isinstance(a, argparse._SubParsersAction))


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, parsed; what it does not know is refused by its command's parser,
    with that command's usage and the option most likely meant (`--engien`: argparse
    printed nnbench's top-level usage, naming no command and no option)."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = _commands(parser)[args.command]
        options = [o for a in command._actions for o in a.option_strings]
        hints = [f"{word.split('=')[0]}: did you mean {near}?" for word in unknown
                 if word.startswith("-") and (near := closest(word.split("=")[0], options))]
        command.error(f"unrecognized arguments: {' '.join(unknown)}"
                      + "".join(f"; {h}" for h in hints))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; SIGTERM (what a cluster sends on preemption, and `kill` by default),
    SIGUSR2 (what Slurm sends a submitit job before its time limit) and SIGHUP (a terminal
    closed) stop it as Ctrl-C does: the trials in flight are recorded as killed and their
    claims released at once, for other workers to take (exit 130). Nothing it sets
    outlives the call."""
    from nnbench.transient import interrupt, interrupted

    previous: dict[int, object] = {}
    interrupted(clear=True)
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGINT", "SIGTERM", "SIGUSR2", "SIGHUP"):  # one ignored or set outside
            signum = getattr(signal, name, None)  # Python (nohup's SIGHUP) is left alone,
            if signum is None:  # as is a SIGINT handler of the caller's
                continue
            now = signal.getsignal(signum)
            if now not in (None, signal.SIG_IGN) and (
                    name != "SIGINT" or now is signal.default_int_handler):
                previous[signum] = signal.signal(signum, interrupt)
    # an interrupt Python could not raise (inside a garbage-collection callback or a
    # `__del__`) printed "Exception ignored in: <bound method ...> Traceback ...
    # KeyboardInterrupt" over the command's output; the command stops at its next step and
    # says so (`interrupted()`), so that report is dropped; any other one is printed
    unraisable = sys.unraisablehook
    timeout = "PGCONNECT_TIMEOUT" not in os.environ
    # every PostgreSQL connection (Optuna's, MLflow's; libpq reads it) gives up after this
    # long rather than the system's 2 minutes of TCP retries to a server gone silent, so
    # `retrying` tries again and says so
    if timeout:
        os.environ["PGCONNECT_TIMEOUT"] = str(cli_checks.CONNECT_TIMEOUT)
    try:
        if previous:
            sys.unraisablehook = partial(_unraisable, unraisable, interrupted)
        with _unbroken_output():
            try:
                code = _main(argv)
            except Exception as e:
                if not interrupted():
                    raise
                # an interrupt Python could not raise (C code that looked up an attribute
                # swallowed it) can leave an import half done: a RecursionError from
                # inside numpy followed, with a traceback and exit 1. The error is named in
                # one line (it may be another, after an interrupt the command handled)
                err.print(f"interrupted (then {first_line(e, with_type=True)})",
                          highlight=False, markup=False)
                return EXIT_INTERRUPTED
            if interrupted() and code != EXIT_INTERRUPTED:
                # the interrupt came inside a garbage-collection callback, which Python
                # ignores: the command went on to its end (or to an error it caused)
                err.print("interrupted (the command could not stop at once, and ended its "
                          "step first)")
                return EXIT_INTERRUPTED
            return code
    except KeyboardInterrupt as e:  # from the command, or before it began (plugins, parsing)
        if not isinstance(e, _InterruptedSaid):
            err.print("interrupted")
        return EXIT_INTERRUPTED
    finally:
        sys.unraisablehook = unraisable  # (first: an interrupt may land in the loop below)
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if timeout:
            os.environ.pop("PGCONNECT_TIMEOUT", None)


def _unraisable(hook: Callable[[Any], object], interrupted: Callable[[], bool],
                report: Any) -> None:
    """`sys.unraisablehook` while a command runs: an interrupt the command's handler raised
    where Python could not raise it is the command's to say (it stops at its next step);
    any other report goes to `hook`."""
    if isinstance(report.exc_value, KeyboardInterrupt) and interrupted():
        return
    hook(report)


@contextlib.contextmanager
def _unbroken_output() -> Iterator[None]:
    """stdout and stderr that never raise for a reader gone: Ctrl-C on `nnbench run | tee
    log` ends tee first, and the first line written to the closed pipe (BrokenPipeError)
    aborted recording the other trials in flight (left RUNNING) and exited 1; a worker
    whose coordinator was SIGKILLed died at its next line likewise. Once the reader is
    gone, the stream writes to /dev/null (Python's own advice), and the command goes on."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Unbroken(sys.stdout), _Unbroken(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


class _Unbroken:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _guarded(self, call: Callable[[], Any], fallback: Any) -> Any:
        try:
            return call()
        except OSError as err:  # a closed pipe (EPIPE), a terminal hung up (EIO)
            if err.errno not in (errno.EPIPE, errno.EIO):
                raise
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self._stream.fileno())  # (the final flush too)
                os.close(devnull)
            return fallback

    def write(self, text: str) -> int:
        return cast(int, self._guarded(lambda: self._stream.write(text), len(text)))

    def flush(self) -> None:
        self._guarded(self._stream.flush, None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _main(argv: Sequence[str] | None) -> int:
    from nnbench.plugins import PluginError, load_entry_points

    try:  # installed plugins first: an engine one registers is one of --engine's choices
        load_entry_points()  # a broken one stops every command here
    except PluginError as e:
        err.print(str(e), markup=False)
        return EXIT_USAGE
    args = _parse(argv)
    try:
        code: int = args.func(args)
    except (_UsageError, PluginError) as e:
        err.print(str(e), markup=False)
        return EXIT_USAGE
    except SuiteError as e:  # a suite command that loads one file itself
        err.print("\n".join(e.lines()), markup=False)
        return EXIT_USAGE
    return code


def entry() -> NoReturn:
    """The `nnbench` program (and `python -m nnbench.cli`): main(), then exit.

    On its way out Python collects every object the process holds, which after a run
    (torch, MLflow, Optuna, pandas, matplotlib: millions of objects) takes one to two
    seconds of CPU for nothing, since the process ends anyway. Frozen objects are skipped
    by that collection; atexit handlers (MLflow's, logging's) still run and open files are
    still flushed and closed."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
