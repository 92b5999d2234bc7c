"""The dry build: every configuration built the way the engines build it, on tiny tensors.

For each configuration, on the CPU, without generating or loading any data:

1. data: the dataset's `DataShape` (its metadata) and the exact train/val/test sizes
   `split()` will produce (`split_sizes`): val_fraction rounding to 0, folds > examples,
   an empty test split;
2. the objective against the dataset's targets (`num_outputs`: bce on 10 classes);
3. every augmentation, built by the registry, `normalize` fitted on a tiny training
   batch of the real shape, then applied in order (a crop larger than the image,
   normalize statistics with the wrong channel count, a pipeline that changes the input
   shape, a second normalize, a setting that leaves every input unchanged);
4. the model (`nnbench.train.build.build_model`: activation, norm, dropout, seeded init)
   for the real input shape, the engines' training step (`serial.train_step`: augment,
   forward, loss + L1/L2, backward, clip, optimizer step) at every batch size the run
   will use that matters (a last batch of 1 example under BatchNorm), and an evaluation
   forward; both forwards must give one output per class or regression target
   (`[batch, num_outputs]`: a plugin model that ignores its `outputs` argument would
   otherwise train, meaninglessly);
5. the schedule over the real number of steps (warm-up longer than the run, milestones
   after the last epoch, a schedule that never changes the learning rate), on the
   optimizer the suite names.

What each configuration would train is summarised as an *effect fingerprint*: the
model (structure and initial weights), data, loss, optimizer (minus what the schedule
overrides), the learning-rate/momentum trajectory, effective batch size, epochs,
penalties, clipping, early stopping as it can act, augmentations. Two configurations
with different specs and the same fingerprint train identically: an axis that has no
effect, which the validator reports.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nnbench import registry, seeding
from nnbench.components.activations import GainError
from nnbench.components.augmentations import Augmentation, Normalize
from nnbench.components.regularizers import Dropout, attach_dropout_generator
from nnbench.config.spec import TrialSpec
from nnbench.data import DataShape, SplitParams, split_sizes
from nnbench.messages import first_line
from nnbench.registry import FLOAT32_MAX, FLOAT32_TINY, below_float32_normal
from nnbench.train import serial
from nnbench.train.build import (
    Step,
    batch_size_of,
    build_model,
    produced_metrics,
    weight_layers,
    weights_of,
)
from nnbench.train.metrics import fingerprint

__all__ = ["Config", "DryReport", "dry_build", "static_problems"]

CPU = torch.device("cpu")
MAX_SCHEDULE_STEPS = 1_000_000  # intervals of a schedule stepped through; beyond, counted


@dataclass(frozen=True)
class Config:
    """A configuration to check, and where in the file each of its axes was set."""

    spec: TrialSpec
    origins: Mapping[str, str]  # axis -> key path (`fixed.norm`, `grid.activation[1]`)
    label: str  # how messages name the configuration

    def where(self, axis: str) -> str:
        return self.origins[axis]


@dataclass
class DryReport:
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # key, msg, label
    effect: dict[str, str] = field(default_factory=dict)  # config_id -> what it trains
    produced: dict[str, frozenset[str]] = field(default_factory=dict)  # config_id -> metrics
    explain: dict[str, str] = field(default_factory=dict)  # config_id -> model facts


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


# -- checks that need no tensors --------------------------------------------------------------

def static_problems(cfg: Config, metric: str) -> list[tuple[str, str]]:
    """Components that cannot work together (loss vs targets, cnn vs vectors, ...)."""
    from nnbench.data import dataset_attrs

    spec = cfg.spec
    problems = []
    try:  # a dataset reading a file checks the file's header here
        data = dataset_attrs(spec.dataset)
    except (OSError, ValueError) as err:
        return [(cfg.where("dataset"), str(err))]
    loss = registry.get("loss", spec.loss.name).attrs
    if loss["targets"] != data["targets"]:
        fitting = [i.name for i in registry.list_components("loss")
                   if i.attrs["targets"] == data["targets"]]
        problems.append((cfg.where("loss"), f"loss '{spec.loss.name}' needs {loss['targets']} "
                                            f"targets but dataset '{spec.dataset.name}' has "
                                            f"{data['targets']} targets; allowed: "
                                            f"{', '.join(fitting)}"))
        return problems
    allowed = [f"{split}_{m}" for split in ("test", "val", "train")
               for m in ("loss", *loss["metrics"])]
    if metric not in allowed:
        problems.append(("task.metric", f"loss '{spec.loss.name}' reports no {metric!r}; "
                                        f"allowed: {', '.join(allowed)}"))
    monitor = spec.early_stopping.kwargs.get("monitor")
    if monitor is not None and monitor not in allowed:
        problems.append((f"{cfg.where('early_stopping')}.monitor",
                         f"loss '{spec.loss.name}' reports no {monitor!r}; allowed: "
                         f"{', '.join(m for m in allowed if m.startswith('val_'))}"))
    need = registry.get("model", spec.model.name).attrs.get("input")
    if need and need != data["input"]:
        fitting = [i.name for i in registry.list_components("model")
                   if i.attrs.get("input") in (None, data["input"])]
        problems.append((cfg.where("model"), f"model '{spec.model.name}' needs {need} inputs "
                                             f"but dataset '{spec.dataset.name}' gives "
                                             f"{data['input']} inputs; allowed: "
                                             f"{', '.join(fitting)}"))
    normalizes = []
    for i, aug in enumerate(spec.augmentation):
        key = f"{cfg.where('augmentation')}[{i}]"
        need = registry.get("augmentation", aug.name).attrs["input"]
        if need != "any" and need != data["input"]:
            fitting = [a.name for a in registry.list_components("augmentation")
                       if a.attrs["input"] in ("any", data["input"])]
            problems.append((key, f"augmentation '{aug.name}' works on {need} inputs but "
                                  f"dataset '{spec.dataset.name}' gives {data['input']} "
                                  f"inputs; allowed: {', '.join(fitting)}"))
        if aug.name == "normalize":
            normalizes.append(key)
    if len(normalizes) > 1:
        problems.append((normalizes[1], f"normalize is already in the pipeline "
                                        f"({normalizes[0]}); a second one would normalise "
                                        f"inputs that are already normalised, with statistics "
                                        f"of the raw training split; keep one"))
    return problems


# -- the build --------------------------------------------------------------------------------

class _Failed(Exception):
    """A problem found: (key, message); the configuration's build stops there."""

    def __init__(self, key: str, msg: str) -> None:
        self.key, self.msg = key, msg


@dataclass
class _Facts:
    """What the built model says about itself."""

    text: str  # repr: layers, activations, norm, dropout
    weights: str  # fingerprint of the initial weights
    weight_layers: int
    activations: bool  # modules of the activation's type present (hidden layers)
    batchnorm: bool
    dropout: bool


class _Builder:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[DataShape, Any]] = {}
        self.facts: dict[str, _Facts] = {}
        self.steps: dict[str, _Failed | None] = {}
        self.schedules: dict[str, tuple[str, list[tuple[str, str]]]] = {}

    # 1. data
    def data(self, cfg: Config) -> tuple[DataShape, Any]:
        spec = cfg.spec
        key = _json(spec.dataset.to_dict())
        if key not in self.shapes:
            info = registry.get("dataset", spec.dataset.name)
            params = info.params.model_validate(spec.dataset.kwargs)
            shape_fn = info.attrs.get("shape")
            if shape_fn is None:
                raise _Failed(cfg.where("dataset"),
                              f"dataset '{spec.dataset.name}' declares no shape metadata "
                              f"(attrs['shape'], see nnbench.data); it cannot be checked")
            try:
                shape: DataShape = shape_fn(params)
            except Exception as err:
                if info.source == registry.BUILTIN and isinstance(err, (OSError, ValueError)):
                    raise _Failed(cfg.where("dataset"), str(err)) from None  # a file's header
                # a plugin's shape function: its bug was blamed on the model, or said bare
                from nnbench.plugins import describe_error

                raise _Failed(cfg.where("dataset"), f"dataset '{spec.dataset.name}': its "
                                                    f"declared shape (attrs['shape']) "
                                                    f"failed: {describe_error(err)}") from None
            try:
                assert isinstance(params, SplitParams), "a dataset's params extend SplitParams"
                sizes = split_sizes(shape, params)
            except (OSError, ValueError) as err:  # the split's sizes
                raise _Failed(cfg.where("dataset"), str(err)) from None
            self.shapes[key] = (shape, sizes)
        return self.shapes[key]

    # 3-4. augmentations, model, one training step per batch size that matters
    def model(self, cfg: Config, shape: DataShape, outputs: int,
              batch_sizes: tuple[int, ...]) -> _Facts:
        spec = cfg.spec
        model_key = _json([spec.model.to_dict(), spec.activation.to_dict(),
                           spec.init.to_dict(), spec.norm.to_dict(), spec.dropout,
                           shape.input_shape, outputs, spec.seed_of("init")])
        step_key = _json([model_key, spec.loss.to_dict(), spec.optimizer.to_dict(),
                          [a.to_dict() for a in spec.augmentation], spec.l1, spec.l2,
                          spec.grad_clip.to_dict(), shape.targets, shape.num_classes,
                          shape.target_dim,
                          # sizes above 2 build alike; a batch of 1 is named in its message
                          batch_sizes if 1 in batch_sizes else sorted({min(b, 2)
                                                                      for b in batch_sizes})])
        if step_key in self.steps:
            failed = self.steps[step_key]
            if failed is not None:
                raise failed
            return self.facts[model_key]
        try:
            with seeding.trial_rng(spec.seed_of("init"), CPU):
                facts = self._step(cfg, shape, outputs, batch_sizes)
        except _Failed as failed:
            self.steps[step_key] = failed
            raise
        self.steps[step_key] = None
        self.facts.setdefault(model_key, facts)
        return self.facts[model_key]

    def _step(self, cfg: Config, shape: DataShape, outputs: int,
              batch_sizes: tuple[int, ...]) -> _Facts:
        spec = cfg.spec
        data = torch.Generator().manual_seed(0)
        image = len(shape.input_shape) == 3

        def inputs(n: int) -> torch.Tensor:
            if image:  # images live in [0, 1] (colour ops assume it)
                return torch.rand(n, *shape.input_shape, generator=data)
            return torch.randn(n, *shape.input_shape, generator=data)

        def targets(n: int) -> torch.Tensor:
            if shape.targets == "class":
                return torch.randint(max(shape.num_classes, 1), (n,), generator=data)
            return torch.randn(n, shape.target_dim, generator=data)

        augment = self._augmentations(cfg, shape, inputs(8))
        _check_size(cfg, shape, outputs)
        try:
            model = build_model(spec, shape.input_shape, outputs)
        except GainError as err:
            raise _Failed(cfg.where("activation"), str(err)) from None
        except Exception as err:  # the model's own message says what does not fit
            raise _Failed(cfg.where("model"), f"cannot build model '{spec.model.name}' for "
                                              f"inputs of shape {shape.input_shape}: "
                                              f"{first_line(err)}") from None
        activation_type = type(registry.build("activation", spec.activation))
        facts = _Facts(
            text=repr(model), weights=fingerprint(model.state_dict().items()),
            weight_layers=len(weight_layers(model)),
            activations=any(isinstance(m, activation_type) for m in model.modules()),
            batchnorm=any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                          for m in model.modules()),
            dropout=any(isinstance(m, Dropout | nn.modules.dropout._DropoutNd)
                        for m in model.modules()))
        if spec.dropout > 0 and not facts.dropout:
            raise _Failed(cfg.where("dropout"), f"dropout {spec.dropout} has no effect: model "
                                                f"'{spec.model.name}' has no hidden layer to "
                                                f"drop units from; allowed: 0, or a model with "
                                                f"hidden layers")
        if spec.norm.name != "none" and not facts.batchnorm:
            raise _Failed(cfg.where("norm"), f"norm '{spec.norm.name}' has no effect: model "
                                             f"'{spec.model.name}' has no hidden layer to "
                                             f"normalise; allowed: none, or a model with "
                                             f"hidden layers")
        objective = registry.build("loss", spec.loss)
        try:
            optimizer = registry.build("optimizer", spec.optimizer,
                                       parameters=model.parameters())
        except Exception as err:
            raise _Failed(cfg.where("optimizer"), first_line(err)) from None
        clip_fn = registry.build("clip", spec.grad_clip)
        generator = torch.Generator().manual_seed(1)
        attach_dropout_generator(model, generator)
        step = Step(model=model, objective=objective, optimizer=optimizer, clip=clip_fn,
                    augment=[aug for _, aug in augment], augment_gen=generator,
                    weights=weights_of(model),
                    l1=spec.l1 or None, l2=spec.l2 or None)
        for n in sorted({1 if b == 1 else 2 for b in batch_sizes}):
            # the engines' own training step (serial.train_step), watched: the shapes it
            # makes are checked, and a failure is named by the last stage it reached
            xb, yb = inputs(n), targets(n)
            watch = _Watch(cfg, model, xb, outputs, shape, augment)
            drawn = generator.get_state()  # the augmentations' draws, to replay on failure
            model.train()
            try:
                serial.train_step(step, xb, yb, watch)
            except _Failed:
                raise
            except _NoBatch:  # which augmentation: each again, in order, same draws
                generator.set_state(drawn)
                raise _unbatched(cfg, augment, generator, xb) from None
            except Exception as err:
                generator.set_state(drawn)
                raise _step_failed(cfg, err, watch.seen, augment, generator, xb, yb,
                                   facts.batchnorm, batch_sizes) from None
        x_val = inputs(2)
        for _key, aug in augment:
            if aug.stage == "always":
                x_val = aug.apply(x_val, {})
        model.eval()
        try:
            with torch.no_grad():
                evaluated = model(x_val)
        except Exception as err:
            raise _Failed(cfg.where("model"), f"model '{spec.model.name}' fails to evaluate a "
                                              f"batch of shape {tuple(x_val.shape)}: "
                                              f"{first_line(err)}") from None
        _check_outputs(cfg, model, evaluated, len(x_val), outputs, shape, mode="evaluation")
        return facts

    def _augmentations(self, cfg: Config, shape: DataShape,
                       x_train: torch.Tensor) -> list[tuple[str, Augmentation]]:
        out: list[tuple[str, Augmentation]] = []
        for i, spec in enumerate(cfg.spec.augmentation):
            key = f"{cfg.where('augmentation')}[{i}]"
            info = registry.get("augmentation", spec.name)
            no_effect = info.attrs.get("no_effect")
            reason = no_effect(info.params.model_validate(spec.kwargs), shape.input_shape) \
                if no_effect else None
            if reason:
                raise _Failed(key, f"augmentation '{spec.name}' has no effect on "
                                   f"{'×'.join(map(str, shape.input_shape))} inputs: {reason}")
            try:
                aug: Augmentation = registry.build("augmentation", spec)
                if isinstance(aug, Normalize):
                    aug.fit(x_train)
            except Exception as err:
                raise _Failed(key, first_line(err)) from None
            out.append((key, aug))
        return out

    # 5. schedule
    def schedule(self, cfg: Config, steps_per_epoch: int) -> tuple[str, list[tuple[str, str]]]:
        """(digest of the lr/momentum trajectory, problems) over the whole run."""
        spec = cfg.spec
        key = _json([spec.schedule.to_dict(), spec.optimizer.to_dict(), spec.epochs,
                     steps_per_epoch])
        if key not in self.schedules:
            self.schedules[key] = self._schedule(cfg, steps_per_epoch)
        return self.schedules[key]

    def _schedule(self, cfg: Config, steps_per_epoch: int) -> tuple[str, list[tuple[str, str]]]:
        spec = cfg.spec
        where = cfg.where("schedule")

        def at(sub: str) -> str:  # a tuned variant's problem is its dimension's, as given
            return where if where.startswith("tune.space.") else f"{where}.{sub}"

        params = spec.schedule.kwargs
        dummy = nn.Parameter(torch.zeros(1))
        optimizer = registry.build("optimizer", spec.optimizer, parameters=[dummy])
        try:
            schedule = registry.build("schedule", spec.schedule, optimizer=optimizer,
                                      epochs=spec.epochs, steps_per_epoch=steps_per_epoch)
        except Exception as err:
            text = first_line(err)
            key = at("warmup") if text.startswith("warmup=") else where
            if "cycle_momentum" in text:
                text += ("; allowed: an optimizer with momentum (sgd, rmsprop) or betas (adam, "
                         "adamw), or cycle_momentum: false")
            raise _Failed(key, f"schedule '{spec.schedule.name}' over {spec.epochs} epochs of "
                               f"{steps_per_epoch} steps: {text}") from None
        interval = schedule.interval
        total = spec.epochs * steps_per_epoch if interval == "batch" else spec.epochs
        problems: list[tuple[str, str]] = []
        warmup = int(params.get("warmup", 0))
        unit = {"epoch": "epoch", "batch": "batch"}[interval] + \
            ("" if total == 1 else "s" if interval == "epoch" else "es")
        # what a milestone or step_size may be: 1 to total - warmup - 1 (none where the
        # training is too short: it said "allowed: 1 to 0")
        allowed = (f"1 to {total - warmup - 1}" if total - warmup > 1 else
                   f"none in {total} {unit}{f' after {warmup} of warm-up' if warmup else ''}: "
                   f"train more epochs, or use schedule constant")
        for j, milestone in enumerate(params.get("milestones") or ()):
            if warmup + milestone >= total:
                problems.append((at(f"milestones[{j}]"),
                                 f"milestone {milestone} comes after the last of the {total} "
                                 f"{unit} of training"
                                 f"{f' (after {warmup} of warm-up)' if warmup else ''}: it "
                                 f"never takes effect; allowed: {allowed}"))
        step_size = params.get("step_size")
        if step_size is not None and warmup + step_size >= total:
            problems.append((at("step_size"),
                             f"step_size {step_size} is not reached in the {total} {unit} of "
                             f"training: the learning rate never decays; allowed: {allowed}"))
        t_max, main = params.get("T_max"), total - warmup
        plural = "s" if interval == "epoch" else "es"
        # it steps main - 1 times: the last interval trains at eta_min with T_max main - 1
        if t_max is not None and t_max < main - 1:  # CosineAnnealingLR is periodic past T_max
            problems.append((at("T_max"),
                             f"T_max {t_max} ends before the {main} {unit} of training"
                             f"{f' after {warmup} of warm-up' if warmup else ''}: cosine "
                             f"annealing is periodic, so the lr climbs back up after "
                             f"{t_max} {interval}{'' if t_max == 1 else plural} and reaches "
                             f"eta_min again every {2 * t_max}; allowed: T_max "
                             f"{main - 1} or more (at {main - 1} the last {interval} trains at "
                             f"eta_min), or leave it out (the whole run)"))
        # the lr the annealing starts from (a warm-up's LinearLR has already lowered `lr`)
        group = optimizer.param_groups[0]
        eta_min, lr = params.get("eta_min"), group.get("initial_lr", group["lr"])
        if eta_min is not None and eta_min > lr:  # (the lr at a tuned range's end: its key)
            tuned = cfg.where("optimizer") == "tune.space.optimizer.lr"
            problems.append((cfg.where("optimizer") if tuned else at("eta_min"),
                             f"eta_min {eta_min:g} is above the optimizer's lr {lr:g}: "
                             f"cosine annealing would raise the learning rate towards "
                             f"{eta_min:g} instead of lowering it; allowed: eta_min 0 to "
                             f"{lr:g}" + (f", or a tuned lr from {eta_min:g} up" if tuned
                                          else "")))
        digest = hashlib.sha256()
        first = _hyper(optimizer)
        changed = False
        peak, peak_at = first[0], 1  # the largest lr, and the first interval it is at
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimizer.step()  # no gradient: a no-op that lets the schedule step in order
            for i in range(min(total, MAX_SCHEDULE_STEPS)):
                now = _hyper(optimizer)
                changed = changed or now != first
                if now[0] > peak:
                    peak, peak_at = now[0], i + 1
                digest.update(repr(now).encode())
                if i < total - 1:
                    schedule.scheduler.step()
        digest.update(f"{interval}:{total}".encode())
        # the lr trains in float32: a schedule's lr past its range is inf there (a onecycle
        # from 1e39 failed each serial trial with an overflow, and its stacked ones were
        # recorded as diverged); one starting below its smallest normal number starts at 0
        if peak > FLOAT32_MAX:
            problems.append((where, f"the learning rate reaches {peak:g} at {interval} "
                                    f"{peak_at} of {total}, beyond float32's range "
                                    f"(±{FLOAT32_MAX:.3g}), in which training computes; "
                                    f"allowed: a schedule whose lr stays within it"))
        elif below_float32_normal(first[0]):
            problems.append((where, f"the learning rate starts at {first[0]:g}, below "
                                    f"float32's smallest normal number ({FLOAT32_TINY:.3g}), "
                                    f"in which training computes (it would be 0 there); "
                                    f"allowed: a schedule that starts from {FLOAT32_TINY:.3g} "
                                    f"or more"))
        if not changed and spec.schedule.name != "constant" and not problems:
            problems.append((where, f"schedule '{spec.schedule.name}' never changes the "
                                    f"learning rate in the {total} {unit} of training (it "
                                    f"stays {first[0]:g}): it trains exactly as constant "
                                    f"would; change its parameters or use constant"))
        return digest.hexdigest(), problems


# bytes per parameter the dry build holds: weights, gradients and an optimizer's two moments
# in fp32 (16), and the initial draws' integer temporaries (a 400-million-parameter MLP's
# dry build peaked at 29)
TRAINING_BYTES_PER_PARAMETER = 32


_PARAMETERS: dict[str, int | None] = {}  # a model's shape -> its parameters (None: not built)


def _check_size(cfg: Config, shape: DataShape, outputs: int) -> None:
    """Refuse a model this machine cannot hold before the dry build allocates it (a width
    of 10^8 took validate to 20 GB before failing): its parameters are counted on the meta
    device, where nothing is allocated and the initial weights are not drawn (nnbench's own
    models: a plugin's may cache parts between builds). A model that cannot be built there
    is left to the dry build to explain."""
    spec = cfg.spec
    if registry.get("model", spec.model.name).source != registry.BUILTIN:
        return  # a plugin's model may keep parts between builds: they would stay on meta
    key = _json([spec.model.to_dict(), spec.activation.to_dict(), spec.norm.to_dict(),
                 shape.input_shape, outputs])
    if key not in _PARAMETERS:
        meta = torch.device("meta")
        try:
            with meta, torch.random.fork_rng(devices=[]), seeding.numpy_rng_preserved(), \
                    seeding.drawing_on(meta):
                model = build_model(spec, shape.input_shape, outputs)
            _PARAMETERS[key] = sum(p.numel() for p in model.parameters())
        except Exception:
            _PARAMETERS[key] = None
    parameters = _PARAMETERS[key]
    if parameters is None:
        return
    need, free = parameters * TRAINING_BYTES_PER_PARAMETER, _free_memory()
    if free is not None and need > free:
        raise _Failed(cfg.where("model"), (
            f"model '{spec.model.name}' has {parameters:,} parameters for inputs of shape "
            f"{shape.input_shape}: building and training it takes about "
            f"{need / 2**30:,.1f} GiB (fp32 weights, gradients, optimizer state), more than "
            f"this machine's "
            f"{free / 2**30:,.1f} GiB of free memory; make it smaller"))


def _free_memory() -> int | None:
    """Bytes of memory available to a new allocation (psutil's `available`, else Linux's
    MemAvailable: a GPU machine may lack psutil); None when neither can tell."""
    try:
        import psutil
    except ImportError:
        try:
            with open("/proc/meminfo", encoding="ascii") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return None
    available: int = psutil.virtual_memory().available
    return available


def _check_outputs(cfg: Config, model: nn.Module, out: object, n: int, outputs: int,
                   shape: DataShape, mode: str = "training") -> None:
    """The model's output is `[n, outputs]`: one column per class (or per regression target,
    or the one logit of binary cross-entropy). Any other width would still train (cross-
    entropy over 10 logits takes 2-class labels), meaninglessly."""
    spec = cfg.spec
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (n, outputs):
        return
    info = registry.get("model", spec.model.name)
    cls = type(model)
    who = f"model '{spec.model.name}' (class {cls.__module__}.{cls.__qualname__}"
    who += ")" if info.source == registry.BUILTIN else f", from plugin '{info.source}')"
    task = (f"dataset '{spec.dataset.name}' has {shape.num_classes} classes"
            if shape.targets == "class" else
            f"dataset '{spec.dataset.name}' has {shape.target_dim} regression target"
            f"{'s' if shape.target_dim != 1 else ''}")
    need = (f"the task needs {outputs} output{'s' if outputs != 1 else ''} per example "
            f"({task}; loss '{spec.loss.name}' takes {outputs})")
    fix = ("; build the output layer with the `outputs` argument the model's build is given")
    if not isinstance(out, torch.Tensor):
        raise _Failed(cfg.where("model"), f"{who} returns a {type(out).__name__}, not a "
                                          f"tensor, in {mode}; {need}{fix}")
    got = tuple(out.shape)
    if out.dim() == 2 and got[0] == n:
        raise _Failed(cfg.where("model"), f"{who} gives {got[1]} outputs per example in "
                                          f"{mode} but {need}{fix}")
    raise _Failed(cfg.where("model"), f"{who} maps a {mode} batch of {n} examples to outputs "
                                      f"of shape {got}, not ({n}, {outputs}): {need}{fix}")


class _Watch:
    """Told of each stage of a training step (`serial.train_step`): keeps what it made
    and checks its shape (training inputs as the model's input shape, outputs
    `[n, outputs]`)."""

    def __init__(self, cfg: Config, model: nn.Module, xb: torch.Tensor, outputs: int,
                 shape: DataShape, augment: list[tuple[str, Augmentation]]) -> None:
        self.cfg, self.model, self.xb, self.outputs, self.shape = cfg, model, xb, outputs, shape
        self.n, self.augment = len(xb), augment
        self.seen: dict[str, torch.Tensor] = {}

    def __call__(self, stage: str, tensor: torch.Tensor) -> None:
        if stage == "augmented" and _not_a_batch_of(tensor, self.xb):
            raise _NoBatch
        self.seen[stage] = tensor
        input_shape = self.shape.input_shape
        if stage == "augmented" and tuple(tensor.shape[1:]) != input_shape:
            # the crop that sets the size (the last with one), else the last augmentation
            key, last = next(((k, a) for k, a in reversed(self.augment) if hasattr(a, "size")),
                             self.augment[-1] if self.augment else
                             (self.cfg.where("augmentation"), None))
            size = f"size: {input_shape[-1]}"
            fix = (f"pad first, e.g. {size}, padding: 4" if hasattr(last, "padding")
                   else size)  # (random_crop pads; random_resized_crop does not)
            raise _Failed(key,
                          f"the augmentations turn {input_shape} inputs into "
                          f"{tuple(tensor.shape[1:])} training inputs while validation and "
                          f"test inputs stay {input_shape}; crop to the image size ({fix})")
        if stage == "outputs":
            _check_outputs(self.cfg, self.model, tensor, self.n, self.outputs, self.shape)


class _NoBatch(Exception):
    """The augmentations made no batch of the inputs' kind (`_not_a_batch_of`)."""


def _not_a_batch_of(made: Any, xb: torch.Tensor) -> str | None:
    """What keeps `made` (an augmentation's result) from being a batch like `xb`: a tensor
    of as many examples, of its dtype and device."""
    if not isinstance(made, torch.Tensor):
        return f"returns {type(made).__name__}, not a tensor"
    if made.dim() == 0 or len(made) != len(xb):
        size = "a 0-d tensor" if made.dim() == 0 else f"{len(made)}"
        return (f"turns a batch of {len(xb)} examples into {size}; an augmentation changes "
                f"each example, never how many there are")
    if made.dtype != xb.dtype or made.device != xb.device:
        return (f"turns {xb.dtype} inputs on {xb.device} into {made.dtype} on "
                f"{made.device}; return the batch's own dtype and device")
    return None


def _unbatched(cfg: Config, augment: list[tuple[str, Augmentation]],
               generator: torch.Generator, xb: torch.Tensor) -> _Failed:
    """The first augmentation whose result is no batch like its input, named."""
    x = xb
    for key, aug in augment:
        made = aug(x, generator)
        problem = _not_a_batch_of(made, x)
        if problem is not None:
            return _Failed(key, f"on a training batch of shape {tuple(x.shape)}: {problem}")
        x = made
    return _Failed(augment[-1][0] if augment else cfg.where("augmentation"),
                   "the augmentations make no batch of the inputs' kind")


def _step_failed(cfg: Config, err: Exception, seen: Mapping[str, torch.Tensor],
                 augment: list[tuple[str, Augmentation]], generator: torch.Generator,
                 xb: torch.Tensor, yb: torch.Tensor, batchnorm: bool,
                 batch_sizes: tuple[int, ...]) -> _Failed:
    """The problem a training step's failure shows, named by the last stage it reached
    (`seen`): an augmentation, the model, the loss, or the optimizer (with clipping).
    `generator`: in the state the step started from (an augmentation's draws replay)."""
    spec = cfg.spec
    if "augmented" not in seen:  # which augmentation: each again, in order, same draws
        for key, aug in augment:
            try:
                xb = aug(xb, generator)
            except Exception as again:
                return _Failed(key, f"fails on a training batch of shape {tuple(xb.shape)}: "
                                    f"{first_line(again)}")
        return _Failed(augment[-1][0] if augment else cfg.where("augmentation"),
                       f"fails on a training batch of shape {tuple(xb.shape)}: "
                       f"{first_line(err)}")
    if "outputs" not in seen:
        batch = seen["augmented"]
        if len(xb) == 1 and batchnorm:
            return _Failed(cfg.where("batch_size"), _one_example(cfg, batch_sizes))
        return _Failed(cfg.where("model"), f"model '{spec.model.name}' fails on a training "
                                           f"batch of shape {tuple(batch.shape)}: "
                                           f"{first_line(err)}")
    if "backward" not in seen:
        return _Failed(cfg.where("loss"), f"loss '{spec.loss.name}' fails on the model's "
                                          f"outputs {tuple(seen['outputs'].shape)} and targets "
                                          f"{tuple(yb.shape)}: {first_line(err)}")
    return _Failed(cfg.where("optimizer"), f"optimizer '{spec.optimizer.name}' fails to step: "
                                           f"{first_line(err)}")


def _hyper(optimizer: torch.optim.Optimizer) -> tuple[float, ...]:
    group = optimizer.param_groups[0]
    values = [float(group["lr"])]
    if "momentum" in group:
        values.append(float(group["momentum"]))
    if "betas" in group:
        values.append(float(group["betas"][0]))
    return tuple(values)


def _one_example(cfg: Config, batch_sizes: tuple[int, ...]) -> str:
    spec = cfg.spec
    norm = cfg.where("norm")
    if spec.batch_size == 1 or batch_sizes[0] == 1:
        return (f"batch_size 1 with BatchNorm ({norm}): BatchNorm cannot compute batch "
                f"statistics from one example in training; allowed: a batch size of 2 or "
                f"more, or norm: none")
    size = batch_sizes[0]
    return (f"with batch_size {size} the last batch of every epoch holds 1 example, and "
            f"BatchNorm ({norm}) cannot compute batch statistics from one example; allowed: "
            f"a batch size that does not leave 1 example over (e.g. {size + 1}), or norm: none")


def never_stops(spec: TrialSpec) -> bool:
    """Its early stopping cannot end the run early: the first epoch always improves, so
    the earliest stop is after patience + 1 epochs, and one at the last epoch stops
    nothing (patience >= epochs - 1)."""
    es = spec.early_stopping
    return es.name == "patience" and es.kwargs["patience"] >= spec.epochs - 1


def _early_stopping_effect(spec: TrialSpec) -> Any:
    es = spec.early_stopping
    if es.name == "none":
        return "none"
    params = es.kwargs
    if never_stops(spec):  # only restore_best can act, where there is an epoch to go back to
        return "none" if not params.get("restore_best") or spec.epochs == 1 else {
            **params, "patience": "never"}
    return es.to_dict()


def _early_stopping_problem(cfg: Config) -> tuple[str, str, str]:
    """Early stopping that changes nothing: it cannot stop the run early, and restore_best
    is false or has only one epoch to keep."""
    spec = cfg.spec
    patience, epochs = spec.early_stopping.kwargs["patience"], spec.epochs
    restore = spec.early_stopping.kwargs["restore_best"]
    nothing = ("and with one epoch there is no better epoch for restore_best to go back to"
               if restore else "and restore_best is false")
    why = (f"the first epoch always counts as an improvement, so the earliest stop is after "
           f"patience + 1 epochs, and a stop at the last epoch stops nothing; {nothing}")
    where = cfg.where("early_stopping")
    if epochs < 3:
        more = "at least 2 epochs" if restore else "at least 3 epochs, or restore_best: true"
        return (where, f"early stopping can never stop a run of {epochs} epoch(s) early: "
                       f"{why}; allowed: early_stopping: none, or {more}", cfg.label)
    return (where if where.endswith(".patience") else f"{where}.patience",
            f"patience {patience} can never stop the run of {epochs} epochs early: {why}; "
            f"allowed: 1 to {epochs - 2}, or restore_best: true", cfg.label)


def _cycles_momentum(spec: TrialSpec) -> bool:
    """Its schedule sets the optimizer's momentum (or beta1) at every step: onecycle's
    cycle_momentum."""
    schedule = spec.schedule
    return schedule.name == "onecycle" and bool(schedule.kwargs.get("cycle_momentum"))


def optimizer_unused(spec: TrialSpec) -> dict[str, str]:
    """The optimizer's parameters that have no effect in this trial for what its schedule or
    its other parameters do with them, and that a suite gives only by mistake: {name: why,
    and what is allowed}. (An lr or momentum that onecycle overrides is left out: it is
    written by habit beside onecycle, and the README says onecycle replaces them.)"""
    if spec.optimizer.name == "sgd" and not spec.optimizer.kwargs.get("momentum") \
            and not _cycles_momentum(spec):  # onecycle cycles the momentum dampening damps
        return {"dampening": "dampening damps momentum, and momentum is 0 (torch skips it); "
                             "allowed: momentum > 0, or no dampening"}
    return {}


def _optimizer_effect(spec: TrialSpec) -> dict[str, Any]:
    """The optimizer's settings the schedule does not override (the trajectory has those)."""
    params = dict(spec.optimizer.to_dict())
    params.pop("lr", None)  # every lr is in the trajectory
    if params["name"] == "adamw" and params.get("weight_decay") == 0:
        params["name"] = "adam"  # torch's AdamW is Adam whose decay is decoupled: none is none
    for name in optimizer_unused(spec):
        params.pop(name, None)
    if _cycles_momentum(spec):
        params.pop("momentum", None)
        if "betas" in params:
            params["betas"] = ["cycled", params["betas"][1]]
    return params


def dry_build(configs: Sequence[Config]) -> DryReport:
    """Build every configuration; problems, effect fingerprints and produced metrics."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only cost (and the caller's are kept)
    try:
        return _dry_build(configs)
    finally:
        torch.set_num_threads(threads)


def _dry_build(configs: Sequence[Config]) -> DryReport:
    builder = _Builder()
    report = DryReport()
    # per early-stopping setting (where it is written): its problem in each configuration
    # and tuned variant that has it (None where it acts); refused only if it acts in none
    stopping: dict[str, list[tuple[str, str, str] | None]] = {}
    for cfg in configs:
        spec = cfg.spec
        try:
            shape, sizes = builder.data(cfg)
            objective = registry.build("loss", spec.loss)
            try:
                outputs = objective.num_outputs(shape.num_classes, shape.target_dim)
            except ValueError as err:
                raise _Failed(cfg.where("loss"), first_line(err)) from None
            batch = batch_size_of(spec, sizes.train)
            steps = math.ceil(sizes.train / batch)
            last = sizes.train - batch * (steps - 1)
            facts = builder.model(cfg, shape, outputs, (batch, last))
            trajectory, schedule_problems = builder.schedule(cfg, steps)
        except _Failed as failed:
            report.problems.append((failed.key, failed.msg, cfg.label))
            continue
        except Exception as err:  # a component's own bug: still a message, never a traceback
            report.problems.append((cfg.where("model"), f"the dry build of this configuration "
                                                        f"failed: {type(err).__name__}: "
                                                        f"{first_line(err)}", cfg.label))
            continue
        for key, msg in schedule_problems:
            report.problems.append((key, msg, cfg.label))
        # patience set, yet trained as none (its effect says so: the one rule for it)
        idle = never_stops(spec) and _early_stopping_effect(spec) == "none"
        stopping.setdefault(cfg.where("early_stopping"), []).append(
            _early_stopping_problem(cfg) if idle else None)
        report.effect[spec.config_id] = hashlib.sha256(_json({
            "model": facts.text, "weights": facts.weights, "data": spec.dataset.to_dict(),
            "loss": spec.loss.to_dict(), "optimizer": _optimizer_effect(spec),
            "trajectory": trajectory, "epochs": spec.epochs, "batch": batch,
            "l1": spec.l1, "l2": spec.l2, "clip": spec.grad_clip.to_dict(),
            "early_stopping": _early_stopping_effect(spec),
            "augmentation": [a.to_dict() for a in spec.augmentation],
            # what the model's repr may not show (a plugin activation's parameter), where
            # the model has layers they act on
            "units": [spec.activation.to_dict(), spec.norm.to_dict(), spec.dropout]
            if facts.activations else None,
        }).encode()).hexdigest()
        report.explain[spec.config_id] = "no hidden layer" if not facts.activations else ""
        report.produced[spec.config_id] = produced_metrics(
            spec, weight_layers=facts.weight_layers, has_activations=facts.activations)
    # a tuned epochs or early stopping: the configurations' own values are not what trains,
    # and a range with one idle end still tunes (as tuned_identical judges ranges)
    tuned = any(cfg.where(axis).startswith("tune.") for cfg in configs
                for axis in ("epochs", "early_stopping") if axis in cfg.origins)
    for found in stopping.values():
        if all(found) and not tuned:
            report.problems.extend(p for p in found if p is not None)
    return report
