"""How problems are worded: the closest name, bounded values, key paths from pydantic."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nnbench import registry
from nnbench.messages import (
    MAX_VALUE_CHARS,
    closest,
    describe,
    did_you_mean,
    key_path,
    mlflow_ui,
    pydantic_problems,
)


@pytest.mark.parametrize(("name", "expected"), [
    ("ReLU", "relu"), ("RELU", "relu"), ("reluu", "relu"), ("Leaky_ReLU", "leaky_relu"),
    ("Tanh", "tanh"), ("softmax", None),
])
def test_closest_ignores_case(name: str, expected: str | None) -> None:
    assert closest(name, ["relu", "leaky_relu", "tanh", "sigmoid"]) == expected


def test_did_you_mean_is_empty_when_nothing_is_close() -> None:
    assert did_you_mean("xyz", ["relu"]) == ""
    assert did_you_mean("Relu", ["relu"]) == "did you mean 'relu'? "


def test_the_registry_suggests_through_the_same_helper() -> None:
    with pytest.raises(registry.UnknownComponentError, match="did you mean 'relu'"):
        registry.resolve("activation", "ReLU")
    with pytest.raises(registry.ComponentError, match="did you mean 'momentum'"):
        registry.resolve("optimizer", {"name": "sgd", "Momentum": 0.9})


def test_describe_stays_on_one_short_line() -> None:
    assert describe("reluu") == "'reluu' (str)"
    assert describe(0.1) == "0.1 (float)"
    huge = describe(list(range(1_000_000)))
    assert huge.endswith("(list of 1000000 items)")
    assert len(huge) < MAX_VALUE_CHARS + 40
    assert len(describe("x" * 10_000_000)) < MAX_VALUE_CHARS + 20
    nested = describe({"a": [[[[[[1]]]]]]})
    assert "\n" not in nested and len(nested) < MAX_VALUE_CHARS + 20


def test_key_path_joins_names_and_indices() -> None:
    assert key_path("fixed.optimizer", ("betas", 1)) == "fixed.optimizer.betas[1]"
    assert key_path("", ("grid", "activation", 0)) == "grid.activation[0]"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    gain: Annotated[float, Field(gt=0)] | Literal["activation"] = 1.0
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    flag: bool = False


@pytest.mark.parametrize(("raw", "key", "fragments"), [
    ({"gain": -1}, "x.gain", ["greater than 0 or 'activation'", "given -1 (int)"]),
    ({"mode": "fan_inn"}, "x.mode", ["unknown mode 'fan_inn' (str)", "did you mean 'fan_in'",
                                     "allowed: fan_in, fan_out"]),
    ({"flag": "yes"}, "x.flag", ["expected true or false", "YAML 1.2", "'yes' (str)"]),
    ({"gian": 1}, "x.gian", ["unknown key 'gian'", "did you mean 'gain'", "allowed: gain"]),
])
def test_pydantic_errors_become_one_problem_per_key(raw: dict[str, object], key: str,
                                                    fragments: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        _Model.model_validate(raw)
    problems = pydantic_problems(caught.value, "x", allowed=list(_Model.model_fields))
    assert [k for k, _ in problems] == [key]
    for fragment in fragments:
        assert fragment in problems[0][1]


def test_a_huge_float_bound_reads_short_and_nothing_else_is_rewritten() -> None:
    """float32's largest as a bound printed as 39 digits; the short form is for that bound
    alone: digits in a given path or an integer bound stay as they are."""
    class _Bounded(BaseModel):
        lr: float = Field(0.1, le=3.4028234663852886e38)
        seed: int = Field(0, le=2**63 - 1)
        path: str = Field("", pattern=r"\.npz$")

    with pytest.raises(ValidationError) as caught:
        _Bounded.model_validate({"lr": 1e300, "seed": 2**63,
                                 "path": "/data/1700000000000000/x.csv"})
    problems = dict(pydantic_problems(caught.value, "p", allowed=list(_Bounded.model_fields)))
    assert problems["p.lr"] == ("input should be less than or equal to 3.4e+38, given 1e+300 "
                                "(float)")
    assert "less than or equal to 9223372036854775807" in problems["p.seed"]
    assert "/data/1700000000000000/x.csv" in problems["p.path"]


def test_mlflow_ui_names_the_mlflow_a_shell_in_the_working_directory_runs(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """After `nox -s ablate` the environment's bin directory is not on the user's PATH: a
    plain `mlflow ui ...` was "command not found". Under the working directory the
    environment's script is named by its relative path; elsewhere by its full path, unless
    the PATH finds that same script."""
    script = Path(sys.executable).parent / "mlflow"
    assert script.exists()  # the project's environment has MLflow's command
    monkeypatch.chdir(script.parent.parent.parent)  # the directory holding .venv (nox's)
    assert mlflow_ui("sqlite:///a b.db") == \
        f"{script.parent.parent.name}/bin/mlflow ui --backend-store-uri 'sqlite:///a b.db'"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert mlflow_ui("sqlite:///x.db") == f"{script} ui --backend-store-uri sqlite:///x.db"
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin")
    assert mlflow_ui("sqlite:///x.db") == "mlflow ui --backend-store-uri sqlite:///x.db"


def test_sentences_and_tables_round_a_number_alike() -> None:
    """A benchmark's IQM sentence said 0.896 [0.812, 0.972] above its table's [0.813, 0.972]:
    the sentence rounded the binary 0.8125 half to even, the table the decimal half up."""
    from nnbench.messages import decimals
    from nnbench.report import _num
    from nnbench.report.benchmark import _iqm_sentence

    assert f"{0.8125:.3f}" == "0.812"  # what the sentence printed
    assert decimals(0.8125, 3) == _num(0.8125, 3) == "0.813"
    assert decimals(0.61125) == "0.6113" and f"{0.61125:.4f}" == "0.6112"
    assert (decimals(0.0125, plus=True), decimals(-0.2, plus=True)) == ("+0.0125", "-0.2000")
    assert decimals(None) == decimals(float("nan")) == "–"
    assert decimals(8.8e35) == "8.800e+35" and decimals(float("inf"), plus=True) == "+inf"
    rows = [{"config": "rmsprop", "iqm": 0.8958, "low": 0.8125, "high": 0.9716},
            {"config": "sgd", "iqm": 0.863, "low": 0.723, "high": 0.963}]
    assert _iqm_sentence(rows, "epochs", 3).startswith(
        "Highest IQM of the normalised score s (epochs): rmsprop, 0.896 [0.813, 0.972]; its "
        "interval overlaps that of sgd")


def test_a_sequence_whose_every_item_is_refused_is_not_also_too_short() -> None:
    """ResNet `blocks: [0, 0, 0]` printed its three item errors and then "tuple should have
    at least 1 item after validation, not 0, given [0, 0, 0]", which the input contradicts."""
    from typing import Annotated  # noqa: F401  (pydantic resolves the annotation by name)

    from pydantic import BaseModel, Field, ValidationError  # noqa: F401  (the same)

    from nnbench.messages import pydantic_problems

    class Blocks(BaseModel):
        blocks: Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(min_length=1)]

    with pytest.raises(ValidationError) as caught:
        Blocks.model_validate({"blocks": [0, 0, 0]})
    problems = pydantic_problems(caught.value, "task.model")
    assert [key for key, _ in problems] == [f"task.model.blocks[{i}]" for i in range(3)]
    assert not any("after validation" in text for _, text in problems), problems
    class Three(BaseModel):
        blocks: Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(min_length=3)]

    with pytest.raises(ValidationError) as caught:  # too few as well: both are said
        Three.model_validate({"blocks": [0, 5]})
    assert [key for key, _ in pydantic_problems(caught.value, "m")] == ["m.blocks[0]",
                                                                        "m.blocks"]
    with pytest.raises(ValidationError) as caught:  # empty: too short is the one problem
        Blocks.model_validate({"blocks": []})
    (problem,) = pydantic_problems(caught.value, "task.model")
    assert problem[0] == "task.model.blocks" and "at least 1 item" in problem[1]
