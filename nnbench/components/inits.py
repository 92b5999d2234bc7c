"""Weight initialisations (registry kind "init").

build(params) -> `InitFn`, called once per Linear/Conv/GRU layer with the layer, the
gain of the activation that follows it (`(nonlinearity, param)` as
`torch.nn.init.calculate_gain` takes them; `OUTPUT` for the output layer, which no
activation follows) and the trial's init generator. Every init except `default` takes
`bias: zeros | default` (default: PyTorch's uniform(±1/√fan_in) bias).

Each init is a law per tensor (`Law`: uniform, normal or constant, with the bounds,
standard deviations, fans and gains `torch.nn.init` computes) drawn from the trial's own
counter-based stream (`seeding.lane_uniform`, seeded by the init generator's seed), not
from the `torch.Generator`: the distributions are nn.init's, the numbers are not the
ones nn.init would draw for the same seed. That is what lets the stacked engine draw a
layer for all of its lanes at once and start each lane exactly where the serial engine
starts the trial.

Defaults are PyTorch's (and the notes', which call `nn.init.*_` with defaults):

- `xavier_*`: gain 1 (Glorot & Bengio 2010; `xavier_normal_(w)`); `gain: activation`
  scales by the following activation's `calculate_gain` instead (with ReLU that is √2,
  which makes "xavier" nearly He's init: ask for it explicitly);
- `kaiming_*`: `nonlinearity: leaky_relu, a: 0`, i.e. He et al.'s ReLU gain √2
  (`kaiming_normal_(w)`); `nonlinearity: activation` takes the following activation's
  gain (tanh 5/3, selu 3/4, leaky_relu's slope; 1 where PyTorch defines none);
- `uniform`: U(0, 1); `normal`: N(0, 1) (`uniform_(w)`, `normal_(w)`).

The output layer always gets gain 1 (`calculate_gain("linear")`): no activation follows it.

Recurrent layers (nn.GRU, nn.LSTM, nn.RNN) stack one matrix per gate in each
`weight_ih_l*` / `weight_hh_l*`: every init fills them gate by gate, so fan-in and
fan-out are those of one gate (input or hidden size -> hidden size); `default` is
the layer's own reset (uniform ±1/√hidden).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import torch
from pydantic import Field, model_validator
from torch import nn

from nnbench import seeding
from nnbench.registry import ComponentInfo, Params, register

KIND = "init"
Gain = tuple[str, float | None]
OUTPUT: Gain = ("output", None)  # the layer no activation follows: gain 1
NONLINEARITIES = ("leaky_relu", "relu", "linear", "sigmoid", "tanh", "selu", "activation")


class InitFn(Protocol):
    def __call__(self, layer: nn.Module, gain: Gain, generator: torch.Generator) -> None: ...


class BiasParams(Params):
    bias: Literal["zeros", "default"] = Field(
        "zeros", description="zeros, or PyTorch's default uniform(±1/√fan_in)")


class UniformParams(BiasParams):
    a: float = Field(0.0, description="lower bound (torch.nn.init.uniform_'s default)")
    b: float = Field(1.0, description="upper bound (torch.nn.init.uniform_'s default)")

    @model_validator(mode="after")
    def _ordered(self) -> UniformParams:
        if not self.a < self.b:
            raise ValueError(f"needs a < b, got a={self.a}, b={self.b}")
        return self


class NormalParams(BiasParams):
    mean: float = Field(0.0, description="mean of the weights")
    std: float = Field(1.0, gt=0, description="standard deviation of the weights "
                                              "(torch.nn.init.normal_'s default)")


class ConstantParams(BiasParams):
    value: float = Field(..., description="every weight gets this value")


class XavierParams(BiasParams):
    gain: Annotated[float, Field(gt=0)] | Literal["activation"] = Field(
        1.0, description="scale factor of hidden layers: 1 as Glorot & Bengio and PyTorch; "
                         "'activation': calculate_gain of the activation that follows")


class KaimingParams(BiasParams):
    mode: Literal["fan_in", "fan_out"] = Field(
        "fan_in", description="preserve variance forward (fan_in) or backward (fan_out)")
    nonlinearity: Literal["leaky_relu", "relu", "linear", "sigmoid", "tanh", "selu",
                          "activation"] = Field(
        "leaky_relu", description="gain of hidden layers as calculate_gain(nonlinearity, a); "
                                  "PyTorch's default leaky_relu with a=0 is ReLU's √2; "
                                  "'activation': the gain of the activation that follows")
    a: float = Field(0.0, ge=0, description="negative slope, for nonlinearity leaky_relu only")

    @model_validator(mode="after")
    def _slope_needs_leaky_relu(self) -> KaimingParams:
        if self.a and self.nonlinearity != "leaky_relu":
            raise ValueError(f"a={self.a} is only used with nonlinearity leaky_relu, not "
                             f"{self.nonlinearity!r}: it would have no effect")
        return self


def _calculate_gain(gain: Gain) -> float:
    if gain == OUTPUT:
        return 1.0
    nonlinearity: Any = gain[0]  # torch types it as a Literal of the names it knows
    return nn.init.calculate_gain(nonlinearity, gain[1])


def weights_and_biases(layer: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The weight matrices an init fills (one per gate for recurrent layers) and the biases."""
    if isinstance(layer, nn.RNNBase):
        gates = {"GRU": 3, "LSTM": 4}.get(type(layer).__name__, 1)
        weights: list[torch.Tensor] = []
        biases: list[torch.Tensor] = []
        for name, param in layer.named_parameters():
            if name.startswith("weight_"):
                weights += list(param.chunk(gates, dim=0))  # views: filled in place
            elif name.startswith("bias_"):
                biases.append(param)
        return weights, biases
    weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"cannot initialise {type(layer).__name__}: no weight tensor")
    return [weight], [bias] if isinstance(bias, torch.Tensor) else []


@dataclass(frozen=True)
class Law:
    """How one tensor's values are drawn: base · scale + loc, with base U(0, 1) (uniform),
    N(0, 1) (normal) or 0 (constant: every value is loc)."""

    base: Literal["uniform", "normal", "constant"]
    scale: float = 0.0
    loc: float = 0.0


ZERO = Law("constant")


# numbers drawn at once: `seeding.lane_uniform` holds about three int64 temporaries of this
# size (a 784x256 layer for 512 lanes drawn whole: 2.5 GB, as much again as the group's
# training state; 3072x1024 for 512 lanes, 38 GB)
DRAW_CHUNK = 1 << 24


def draw(laws: Sequence[Law], seeds: Sequence[int], shape: tuple[int, ...],
         device: torch.device) -> torch.Tensor:
    """`[len(laws), *shape]`: row i drawn by `laws[i]` from stream `seeds[i]`
    (`seeding.lane_uniform`; normals by the inverse CDF, √2·erfinv(2u − 1)). A row is
    bitwise the same whatever the other rows are: every op is elementwise, the same ops
    for every law, on the same device; so rows are drawn in chunks of about `DRAW_CHUNK`
    numbers."""
    rows = max(1, DRAW_CHUNK // max(1, math.prod(shape)))
    if len(laws) <= rows:
        return _draw(laws, seeds, shape, device)
    out = torch.empty((len(laws), *shape), dtype=torch.float32, device=device)
    for start in range(0, len(laws), rows):
        out[start:start + rows] = _draw(laws[start:start + rows], seeds[start:start + rows],
                                        shape, device)
    return out


def _draw(laws: Sequence[Law], seeds: Sequence[int], shape: tuple[int, ...],
          device: torch.device) -> torch.Tensor:
    u = seeding.lane_uniform(seeds, shape, device)
    normal = [law.base == "normal" for law in laws]
    if any(normal):
        z = torch.erfinv(u * 2 - 1) * math.sqrt(2)
        u = z if all(normal) else torch.where(
            torch.tensor(normal, device=device).view(-1, *([1] * len(shape))), z, u)
    column = (-1, *([1] * len(shape)))
    scale = torch.tensor([law.scale for law in laws], dtype=torch.float32,
                         device=device).view(column)
    loc = torch.tensor([law.loc for law in laws], dtype=torch.float32, device=device).view(column)
    return u * scale + loc


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape, device="meta"))
    return fan_in, fan_out


def _uniform_bound(bound: float) -> Law:
    return Law("uniform", 2 * bound, -bound)


def _default_bias(layer: nn.Module, shape: tuple[int, ...]) -> Law:
    """PyTorch's own bias reset: U(±1/√fan_in) (recurrent layers: U(±1/√hidden))."""
    if isinstance(layer, nn.RNNBase):
        return _uniform_bound(1 / math.sqrt(layer.hidden_size))
    fan_in, _ = _fans(shape)
    return _uniform_bound(1 / math.sqrt(fan_in)) if fan_in > 0 else ZERO


def _default_weight(layer: nn.Module, shape: tuple[int, ...]) -> Law | None:
    """PyTorch's own weight reset as a law: Linear/Conv kaiming_uniform(a=√5), recurrent
    layers U(±1/√hidden); None for a layer whose reset nnbench does not know."""
    if isinstance(layer, nn.RNNBase):
        return _uniform_bound(1 / math.sqrt(layer.hidden_size))
    if isinstance(layer, nn.Linear | nn.modules.conv._ConvNd):
        fan_in, _ = _fans(shape)
        std = nn.init.calculate_gain("leaky_relu", math.sqrt(5)) / math.sqrt(fan_in)
        return _uniform_bound(math.sqrt(3.0) * std)
    return None


WeightLaw = Callable[[tuple[int, ...], Any, Gain], Law]


class LawInit:
    """A built-in init: the law of every tensor it fills, drawn from the trial's own stream.

    Called once per layer, in order (`InitFn`): call k with a generator (counted per
    generator: a fresh generator of the same seed draws the same weights again) fills its
    tensor j from `seeding.stream_seed(seed, k, j)`, the seed being the generator's. `laws`
    says the same without drawing, so that the stacked engine draws a layer's tensor for
    all of its lanes at once, each from its own stream. `default` (PyTorch's own reset)
    has no law for a layer type it does not know: that layer is reset from the seeded
    global RNG instead (and the stacked engine builds such trials lane by lane)."""

    def __init__(self, weight: WeightLaw | None, params: Any) -> None:
        self.weight, self.params = weight, params
        # calls so far by generator, keyed by id with the generator held (so that its id
        # is not reused): torch before 2.12 cannot make a weak reference to a Generator
        self.calls: dict[int, tuple[torch.Generator, int]] = {}
        self.record: list[tuple[nn.Module, Gain]] | None = None  # calls, when recording

    def laws(self, layer: nn.Module, gain: Gain) -> list[tuple[torch.Tensor, Law]] | None:
        """(tensor, law) for each tensor of `layer` this init fills, in draw order."""
        tensors: list[tuple[torch.Tensor, bool, tuple[int, ...]]]
        if isinstance(layer, nn.RNNBase):
            gates = {"GRU": 3, "LSTM": 4}.get(type(layer).__name__, 1)
            tensors = [(p, name.startswith("weight_"), (p.shape[0] // gates, *p.shape[1:]))
                       for name, p in layer.named_parameters()]
        else:
            weights, biases = weights_and_biases(layer)
            tensors = [(w, True, tuple(w.shape)) for w in weights] + \
                [(b, False, tuple(b.shape)) for b in biases]
        out: list[tuple[torch.Tensor, Law]] = []
        for tensor, is_weight, shape in tensors:
            if self.weight is None:  # default: PyTorch's reset
                law = _default_weight(layer, shape) if is_weight else _default_bias(
                    layer, tuple(_weight_shape(layer)))
                if law is None:
                    return None
            elif is_weight:
                law = self.weight(shape, self.params, gain)
            else:
                law = ZERO if self.params.bias == "zeros" else _default_bias(
                    layer, tuple(_weight_shape(layer)))
            out.append((tensor, law))
        return out

    def __call__(self, layer: nn.Module, gain: Gain, generator: torch.Generator) -> None:
        call = self.calls.get(id(generator), (generator, 0))[1]
        self.calls[id(generator)] = (generator, call + 1)
        if self.record is not None:
            self.record.append((layer, gain))
        laws = self.laws(layer, gain)
        if laws is None:
            reset = getattr(layer, "reset_parameters", None)
            if reset is None:
                raise TypeError(f"{type(layer).__name__} has no reset_parameters()")
            reset()  # draws from the trial's seeded global RNG
            return
        seed = generator.initial_seed()
        with torch.no_grad():
            for j, (tensor, law) in enumerate(laws):
                if tensor.is_meta:  # shapes only (validate's size check): nothing to fill
                    continue
                values = draw([law], [seeding.stream_seed(seed, call, j)], tuple(tensor.shape),
                              seeding.draw_device(tensor.device))
                tensor.copy_(values[0])


def _weight_shape(layer: nn.Module) -> torch.Size:
    weight = getattr(layer, "weight", None)
    return weight.shape if isinstance(weight, torch.Tensor) else torch.Size([0])


def _kaiming(kind: Literal["uniform", "normal"]) -> WeightLaw:
    def law(shape: tuple[int, ...], p: KaimingParams, gain: Gain) -> Law:
        if gain == OUTPUT:
            nonlinearity, a = "linear", 0.0
        elif p.nonlinearity == "activation":
            nonlinearity, a = gain[0], gain[1] or 0.0
        else:
            nonlinearity, a = p.nonlinearity, p.a
        fan_in, fan_out = _fans(shape)
        fan = fan_in if p.mode == "fan_in" else fan_out
        std = _calculate_gain((nonlinearity, a)) / math.sqrt(fan)  # as torch.nn.init
        return _uniform_bound(math.sqrt(3.0) * std) if kind == "uniform" else Law("normal", std)
    return law


def _xavier(kind: Literal["uniform", "normal"]) -> WeightLaw:
    def law(shape: tuple[int, ...], p: XavierParams, gain: Gain) -> Law:
        if gain == OUTPUT:
            scale = 1.0
        elif p.gain == "activation":
            scale = _calculate_gain(gain)
        else:
            scale = p.gain
        fan_in, fan_out = _fans(shape)
        std = scale * math.sqrt(2.0 / float(fan_in + fan_out))  # as torch.nn.init
        return _uniform_bound(math.sqrt(3.0) * std) if kind == "uniform" else Law("normal", std)
    return law


def _add(name: str, doc: str, params: type[Params], law: WeightLaw, defaults: str) -> None:
    register(ComponentInfo(kind=KIND, name=name, build=lambda p: LawInit(law, p), doc=doc,
                           params=params, example={"value": 0.1} if name == "constant" else {},
                           defaults=f"{defaults}; bias 0 as in Glorot & Bengio and He et al. "
                                    f"(the notes keep PyTorch's uniform bias: bias: default)"))


register(ComponentInfo(kind=KIND, name="default", build=lambda p: LawInit(None, p),
                       doc="PyTorch's own layer reset (kaiming_uniform a=√5, uniform bias)",
                       defaults="PyTorch's reset_parameters() laws"))
_add("uniform", "U(a, b)", UniformParams,
     lambda shape, p, gain: Law("uniform", p.b - p.a, p.a),
     "torch.nn.init.uniform_ and the notes: U(0, 1)")
_add("normal", "N(mean, std²)", NormalParams,
     lambda shape, p, gain: Law("normal", p.std, p.mean),
     "torch.nn.init.normal_ and the notes: N(0, 1)")
_add("zeros", "all weights 0 (symmetric: hidden units stay identical)", BiasParams,
     lambda shape, p, gain: ZERO, "torch.nn.init.zeros_")
_add("ones", "all weights 1 (symmetric: hidden units stay identical)", BiasParams,
     lambda shape, p, gain: Law("constant", 0.0, 1.0), "torch.nn.init.ones_")
_add("constant", "all weights = value", ConstantParams,
     lambda shape, p, gain: Law("constant", 0.0, p.value),
     "torch.nn.init.constant_ (value required; the notes use 5)")
_add("xavier_uniform", "Glorot & Bengio 2010: U(±gain·√(6/(fan_in+fan_out)))", XavierParams,
     _xavier("uniform"),
     "torch.nn.init.xavier_uniform_ and the notes: gain 1 (gain: activation to scale)")
_add("xavier_normal", "Glorot & Bengio 2010: N(0, gain²·2/(fan_in+fan_out))", XavierParams,
     _xavier("normal"),
     "torch.nn.init.xavier_normal_ and the notes: gain 1 (gain: activation to scale)")
_add("kaiming_uniform", "He et al. 2015: U(±gain·√(3/fan)), gain √2 (ReLU) unless told",
     KaimingParams, _kaiming("uniform"),
     "torch.nn.init.kaiming_uniform_ and the notes: fan_in, leaky_relu with a=0 (gain √2)")
_add("kaiming_normal", "He et al. 2015: N(0, gain²/fan), gain √2 (ReLU) unless told",
     KaimingParams, _kaiming("normal"),
     "torch.nn.init.kaiming_normal_ and the notes: fan_in, leaky_relu with a=0 (gain √2)")
