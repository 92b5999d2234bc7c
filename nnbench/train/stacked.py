"""The stacked engine: same-shaped trials train as lanes of one batched model.

Trials that share every shape- and op-affecting setting (`stack_key`: data, model,
loss, norm, whether there is dropout, optimizer type and its flags, clipping type,
augmentation pipeline, epochs, batch size) form a group; the group trains as one
`StackedModel` with one lane per trial. Per lane: seed (split, init, shuffling,
dropout masks, augmentation draws: each from the lane's own streams, seeded per
source of randomness, the same streams the serial engine uses), init (every lane's
layer drawn at once on the device, each lane from its own stream: `_draw`), optimizer
hyperparameters, schedule (per-lane tables from PyTorch's own schedulers), L1/L2,
weight decay, dropout p, clipping threshold (norm per lane), early stopping,
pruning, divergence, BatchNorm statistics, diagnostics and activation (elementwise,
applied to its own lanes' slices). Lanes that stop in the same epoch (early stopping,
pruning, divergence, the last epoch) are finalised together: one test evaluation of the
group, one read of every lane's weights to the host (fingerprints, checkpoints); then
they become padding: zero weights, lr 0.

Lane count: every group of a suite (`population`) trains with one lane count,
`lane_count` of the population's group sizes (each capped at max_lanes), padded with
empty lanes when fewer remain (a re-run after a crash keeps the lane count of the
first run). No operation mixes lanes, so a trial's result is bitwise identical
whatever else shares its group, for the same lane count, device and library
versions; the lane count is part of its numerics, and one lane count per suite keeps
a suite's results of one numerics (shapes of 8 and 4 trials: groups of 4 lanes).

Fallback: a trial the engine cannot stack (a model layer without a stacked form, an
optimizer without a per-lane rule) trains on the serial engine; `plan()` says why.
"""

from __future__ import annotations

import gc
import json
import math
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import torch
from torch.func import vmap

from nnbench import registry, seeding
from nnbench.components.augmentations import (
    Augmentation,
    LaneGenerators,
    LaneSampled,
    Normalize,
)
from nnbench.components.inits import ZERO, LawInit, draw
from nnbench.components.losses import Objective
from nnbench.config import TrialSpec
from nnbench.config.sources import SOURCES
from nnbench.data import TensorData, join
from nnbench.train.build import (
    batch_size_of,
    build_model,
    dataset_shape,
    eval_bytes,
    eval_flops,
    metric_names,
    prepare_data,
    shaped_model,
)
from nnbench.train.engine import Listener, shared_cores, torch_threads
from nnbench.train.lane_optim import LaneOptimizer, flags_of
from nnbench.train.lifecycle import (
    Activations,
    Ending,
    Lane,
    diagnostics,
    epoch_metrics,
    penalty,
)
from nnbench.train.metrics import PROBE_SIZE, eval_chunk, fingerprint, host_fingerprint
from nnbench.train.results import Numerics, Status, TrialResult
from nnbench.train.serial import SerialEngine, checkpoint_bytes
from nnbench.train.stacked_model import Layout, StackedModel, Unstackable, lane_index

__all__ = ["DEFAULT_MAX_LANES", "GROUP_COST", "AutoEngine", "Plan", "StackedEngine",
           "lane_count", "stack_key"]

# Lanes per group at most: on a CPU the gain levels off in the tens of lanes; a GPU
# needs hundreds of small models to fill it.
DEFAULT_MAX_LANES = {"cpu": 64, "cuda": 512}
# A group's fixed cost (building, evaluation, per-step dispatch) in lanes' worth of
# training, weighed against padding: a lane costs nearly nothing more on a GPU.
GROUP_COST = {"cpu": 4, "cuda": 64}


def lane_count(sizes: Sequence[int], max_lanes: int, group_cost: int) -> int:
    """The one lane count of every group of a population whose shapes have `sizes` trials:
    of the sizes (capped at max_lanes), the one that trains the fewest lanes, padding
    and each group's fixed cost included; the larger on a tie."""
    candidates = sorted({max(1, min(n, max_lanes)) for n in sizes}, reverse=True)
    return min(candidates or [1], key=lambda lanes: sum(
        math.ceil(n / lanes) * (lanes + group_cost) for n in sizes))


def stack_key(spec: TrialSpec) -> str:
    """What must be equal for two trials to train as lanes of one group.

    Activations may differ: each is elementwise and applies to its own lanes' slices."""
    optimizer = spec.optimizer
    flags = flags_of(spec) or {}
    clip = spec.grad_clip
    key = {
        "dataset": spec.dataset.to_dict(), "model": spec.model.to_dict(),
        "loss": spec.loss.to_dict(), "norm": spec.norm.to_dict(), "dropout": spec.dropout > 0,
        "optimizer": [optimizer.name, flags],
        "grad_clip": [clip.name, clip.kwargs.get("norm_type")],
        "augmentation": [a.to_dict() for a in spec.augmentation],
        "epochs": spec.epochs, "batch_size": spec.batch_size,
    }
    return json.dumps(key, sort_keys=True)


@dataclass
class Group:
    key: str
    specs: list[TrialSpec]
    lanes: int


@dataclass
class Plan:
    """How the engine will train a list of trials."""

    groups: list[Group] = field(default_factory=list)
    serial: list[tuple[TrialSpec, str]] = field(default_factory=list)  # (trial, why)

    def describe(self) -> list[str]:
        lines = []
        if self.groups:
            sizes = Counter(g.lanes for g in self.groups)
            trials = sum(len(g.specs) for g in self.groups)
            shapes = ", ".join(f"{n} group{'s' if n != 1 else ''} of {lanes} "
                               f"lane{'s' if lanes != 1 else ''}"
                               for lanes, n in sorted(sizes.items()))
            lines.append(f"stacked engine: {trials} trial{'s' if trials != 1 else ''} as "
                         f"{shapes}")
        reasons = Counter(reason for _, reason in self.serial)
        for reason, n in reasons.items():
            lines.append(f"serial engine: {n} trial{'s' if n != 1 else ''}: {reason}")
        return lines


def _unstackable_reason(spec: TrialSpec) -> str | None:
    """Why a trial cannot be stacked, from its spec alone (None: it can)."""
    if flags_of(spec) is None:
        return f"optimizer '{spec.optimizer.name}' has no per-lane update rule"
    if spec.grad_clip.name not in ("none", "norm", "value"):
        return f"gradient clipping '{spec.grad_clip.name}' has no per-lane form"
    return None


def _model_reason(spec: TrialSpec) -> str | None:
    """Build the trial's model on the CPU and check every layer has a stacked form; from
    the dataset's shape metadata, without loading its data where it declares one."""
    try:
        shape = dataset_shape(spec)
        if shape is not None:
            model = shaped_model(spec, shape)
        else:  # a plugin dataset without shape metadata: its data says
            with seeding.trial_rng(spec.seed_of("init"), torch.device("cpu")):
                data, _ = prepare_data(spec, torch.device("cpu"))
                objective: Objective = registry.build("loss", spec.loss)
                model = build_model(spec, data.input_shape,
                                    objective.num_outputs(data.num_classes, data.target_dim))
        StackedModel([model], torch.device("cpu"))
    except Unstackable as err:
        return f"model '{spec.model.name}': {err}"
    return None


class StackedEngine:
    """Trains groups of same-shaped trials as lanes; falls back to serial, saying why.

    `population`: every trial the lane counts are computed from (the whole suite, or a
    study's proposals), so that re-running a part of it keeps each trial's lane count.
    `fixed_lanes`: every group has exactly this many lanes (tuning: a study's batch of
    proposals, without a population; a suite that gained trials: the lane count its
    first groups had, with the population saying which shapes are lone). `AutoEngine`
    trains groups of a single trial in the population serially (faster).
    """

    name = "stacked"
    auto = False  # AutoEngine: a shape's only trial trains serially
    own_threads = True  # make_engine passes threads only when asked for, and the workers

    def __init__(self, device: torch.device, *, keep_checkpoints: bool = False,
                 threads: int | None = None, max_lanes: int | None = None,
                 population: Sequence[TrialSpec] | None = None,
                 fixed_lanes: int | None = None, workers: int = 1,
                 kept_threads: int | None = None,
                 keep_threads: Callable[[int], int] | None = None) -> None:
        self.device = device
        self.keep_checkpoints = keep_checkpoints
        self.threads = threads  # None: the policy (default_threads; serial: threads_for)
        self.workers = workers
        self.max_lanes = max_lanes or self.most_lanes(device)
        # trials claimed at once: a group's worth (a suite's kept lane count may exceed the
        # device's default cap: claimed 64 at a time, its groups of 100 trained 36 padding)
        self.lane_limit = fixed_lanes or self.max_lanes
        self.population = list(population) if population is not None else None
        self.fixed_lanes = fixed_lanes
        self._model_reasons: dict[str, str | None] = {}
        self._fits: dict[str, int] = {}  # a shape's lane count after running out of memory
        # the trials it cannot stack: one serial engine, which times a large step's
        # threads once (`SerialEngine.threads_for`)
        self._serial = SerialEngine(device, keep_checkpoints=keep_checkpoints, threads=threads,
                                    workers=workers, kept_threads=kept_threads,
                                    keep_threads=keep_threads)

    @classmethod
    def default_threads(cls, device: torch.device, workers: int = 1) -> int:
        return shared_cores(device, workers)

    @classmethod
    def most_lanes(cls, device: torch.device) -> int:
        return DEFAULT_MAX_LANES.get(device.type, 64)

    def describe(self, trials: Sequence[TrialSpec]) -> list[str]:
        plan = self.plan(trials)
        return plan.describe() + self._serial.describe([spec for spec, _ in plan.serial])

    def plan(self, trials: Sequence[TrialSpec]) -> Plan:
        population = self.population if self.population is not None else list(trials)
        counts = Counter(stack_key(t) for t in population)
        plan = Plan()
        grouped: dict[str, list[TrialSpec]] = {}
        for spec in trials:
            reason = self._reason(spec, counts)
            if reason is not None:
                plan.serial.append((spec, reason))
            else:
                grouped.setdefault(stack_key(spec), []).append(spec)
        # one lane count for the whole population: the shapes that stack in it
        stacking = Counter(stack_key(t) for t in population if self._reason(t, counts) is None)
        sizes = [max(stacking.get(key, 0), len(specs)) for key, specs in grouped.items()]
        sizes += [n for key, n in stacking.items() if key not in grouped]
        lanes = self.fixed_lanes or lane_count(sizes, self.max_lanes,
                                               GROUP_COST.get(self.device.type, 4))
        for key, specs in grouped.items():
            # lanes with the same activation side by side: each applies to one slice
            specs.sort(key=lambda s: json.dumps(s.activation.to_dict(), sort_keys=True))
            for start in range(0, len(specs), lanes):
                plan.groups.append(Group(key, specs[start:start + lanes], lanes))
        return plan

    def _reason(self, spec: TrialSpec, counts: Counter[str]) -> str | None:
        """Why `spec` trains serially (None: it stacks); `counts`: trials per shape in the
        population."""
        key = stack_key(spec)
        # auto: a lone trial of the population trains serially (a study's batch, which
        # has no population: asked one at a time, fixed_lanes 1)
        lone = self.fixed_lanes == 1 if self.population is None and \
            self.fixed_lanes is not None else counts.get(key, 1) == 1
        reason = _unstackable_reason(spec)
        if reason is None and not (self.auto and lone):
            # the model as built for this activation: every layer stacks?
            model_key = key + json.dumps(spec.activation.to_dict(), sort_keys=True)
            if model_key not in self._model_reasons:
                self._model_reasons[model_key] = _model_reason(spec)
            reason = self._model_reasons[model_key]
        if reason is None and self.auto and lone:
            reason = "the only trial of its shape: one model trains faster serially"
        return reason

    def run(self, trials: Sequence[TrialSpec], listener: Listener) -> Iterator[TrialResult]:
        plan = self.plan(trials)
        with torch_threads(self.device,
                           self.threads or self.default_threads(self.device, self.workers)) \
                as threads:
            for group in plan.groups:
                specs = [s for s in group.specs if listener.trial_started(s)]
                if specs and (yield from self._train_group(group.key, specs, group.lanes,
                                                           listener, threads)):
                    return  # Ctrl-C: train nothing more
        if plan.serial:
            yield from self._serial.run([spec for spec, _ in plan.serial], listener)

    def _train_group(self, key: str, specs: list[TrialSpec], lanes: int, listener: Listener,
                     threads: int) -> Generator[TrialResult, None, bool]:
        """Train one group of `lanes` (`specs` and padding); returns whether it was
        interrupted. A group the device has too little memory for, found before any
        lane's first epoch was reported, trains as two groups of half the lanes (a lane's
        numbers do not depend on its companions; its numerics say how many there were),
        and so do the later groups of its shape (`key`)."""
        fits = self._fits.get(key, lanes)
        if fits < lanes:
            return (yield from self._train_parts(key, specs, fits, listener, threads))
        run = _GroupRun(specs, lanes, self.device, listener, self._numerics(lanes, threads),
                        self.keep_checkpoints)
        yield from run.run()
        if run.out_of_memory is None:
            return run.interrupted
        half = self._fits[key] = (lanes + 1) // 2
        print(f"nnbench: a stacked group of {lanes} lanes ran out of {self.device} memory "
              f"({run.out_of_memory}); training its {len(specs)} trials, and the later "
              f"groups of their shape, in groups of {half} lanes", file=sys.stderr, flush=True)
        del run  # its tensors, before the halves allocate theirs
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return (yield from self._train_parts(key, specs, half, listener, threads))

    def _train_parts(self, key: str, specs: list[TrialSpec], lanes: int, listener: Listener,
                     threads: int) -> Generator[TrialResult, None, bool]:
        """`specs` as groups of `lanes`; after an interrupt, the trials of the groups not
        started end killed (each trial started gets its result)."""
        for start in range(0, len(specs), lanes):
            if (yield from self._train_group(key, specs[start:start + lanes], lanes, listener,
                                             threads)):
                for spec in specs[start + lanes:]:
                    yield _unbuilt(spec, "killed", "interrupted before its group was built",
                                   self.device, self._numerics(lanes, threads))
                return True
        return False

    def _numerics(self, lanes: int, threads: int) -> Numerics:
        return Numerics(engine="stacked", lanes=lanes, threads=threads,
                        precision=seeding.precision_on(self.device))


def _unbuilt(spec: TrialSpec, status: Status, reason: str, device: torch.device,
             numerics: Numerics, wall_seconds: float = 0.0) -> TrialResult:
    """The result of a trial whose lane was never built (no model, no history)."""
    return TrialResult(spec=spec, status=status, history=[], final={}, fingerprint="",
                       device=str(device), wall_seconds=wall_seconds, reason=reason,
                       numerics=numerics)


class AutoEngine(StackedEngine):
    """The stacked engine, except that a shape's only trial in the population (or a study
    asked one trial at a time) trains serially: one model trains faster that way."""

    auto = True


@dataclass
class _Lane(Lane):
    """One trial's slice of a group: its lifecycle (shared with every engine), its place
    among the lanes and which of the group's distinct splits it trains on."""

    index: int = field(kw_only=True)
    split: int = field(kw_only=True)


def out_of_memory(err: BaseException) -> bool:
    """Whether `err` says the device ran out of memory: the caching allocator's
    torch.OutOfMemoryError, or one raised as a plain RuntimeError by an allocation outside it
    (a cuBLAS handle or workspace: `CUBLAS_STATUS_ALLOC_FAILED`, CUDA's `out of memory`),
    neither of which leaves the device unusable: fewer lanes may fit."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and (
        "CUBLAS_STATUS_ALLOC_FAILED" in text or "CUDA error: out of memory" in text)


def _normalize_stats(ops: list[Normalize]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each lane's fitted normalize statistics, stacked: ([lanes, 1, ...], [lanes, 1, ...])."""
    means, stds = [], []
    for op in ops:
        if op.mean is None or op.std is None:
            raise RuntimeError("normalize needs fit(x_train) before use")
        means.append(op.mean)
        stds.append(op.std)
    return torch.stack(means), torch.stack(stds)


class _GroupRun:
    """Trains one group; yields each lane's TrialResult as soon as the lane ends."""

    def __init__(self, specs: list[TrialSpec], lanes: int, device: torch.device,
                 listener: Listener, numerics: Numerics, keep_checkpoints: bool) -> None:
        self.specs, self.n_lanes, self.device = specs, lanes, device
        self.listener, self.numerics = listener, numerics
        self.keep_checkpoints = keep_checkpoints
        self.names = metric_names(specs[0])
        self.started = time.perf_counter()
        self.away = 0.0  # seconds suspended at a yield: the caller recording a result
        self.lanes: list[_Lane] = []
        self.interrupted = False
        self.best: list[torch.Tensor] | None = None  # restore_best: every lane's best state
        self.built: list[torch.nn.Module | None] = []  # each lane's model, until stacked
        self.stacked = False  # the lanes' models are one StackedModel (self.model)
        self.reported = False  # a lane's epoch was reported to the listener
        # the device's out-of-memory error, where the group ran out before any report and
        # can train again as smaller groups (StackedEngine._train_group)
        self.out_of_memory: str | None = None

    # -- building --------------------------------------------------------------------------

    def _build(self) -> None:
        device, template = self.device, self.specs[0]
        splits: dict[tuple[int, str], int] = {}  # (split seed, augmentations) -> index
        datas: list[TensorData] = []
        augments: list[list[Augmentation]] = []
        models: list[torch.nn.Module | None] = self.built
        split_augments: list[list[Augmentation]] = []
        inits = [registry.build("init", spec.init) for spec in self.specs]
        drawable = all(isinstance(init, LawInit) for init in inits)
        for index, spec in enumerate(self.specs):
            split_key = (spec.seed_of("split"),
                         json.dumps([a.to_dict() for a in spec.augmentation]))
            with seeding.trial_rng(spec.seed_of("init"), device):  # as serial builds it
                if split_key not in splits:  # lanes of one split seed share it (no RNG)
                    data, augment = prepare_data(spec, device)
                    splits[split_key] = len(datas)
                    datas.append(data)
                    split_augments.append(augment)
                self.objective: Objective = registry.build("loss", spec.loss).to(device)
            augments.append(split_augments[splits[split_key]])
            self.lanes.append(_Lane(spec, registry.build("early_stopping", spec.early_stopping),
                                    index=index, split=splits[split_key]))
        outputs = self.objective.num_outputs(datas[0].num_classes, datas[0].target_dim)
        drawn = self._draw(inits, datas[0].input_shape, outputs) if drawable else None
        padding = self.n_lanes - len(self.specs)
        if drawn is None:  # an init without laws (a plugin's), or a layer without one
            for lane in self.lanes:
                with seeding.trial_rng(lane.spec.seed_of("init"), device):
                    models.append(self._lane_model(lane.spec, datas[lane.split],
                                                   inits[lane.index]))
            self.model = StackedModel([*models, *([None] * padding)], device)
        else:
            templates, weights = drawn
            self.model = StackedModel([*templates, *([None] * padding)], device, drawn=weights)
        augments += [augments[0]] * padding
        self.built = []  # the lanes' own models: their weights are the group's now
        self.stacked = True
        # the examples once; each distinct split as rows into them; lane -> its split
        joined = join(datas)
        self.x, self.y = joined.x, joined.y
        self.train_rows, self.val_rows, self.test_rows = joined.train, joined.val, joined.test
        self.split_of = torch.tensor([lane.split for lane in self.lanes] + [0] * padding,
                                     device=device)
        self.split_column = self.split_of[:, None]
        # standardize: each lane's own split's statistics, [lanes, 1, *input_shape]
        self.shift = None if joined.shift is None else joined.shift[self.split_of][:, None]
        self.scale = None if joined.scale is None else joined.scale[self.split_of][:, None]
        # normalize: each lane's statistics, [lanes, 1, ...], by its place in the pipeline
        self.normalize = {step: _normalize_stats([cast(Normalize, a[step]) for a in augments])
                          for step, aug in enumerate(augments[0]) if isinstance(aug, Normalize)}
        # the steps evaluation batches get too (stage "always"), in pipeline order
        self.always = [step for step, aug in enumerate(augments[0]) if aug.stage == "always"]
        first = datas[0]
        self.n_train, self.n_val = len(first.train), len(first.val)
        self.n_test = len(first.test)
        self.target_dim = first.target_dim
        self.batch_size = batch_size_of(template, self.n_train)
        # examples per lane in one evaluation pass (the lanes' models share a shape), and in
        # one probe pass: as many, at most the probe's (on a GPU: 256 × 512 lanes in one
        # pass, forward and backward, held a conv net's activations of 131,072 images)
        self.eval_size = eval_chunk(self.n_lanes, eval_flops(template, device),
                                    eval_bytes(template))
        self.probe_size = min(self.eval_size, PROBE_SIZE)
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        specs: list[TrialSpec | None] = [*self.specs, *([None] * padding)]
        self.optimizer = LaneOptimizer(specs, self.model.flat, self.steps_per_epoch, device)
        # each step's batch size (the last may be smaller), weighing the mean train loss
        steps = self.steps_per_epoch
        self.step_sizes = torch.full((steps,), float(self.batch_size), device=device)
        self.step_sizes[-1] = self.n_train - self.batch_size * (steps - 1)
        # each lane's own streams, as the serial engine seeds them
        pad_seed = -1

        def seed_of(s: TrialSpec | None, source: str) -> int:
            return s.seed_of(source) if s else pad_seed

        self.shuffle = [seeding.generator(seed_of(s, "data_order"), "shuffle", device)
                        for s in specs]
        self.augment_gen = [seeding.generator(seed_of(s, "augmentation"), "augment", device)
                            for s in specs]
        self.lane_generators = LaneGenerators(self.augment_gen)
        self.model.set_dropout(
            [seeding.generator(seed_of(s, "dropout"), "dropout", device) for s in specs],
            [s.dropout if s else 0.0 for s in specs])
        self.augments = augments
        # each lane's λ₁, λ₂; None when no lane has one (decided on the host: no device
        # sync per step)
        self.l1 = self._per_lane([s.l1 if s else 0.0 for s in specs]) \
            if any(s.l1 for s in self.specs) else None
        self.l2 = self._per_lane([s.l2 if s else 0.0 for s in specs]) \
            if any(s.l2 for s in self.specs) else None
        clip = template.grad_clip
        self.clip = clip.name
        if clip.name == "norm":
            self.max_norm = self._per_lane([s.grad_clip.kwargs["max_norm"] if s else 1.0
                                            for s in specs])
            self.norm_type = float(clip.kwargs["norm_type"])
        elif clip.name == "value":
            self.clip_value = self._per_lane([s.grad_clip.kwargs["clip_value"] if s else 0.0
                                              for s in specs])
        # which diagnostic each lane reports: dead (ReLU family) or saturated units
        self.family = [registry.get("activation", s.activation.name).attrs.get("family")
                       if s else None for s in specs]
        self.sigmoid = torch.tensor([s is not None and s.activation.name == "sigmoid"
                                     for s in specs], device=device)
        self.loss_fn = self.objective.lane_loss
        self.sums_fn = self.objective.lane_sums

    def _lane_model(self, spec: TrialSpec, data: TensorData, init: Any) -> torch.nn.Module:
        """One lane's own model, built and drawn as the serial engine does it."""
        with seeding.drawing_on(self.device):
            return build_model(spec, data.input_shape, self.objective.num_outputs(
                data.num_classes, data.target_dim), init=init).to(self.device)

    def _draw(self, inits: list[LawInit], input_shape: tuple[int, ...], outputs: int
              ) -> tuple[list[torch.nn.Module], dict[str, torch.Tensor]] | None:
        """Every lane's initial weights, one draw per tensor for all the lanes, on the device.

        One template model per activation gives the structure and the order of the init's
        calls (layer, gain); lane i's tensor j of call k follows its own init's law from
        its own stream, `stream_seed(init seed, k, j)`, as the serial engine draws it
        (`LawInit`). None when that cannot hold: a layer the init has no law for, or a
        tensor no init fills that still depends on the global RNG (a plugin layer's own
        reset), which each lane would draw differently."""
        templates: dict[str, tuple[torch.nn.Module, list[tuple[Any, Any]]]] = {}
        lane_models: list[torch.nn.Module] = []
        for spec in self.specs:
            key = json.dumps(spec.activation.to_dict(), sort_keys=True)
            if key not in templates:
                recorder = registry.build("init", spec.init)
                recorder.record = []
                with seeding.trial_rng(spec.seed_of("init"), torch.device("cpu")):
                    model = build_model(spec, input_shape, outputs, init=recorder)
                templates[key] = (model, recorder.record)
            lane_models.append(templates[key][0])
        padding = self.n_lanes - len(self.specs)
        drawn: dict[str, torch.Tensor] = {}
        # lane 0's template: the laws of lane 0 name its tensors
        first = lane_models[0]
        by_key = dict(first.state_dict(keep_vars=True))
        names = {id(t): name for name, t in by_key.items()}
        records = [templates[json.dumps(s.activation.to_dict(), sort_keys=True)][1]
                   for s in self.specs]
        seeds = [seeding.derive_seed(s.seed_of("init"), "init") for s in self.specs]
        for call in range(len(records[0])):
            laws = [init.laws(*record[call]) for init, record in zip(inits, records,
                                                                    strict=True)]
            if any(law is None for law in laws):
                return None
            for j, (tensor, _) in enumerate(laws[0] or []):
                drawn[names[id(tensor)]] = draw(
                    [lane[j][1] for lane in laws if lane is not None] + [ZERO] * padding,
                    [seeding.stream_seed(seed, call, j) for seed in seeds] + [0] * padding,
                    tuple(tensor.shape), self.device)
        # the model's builder may not change what the init drew (checked on the first
        # template: its tensors against a draw of its own trial's streams), and what no init
        # filled may depend neither on the init seed nor on the global RNG (a plugin layer's
        # own reset, or its own draw from the generator): a build of another seed agrees
        spec, seed = self.specs[0], seeds[0]
        for call, (layer, gain) in enumerate(records[0]):
            for j, (tensor, law) in enumerate(inits[0].laws(layer, gain) or []):
                own = draw([law], [seeding.stream_seed(seed, call, j)], tuple(tensor.shape),
                           torch.device("cpu"))[0]
                if not torch.equal(own, tensor.detach()):
                    return None
        other_seeds = {source: spec.seed_of(source) for source in SOURCES}
        other_seeds["init"] += 1
        other = spec.with_seeds(other_seeds)
        with seeding.trial_rng(other.seed_of("init"), torch.device("cpu")):
            again = build_model(other, input_shape, outputs,
                                init=registry.build("init", other.init)).state_dict()
        if any(not torch.equal(value.detach(), again[name]) for name, value in by_key.items()
               if name not in drawn):
            return None
        return lane_models, drawn

    def _per_lane(self, values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=self.device)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> Iterator[TrialResult]:
        try:
            self._build()
            for _epoch in range(self.specs[0].epochs):
                yield from self._after_epoch(self._epoch())
                if all(lane.done for lane in self.lanes):
                    return
            yield from self._end([(lane, lane.completed()) for lane in self.lanes
                                  if not lane.done])
        except KeyboardInterrupt:
            self.interrupted = True
            told = False
            for result in self._abandon("killed", lambda lane: lane.interruption()):
                told = True
                yield result
            for spec in self.specs[len(self.lanes):]:  # interrupted while building the group
                told = True
                yield self._unbuilt(spec, "killed", "interrupted while the group was built")
            if not told:  # every lane had its result: the caller must still see the Ctrl-C
                raise
        except Exception as err:  # a broken group must not stop the suite
            if out_of_memory(err) and not self.reported and self.n_lanes > 1:
                self.out_of_memory = str(err).splitlines()[0] if str(err) else "out of memory"
                return
            reason = "".join(traceback.format_exception(type(err), err,
                                                        err.__traceback__))[-4000:]
            yield from self._abandon("failed", lambda lane: reason)
            for spec in self.specs[len(self.lanes):]:  # it broke while building the group
                yield self._unbuilt(spec, "failed", reason)

    def _abandon(self, status: Status, why: Callable[[_Lane], str]) -> Iterator[TrialResult]:
        """The lanes still training end as `status` with their weights as they are (no
        fingerprint where the group's weights cannot be read)."""
        if not self.stacked:  # stopped while the lanes were built: those with a model
            share = self._share()
            for index, lane in enumerate(self.lanes):
                result = self._result(lane, status, None, reason=why(lane), share=share)
                model = self.built[index] if index < len(self.built) else None
                try:
                    weights = fingerprint(model.state_dict().items()) if model else ""
                except Exception:  # a broken device: the result, without its weights
                    weights = ""
                yield result if not weights or model is None else replace(
                    result, fingerprint=weights,
                    num_params=sum(p.numel() for p in model.parameters()))
            return
        try:
            host: dict[str, tuple[torch.dtype, np.ndarray]] | None = self._host_state()
        except Exception:  # the group broke in a way that its weights cannot be read
            host = None
        share = self._share()
        for lane in self.lanes:
            if not lane.done:
                yield self._result(lane, status, host, reason=why(lane), share=share)

    def _unbuilt(self, spec: TrialSpec, status: Status, reason: str) -> TrialResult:
        return _unbuilt(spec, status, reason, self.device, self.numerics, self._share())

    def _epoch(self) -> list[dict[str, float]]:
        """One epoch of every lane; one host sync; each lane's metrics (lanes in order)."""
        epoch_start = time.perf_counter()
        lr = [self.optimizer.host["lr"][i][self.optimizer.t] for i in range(self.n_lanes)]
        train_loss, train_sums = self._train_epoch()
        val_loss, val_sums = self._evaluate(self.val_rows)
        finalize = vmap(self.objective.finalize, in_dims=(0, None, None))
        out = epoch_metrics(self.names, [train_loss, val_loss],
                            [finalize(train_sums, self.n_train, self.target_dim),
                             finalize(val_sums, self.n_val, self.target_dim)],
                            self._diagnostics(), self.family)
        seconds = (time.perf_counter() - epoch_start) / self.n_lanes  # each lane's share
        for index, metrics in enumerate(out):
            metrics.update(lr=lr[index], epoch_seconds=seconds)
        return out

    def _inputs(self, rows: torch.Tensor) -> torch.Tensor:
        """The examples at `rows` ([lanes, n] row numbers), each lane standardized with its
        own split's statistics if asked."""
        x = self.x[rows]
        if self.shift is not None and self.scale is not None:
            x = (x - self.shift) / self.scale
        return x

    def _normalize(self, step: int, x: torch.Tensor) -> torch.Tensor:
        """Pipeline step `step`, a normalize: each lane with its own training split's
        statistics, one op for all the lanes."""
        mean, std = self.normalize[step]
        return (x - mean) / std

    def _batch(self, order: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.train_rows[self.split_column, order[:, start:start + self.batch_size]]
        return self._inputs(rows), self.y[rows]

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """Each lane's pipeline with its own draws; batched where the op allows."""
        for step in range(len(self.augments[0])):
            if step in self.normalize:
                x = self._normalize(step, x)
                continue
            ops = [augment[step] for augment in self.augments]
            flat = x.reshape(-1, *x.shape[2:])
            if isinstance(ops[0], LaneSampled):  # a built-in (lanes differ in no parameter)
                params = ops[0].sample_lanes(flat, self.lane_generators)
            else:  # a plugin's: each lane's own instance, lane by lane
                drawn = [op.sample(x[i], self.augment_gen[i]) for i, op in enumerate(ops)]
                params = {k: torch.cat([d[k] for d in drawn]) for k in drawn[0]}
            flat = ops[0].apply(flat, params)
            x = flat.reshape(x.shape[0], x.shape[1], *flat.shape[1:])
        return x

    def _clip(self, grads: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
        """clip_grad_norm_ / clip_grad_value_ on `flat` (the gradients `grads`, gathered),
        with each lane's own threshold; the norm is taken per tensor, then over them,
        as torch takes it."""
        if self.clip == "norm":
            norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), self.norm_type, dim=1)
                                 for g in grads])
            total = torch.linalg.vector_norm(norms, self.norm_type, dim=0)
            coef = (self.max_norm / (total + 1e-6)).clamp(max=1.0)
            flat.mul_(coef[:, None])
        elif self.clip == "value":
            bound = self.clip_value[:, None]
            torch.clamp(flat, -bound, bound, out=flat)

    def _train_epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        n, batch_size = self.n_train, self.batch_size
        order = torch.stack([torch.randperm(n, generator=g, device=self.device)
                             for g in self.shuffle])
        self.model.train()
        losses: list[torch.Tensor] = []
        sums: list[torch.Tensor] = []
        for start in range(0, n, batch_size):
            xb, yb = self._batch(order, start)
            if self.augments[0]:
                xb = self._augment(xb)
            outputs = self.model(xb)
            loss = self.loss_fn(outputs, yb)
            objective = loss.sum()
            extra = penalty(self.model.weights, self.l1, self.l2, lanes=True)
            if extra is not None:
                objective = objective + extra.sum()
            grads = torch.autograd.grad(objective, self.model.params)
            flat = self.model.flat_grad(grads)
            if self.clip != "none":
                self._clip(grads, flat)
            self.optimizer.step(flat)
            losses.append(loss.detach())
            with torch.no_grad():
                sums.append(self.sums_fn(outputs, yb))
        mean_loss = (torch.stack(losses, dim=1) * self.step_sizes).sum(dim=1) / n
        return mean_loss, torch.stack(sums).sum(dim=0, dtype=torch.float64)

    @torch.no_grad()
    def _evaluate(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per lane (mean loss, metric sums) over its own split (`rows`: [splits, n]), in
        eval mode; each batch normalized as in training (stage `always`)."""
        self.model.eval()
        n = rows.shape[1]
        loss_sum = torch.zeros(self.n_lanes, device=self.device)
        sums = []
        size = self.eval_size  # per lane: the lanes together in bounded memory
        for start in range(0, n, size):
            chunk = rows[self.split_of, start:start + size]
            xb, yb = self._always(self._inputs(chunk)), self.y[chunk]
            outputs = self.model(xb)
            loss_sum += self.loss_fn(outputs, yb) * yb.shape[1]
            sums.append(self.sums_fn(outputs, yb))
        return loss_sum / n, torch.stack(sums).sum(dim=0, dtype=torch.float64)

    def _always(self, xb: torch.Tensor) -> torch.Tensor:
        """A batch that is not trained on (evaluation, the probe) with the augmentations of
        stage `always` applied, as in training (normalize)."""
        for step in self.always:
            if step in self.normalize:
                xb = self._normalize(step, xb)
            else:  # a plugin's: each lane's own instance
                xb = torch.stack([a[step].apply(xb[i], {})
                                  for i, a in enumerate(self.augments)])
        return xb

    def _diagnostics(self) -> dict[str, torch.Tensor]:
        """Every lane's diagnostics (`lifecycle.diagnostics`) on its own probe batch (the
        first PROBE_SIZE examples of its training split, normalized as in training), as the
        serial engine's probe: in passes of `probe_size` examples per lane, whose gradients
        add up to the batch's."""
        probe = self.train_rows[self.split_of, :PROBE_SIZE]
        n, size = probe.shape[1], self.probe_size
        self.model.eval()
        families = {f for f in self.family if f is not None}
        grads: list[torch.Tensor] = []
        activations = Activations(self.family, self.sigmoid)
        for start in range(0, n, size):
            rows = probe[:, start:start + size]
            captured: list[tuple[Layout, torch.Tensor]] = []
            outputs = self.model(self._always(self._inputs(rows)),
                                 capture=captured if families else None)
            # each lane's loss is a mean: a pass weighs in by its share of the batch
            loss = self.loss_fn(outputs, self.y[rows]).sum()
            share = rows.shape[1] / n
            found = torch.autograd.grad(loss * share if share < 1 else loss,
                                        self.model.weights)
            grads = [a + b for a, b in zip(grads, found, strict=True)] if grads else list(found)
            # activations with the lanes first: [B, L·C, H, W] -> [L, B, C, H, W]
            activations.add([a.reshape(a.shape[0], self.n_lanes, -1, *a.shape[2:])
                             .transpose(0, 1) if layout == "channels" else a
                             for layout, a in captured])
        return diagnostics([[g] for g in grads], activations, self.model.weights)

    # -- lanes ending ---------------------------------------------------------------------------

    def _after_epoch(self, metrics: list[dict[str, float]]) -> Iterator[TrialResult]:
        """Each lane's verdict on the epoch (`Lane.epoch_ended`); the best weights of the
        lanes that improved kept aside in one copy; the lanes that end, ended together."""
        endings: list[tuple[_Lane, Ending]] = []
        improved: list[int] = []
        self.reported = True
        for lane in self.lanes:
            if lane.done:
                continue
            verdict = lane.epoch_ended(metrics[lane.index], self.listener.epoch_finished)
            if verdict.keep_best:
                improved.append(lane.index)
            if verdict.ending is not None:
                endings.append((lane, verdict.ending))
        if improved:
            self._keep_best(improved)
        if endings:
            yield from self._end(endings)

    def _live(self) -> list[torch.Tensor]:
        """Every tensor of the group's state: the parameters (one) and the buffers."""
        return [self.model.flat, *(s.tensor for s in self.model.slots()
                                   if s.key not in self.model.param_keys)]

    @torch.no_grad()
    def _keep_best(self, lanes: list[int]) -> None:
        """Copy these lanes' weights and statistics aside (restore_best), in one op per
        tensor whatever the number of lanes."""
        index = lane_index(lanes, self.device)
        if self.best is None:
            self.best = [t.detach().clone() for t in self._live()]
        for best, live in zip(self.best, self._live(), strict=True):
            best[index] = live[index]

    @torch.no_grad()
    def _end(self, endings: list[tuple[_Lane, Ending]]) -> Iterator[TrialResult]:
        """End lanes together: restore best weights, evaluate the test split and read
        every lane's weights once for the whole batch; then their results in lane order."""
        finished = [lane for lane, ending in endings if ending.status == "finished"]
        if self.best is not None:
            restore = [lane.index for lane in finished if lane.has_best]
            if restore:
                index = lane_index(restore, self.device)
                for best, live in zip(self.best, self._live(), strict=True):
                    live[index] = best[index]
        finals: dict[int, dict[str, float]] = {}
        if finished:
            finals = self._test([lane.index for lane in finished])
        host = self._host_state()
        # one share for the lanes ending together: taken per result, it grew with each
        # result the caller recorded in between (0.08 s to 0.34 s over 15 lanes of a group)
        share = self._share()
        for lane, ending in sorted(endings, key=lambda e: e[0].index):
            extra = dict(ending.fields, share=share)
            if ending.status == "finished":
                extra["final"] = finals[lane.index]
                if self.keep_checkpoints:
                    extra["checkpoint"] = self._checkpoint(lane, host, finals[lane.index])
            left = time.perf_counter()
            yield self._result(lane, ending.status, host, **extra)
            self.away += time.perf_counter() - left
        self._retire([lane.index for lane, _ in endings])

    def _test(self, lanes: list[int]) -> dict[int, dict[str, float]]:
        """test_loss and test_<metric> of these lanes (the whole group's test split in
        one evaluation, one host read)."""
        loss, sums = self._evaluate(self.test_rows)
        finalize = vmap(self.objective.finalize, in_dims=(0, None, None))
        table = torch.cat([loss[:, None], finalize(sums, self.n_test, self.target_dim)],
                          dim=1).tolist()
        keys = ["test_loss", *(f"test_{m}" for m in self.names)]
        return {i: dict(zip(keys, table[i], strict=True)) for i in lanes}

    def _host_state(self) -> dict[str, tuple[torch.dtype, np.ndarray]]:
        """Every lane's state entries on the host, as the template model names and shapes
        them but with the lanes first: one device read per tensor."""
        flat = self.model.flat.detach().cpu().numpy()
        out: dict[str, tuple[torch.dtype, np.ndarray]] = {}
        offset = 0
        for slot in self.model.slots():
            if slot.key in self.model.param_keys:
                size = slot.tensor[0].numel()
                lanes = flat[:, offset:offset + size].reshape(slot.tensor.shape)
                offset += size
            else:
                lanes = slot.tensor.detach().cpu().numpy()
            out[slot.key] = (slot.tensor.dtype, slot.to_state(lanes))
        return out

    def _checkpoint(self, lane: _Lane, host: dict[str, tuple[torch.dtype, np.ndarray]],
                    final: dict[str, float]) -> bytes:
        state = {key: torch.from_numpy(np.array(a[lane.index], order="C"))
                 for key, (_, a) in host.items()}
        params = [torch.nn.Parameter(state[key]) for key in self.model.param_order]
        optimizer_state = self.optimizer.torch_state(lane.index, params, lane.spec,
                                                     self.model.unflatten)
        return checkpoint_bytes(state, optimizer_state, lane.spec,
                                lane.checkpoint_metrics(final), lane.weights_epoch(),
                                len(lane.history))

    def _retire(self, lanes: list[int]) -> None:
        """Ended lanes become padding: zero weights, lr 0."""
        for index in lanes:
            self.lanes[index].done = True
        self.model.clear_lanes(lanes)
        self.optimizer.retire(lanes)

    def _share(self) -> float:
        """A lane's share of the group's time so far: elapsed / lanes, less the time the
        caller spent with the results of lanes that ended before (recording them)."""
        return (time.perf_counter() - self.started - self.away) / self.n_lanes

    def _result(self, lane: _Lane, status: Status,
                host: dict[str, tuple[torch.dtype, np.ndarray]] | None, reason: str = "",
                share: float | None = None, **extra: Any) -> TrialResult:
        weights = "" if host is None else host_fingerprint(
            (key, dtype, a[lane.index]) for key, (dtype, a) in host.items())
        result = TrialResult(
            spec=lane.spec, status=status, history=lane.history,
            final=extra.pop("final", {}), fingerprint=weights, device=str(self.device),
            wall_seconds=self._share() if share is None else share,
            num_params=self.model.num_params if self.stacked else 0,
            reason=reason, numerics=self.numerics,
            weights_epoch=lane.weights_epoch() if lane.history else None, **extra)
        lane.done = True  # only now: interrupted before, the lane still gets its result
        return result

