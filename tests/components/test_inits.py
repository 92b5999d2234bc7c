"""Inits draw from the laws PyTorch's `nn.init` functions (and the notes, which call them
with their defaults) use: xavier with gain 1, kaiming with ReLU's gain √2, uniform U(0, 1),
normal N(0, 1); the activation's gain only when asked for; the output layer with gain 1.
The numbers come from nnbench's own per-trial stream (`seeding.lane_uniform`), so that many
trials' weights are one draw."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from nnbench import registry, seeding
from nnbench.components import inits
from nnbench.components.inits import OUTPUT, Gain, Law, draw

TANH: Gain = ("tanh", None)
RELU: Gain = ("relu", None)


def _init(value: Any, gain: Gain, shape: tuple[int, int] = (64, 32), seed: int = 7
          ) -> torch.Tensor:
    layer = nn.Linear(shape[1], shape[0])
    registry.build("init", registry.resolve("init", value))(
        layer, gain, torch.Generator().manual_seed(seed))
    return layer.weight.detach()


def _law(value: Any, gain: Gain, shape: tuple[int, int] = (64, 32)) -> Law:
    """The law the init draws a Linear(in, out) layer's weight from."""
    laws = registry.build("init", registry.resolve("init", value)).laws(
        nn.Linear(shape[1], shape[0]), gain)
    assert laws is not None
    return laws[0][1]


def _uniform(bound: float) -> Law:
    return Law("uniform", 2 * bound, -bound)


def _xavier(kind: str, gain: float = 1.0, fan_in: int = 32, fan_out: int = 64) -> Law:
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))  # torch.nn.init.xavier_*_
    return _uniform(math.sqrt(3.0) * std) if kind == "uniform" else Law("normal", std)


def _kaiming(kind: str, gain: float = math.sqrt(2.0), fan: int = 32) -> Law:
    std = gain / math.sqrt(fan)  # torch.nn.init.kaiming_*_
    return _uniform(math.sqrt(3.0) * std) if kind == "uniform" else Law("normal", std)


@pytest.mark.parametrize("name", ["xavier_normal", "xavier_uniform"])
@pytest.mark.parametrize("gain", [RELU, TANH, ("sigmoid", None)])
def test_xavier_is_gain_one_whatever_the_activation(name: str, gain: Gain) -> None:
    assert _law(name, gain) == _xavier(name.removeprefix("xavier_"))  # = nn.init.xavier_*_(w)


def test_xavier_takes_the_activation_gain_only_when_asked() -> None:
    asked = _law({"name": "xavier_normal", "gain": "activation"}, RELU)
    assert asked == _xavier("normal", nn.init.calculate_gain("relu"))
    assert _law({"name": "xavier_normal", "gain": 2.0}, TANH) == _xavier("normal", 2.0)


@pytest.mark.parametrize("name", ["kaiming_normal", "kaiming_uniform"])
@pytest.mark.parametrize("gain", [RELU, TANH, ("linear", None)])
def test_kaiming_is_pytorchs_default_call_whatever_the_activation(name: str,
                                                                  gain: Gain) -> None:
    # = nn.init.kaiming_*_(w): fan_in, leaky_relu with a=0, i.e. gain √2
    assert _law(name, gain) == _kaiming(name.removeprefix("kaiming_"))


def test_kaiming_takes_the_activation_gain_only_when_asked() -> None:
    asked = _law({"name": "kaiming_normal", "nonlinearity": "activation"}, TANH)
    assert asked == _kaiming("normal", nn.init.calculate_gain("tanh"))
    leaky = _law({"name": "kaiming_normal", "a": 0.2}, TANH)
    assert leaky == _kaiming("normal", nn.init.calculate_gain("leaky_relu", 0.2))
    fan_out = _law({"name": "kaiming_uniform", "mode": "fan_out"}, RELU)
    assert fan_out == _kaiming("uniform", fan=64)


def test_uniform_normal_and_constants_are_pytorchs_defaults() -> None:
    assert _law("uniform", RELU) == Law("uniform", 1.0, 0.0)  # U(0, 1)
    assert _law("normal", RELU) == Law("normal", 1.0, 0.0)  # N(0, 1)
    assert _law({"name": "constant", "value": 5}, RELU) == Law("constant", 0.0, 5.0)
    assert torch.equal(_init({"name": "constant", "value": 5}, RELU), torch.full((64, 32), 5.0))
    assert not _init("zeros", RELU).any() and bool((_init("ones", RELU) == 1).all())


def test_default_is_pytorchs_own_reset() -> None:
    """kaiming_uniform(a=√5) weights and U(±1/√fan_in) biases (Linear, Conv), U(±1/√hidden)
    for every tensor of a recurrent layer."""
    init = registry.build("init", registry.resolve("init", "default"))
    laws = init.laws(nn.Linear(32, 64), RELU)
    assert laws is not None
    assert [law for _, law in laws] == [_kaiming("uniform", nn.init.calculate_gain(
        "leaky_relu", math.sqrt(5))), _uniform(1 / math.sqrt(32))]
    gru = init.laws(nn.GRU(5, 6), TANH)
    assert gru is not None and {law for _, law in gru} == {_uniform(1 / math.sqrt(6))}
    assert init.laws(nn.LayerNorm(4), TANH) is None  # no law: the layer's own reset


@pytest.mark.parametrize(("value", "bounded"), [
    ("kaiming_normal", False), ("xavier_uniform", True), ("default", True),
    ({"name": "normal", "mean": 1.0, "std": 0.5}, False)])
def test_the_drawn_weights_follow_their_law(value: Any, bounded: bool) -> None:
    weight = _init(value, RELU, shape=(400, 500))
    law = _law(value, RELU, shape=(400, 500))
    if law.base == "uniform":
        low, high = law.loc, law.loc + law.scale
        assert low <= float(weight.min()) < low + 0.001 * law.scale
        assert high - 0.001 * law.scale < float(weight.max()) <= high
        assert float(weight.std()) == pytest.approx(law.scale / math.sqrt(12), rel=0.01)
    else:
        assert float(weight.mean()) == pytest.approx(law.loc, abs=0.01 * law.scale)
        assert float(weight.std()) == pytest.approx(law.scale, rel=0.01)
        # a normal's tails: about 0.27% of draws beyond 3σ
        beyond = float(((weight - law.loc).abs() > 3 * law.scale).float().mean())
        assert beyond == pytest.approx(0.0027, rel=0.15)
    assert bounded == (law.base == "uniform")


def test_a_seed_draws_the_same_weights_and_each_layer_its_own() -> None:
    init = registry.build("init", registry.resolve("init", "kaiming_normal"))
    a, b = nn.Linear(8, 8), nn.Linear(8, 8)
    generator = torch.Generator().manual_seed(3)
    init(a, RELU, generator)
    init(b, RELU, generator)  # the next layer of the same model: its own stream
    assert not torch.equal(a.weight, b.weight)
    again = nn.Linear(8, 8)
    init(again, RELU, torch.Generator().manual_seed(3))  # a new model of the same seed
    assert torch.equal(a.weight, again.weight)
    other = nn.Linear(8, 8)
    init(other, RELU, torch.Generator().manual_seed(4))
    assert not torch.equal(a.weight, other.weight)


def test_many_streams_drawn_together_are_each_drawn_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What lets the stacked engine draw a layer for all lanes at once: row i of a joint
    draw is bitwise stream i's own draw, whatever the other rows' laws and seeds; and
    what lets it draw a wide layer's lanes in chunks (`DRAW_CHUNK`) to bound the memory
    the draw takes."""
    laws = [Law("normal", 0.1), Law("uniform", 2.0, -1.0), Law("constant", 0.0, 3.0),
            Law("normal", 2.0, 1.0)]
    seeds = [seeding.stream_seed(s, 0, 1) for s in (11, 12, 13, 14)]
    together = draw(laws, seeds, (7, 9), torch.device("cpu"))
    for i, (law, seed) in enumerate(zip(laws, seeds, strict=True)):
        alone = draw([law], [seed], (7, 9), torch.device("cpu"))[0]
        assert torch.equal(together[i], alone), law
    monkeypatch.setattr(inits, "DRAW_CHUNK", 2 * 7 * 9)  # two rows at a time
    rows: list[int] = []
    uniform = seeding.lane_uniform

    def counted(seeds: list[int], *args: Any) -> torch.Tensor:
        rows.append(len(seeds))
        return uniform(seeds, *args)

    monkeypatch.setattr(seeding, "lane_uniform", counted)
    assert torch.equal(draw(laws + laws[:1], seeds + seeds[:1], (7, 9), torch.device("cpu")),
                       torch.cat([together, together[:1]]))
    assert rows == [2, 2, 1]
    u = seeding.lane_uniform([1, 2], (200_000,))
    assert float(u.min()) > 0 and float(u.max()) < 1
    assert float(u.mean()) == pytest.approx(0.5, abs=0.002)
    assert float(torch.corrcoef(u)[0, 1]) == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize(("value", "gain"), [
    ("xavier_normal", 1.0), ({"name": "xavier_normal", "gain": "activation"}, 1.0),
    ("kaiming_normal", 1.0), ({"name": "kaiming_normal", "nonlinearity": "activation"}, 1.0),
])
def test_the_output_layer_gets_gain_one(value: Any, gain: float) -> None:
    weight = _init(value, OUTPUT, shape=(10, 4000))
    fan_in, fan_out = 4000, 10
    expected = gain * ((2 / (fan_in + fan_out)) ** 0.5 if "xavier" in str(value)
                       else (1 / fan_in) ** 0.5)
    assert float(weight.std()) == pytest.approx(expected, rel=0.05)


def test_xavier_and_kaiming_differ_under_relu_as_the_papers_say() -> None:
    """Glorot & Bengio: Var = 2/(fan_in+fan_out); He et al.: Var = 2/fan_in. With ReLU the
    old default (xavier scaled by ReLU's gain) made the two nearly the same."""
    fan_in, fan_out = 512, 512
    xavier = float(_init("xavier_normal", RELU, (fan_out, fan_in)).std())
    kaiming = float(_init("kaiming_normal", RELU, (fan_out, fan_in)).std())
    assert xavier == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.02)
    assert kaiming == pytest.approx((2 / fan_in) ** 0.5, rel=0.02)
    assert kaiming / xavier == pytest.approx(2 ** 0.5, rel=0.03)


def test_a_slope_without_leaky_relu_is_rejected() -> None:
    with pytest.raises(registry.ComponentError, match="only used with nonlinearity leaky_relu"):
        registry.resolve("init", {"name": "kaiming_normal", "nonlinearity": "relu", "a": 0.1})


def test_no_drawn_uniform_is_0_or_1_so_no_normal_is_infinite() -> None:
    """The extreme hashes: k + ½ rounds to an even float32 from 2²³ up, so the largest k
    would give exactly 1 and erfinv(1) = inf."""
    top = torch.tensor([0, 1, 2**23 - 1, 2**23, 2**24 - 2, 2**24 - 1], dtype=torch.int64)
    u = seeding.unit(top)
    assert float(u.min()) > 0 and float(u.max()) < 1
    assert bool(torch.erfinv(u * 2 - 1).isfinite().all())


class _UnreferenceableGenerator:
    """A generator as torch before 2.12 has it (the GPU machines' torch 2.11): no weak
    reference can be made to it. Only its seed is read by an init."""

    __slots__ = ("seed",)

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def initial_seed(self) -> int:
        return self.seed


def test_an_init_counts_its_calls_on_a_generator_no_weak_reference_can_be_made_to() -> None:
    init = registry.build("init", registry.resolve("init", "kaiming_normal"))
    layers = [nn.Linear(8, 8) for _ in range(4)]
    for generator, (first, second) in ((_UnreferenceableGenerator(3), layers[:2]),
                                       (torch.Generator().manual_seed(3), layers[2:])):
        init(first, RELU, generator)
        init(second, RELU, generator)
    assert torch.equal(layers[0].weight, layers[2].weight)
    assert torch.equal(layers[1].weight, layers[3].weight)
    assert not torch.equal(layers[0].weight, layers[1].weight)
