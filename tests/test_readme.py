"""Every command in README.md and examples/*/README.md works as written.

The commands are read from the READMEs' ```bash blocks and fall in three groups:

- **run**: a concrete command that runs in seconds; it runs in a temporary copy of the
  repository, from its root (where the READMEs say to run them), with `.venv/bin` first
  on PATH, and must exit 0 (or as `EXPECTED` says) without a traceback or "Exception
  ignored";
- **synopsis**: a command with placeholders (`SUITE...`, `[--lanes N]`): its subcommand
  must exist and accept every option the line names, with the values it lists as choices;
- **skipped**: a command that cannot run here, listed in `SKIPPED` with the reason (it
  installs packages, trains for minutes, needs a server); its nnbench options are still
  checked like a synopsis.

A command in a README that is in none of these (a new one, or one edited) is classified
by its form: a concrete command runs; a new command that cannot run here fails until it
is added to `SKIPPED`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from nnbench import cli
from tests.conftest import REPO

READMES = [REPO / "README.md", *sorted((REPO / "examples").glob("*/README.md"))]

# Commands that cannot run in a test, as written in the README, and why.
SKIPPED = {
    "pip install nox && nox -s ablate":
        "installs nox and the environment, then trains the default suite (minutes); "
        "`nnbench run`, which the session calls, is run by tests/test_cli.py",
    "nox -s tests": "the whole test suite, this test among them",
    "nox -s bench [-- BENCHMARK ...]":
        "installs the environment, then trains the benchmark's 48 trials (minutes)",
    "nnbench bench benchmarks/optimizers.yaml --report-only":
        "re-renders the results of the benchmark's 48 trials, which take minutes to train; "
        "tests/test_bench.py renders a small benchmark's report this way",
    "nnbench worker suites/x.yaml --storage postgresql://user@dbhost/optuna "
    "--tracking-uri postgresql://user@dbhost/mlflow":
        "needs a PostgreSQL server (dbhost) and names an example suite file; "
        "tests/test_workers.py runs workers on a PostgreSQL server",
    ".venv/bin/nnbench run examples/own_model/own_model.yaml --engine serial":
        "trains 12 trials of 20 epochs (over a minute on 2 cores); tests/test_examples.py "
        "trains the same suite at a CI size, and `nnbench validate` of it runs here",
}

# Suites whose datasets are files the user provides (README: "need the datasets' files");
# where the files are missing, `validate` names the files expected, with exit 2.
NEEDS_FILES = ("suites/seed_mnist_mlp.yaml", "suites/seed_cifar10_mlp.yaml")


def _only_missing_dataset_files(code: int, out: str, err: str) -> str | None:
    if "suites/default.yaml: ok" not in out:  # every other file is still checked
        return f"exit {code}; suites/default.yaml not reported ok: {out}"
    if code == 0:
        return None
    problems = [line for line in err.splitlines() if re.match(r"^\S+\.ya?ml: ", line)]
    wrong = [p for p in problems if not (p.startswith(NEEDS_FILES) and "not found" in p)]
    if code != 2 or not problems or wrong:
        return f"exit {code}; problems other than missing dataset files: {wrong or err}"
    return None


def _prints(*fragments: str) -> Callable[[int, str, str], str | None]:
    def check(code: int, out: str, err: str) -> str | None:
        missing = [f for f in fragments if f not in out]
        if code != 0 or missing:
            return f"exit {code}; missing from its output: {missing}"
        return None

    return check


# What a command must do beyond exiting 0 (by default).
EXPECTED: dict[str, Callable[[int, str, str], str | None]] = {
    "nnbench validate suites/*.yaml benchmarks/*.yaml": _only_missing_dataset_files,
    "nnbench show suites/default.yaml": _prints("default: 24 trials"),
    "nnbench bench benchmarks/optimizers.yaml --validate":
        _prints("benchmarks/optimizers.yaml: ok"),
    "nnbench --version": _prints("nnbench "),
    ".venv/bin/nnbench list model --plugin examples/own_model/mylab_nets.py":
        _prints("resmlp", "[plugin mylab_nets]", "mlp"),
    ".venv/bin/nnbench validate examples/own_model/own_model.yaml":
        _prints("examples/own_model/own_model.yaml: ok"),
    ".venv/bin/pytest examples/own_model": _prints("6 passed"),
}

PLACEHOLDER = re.compile(r"\[|\.\.\.|\b[A-Z][A-Z_]{2,}\b")  # [--lanes N], SUITE..., RUN_ID


@dataclass(frozen=True)
class Command:
    readme: str  # relative to the repository
    line: int
    text: str  # continuation lines joined, the trailing comment removed

    def __str__(self) -> str:
        return f"{self.readme}:{self.line}: {self.text}"


def bash_commands(path: Path, root: Path = REPO) -> list[Command]:
    """The commands of a Markdown file's ```bash blocks (indented blocks too): a line
    ending in `\\` or followed by an indented line continues on the next one."""
    commands: list[Command] = []
    fence: str | None = None
    pending: tuple[int, str] | None = None
    name = str(path.relative_to(root))

    def flush() -> None:
        nonlocal pending
        if pending is not None and pending[1].strip():
            commands.append(Command(name, pending[0], " ".join(pending[1].split())))
        pending = None

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        opening = re.match(r"^(\s*)```(\w*)\s*$", raw)
        if fence is None:
            if opening and opening.group(2) in ("bash", "sh", "shell"):
                fence = opening.group(1)
            continue
        if opening and not opening.group(2):
            flush()
            fence = None
            continue
        line = raw.removeprefix(fence)
        text = re.sub(r"(^|\s)#\s.*$", "", line).rstrip()  # a trailing comment
        if not text.strip():
            continue
        if pending is not None and (pending[1].endswith("\\") or line[:1].isspace()):
            pending = (pending[0], pending[1].removesuffix("\\") + " " + text.strip())
            continue
        flush()
        pending = (number, text)
    flush()
    return commands


def _nnbench_argv(text: str) -> list[str] | None:
    """The words after `nnbench` when the command runs nnbench, else None."""
    words = text.split()
    if words and words[0] in ("nnbench", ".venv/bin/nnbench"):
        return words[1:]
    return None


def option_problems(text: str) -> list[str]:
    """What the command line's parser does not accept among the options a command (or a
    synopsis) names: unknown subcommands and options, values outside an option's choices."""
    argv = _nnbench_argv(text)
    if argv is None:
        return []
    parser = cli._parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands: dict[str, argparse.ArgumentParser] = subparsers.choices
    if argv and argv[0].startswith("-"):
        target, words = parser, argv
    elif argv and argv[0] in commands:
        target, words = commands[argv[0]], argv[1:]
    else:
        return [f"no command {argv[:1]}; nnbench has {sorted(commands)}"]
    known = target._option_string_actions
    problems = []
    for i, word in enumerate(words):
        for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", word):
            if option not in known:
                problems.append(f"`{option}` is not an option of `nnbench {argv[0]}`")
                continue
            choices = known[option].choices
            following = words[i + 1].strip("[]") if i + 1 < len(words) else ""
            if choices is not None and "|" in following and "--" not in following:
                wrong = [c for c in following.split("|") if c not in choices]
                if wrong:
                    problems.append(f"{option}: {wrong} are not among {sorted(choices)}")
    if "the options of run" in text:  # bench takes every option of run
        run = commands["run"]._option_string_actions
        problems += [f"`nnbench {argv[0]}` lacks run's option `{o}`"
                     for o in sorted(set(run) - set(known)) if o.startswith("--")]
    return problems


def kind(command: Command) -> str:
    if command.text in SKIPPED:
        return "skipped"
    if PLACEHOLDER.search(command.text) and _nnbench_argv(command.text) is not None:
        return "synopsis"
    return "run"


COMMANDS = [c for readme in READMES for c in bash_commands(readme)]


def test_the_readmes_have_commands_and_every_skip_is_still_one_of_them() -> None:
    assert {c.readme for c in COMMANDS} == {str(p.relative_to(REPO)) for p in READMES}
    assert sum(kind(c) == "run" for c in COMMANDS) >= 6
    stale = set(SKIPPED) - {c.text for c in COMMANDS}
    assert not stale, f"SKIPPED names commands no README has any more: {stale}"
    stale = set(EXPECTED) - {c.text for c in COMMANDS}
    assert not stale, f"EXPECTED names commands no README has any more: {stale}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if kind(c) != "run"], ids=str)
def test_synopses_and_skipped_commands_name_only_options_nnbench_has(command: Command
                                                                        ) -> None:
    assert not option_problems(command.text), option_problems(command.text)


@pytest.fixture(scope="module")
def repository_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files (no .git, stores, reports or caches), with `.venv` linked to
    the environment the tests run in (whose `nnbench` is this checkout's)."""
    copy = tmp_path_factory.mktemp("readme") / "nnbench"
    ignored = shutil.ignore_patterns(
        ".git", ".venv", ".nox", ".*_cache", ".benchmarks", "__pycache__", "*.egg-info",
        "mlruns", "mlartifacts", "mlflow.db", "optuna.db", "submitit", "reports")
    shutil.copytree(REPO, copy, ignore=ignored)
    (copy / "reports").mkdir()
    (copy / ".venv").symlink_to(Path(sys.prefix))  # .venv/ itself under nox
    return copy


def run_problem(command: Command, root: Path) -> str | None:
    """Run the command in `root` as a user would (bash, `.venv/bin` first on PATH); what
    went wrong, or None."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PATH=f"{root / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", "-c", command.text], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    for sign in ("Traceback (most recent call last)", "Exception ignored"):
        if sign in output:
            return f"printed {sign!r}:\n{output[-3000:]}"
    check = EXPECTED.get(command.text)
    problem = check(done.returncode, done.stdout, done.stderr) if check else (
        f"exit {done.returncode}" if done.returncode else None)
    return f"{problem}\n{output[-3000:]}" if problem else None


@pytest.mark.parametrize("command", [c for c in COMMANDS if kind(c) == "run"], ids=str)
def test_each_command_runs_as_written(command: Command, repository_copy: Path) -> None:
    problem = run_problem(command, repository_copy)
    assert problem is None, f"{command}: {problem}"


def test_a_broken_command_or_option_is_caught(tmp_path: Path) -> None:
    """The checks above fail for a command that does not work (not only pass)."""
    readme = tmp_path / "README.md"
    readme.write_text("Try:\n\n  ```bash\n  nnbench shw suites/default.yaml   # typo\n"
                      "  nnbench run SUITE... [--threadz N] \\\n      [--engine fast|serial]\n"
                      "  ```\n", encoding="utf-8")
    broken, synopsis = bash_commands(readme, tmp_path)
    assert (broken.line, broken.text) == (4, "nnbench shw suites/default.yaml")
    assert kind(broken) == "run" and kind(synopsis) == "synopsis"
    problem = run_problem(broken, REPO)
    assert problem is not None and "exit 2" in problem and "invalid choice" in problem
    assert option_problems(synopsis.text) == [
        "`--threadz` is not an option of `nnbench run`",
        "--engine: ['fast'] are not among ['auto', 'serial', 'stacked']"]


def test_the_mlflow_filter_example_selects_runs_of_the_default_suite() -> None:
    """The README's MLflow filter asked for lr '0.1', which the default suite never uses (its
    lr is 0.01): pasted into the UI after `nox -s ablate`, it found nothing."""
    from nnbench.config import load_suite

    said = re.search(r"\*\*Filter\*\*: `tags\.nnbench\.axis\.activation = '(\w+)' and "
                     r"params\.optimizer\.lr = '([^']+)'`", (REPO / "README.md").read_text())
    assert said is not None
    trials = load_suite(REPO / "suites" / "default.yaml").trials()
    assert any(t.activation.name == said.group(1)
               and str(t.optimizer.kwargs["lr"]) == said.group(2) for t in trials), said.groups()
