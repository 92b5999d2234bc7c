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
metric's own unit (accuracy as a fraction). Checked by `parse_reference` in the
validator's last step, problems as (key path, message) like every other section's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nnbench.messages import describe, did_you_mean

if TYPE_CHECKING:
    from nnbench.config.expand import Suite

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


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(value: Any, key: str, allowed: tuple[str, ...],
             problems: list[tuple[str, str]]) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        problems.append((key, f"expected a mapping with keys {', '.join(allowed)}, got "
                              f"{describe(value)}"))
        return None
    for k in value:
        if k not in allowed:
            problems.append((f"{key}.{k}", f"unknown key {k!r}; {did_you_mean(k, allowed)}"
                                           f"allowed: {', '.join(allowed)}"))
    return value


# diagnostics that are shares of units or weights, in [0, 1]
_FRACTIONS = ("weight_sparsity", "dead_fraction", "saturated_fraction")


def parse_reference(raw: Any, suite: Suite, problems: list[tuple[str, str]],
                    produced: Mapping[str, frozenset[str]] | None = None) -> Reference | None:
    """Check a `reference:` block; problems appended as (key path, message). `produced`:
    the metrics each configuration logs (the dry build's), none of which may lack the
    reference's metric."""
    from nnbench.config.claims import DIAGNOSTICS, _matches, side
    from nnbench.config.expand import METRICS

    entry = _mapping(raw, "reference", REFERENCE_KEYS, problems)
    if entry is None:
        return None
    if not entry:
        problems.append(("reference", f"expected keys {', '.join(REFERENCE_KEYS)} (source and "
                                      f"results required)"))
        return None
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        problems.append(("reference.source", f"expected the citation as text, got "
                                             f"{describe(source)}"))
    url, note = entry.get("url", ""), entry.get("note", "")
    for key, text in (("url", url), ("note", note)):
        if not isinstance(text, str):
            problems.append((f"reference.{key}", f"expected text, got {describe(text)}"))
    if isinstance(url, str) and url:  # the report links it: a javascript: one ran there
        try:
            parts = urlsplit(url.strip())
            web = parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
        except ValueError:  # (an unclosed IPv6 bracket: 'http://[arxiv.org/abs/1')
            web = False
        if not web:
            problems.append(("reference.url", f"expected a web address (http:// or "
                                              f"https://, with a host), got {describe(url)}; "
                                              f"the report links it"))
    metric = entry.get("metric", suite.metric)
    allowed = [*METRICS, *DIAGNOSTICS]
    logged = sorted(set().union(*produced.values())) if produced else []
    if metric not in allowed:
        problems.append(("reference.metric", f"unknown metric {describe(metric)}; "
                                             f"{did_you_mean(metric, allowed)}allowed: "
                                             f"{', '.join(allowed)}"))
    elif logged and metric not in logged:  # the rows could never be measured
        problems.append(("reference.metric", f"{metric} is logged by no configuration of the "
                                             f"suite, so the published numbers could never "
                                             f"be compared; the trials log "
                                             f"{', '.join(m for m in logged if m in allowed)}"))
    # a metric that is a fraction (accuracy, sparsity, ...), and the span of its values
    span = 1 if isinstance(metric, str) and (METRICS.get(metric) or metric in _FRACTIONS) \
        else 2 if metric == "gap_accuracy" else None
    tolerance = entry.get("tolerance")
    if tolerance is not None and not (_number(tolerance) and tolerance >= 0):
        problems.append(("reference.tolerance", f"expected a number >= 0 (in the metric's "
                                                f"unit), got {describe(tolerance)}"))
        tolerance = None
    elif tolerance is not None and span is not None and tolerance >= span:  # every row
        problems.append(("reference.tolerance", f"{tolerance:g} on {metric}, whose values "
                                                f"span {span} at most, makes every row "
                                                f"reproduced; give it as a fraction (0.01 "
                                                f"for a point of accuracy)"))
        tolerance = None
    items = entry.get("results")
    if not isinstance(items, list) or not items:
        problems.append(("reference.results", f"expected a non-empty list of "
                                              f"{{where: {{axis: value}}, value: number}}, "
                                              f"got {describe(items)}"))
        items = []
    results = []
    for i, item in enumerate(items):
        key = f"reference.results[{i}]"
        result = _mapping(item, key, RESULT_KEYS, problems)
        if result is None:
            continue
        value: Any = result.get("value")
        if not _number(value):
            problems.append((f"{key}.value", f"expected the published number, got "
                                             f"{describe(value)}"))
        elif span == 1 and not 0 <= value <= 1:
            problems.append((f"{key}.value", f"expected a {metric} in [0, 1] (a fraction, "
                                             f"not a percentage), got {value:g}"))
            value = None
        elif metric == "gap_accuracy" and not -1 <= value <= 1:
            problems.append((f"{key}.value", f"expected a gap_accuracy in [-1, 1] (train "
                                             f"minus validation accuracy), got {value:g}"))
            value = None
        elif isinstance(metric, str) and metric in METRICS and value < 0:
            problems.append((f"{key}.value", f"expected a {metric} >= 0 (it cannot be "
                                             f"negative), got {value:g}"))
            value = None
        raw_where = result.get("where")
        if not isinstance(raw_where, dict) or not raw_where:
            problems.append((f"{key}.where", f"expected a mapping of varied axes "
                                             f"({', '.join(suite.varied_axes) or 'none'}) to "
                                             f"values, got {describe(raw_where)}"))
            continue
        where = side(raw_where, f"{key}.where", suite, problems)
        if where and produced and isinstance(metric, str) and metric in logged:
            lacking = [c.label(suite.varied_axes) for c in suite.configurations()
                       if _matches(c, where) and metric not in produced.get(c.config_id, ())]
            if lacking:  # the report said "no trial it selects has finished"
                problems.append((f"{key}.where", f"selects {', '.join(lacking)}, which "
                                                 f"never log{'s' if len(lacking) == 1 else ''} "
                                                 f"{metric}, so this row could never be "
                                                 f"compared"))
        text = result.get("note", "")
        if not isinstance(text, str):
            problems.append((f"{key}.note", f"expected text, got {describe(text)}"))
        if where and _number(value):
            results.append(PublishedResult(where=where, value=float(value), note=str(text)))
    seen: dict[tuple[tuple[str, str], ...], int] = {}
    for i, r in enumerate(results):
        marker = tuple(sorted(r.where.items()))
        if marker in seen:
            problems.append((f"reference.results[{i}].where", f"the same configurations as "
                                                              f"reference.results[{seen[marker]}]"))
        seen.setdefault(marker, i)
    return Reference(source=str(source), url=str(url), metric=str(metric),
                     tolerance=float(tolerance) if tolerance is not None else None,
                     results=tuple(results), note=str(note))
