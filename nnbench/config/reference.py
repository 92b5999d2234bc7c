"""A suite's `reference:` block: published numbers the report puts beside the measured ones.

    reference:
      source: Greydanus & Kobak, Scaling down deep learning with MNIST-1D, Table 1
      url: https://arxiv.org/abs/2011.14439
      metric: test_accuracy        # default: the suite's metric
      tolerance: 0.03              # |measured mean - published| within this: reproduced
      results:
        - {where: {model: logistic}, value: 0.32}
        - {where: {model: {name: mlp, hidden: [100, 100]}}, value: 0.68}

`where` selects configurations by their varied axes, exactly like a claim's `a`/`b`
(values resolved and matched to the labels the report's tables use); `value` is in the
metric's own unit (accuracy as a fraction). Parsed by `parse_reference`, which reports
problems through the suite validator, so the lead can move it with the validation code.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from nnbench.config.suite import Suite

__all__ = ["PublishedResult", "Reference", "parse_reference"]

REFERENCE_KEYS = ("source", "url", "metric", "tolerance", "results", "note")
RESULT_KEYS = ("where", "value", "note")


@dataclass(frozen=True)
class PublishedResult:
    where: Mapping[str, str]  # varied axis -> value label, as the report's tables show them
    value: float  # the published number, in the metric's unit
    note: str = ""


@dataclass(frozen=True)
class Reference:
    source: str  # citation
    url: str
    metric: str  # the measured metric compared with the published values
    tolerance: float | None  # |measured mean - published| <= tolerance: reproduced
    results: tuple[PublishedResult, ...]
    note: str = ""


class _Validator(Protocol):
    def problem(self, key: str, msg: str) -> None: ...

    def mapping(self, value: Any, key: str, allowed: Any) -> dict[str, Any]: ...

    def claim_side(self, raw: Any, key: str, suite: Suite, required: bool) -> dict[str, str]: ...


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_reference(raw: Any, suite: Suite, v: _Validator) -> Reference | None:
    """Check a `reference:` block; problems go to the validator (file, key path, allowed)."""
    from nnbench.config.suite import DIAGNOSTICS, METRICS

    entry = v.mapping(raw, "reference", REFERENCE_KEYS)
    if not entry:
        if not isinstance(raw, dict):
            return None
        v.problem("reference", f"expected keys {', '.join(REFERENCE_KEYS)} (source and "
                               f"results required)")
        return None
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        v.problem("reference.source", f"expected the citation as text, got {source!r}")
    url, note = entry.get("url", ""), entry.get("note", "")
    for key, text in (("url", url), ("note", note)):
        if not isinstance(text, str):
            v.problem(f"reference.{key}", f"expected text, got {text!r}")
    metric = entry.get("metric", suite.metric)
    allowed = [*METRICS, *DIAGNOSTICS]
    if metric not in allowed:
        close = difflib.get_close_matches(str(metric), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        v.problem("reference.metric", f"unknown metric {metric!r}; {hint}allowed: "
                                      f"{', '.join(allowed)}")
    tolerance = entry.get("tolerance")
    if tolerance is not None and not (_number(tolerance) and tolerance >= 0):
        v.problem("reference.tolerance", f"expected a number >= 0 (in the metric's unit), "
                                         f"got {tolerance!r}")
        tolerance = None
    items = entry.get("results")
    if not isinstance(items, list) or not items:
        v.problem("reference.results", f"expected a non-empty list of {{where: {{axis: value}}, "
                                       f"value: number}}, got {items!r}")
        items = []
    results = []
    for i, item in enumerate(items):
        key = f"reference.results[{i}]"
        result = v.mapping(item, key, RESULT_KEYS)
        if not isinstance(item, dict):
            continue
        value: Any = result.get("value")
        if not _number(value):
            v.problem(f"{key}.value", f"expected the published number, got {value!r}")
        where = v.claim_side(result.get("where"), f"{key}.where", suite, True)
        text = result.get("note", "")
        if not isinstance(text, str):
            v.problem(f"{key}.note", f"expected text, got {text!r}")
        if where and _number(value):
            results.append(PublishedResult(where=where, value=float(value), note=str(text)))
    seen: dict[tuple[tuple[str, str], ...], int] = {}
    for i, r in enumerate(results):
        marker = tuple(sorted(r.where.items()))
        if marker in seen:
            v.problem(f"reference.results[{i}].where", f"the same configurations as "
                                                       f"reference.results[{seen[marker]}]")
        seen.setdefault(marker, i)
    return Reference(source=str(source), url=str(url), metric=str(metric),
                     tolerance=float(tolerance) if tolerance is not None else None,
                     results=tuple(results), note=str(note))
