"""Data hygiene: examples shared between splits (leakage) and each split's class balance.

A test example whose input also appears, identically, in the training split measures
memory, not generalisation; one shared by validation and training flatters every
choice made on validation (early stopping, tuning). `dataset_hygiene(spec, seeds)`
counts them on the splits the trials train on, for the three pairs

    test vs train, val vs train, test vs val

("5 of 20 test examples are also in train"), and counts each split's examples per
class (class targets; real targets have no balance to show). The command line prints
it before any trial trains (and refuses the suite under `data: {on_leakage: error}`);
the report's Setup shows it. It also warns of a batch size larger than the training split:
each step then takes the whole split, as `batch_size: full` (two such levels of a grid, which
would train alike, are refused by the suite's validation).

How (`row_keys`): each example's input is flattened to its bytes (-0.0 read as 0.0),
read as 64-bit words, and hashed by one integer matrix-vector product (exact modulo
2**64, so identical rows always hash alike). A row whose hash no other row has is
distinct from all of them; rows sharing a hash (the duplicates, and rare collisions) are
compared by their bytes. Sets of the keys answer, per example of one split, whether it
is in another. A 60k × 784 train split with its val and test: about 0.25 s on one busy
core, less than one SHA-256 over the same bytes (tests/benchmarks/test_hygiene_speed.py).
Exact duplicates only: a shifted or re-encoded copy is not found.

Splits are seeded, so the counts can differ by seed. The first seed's splits are
checked first; when no input repeats anywhere in them (the usual case) no seed's
splits can share one, and the other seeds cost nothing; otherwise every seed is
checked and the counts are given per seed. Class balance is the first seed's split.
Checked once per content: the result is kept for the process and, for a dataset that
names its content (`attrs["source"](params).key`, as nnbench.data.checks uses it: a
file's SHA-256, torchvision's files' sizes and times, a generator's parameters and
versions), as a small JSON file under `$NNBENCH_CACHE/hygiene/`, keyed by that content,
the dataset's parameters and the seeds. A re-run, and `nnbench report` (even where the
data is absent), read it instead of the data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nnbench import registry
from nnbench.data import Targets, TensorData
from nnbench.data.cache import cache_dir
from nnbench.fresh import write_atomic

if TYPE_CHECKING:
    from nnbench.config import Suite, TrialSpec

__all__ = ["PAIRS", "Hygiene", "Overlap", "SplitCounts", "check_suites", "dataset_hygiene",
           "row_keys", "split_counts", "suite_datasets"]

# (split, other): "examples of `split` also in `other`", in the order they are reported
PAIRS = (("test", "train"), ("val", "train"), ("test", "val"))
SPLITS = ("train", "val", "test")
MAX_CLASSES_LISTED = 20  # more classes: the balance is summarised (smallest, largest)
_SHORT_ROW = 32  # bytes: rows this short are their own key (hashing would not shorten them)


@dataclass(frozen=True)
class Overlap:
    """Examples of `split` whose input is also in `other`, per checked seed."""

    split: str
    other: str
    counts: tuple[int, ...]  # one per seed of `Hygiene.seeds`
    of: int  # examples in `split`

    def text(self, seeds: Sequence[int]) -> str:
        """`5 of 20 test examples are also in train`, with the counts by seed if they differ."""
        low, high = min(self.counts), max(self.counts)
        count = f"{low}" if low == high else f"{low}–{high}"
        by_seed = "" if low == high else " (" + ", ".join(
            f"seed {s}: {n}" for s, n in zip(seeds, self.counts, strict=True)) + ")"
        verb = "is" if high == 1 and low == high else "are"
        return f"{count} of {self.of} {self.split} examples {verb} also in {self.other}{by_seed}"


@dataclass(frozen=True)
class Hygiene:
    """What one dataset's splits share, and how its classes are spread."""

    dataset: str  # as tables show it: `file(path=d.npz)`, `mnist`
    seeds: tuple[int, ...]  # seeds whose splits the counts cover
    sizes: dict[str, int]  # examples per split (the same for every seed)
    overlaps: tuple[Overlap, ...]  # PAIRS, in order
    repeats: dict[str, int]  # split -> examples repeating an earlier one of it (first seed)
    targets: Targets
    num_classes: int  # 0 for real targets
    balance: dict[str, tuple[int, ...]]  # split -> examples per class (first seed); {} if real

    @property
    def leaks(self) -> tuple[Overlap, ...]:
        """The pairs that share at least one example under some seed."""
        return tuple(o for o in self.overlaps if max(o.counts) > 0)

    def leakage_text(self) -> str:
        """One sentence: what leaks (identical inputs), or that nothing does."""
        seeds = ", ".join(str(s) for s in self.seeds)
        where = f"seed{'s' if len(self.seeds) > 1 else ''} {seeds}"
        if not self.leaks:
            text = (f"no exact duplicates between splits: no test example is also in train "
                    f"or val, no val example is also in train ({where})")
        else:
            text = (f"leakage: {'; '.join(o.text(self.seeds) for o in self.leaks)} "
                    f"(identical inputs; {where})")
        repeats = [f"{s} {n}" for s, n in self.repeats.items() if n]
        if repeats:
            text += f"; examples repeating another of their own split: {', '.join(repeats)}"
        return text

    def balance_text(self, split: str) -> str:
        """`0: 45, 1: 36, 2: 9` (or a summary past MAX_CLASSES_LISTED classes)."""
        if self.targets != "class":
            return "real-valued targets: no classes to balance"
        counts = self.balance[split]
        if len(counts) <= MAX_CLASSES_LISTED:
            return ", ".join(f"{c}: {n}" for c, n in enumerate(counts))
        smallest, largest = int(np.argmin(counts)), int(np.argmax(counts))
        return (f"{len(counts)} classes, {counts[smallest]} (class {smallest}) to "
                f"{counts[largest]} (class {largest}) examples each")

    def lines(self) -> list[str]:
        """What the command line prints: sizes and leakage, then the class balance."""
        sizes = ", ".join(f"{s} {self.sizes[s]}" for s in SPLITS)
        out = [f"data {self.dataset}: {sizes} examples; {self.leakage_text()}"]
        if self.targets == "class":
            seed = self.seeds[0]
            out.append(f"  class balance (seed {seed}'s split): " + " | ".join(
                f"{s} {self.balance_text(s)}" for s in SPLITS))
        else:
            out.append("  targets are real values: no class balance")
        return out


def row_keys(*arrays: torch.Tensor | np.ndarray) -> list[list[bytes]]:
    """One key per example (row) of each array: equal keys for identical inputs, different
    keys otherwise. Keys compare only among the arrays of one call, which must have rows of
    one shape and dtype (the splits of one dataset). -0.0 counts as 0.0.

    Each row's bytes, read as 64-bit words, get a multiplicative hash (one integer
    matrix-vector product, modulo 2**64: exact, so identical rows hash alike however the
    product is computed). A row whose hash no other row has is distinct from every row:
    its key is that hash. Rows sharing a hash, the duplicates and the rare collisions, are
    compared exactly: their key is their bytes (their SHA-256 past 32 bytes)."""
    rows = [_rows(a) for a in arrays]
    if not rows or not any(len(r) for r in rows):
        return [[] for _ in rows]
    words = [_words(r) for r in rows]
    multipliers = _multipliers(words[0].shape[1])
    hashes = [w @ multipliers for w in words]  # unsigned integers wrap: modulo 2**64
    _, inverse, counts = np.unique(np.concatenate(hashes), return_inverse=True,
                                   return_counts=True)
    shared = counts[inverse.ravel()] > 1
    out: list[list[bytes]] = []
    offset = 0
    for r, h in zip(rows, hashes, strict=True):
        packed = h.astype("<u8").tobytes()
        keys = [b"#" + packed[i:i + 8] for i in range(0, len(packed), 8)]
        width = r.shape[1] * r.itemsize
        flat = r.data.cast("B") if r.size else memoryview(b"")
        for i in np.flatnonzero(shared[offset:offset + len(r)]).tolist():
            row = flat[i * width:(i + 1) * width]
            keys[i] = b"=" + (row.tobytes() if width <= _SHORT_ROW
                              else hashlib.sha256(row).digest())
        offset += len(r)
        out.append(keys)
    return out


def _rows(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """The examples as a C-contiguous (N, features) array, -0.0 made 0.0."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    a = np.ascontiguousarray(a.reshape(len(a), int(np.prod(a.shape[1:]))))
    # -0.0 + 0.0 is 0.0: the same input, the same bytes (copied only when there is one)
    if a.dtype.kind == "f" and a.size and _has_negative_zero(a):
        a = np.add(a, a.dtype.type(0))
    return a


def _has_negative_zero(a: np.ndarray) -> bool:
    if a.itemsize not in (2, 4, 8):  # no unsigned twin to compare the bits with
        return True
    bits = np.dtype(f"u{a.itemsize}")
    return bool((a.view(bits) == np.array(-0.0, a.dtype).view(bits)).any())  # one pass


def _multipliers(n: int) -> np.ndarray:
    """n fixed odd 64-bit multipliers: the hash of a row of n words."""
    return np.random.default_rng(0x5EED).integers(0, 2**64, size=n, dtype=np.uint64,
                                                  endpoint=False) | np.uint64(1)


def _words(rows: np.ndarray) -> np.ndarray:
    """Each row's bytes as uint64 words (zero-padded to a multiple of 8 bytes)."""
    width = rows.shape[1] * rows.itemsize
    if width % 8 == 0 and width:
        return rows.view(np.uint64)
    padded = np.zeros((len(rows), width // 8 + 1), dtype=np.uint64)
    padded.view(np.uint8)[:, :width] = rows.view(np.uint8).reshape(len(rows), width)
    return padded


@dataclass(frozen=True)
class SplitCounts:
    """What one seed's splits share."""

    overlaps: tuple[int, ...]  # per PAIRS
    repeats: dict[str, int]  # per split
    distinct: bool  # no input repeats anywhere: in any split or across splits


def split_counts(data: TensorData) -> SplitCounts:
    """Examples shared by each pair of PAIRS, and repeated within each split."""
    keys = dict(zip(SPLITS, row_keys(*(getattr(data, f"x_{s}") for s in SPLITS)),
                    strict=True))
    sets = {s: set(k) for s, k in keys.items()}
    overlaps = tuple(sum(k in sets[other] for k in keys[split]) for split, other in PAIRS)
    union = len(sets["train"] | sets["val"] | sets["test"])
    return SplitCounts(overlaps=overlaps,
                       repeats={s: len(keys[s]) - len(sets[s]) for s in SPLITS},
                       distinct=union == sum(len(k) for k in keys.values()))


def _balance(data: TensorData) -> dict[str, tuple[int, ...]]:
    if data.targets != "class":
        return {}
    k = data.num_classes
    return {s: tuple(int(n) for n in torch.bincount(getattr(data, f"y_{s}").cpu(),
                                                    minlength=k).tolist())
            for s in SPLITS}


HYGIENE_VERSION = 1  # part of every cache key: a change in what is counted recounts
_KEPT: dict[tuple[str, tuple[int, ...]], Hygiene] = {}  # this process's results


def dataset_key(spec: TrialSpec) -> str:
    """The dataset as trial ids see it: its parameters and the digest of what it reads."""
    digest = dict(spec.digests).get(f"dataset:{spec.dataset.name}")
    return json.dumps([spec.dataset.to_dict(), digest], sort_keys=True, default=str)


def _cache_path(spec: TrialSpec, seeds: tuple[int, ...]) -> Path | None:
    """Where this dataset's hygiene is kept between processes; None when the dataset does
    not name its content (then it is counted once per process)."""
    info = registry.get("dataset", spec.dataset.name)
    source_of = info.attrs.get("source")
    if source_of is None:
        return None
    content = getattr(source_of(info.params.model_validate(spec.dataset.kwargs)), "key", None)
    if content is None:
        return None
    # split permutations come from torch: another version may split (and so share) otherwise
    key = json.dumps([HYGIENE_VERSION, torch.__version__, content, spec.dataset.to_dict(),
                      list(seeds)],
                     sort_keys=True, default=str)
    return cache_dir() / "hygiene" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _read(path: Path) -> Hygiene | None:
    try:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return Hygiene(**{**raw, "seeds": tuple(raw["seeds"]),
                          "overlaps": tuple(Overlap(**{**o, "counts": tuple(o["counts"])})
                                            for o in raw["overlaps"]),
                          "balance": {k: tuple(v) for k, v in raw["balance"].items()}})
    except (OSError, ValueError, TypeError, KeyError):  # missing, damaged, an old layout
        return None


def _write(path: Path, hygiene: Hygiene) -> None:
    """Keep the result atomically; a cache that cannot be written costs a recount."""
    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps(asdict(hygiene)))


def dataset_hygiene(spec: TrialSpec, seeds: Sequence[int]) -> Hygiene:
    """The hygiene of `spec`'s dataset on the splits of `seeds` (built on the CPU), from
    this process's results or the cache when the same content was counted before."""
    seeds = tuple(dict.fromkeys(seeds))
    memo = (dataset_key(spec), seeds)
    if memo in _KEPT:
        return _KEPT[memo]
    path = _cache_path(spec, seeds)
    kept = _read(path) if path is not None else None
    if kept is not None:
        _KEPT[memo] = kept
        return kept
    cpu = torch.device("cpu")
    first = registry.build("dataset", spec.dataset, seed=seeds[0], device=cpu)
    counts = [split_counts(first)]
    # no input repeats in the first seed's splits (all the examples): none can be shared
    # under any other seed's split either
    for seed in seeds[1:]:
        if counts[0].distinct:
            counts.append(counts[0])
        else:
            counts.append(split_counts(registry.build("dataset", spec.dataset, seed=seed,
                                                device=cpu)))
    sizes = first.sizes()
    result = Hygiene(
        dataset=registry.label("dataset", spec.dataset), seeds=seeds, sizes=sizes,
        overlaps=tuple(Overlap(split=split, other=other, of=sizes[split],
                               counts=tuple(c.overlaps[i] for c in counts))
                       for i, (split, other) in enumerate(PAIRS)),
        repeats=counts[0].repeats, targets=first.targets, num_classes=first.num_classes,
        balance=_balance(first))
    _KEPT[memo] = result
    if path is not None:
        _write(path, result)
    return result


def suite_datasets(suite: Suite) -> list[tuple[TrialSpec, tuple[int, ...]]]:
    """Each dataset a suite trains on (one configuration using it) and the seeds its trials
    split it with (the suite's split seeds, and its tuning seeds)."""
    seeds = tuple(dict.fromkeys([*suite.design.seeds_of("split"),
                                 *(suite.tune.seeds if suite.tune else ())]))
    specs = {dataset_key(c): c for c in suite.configurations()}
    return [(spec, seeds) for spec in specs.values()]


def check_suites(suites: Sequence[Suite], *, quiet: bool = False) -> tuple[list[str], list[str]]:
    """What the command line says about the suites' data before training: (lines to print,
    problems refusing the run: leakage in a suite with `data: {on_leakage: error}`).
    `quiet` (a worker whose coordinator printed it all): only the problems."""
    lines: list[str] = []
    problems: list[str] = []
    for suite in suites:
        for spec, seeds in suite_datasets(suite):
            hygiene = dataset_hygiene(spec, seeds)
            first, *balance = hygiene.lines()
            if not hygiene.leaks:
                if not quiet:
                    lines += [f"{suite.path}: {first}", *balance]
            elif suite.data.on_leakage == "error":
                problems.append(
                    f"{suite.path}: data.on_leakage: error, and task.dataset {hygiene.dataset} "
                    f"has {hygiene.leakage_text()}; remove the shared examples from the data "
                    f"(or set data: {{on_leakage: warn}} to train anyway, with a warning)")
            elif not quiet:
                lines += [f"warning: {suite.path}: {first}; scores on shared examples measure "
                          f"memory, not generalisation (data: {{on_leakage: error}} refuses "
                          f"such data)", *balance]
            if not quiet:
                lines += _batch_warnings(suite, spec, hygiene) + _unlearnable(suite, hygiene)
    return lines, problems


def _unlearnable(suite: Suite, hygiene: Hygiene) -> list[str]:
    """A warning when val or test hold a class the training split lacks, in the first
    seed's split (the one counted): trials on it cannot learn that class, and score each of
    its examples wrong. (Another seed's split may differ, but for an official test split
    and a class the whole pool lacks.)"""
    if hygiene.targets != "class":
        return []
    train = hygiene.balance["train"]
    missing = {s: [c for c, n in enumerate(hygiene.balance[s])
                   if n and (c >= len(train) or not train[c])] for s in ("val", "test")}
    parts = [f"{s} {sum(hygiene.balance[s][c] for c in cs)} of {hygiene.sizes[s]} "
             f"(class{'es' if len(cs) > 1 else ''} {_listed(cs)})"
             for s, cs in missing.items() if cs]
    if not parts:
        return []
    return [f"warning: {suite.path}: task.dataset {hygiene.dataset}: in seed "
            f"{hygiene.seeds[0]}'s split, examples of classes its training split has none "
            f"of: {'; '.join(parts)}; trials on that split cannot learn them, and score each "
            f"of them wrong"]


def _listed(classes: list[int]) -> str:
    shown = ", ".join(map(str, classes[:MAX_CLASSES_LISTED]))
    return shown if len(classes) <= MAX_CLASSES_LISTED else \
        f"{shown} and {len(classes) - MAX_CLASSES_LISTED} more"


def _batch_warnings(suite: Suite, dataset: TrialSpec, hygiene: Hygiene) -> list[str]:
    """A warning when configurations on `dataset` step with more examples than its training
    split holds: each step takes the whole split, as `batch_size: full` does (a likely
    slip: `batch_size: 100000` for 100, a dataset smaller than thought)."""
    n, key = hygiene.sizes["train"], dataset_key(dataset)
    over = sorted({b for c in suite.configurations() if dataset_key(c) == key
                   and (b := c.batch_size) != "full" and b > n})
    if not over:
        return []
    return [f"warning: {suite.path}: batch_size {', '.join(map(str, over))} "
            f"{'is' if len(over) == 1 else 'are'} larger than the training split of "
            f"{hygiene.dataset} ({n} examples): each step takes the whole split, as "
            f"batch_size: full does"]
