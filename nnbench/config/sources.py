"""Sources of randomness: which seed each trial gives to each of them.

A trial draws random numbers from five independent streams, each seeded from its own
seed (`seeding.generator(seed, purpose)`):

- `split`: the train/val split (and the held-out test split or folds of datasets
  without an official test split);
- `init`: the initial weights (the init's generator, and the global RNG PyTorch's own
  module inits draw from);
- `data_order`: the order of the training examples, i.e. which examples make each batch;
- `augmentation`: the random draws of the augmentations;
- `dropout`: the dropout masks.

Dropout and augmentation are separate sources, not part of `data_order`: the engines
already draw them from separate streams, and Bouthillier et al. (2021, "Accounting for
variance in machine learning benchmarks") measure them separately.

A suite's `seeds:` says which seed each source gets (`SeedDesign`):

- `seeds: 4` or `seeds: [3, 7]` (the default form): trial k has one seed driving every
  source, as always;
- `seeds: {init: 3, data_order: 3}`: the sources named get seeds 0..n-1 (or a list),
  crossed (3 × 3 = 9 trials per configuration); the other sources are held at `fixed`
  (default 0);
- `seeds: {count: 4, vary: [init]}`: 4 trials per configuration in which the sources
  of `vary` take seeds 0..3 together; the others are held at `fixed`.

A trial's seeds live in its spec (`TrialSpec.seed` for every source without its own,
`TrialSpec.source_seeds` for the others); a trial of the default form has no
`source_seeds`, so its id is what it always was.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nnbench.messages import describe, did_you_mean

if TYPE_CHECKING:
    from nnbench.config.spec import TrialSpec

__all__ = ["SOURCES", "SeedDesign", "parse_seeds", "source_problems"]

SOURCES: dict[str, str] = {
    "split": "the train/val split (and a held-out test split or folds)",
    "init": "the initial weights",
    "data_order": "the order of the training examples (which examples make each batch)",
    "augmentation": "the random draws of the augmentations",
    "dropout": "the dropout masks",
}
MAX_SEED = 2**63 - 1
_FORM_KEYS = ("count", "vary", "fixed")


@dataclass(frozen=True)
class SeedDesign:
    """The seeds each trial of a configuration gets, source by source.

    `factors` are crossed; within one factor its sources take the same seed together.
    Sources in no factor are held at `fixed`.
    """

    factors: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...]  # (sources, their seeds)
    fixed: int = 0  # seed of every source no factor varies
    form: Literal["common", "crossed", "together"] = "crossed"  # how the suite wrote it

    @classmethod
    def common(cls, seeds: Sequence[int]) -> SeedDesign:
        """The default form: one seed per trial, driving every source."""
        return cls(factors=((tuple(SOURCES), tuple(seeds)),), form="common")

    @property
    def per_source(self) -> bool:
        """Whether the sources get their own seeds (not the default form)."""
        return self.form != "common"

    @property
    def varied(self) -> tuple[tuple[str, ...], ...]:
        """The factors that take more than one seed, as their sources (e.g. `(("init",),
        ("data_order",))`); sources varied together form one factor."""
        return tuple(sources for sources, seeds in self.factors if len(seeds) > 1)

    def combinations(self) -> list[dict[str, int]]:
        """Every trial's seeds (source -> seed), the factors crossed in order."""
        out = []
        for combo in itertools.product(*(seeds for _, seeds in self.factors)):
            seeds = dict.fromkeys(SOURCES, self.fixed)
            for (sources, _), seed in zip(self.factors, combo, strict=True):
                seeds.update(dict.fromkeys(sources, seed))
            out.append(seeds)
        return out

    def __len__(self) -> int:
        n = 1
        for _, seeds in self.factors:
            n *= len(seeds)
        return n

    def seeds_of(self, source: str) -> tuple[int, ...]:
        """The seeds `source` takes across the trials (in order, once each)."""
        return tuple(dict.fromkeys(c[source] for c in self.combinations()))

    def label(self, spec: TrialSpec) -> str:
        """The trial's seeds of the varied factors, `init=1, data_order=2`: what pairs
        trials of different configurations (the same label, the same draws)."""
        if not self.per_source:
            return str(spec.seed)
        return ", ".join(f"{'+'.join(sources)}={spec.seed_of(sources[0])}"
                         for sources in self.varied) or f"all={self.fixed}"

    def describe(self) -> str:
        """`init 0..2 × data_order 0..2 (9 per configuration); split, augmentation,
        dropout fixed at 0`."""
        if not self.per_source:
            return ", ".join(str(s) for s in self.factors[0][1])
        parts = [f"{'+'.join(sources)} {_seeds_text(seeds)}" for sources, seeds in self.factors]
        held = [s for s in SOURCES if not any(s in sources for sources, _ in self.factors)]
        text = f"{' × '.join(parts)} ({len(self)} per configuration)"
        return text + (f"; {', '.join(held)} fixed at {self.fixed}" if held else "")


def _seeds_text(seeds: tuple[int, ...]) -> str:
    if len(seeds) > 2 and seeds == tuple(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_ALLOWED = (f"a count, a list of seeds, or a mapping: a count or list of seeds per source "
            f"({', '.join(SOURCES)}; crossed), e.g. {{init: 3, data_order: 3}}, or "
            f"{{count: n, vary: [sources]}}; either with fixed: <seed of the other sources, "
            f"default 0>")


def parse_seeds(raw: Mapping[Any, Any], key: str,
                problems: list[tuple[str, str]]) -> SeedDesign | None:
    """The per-source form of `seeds:` (a mapping); None (and problems) when invalid."""
    if not raw:
        problems.append((key, f"expected {_ALLOWED}, got an empty mapping"))
        return None
    before = len(problems)
    known = (*SOURCES, *_FORM_KEYS)
    for name in raw:
        if name not in known:
            problems.append((f"{key}.{name}", f"unknown source of randomness {describe(name)}; "
                                              f"{did_you_mean(str(name), known)}allowed: "
                                              f"{', '.join(SOURCES)} (each with a count or "
                                              f"list of seeds), or count and vary; and fixed"))
    fixed = raw.get("fixed", 0)
    if not (_is_int(fixed) and 0 <= fixed <= MAX_SEED):
        problems.append((f"{key}.fixed", f"expected the seed of the sources not varied, an "
                                         f"integer from 0 to 2**63 - 1, got {describe(fixed)}"))
    named = [s for s in SOURCES if s in raw]
    factors: list[tuple[tuple[str, ...], tuple[int, ...]]] = []
    form: Literal["crossed", "together"] = "crossed"
    if "count" in raw or "vary" in raw:
        if named:
            problems.append((f"{key}.{named[0]}", "give either seeds per source (crossed: "
                                                  "{init: 3, data_order: 3}) or count "
                                                  "with vary ({count: 4, vary: [init]}), "
                                                  "not both"))
        count: Any = raw.get("count")
        vary = raw.get("vary")
        if not (_is_int(count) and count >= 1):
            problems.append((f"{key}.count", f"expected the number of seeds, an integer >= 1, "
                                             f"got {describe(count)}"))
        sources = _sources(vary, f"{key}.vary", problems)
        if not problems[before:]:
            factors.append((sources, tuple(range(count))))
        form = "together"
    elif not named:
        if not problems[before:]:  # an unknown name says it already
            problems.append((key, f"names no source to vary; expected {_ALLOWED}"))
    else:
        for source in named:
            seeds = _seed_list(raw[source], f"{key}.{source}", problems)
            factors.append(((source,), seeds))
    if problems[before:]:
        return None
    return SeedDesign(factors=tuple(factors), fixed=fixed, form=form)


def _sources(raw: Any, key: str, problems: list[tuple[str, str]]) -> tuple[str, ...]:
    allowed = f"a non-empty list of sources of randomness ({', '.join(SOURCES)})"
    if not isinstance(raw, list) or not raw:
        problems.append((key, f"expected {allowed}, got {describe(raw)}"))
        return ()
    for i, name in enumerate(raw):
        if name not in SOURCES:
            problems.append((f"{key}[{i}]", f"unknown source of randomness {describe(name)}; "
                                            f"{did_you_mean(str(name), SOURCES)}allowed: "
                                            f"{', '.join(SOURCES)}"))
        elif raw.index(name) != i:
            problems.append((f"{key}[{i}]", f"{name} listed twice; list each source once"))
    return tuple(raw)


def _seed_list(raw: Any, key: str, problems: list[tuple[str, str]]) -> tuple[int, ...]:
    allowed = ("a count >= 1 (seeds 0..n-1) or a non-empty list of distinct integers from "
               "0 to 2**63 - 1")
    if _is_int(raw) and raw >= 1:
        return tuple(range(raw))
    if isinstance(raw, list) and raw and all(_is_int(s) and 0 <= s <= MAX_SEED for s in raw):
        if len(set(raw)) == len(raw):
            return tuple(raw)
        dupes = sorted({s for s in raw if raw.count(s) > 1})
        problems.append((key, f"seed(s) {dupes} listed twice in {describe(raw)}; {allowed}"))
        return ()
    problems.append((key, f"expected {allowed}, got {describe(raw)}"))
    return ()


def source_problems(design: SeedDesign, configs: Sequence[TrialSpec], key: str
                    ) -> list[tuple[str, str]]:
    """A source varied on its own that no configuration draws from: its trials would be
    identical (a variance of exactly 0, and repeated trials counted as evidence)."""
    from nnbench import registry

    why: dict[str, str] = {}  # source -> why no configuration draws from it
    if all(c.dropout == 0 for c in configs):
        why["dropout"] = "dropout is 0 in every configuration: no masks are drawn"
    if not any(registry.build("augmentation", a).stage == "train"
               for c in configs for a in c.augmentation):
        why["augmentation"] = ("no configuration has a random augmentation (none, or "
                               "normalize only): nothing is drawn")
    if all(c.batch_size == "full" for c in configs):
        why["data_order"] = ("every configuration trains on the full batch (batch_size: "
                             "full), where the order of the examples changes only "
                             "floating-point rounding")
    problems = []
    for sources in design.varied:
        if set(sources) <= set(why):
            where = f"{key}.vary" if design.form == "together" else f"{key}.{sources[0]}"
            problems.append((where, f"{'; '.join(why[s] for s in sources)}; varying "
                                    f"{' and '.join(sources)} would train identical trials; "
                                    f"allowed: a source some configuration draws from "
                                    f"({', '.join(s for s in SOURCES if s not in why)})"))
    return problems
