"""One lane lifecycle for every engine (issue 21, point 7): the verdict after an epoch,
the penalty and the diagnostics are written once, lanes first, and the serial engine's
one lane reads them exactly as a stacked group's lanes do."""

from __future__ import annotations

import math
import textwrap
from dataclasses import replace
from typing import Any

import pytest
import torch

from nnbench import registry, seeding
from nnbench.components.augmentations import Augmentation
from nnbench.config import AXES, TrialSpec, dry, parse_suite
from nnbench.registry import ComponentInfo, NoParams, register, unregister
from nnbench.train import build, metrics, serial
from nnbench.train.build import Step, build_parts, layer_weights, weight_layers
from nnbench.train.lifecycle import Activations, Lane, diagnostics, epoch_metrics, penalty
from nnbench.train.results import CONTINUE, Decision, stop

CPU = torch.device("cpu")


def _spec(early_stopping: str = "none", activation: str = "relu",
          augmentation: str = "[]") -> TrialSpec:
    text = textwrap.dedent(f"""\
        name: t
        task: {{dataset: digits, model: {{name: mlp, hidden: [8]}}}}
        fixed:
          activation: {activation}
          optimizer: {{name: sgd, lr: 0.1}}
          epochs: 10
          batch_size: 32
          early_stopping: {early_stopping}
          augmentation: {augmentation}
        """)
    return parse_suite(text).base


def _lane(early_stopping: str = "none") -> Lane:
    spec = _spec(early_stopping)
    return Lane(spec, registry.build("early_stopping", spec.early_stopping))


def _epoch(val_loss: float, train_loss: float = 1.0, val_accuracy: float = 0.5
           ) -> dict[str, float]:
    return {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}


def test_a_lane_records_each_epoch_and_tells_the_listener_first() -> None:
    told: list[tuple[str, float]] = []

    def listener(spec: TrialSpec, metrics: dict[str, float]) -> Decision:
        told.append((spec.trial_id, metrics["epoch"]))
        return stop("the listener said so") if metrics["epoch"] == 2 else CONTINUE

    lane = _lane()
    assert lane.epoch_ended(_epoch(1.0), listener).ending is None
    ending = lane.epoch_ended(_epoch(0.5), listener).ending
    assert ending is not None and ending.status == "pruned"
    assert ending.fields == {"reason": "the listener said so"}
    assert [m["epoch"] for m in lane.history] == [1.0, 2.0]
    assert told == [(lane.spec.trial_id, 1.0), (lane.spec.trial_id, 2.0)]


@pytest.mark.parametrize("key", ["train_loss", "val_loss"])
def test_a_non_finite_loss_ends_the_lane_as_diverged_even_when_the_listener_stops_it(
        key: str) -> None:
    lane = _lane()
    lane.epoch_ended(_epoch(1.0))
    metrics = _epoch(1.0)
    metrics[key] = math.nan
    verdict = lane.epoch_ended(metrics, lambda spec, m: stop("pruned"))
    assert verdict.ending is not None and verdict.ending.status == "diverged"
    assert verdict.ending.fields == {"diverged_epoch": 2, "reason": f"{key} became nan at epoch 2"}
    assert not verdict.keep_best


def test_without_early_stopping_the_best_epoch_is_the_lowest_val_loss() -> None:
    lane = _lane()
    for value in (0.9, 0.4, 0.6, 0.4):
        verdict = lane.epoch_ended(_epoch(value))
        assert verdict.ending is None and not verdict.keep_best
    ending = lane.completed()
    assert ending.status == "finished" and ending.fields == {"best_epoch": 2}


@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_keeps_the_best_weights_only_when_asked_and_stops_after_patience(
        restore_best: bool) -> None:
    lane = _lane(f"{{name: patience, patience: 2, restore_best: {str(restore_best).lower()}}}")
    kept = [lane.epoch_ended(_epoch(v)).keep_best for v in (0.9, 0.5, 0.7)]
    assert kept == [restore_best, restore_best, False]
    verdict = lane.epoch_ended(_epoch(0.6))
    assert verdict.ending is not None and verdict.ending.status == "finished"
    assert verdict.ending.fields == {
        "best_epoch": 2, "stopped_epoch": 4,
        "reason": "early stopping at epoch 4: val_loss did not improve for 2 epochs"}
    assert lane.has_best is restore_best
    # a checkpoint holds the weights the trial ends with: its best epoch's when restored
    assert lane.weights_epoch() == (2 if restore_best else 4)
    assert lane.checkpoint_metrics({"test_loss": 1.0}) == {
        **lane.history[lane.weights_epoch() - 1], "test_loss": 1.0}


def test_early_stopping_due_at_the_last_epoch_completes_the_lane() -> None:
    """Its patience ran out at the 10th of 10 epochs: the trial recorded stopped_epoch 10
    and "early stopping at epoch 10", which README reserves for a run stopped before its
    last epoch. It completes, with its best epoch (and best weights, where kept)."""
    lane = _lane("{name: patience, patience: 1, restore_best: true}")
    verdicts = [lane.epoch_ended(_epoch(v)) for v in [0.9, *[0.5 - i / 100 for i in range(8)],
                                                      0.6]]
    assert all(v.ending is None for v in verdicts)  # the 10th did not improve: due, but last
    assert lane.completed().fields == {"best_epoch": 9} and lane.weights_epoch() == 9


def test_a_split_whose_loss_is_not_finite_scores_nothing() -> None:
    """A diverged trial's val_accuracy read 0.5 beside val_loss nan: the argmax of NaN
    logits, the share of one class."""
    from nnbench.train.lifecycle import epoch_metrics

    losses = [torch.tensor([1.0, float("nan")]), torch.tensor([float("inf"), 0.5])]
    scores = [torch.tensor([[0.75], [0.5]]), torch.tensor([[0.5], [0.25]])]
    diagnosed = {"grad_norm.layer1": torch.tensor([0.1, 0.2])}
    lanes = epoch_metrics(("accuracy",), losses, scores, diagnosed, [None, None])
    assert lanes[0]["train_accuracy"] == 0.75 and math.isnan(lanes[0]["val_accuracy"])
    assert math.isnan(lanes[1]["train_accuracy"]) and lanes[1]["val_accuracy"] == 0.25


@pytest.mark.parametrize("engine", ["serial", "stacked"])
def test_a_checkpoint_of_restored_best_weights_says_their_epoch_and_metrics(
        engine: str) -> None:
    """With restore_best, checkpoint.pt held the best epoch's weights but the last epoch's
    number and metrics (its val_accuracy not that of its weights), the MLflow model logged
    at the last epoch's step."""
    import io

    from nnbench.train import make_engine
    from tests.conftest import Quiet

    suite = parse_suite(textwrap.dedent("""\
        name: best
        task: {dataset: {name: mnist1d, num_samples: 600}, model: {name: mlp, hidden: [16]}}
        fixed:
          optimizer: {name: sgd, lr: 0.05}
          epochs: 6
          batch_size: 32
          early_stopping: {name: patience, patience: 2, min_delta: 100.0}
        seeds: 2
        """))
    trials = suite.trials()
    device = torch.device("cpu")
    results = list(make_engine(engine, device, keep_checkpoints=True,
                               population=trials).run(trials, Quiet()))
    for result in results:
        # only the first epoch improves by more than min_delta (on infinity): best 1, stop 3
        assert (result.status, result.best_epoch, result.stopped_epoch) == ("finished", 1, 3)
        assert result.weights_epoch == 1 and result.checkpoint is not None
        saved = torch.load(io.BytesIO(result.checkpoint), weights_only=False)
        assert (saved["epoch"], saved["optimizer_epoch"]) == (1, 3)
        assert saved["metrics"] == {**result.history[0], **result.final}
        # the weights are epoch 1's: the test metrics recomputed from them match
        again = serial.evaluate_checkpoint(result.checkpoint, device)
        assert again["test_accuracy"] == pytest.approx(result.final["test_accuracy"])


def test_early_stopping_on_accuracy_counts_a_higher_value_as_better() -> None:
    lane = _lane("{name: patience, patience: 1, monitor: val_accuracy}")
    assert lane.epoch_ended(_epoch(1.0, val_accuracy=0.5)).ending is None
    assert lane.epoch_ended(_epoch(2.0, val_accuracy=0.6)).ending is None  # better, lower loss
    ending = lane.epoch_ended(_epoch(0.1, val_accuracy=0.6)).ending
    assert ending is not None and ending.fields["best_epoch"] == 2


def test_the_penalty_of_a_lane_is_the_penalty_of_its_own_weights() -> None:
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(3, 5, 4, generator=g), torch.randn(3, 2, 5, generator=g)]
    l1, l2 = torch.tensor([0.0, 0.01, 0.3]), torch.tensor([0.2, 0.0, 0.05])
    stacked = penalty(weights, l1, l2, lanes=True)
    assert stacked is not None and stacked.shape == (3,)
    for i in range(3):
        alone = penalty([w[i] for w in weights], float(l1[i]), float(l2[i]), lanes=False)
        assert alone is not None and alone.shape == ()
        expected = sum(float(l1[i]) * w[i].abs().sum() + 0.5 * float(l2[i]) * w[i].square().sum()
                       for w in weights)
        torch.testing.assert_close(alone, expected)
        torch.testing.assert_close(stacked[i], alone)
    assert penalty(weights, None, None, lanes=True) is None
    only_l2 = penalty(weights, None, l2, lanes=True)
    assert only_l2 is not None and float(only_l2[1]) == 0.0


def _activations(activations: list[torch.Tensor], families: list[str],
                 sigmoid: torch.Tensor | bool) -> Activations:
    """The activations of a probe that ran in one pass."""
    summed = Activations(families, sigmoid)
    summed.add(activations)
    return summed


def test_diagnostics_of_a_group_are_each_lane_s_own() -> None:
    g = torch.Generator().manual_seed(1)
    # two lanes: a sigmoid lane and a tanh lane; an activation of 6 units, one of 3 channels
    units = torch.rand(2, 16, 6, generator=g)
    channels = torch.rand(2, 16, 3, 4, 4, generator=g) * 2 - 1
    units[0, :, 0] = 0.999  # lane 0: unit 0 saturated everywhere
    channels[1, :, 2] = -1.0  # lane 1: channel 2 never positive (dead)
    grads = [[torch.randn(2, 6, 4, generator=g)], [torch.randn(2, 3, 6, generator=g),
                                                   torch.randn(2, 3, 3, generator=g)]]
    weights = [torch.randn(2, 6, 4, generator=g), torch.randn(2, 3, 6, generator=g)]
    weights[0][1, :2] = 0.0
    families = ["saturating", "relu"]
    group = diagnostics(grads, _activations([units, channels], families,
                                            torch.tensor([True, False])), weights)
    for lane, family in enumerate(families):
        alone = diagnostics([[t[lane:lane + 1] for t in layer] for layer in grads],
                            _activations([units[lane:lane + 1], channels[lane:lane + 1]],
                                         [family], lane == 0),
                            [w[lane:lane + 1] for w in weights])
        for key, value in alone.items():
            assert torch.equal(group[key][lane], value[0]), (lane, key)
    # the numbers: lane 1's dead channel among 6 units + 3 channels; its zeroed weights
    assert float(group["dead_fraction"][1]) == pytest.approx(1 / 9)
    assert float(group["weight_sparsity"][1]) == pytest.approx(8 / (24 + 18))
    norm = torch.cat([grads[1][0][1].flatten(), grads[1][1][1].flatten()]).norm()
    torch.testing.assert_close(group["grad_norm.layer2"][1], norm)
    slope0 = units[0] * (1 - units[0]) / 0.25
    channel0 = channels[0] * (1 - channels[0]) / 0.25
    saturated = (int((slope0 < 0.05).sum()) + int((channel0 < 0.05).sum())) / (96 + 768)
    assert float(group["saturated_fraction"][0]) == pytest.approx(saturated)


def test_a_unit_is_dead_when_never_positive_and_a_nan_unit_is_not() -> None:
    activation = torch.tensor([[[0.0, -1.0, 2.0, math.nan], [-3.0, 0.0, -1.0, 0.0]]])
    diagnosed = diagnostics([], _activations([activation], ["relu"], False), [torch.ones(1, 4)])
    assert float(diagnosed["dead_fraction"][0]) == 0.5  # units 0 and 1 of the 4


def test_the_serial_probe_skips_a_frozen_layer_and_leaves_the_training_gradients() -> None:
    spec = _spec()
    with seeding.trial_rng(0, CPU):
        parts = build_parts(spec, CPU)
    first, last = (layer_weights(layer)[0] for layer in weight_layers(parts.model))
    first.requires_grad_(False)  # a plugin's frozen layer
    last.grad = torch.ones_like(last)  # the last training step's
    diagnosed = serial.probe(parts)
    assert float(diagnosed["grad_norm.layer1"][0]) == 0.0
    assert float(diagnosed["grad_norm.layer2"][0]) > 0.0
    assert torch.equal(last.grad, torch.ones_like(last))
    last.requires_grad_(False)  # every weight frozen (a plugin training biases only)
    diagnosed = serial.probe(parts)
    assert [float(diagnosed[f"grad_norm.layer{i}"][0]) for i in (1, 2)] == [0.0, 0.0]


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_the_serial_probe_in_passes_gives_the_diagnostics_of_one_pass(activation: str) -> None:
    # a large model on a CPU probes (and evaluates) in passes of Parts.eval_chunk examples
    spec = _spec(activation=activation)
    with seeding.trial_rng(0, CPU):
        parts = build_parts(spec, CPU)
    assert parts.eval_chunk == metrics.EVAL_CHUNK  # a small MLP: one pass
    whole = serial.probe(parts)
    parts.eval_chunk = 48  # the probe's 256 examples in 6 passes (the last of 16)
    passes = serial.probe(parts)
    assert whole.keys() == passes.keys() and "grad_norm.layer2" in whole
    assert {"dead_fraction", "saturated_fraction"} & whole.keys()
    for key, value in whole.items():
        torch.testing.assert_close(passes[key], value, rtol=1e-5, atol=0)
    for key in ("dead_fraction", "saturated_fraction", "weight_sparsity"):
        if key in whole:
            assert torch.equal(passes[key], whole[key])  # counts: exact
    loss, sums = serial.evaluate(parts.model, parts.objective, parts.data, parts.data.test,
                                 chunk_size=48)
    whole_loss, whole_sums = serial.evaluate(parts.model, parts.objective, parts.data,
                                             parts.data.test)
    assert torch.equal(sums, whole_sums)
    torch.testing.assert_close(loss, whole_loss, rtol=1e-6, atol=0)


def test_the_probe_sees_its_examples_normalized_as_training_does() -> None:
    """With `normalize`, training and evaluation normalize every batch; the probe fed the
    model raw inputs, so the diagnostics (dead units, gradient norms) described inputs the
    model never trains on."""
    spec = _spec(augmentation="[normalize]")
    with seeding.trial_rng(0, CPU):
        parts = build_parts(spec, CPU)
    seen: list[torch.Tensor] = []
    hook = parts.model.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        serial.probe(parts)
    finally:
        hook.remove()
    rows = parts.data.train[:256]
    expected = parts.data.inputs(rows)
    for step in build.always(parts.augment):
        expected = step.apply(expected, {})
    assert len(seen) == 1 and torch.equal(seen[0], expected)
    assert not torch.equal(expected, parts.data.inputs(rows))  # normalize changed them


@pytest.mark.parametrize("family", ["relu", "saturating"])
def test_a_probe_in_passes_sums_up_each_activation_and_refuses_a_forward_that_varies(
        family: str) -> None:
    g = torch.Generator().manual_seed(3)
    # two lanes (tanh: lane 0, sigmoid: lane 1), two activations, 5 examples in 2 passes
    whole = [torch.rand(2, 5, 3, generator=g) * 2 - 1, torch.rand(2, 5, 4, 2, 2, generator=g)]
    whole[0][0, :, 1] = -1.0  # lane 0's unit 1 never positive
    whole[1][1, 4, 0] = 0.5  # lane 1's channel 0 positive at the last example only
    whole[1][1, :4, 0] = -1.0
    sigmoid = torch.tensor([False, True])
    families = [family, family]
    passes = Activations(families, sigmoid)
    passes.add([a[:, :3] for a in whole])
    passes.add([a[:, 3:] for a in whole])
    one = _activations(whole, families, sigmoid)
    assert passes.fractions().keys() == one.fractions().keys() == {
        "relu": {"dead_fraction"}, "saturating": {"saturated_fraction"}}[family]
    for key, value in one.fractions().items():
        assert torch.equal(passes.fractions()[key], value), key
    if family == "relu":  # of 3 units and 4 channels: lane 0's unit 1; none of lane 1's
        assert passes.fractions()["dead_fraction"].tolist() == pytest.approx([1 / 7, 0.0])
    else:
        slopes = [1 - whole[0][0].square(), 4 * whole[0][1] * (1 - whole[0][1]),
                  1 - whole[1][0].square(), 4 * whole[1][1] * (1 - whole[1][1])]
        expected = [float(sum(int((s < 0.05).sum()) for s in slopes[lane::2])) / (15 + 80)
                    for lane in (0, 1)]
        assert min(expected) > 0  # lane 0's unit 1 and lane 1's channel 0, at least
        assert passes.fractions()["saturated_fraction"].tolist() == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"activations ran \[2, 2, 1\] times in the "
                                         r"probe's passes"):
        passes.add(whole[:1])
    with pytest.raises(ValueError, match=r"lanes first \(\[2, batch, \.\.\.\]\); given "
                                         r"\[\(1, 5, 3\)\]"):
        Activations(families, sigmoid).add([whole[0][:1]])
    if family == "relu":  # a pass whose activation has other units: refused, not broadcast
        varies = Activations(families, sigmoid)
        varies.add([whole[0][:, :, :1]])
        with pytest.raises(ValueError, match=r"activation 1 of the probe has 3 units in one "
                                             r"pass and 1 in another"):
            varies.add([whole[0]])


def test_evaluation_passes_are_sized_by_flops_on_a_cpu_only() -> None:
    spec = _spec()
    flops = build.example_flops(spec)
    assert flops == 2 * (64 * 8 + 8 * 10)  # the MLP 64-8-10 on digits
    assert build.eval_flops(spec, CPU) == flops
    assert build.eval_flops(spec, torch.device("cuda")) == 0.0  # a GPU: large passes
    # ... bounded by the bytes of the layers' outputs on any device: Flatten 64, Linear 8,
    # its activation 8, Linear 10, float32
    assert build.eval_bytes(spec) == 4 * (64 + 8 + 8 + 10)
    assert build.step_flops(spec) == 3 * flops * 32


def test_epoch_metrics_keep_only_each_lane_s_own_unit_diagnostic_and_add_gaps() -> None:
    losses = [torch.tensor([0.5, 0.25]), torch.tensor([0.75, 0.5])]
    scores = [torch.tensor([[0.75], [0.5]]), torch.tensor([[0.5], [0.5]])]
    diagnosed = {"grad_norm.layer1": torch.tensor([1.0, 2.0]),
                 "dead_fraction": torch.tensor([0.25, 0.5]),
                 "saturated_fraction": torch.tensor([0.125, 0.0])}
    rows = epoch_metrics(("accuracy",), losses, scores, diagnosed, ["relu", "saturating"])
    assert rows[0] == {"train_loss": 0.5, "val_loss": 0.75, "train_accuracy": 0.75,
                       "val_accuracy": 0.5, "grad_norm.layer1": 1.0, "dead_fraction": 0.25,
                       "gap_loss": 0.25, "gap_accuracy": 0.25}
    assert rows[1]["saturated_fraction"] == 0.0 and "dead_fraction" not in rows[1]
    assert rows[1]["gap_loss"] == 0.25 and rows[1]["gap_accuracy"] == 0.0


def test_the_dry_build_runs_the_engines_training_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, list[str]]] = []
    real = serial.train_step

    def spy(p: Step, xb: torch.Tensor, yb: torch.Tensor, watch: Any = None) -> Any:
        stages: list[str] = []

        def seen(stage: str, tensor: torch.Tensor) -> None:
            stages.append(stage)
            watch(stage, tensor)

        calls.append((len(xb), stages))
        return real(p, xb, yb, seen)

    spec = replace(_spec(), batch_size=33, l1=0.01)  # 1,294 training examples: 39 × 33 + 7
    batchnorm = replace(spec, batch_size=431,  # 3 × 431 + 1: a last batch of one example
                        norm=registry.resolve("norm", "batchnorm"))
    monkeypatch.setattr(serial, "train_step", spy)
    report = dry.dry_build([dry.Config(spec, dict.fromkeys(AXES, "fixed"), "t")])
    assert not report.problems
    assert calls == [(2, ["augmented", "outputs", "backward"])]
    # that last batch is stepped too; it fails in the model, named as the batch size's
    calls.clear()
    report = dry.dry_build([dry.Config(batchnorm, dict.fromkeys(AXES, "fixed"), "t")])
    assert calls == [(1, ["augmented"])]
    assert [(key, msg.split(";")[0]) for key, msg, _ in report.problems] == [
        ("fixed", "with batch_size 431 the last batch of every epoch holds 1 example, and "
                  "BatchNorm (fixed) cannot compute batch statistics from one example")]


FIRST_DRAW = float(torch.rand(1, generator=torch.Generator().manual_seed(1))[0])


class _Unlucky(Augmentation):
    """Fails on a batch of two whose draw is not the first of a fresh stream: a plugin's
    bug that shows on some draws only."""

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"u": torch.rand(len(x), generator=generator)}

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        if len(x) == 2 and float(params["u"][0]) != FIRST_DRAW:
            raise RuntimeError("unlucky draw")
        return x


@pytest.fixture
def unlucky() -> Any:
    register(ComponentInfo(kind="augmentation", name="unlucky", build=lambda p: _Unlucky(),
                           params=NoParams, doc="fails on some draws", attrs={"input": "any"}))
    yield
    unregister("augmentation", "unlucky")


@pytest.mark.usefixtures("unlucky")
def test_a_step_failing_in_an_augmentation_names_it_with_the_draws_it_failed_on() -> None:
    # the batch of one example is stepped first and draws from the dry build's generator
    # (seeded 1); the failing step of two is replayed from its own draws, not a fresh
    # stream (on which this augmentation passes, and the last one would be blamed)
    spec = replace(_spec(), batch_size=431,  # 1,294 = 3 × 431 + 1
                   augmentation=(registry.resolve("augmentation", "unlucky"),
                                 registry.resolve("augmentation", "gaussian_noise")))
    report = dry.dry_build([dry.Config(spec, {**dict.fromkeys(AXES, "fixed"),
                                              "augmentation": "fixed.augmentation"}, "t")])
    assert [(key, msg) for key, msg, _ in report.problems] == [
        ("fixed.augmentation[0]", "fails on a training batch of shape (2, 1, 8, 8): unlucky draw")]


def test_an_interrupted_lane_says_the_epoch_it_was_in_or_that_it_had_trained_them_all(
        ) -> None:
    """A lane interrupted after its last epoch said 'interrupted during epoch 6' of a
    5-epoch trial."""
    lane = _lane()
    assert lane.interruption() == "interrupted during epoch 1"
    for _ in range(lane.spec.epochs - 1):
        lane.epoch_ended(_epoch(0.5))
    assert lane.interruption() == f"interrupted during epoch {lane.spec.epochs}"
    lane.epoch_ended(_epoch(0.5))
    assert lane.interruption() == (f"interrupted after its last epoch ({lane.spec.epochs}), "
                                   f"before its end was recorded")
