"""`expect:` claims: what each says, and whether the suite can ever test it.

A claim compares the configurations matching `a` with those matching `b` (optionally
only `where`), seed by seed with the other varied axes matched, on one metric. It is
rejected when it could only ever be "inconclusive": an axis the suite does not vary,
a value no configuration has, a metric none of the compared configurations logs (e.g.
`saturated_fraction` under ReLU, `grad_norm.layer9` of a 3-layer net, `val_rmse` of a
classifier), no pair of configurations that differ only as the claim says, or fewer
than two seeds to pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nnbench import registry
from nnbench.config.expand import METRICS, Suite
from nnbench.config.sections import ClaimSection, check
from nnbench.config.spec import AXES, NOT_APPLICABLE, TrialSpec, value_label
from nnbench.messages import describe, did_you_mean
from nnbench.registry import ComponentError

__all__ = ["DIAGNOSTICS", "Claim", "check_claims", "side"]

# per-epoch diagnostics a claim may be about, besides the metrics above
DIAGNOSTICS = ("weight_sparsity", "dead_fraction", "saturated_fraction", "gap_loss",
               "gap_accuracy", "gap_rmse", "gap_mae")
# what a claim's `direction` defaults to: the metric's better way ("a beats b"); a gradient
# norm has none, and a claim on one names its direction
_BETTER: dict[str, Literal["higher", "lower"]] = {
    **{m: "higher" if higher else "lower" for m, higher in METRICS.items()},
    "weight_sparsity": "higher", "dead_fraction": "lower", "saturated_fraction": "lower",
    **{f"gap_{m}": "lower" for m in ("loss", "accuracy", "rmse", "mae")}}


@dataclass(frozen=True)
class Claim:
    """An `expect:` entry: configurations matching `a` have a higher/lower `metric` than
    those matching `b` (seed-paired, other axes matched), optionally only `where`."""

    text: str
    a: Mapping[str, str]  # axis -> value label, as report tables show them
    b: Mapping[str, str]
    metric: str
    direction: Literal["higher", "lower"]
    where: Mapping[str, str] = field(default_factory=dict)


def check_claims(raw: list[Any] | None, suite: Suite, produced: Mapping[str, frozenset[str]],
                 seeds: int, problems: list[tuple[str, str]],
                 seeds_key: str = "seeds") -> tuple[Claim, ...]:
    """The suite's claims; every problem appended to `problems`.

    `produced` maps each configuration's config_id to the metrics it logs (from the dry
    build); `seeds` is how many seeds the compared trials will have, set by `seeds_key`
    (`tune.seeds` for a tuned suite's re-runs: `seeds:` is refused beside it).
    """
    if not raw:
        return ()
    claims = []
    seen: dict[tuple[Any, ...], str] = {}  # what a claim tests -> the first key testing it
    texts: dict[str, str] = {}  # a claim's text (spacing and case aside) -> its key
    metrics = [*METRICS, *DIAGNOSTICS]
    for i, item in enumerate(raw):
        key = f"expect[{i}]"
        section = check(ClaimSection, item, key, problems)
        if section is None:
            continue
        metric = section.metric or suite.metric
        if metric not in metrics and not _is_grad_norm(metric):
            problems.append((f"{key}.metric", f"unknown metric {describe(metric)}; "
                                              f"{did_you_mean(metric, metrics)}allowed: "
                                              f"{', '.join(metrics)}, grad_norm.layerN"))
            continue
        sides = {name: side(getattr(section, name), f"{key}.{name}", suite, problems)
                 for name in ("a", "b", "where")}
        if any(v is None for v in sides.values()):
            continue
        a, b, where = sides["a"] or {}, sides["b"] or {}, sides["where"] or {}
        if a == b:
            problems.append((f"{key}.b", f"a and b select the same configurations "
                                         f"({_text(a)}); the claim compares nothing"))
            continue
        if set(a) != set(b):  # {activation: tanh} against {optimizer.lr: 0.1}: the sides
            # overlap (tanh with lr 0.1 is on both) and pair nothing; it was tested anyway
            problems.append((f"{key}.b", f"a sets {', '.join(sorted(a))} and b sets "
                                         f"{', '.join(sorted(b))}: a claim compares levels "
                                         f"of the same axes, so give a and b the same ones "
                                         f"(and what both sides share in where:)"))
            continue
        # "a beats b": on a loss, lower (a claim on val_loss meant higher loss before)
        direction = section.direction or _BETTER.get(metric)
        claim = Claim(text=section.claim, a=a, b=b, metric=metric,
                      direction=direction or "higher", where=where)
        why = _untestable(claim, suite, produced, seeds, seeds_key)
        if why:
            problems.append((key, f"claim {section.claim!r} can never be tested: {why}"))
            continue
        if direction is None:
            problems.append((f"{key}.direction", f"{metric} has no better direction; say "
                                                 f"which a must have: direction: higher or "
                                                 f"direction: lower"))
            continue
        tests = (tuple(sorted(a.items())), tuple(sorted(b.items())),
                 tuple(sorted(where.items())), metric, claim.direction)
        if tests in seen:  # counted twice in the Holm correction, and two rows alike
            problems.append((key, f"claim {section.claim!r} tests what {seen[tests]} tests "
                                  f"(the same a, b, where, metric and direction); remove one"))
            continue
        # "a higher than b" is "b lower than a": the same test, counted twice by Holm
        mirror = (tests[1], tests[0], tests[2], metric,
                  "lower" if claim.direction == "higher" else "higher")
        if mirror in seen:
            problems.append((key, f"claim {section.claim!r} tests what {seen[mirror]} tests, "
                                  f"with a and b swapped and the direction reversed (the "
                                  f"same test, counted twice in the Holm correction); remove "
                                  f"one"))
            continue
        named = " ".join(str(section.claim).split()).casefold()
        if named in texts:  # the report's rows and the summary name claims by their text
            problems.append((f"{key}.claim", f"claim {section.claim!r} is also the text of "
                                             f"{texts[named]}, which tests something else: "
                                             f"the report's rows would read alike; word "
                                             f"each claim after what it tests"))
            continue
        texts[named] = key
        seen[tests] = key
        claims.append(claim)
    return tuple(claims)


def _is_grad_norm(metric: str) -> bool:
    prefix = "grad_norm.layer"
    return metric.startswith(prefix) and metric[len(prefix):].isdigit()


def _text(side: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in side.items())


def side(raw: dict[str, Any] | None, key: str, suite: Suite,
          problems: list[tuple[str, str]]) -> dict[str, str] | None:
    """`{axis: value}` resolved to the labels the report's tables use; None if invalid."""
    if raw is None:
        return {}
    varied = suite.varied_axes
    out: dict[str, str] = {}
    ok = True
    for axis, value in raw.items():
        where = f"{key}.{axis}"
        if axis not in varied:
            problems.append((where, f"{axis!r} is not varied by this suite; "
                                    f"{did_you_mean(axis, varied)}allowed: "
                                    f"{', '.join(varied) or 'none (the suite varies nothing)'}"))
            ok = False
            continue
        head, dot, param = axis.partition(".")
        labels = set(suite.levels(axis))
        if dot and value == NOT_APPLICABLE and value in labels:
            out[axis] = value  # the level of the components without that parameter
            continue
        try:
            if dot:
                component = suite.base.value(head).to_dict()
                resolved = registry.resolve(AXES[head].kind or "",
                                            {**component, param: value}).kwargs[param]
            else:
                resolved = _resolve(head, value)
        except (ComponentError, ValueError) as err:
            problems.append((where, str(err)))
            ok = False
            continue
        label = value_label(axis, resolved)
        if label not in labels:
            problems.append((where, f"no configuration has {axis}={label} (given "
                                    f"{describe(value)}); the suite has "
                                    f"{', '.join(sorted(labels))}"))
            ok = False
            continue
        out[axis] = label
    return out if ok else None


def _resolve(axis: str, value: Any) -> Any:
    spec = AXES[axis]
    if spec.scalar is not None:
        from pydantic import TypeAdapter, ValidationError

        try:
            return TypeAdapter(spec.scalar).validate_python(value, strict=True)
        except ValidationError:
            raise ValueError(f"{axis} must be {spec.expects}, got {describe(value)}") from None
    kind = spec.kind or ""
    if spec.many:
        if not isinstance(value, list):
            raise ValueError(f"{axis} must be a list of {kind}s, got {describe(value)}")
        return tuple(registry.resolve(kind, v) for v in value)
    return registry.resolve(kind, value)


def _matches(spec: TrialSpec, side: Mapping[str, str]) -> bool:
    return all(spec.label([axis]).partition("=")[2] == label for axis, label in side.items())


def _untestable(claim: Claim, suite: Suite, produced: Mapping[str, frozenset[str]],
                seeds: int, seeds_key: str) -> str:
    """Why the report could never give this claim a verdict ("" when it can)."""
    if seeds < 2:
        return (f"a seed-paired test needs at least 2 seeds and the compared trials have "
                f"{seeds}; set {seeds_key}: 2 or more")
    scope = [c for c in suite.configurations() if _matches(c, claim.where)]
    a = [c for c in scope if _matches(c, claim.a)]
    b = [c for c in scope if _matches(c, claim.b)]
    where = f" where {_text(claim.where)}" if claim.where else ""
    if not a or not b:
        empty = "a" if not a else "b"
        return f"no configuration matches {empty} ({_text(getattr(claim, empty))}){where}"
    keys = suite.paired_on(claim.a, claim.b)

    def signature(c: TrialSpec) -> tuple[str, ...]:
        return tuple(suite.key_label(key, c) for key in keys)

    pairs = [(x, y) for x in a for y in b if signature(x) == signature(y)]
    if not pairs:
        return (f"no configuration matching a ({_text(claim.a)}) has a partner matching b "
                f"({_text(claim.b)}) with the same {', '.join(keys)}{where}; nothing can be "
                f"paired")
    logged = [(x, y) for x, y in pairs
              if claim.metric in produced.get(x.config_id, frozenset())
              and claim.metric in produced.get(y.config_id, frozenset())]
    if not logged:
        def silent(configs: list[TrialSpec]) -> list[TrialSpec]:
            return [c for c in configs if claim.metric not in produced.get(c.config_id, ())]

        # the side(s) that never log it: a claim is paired, so one silent side is enough
        sides = [(name, chosen, silent(list(dict.fromkeys(configs))))
                 for name, chosen, configs in (("a", claim.a, [x for x, _ in pairs]),
                                               ("b", claim.b, [y for _, y in pairs]))]
        why = {name: _why_not_logged(claim.metric, configs[0])
               for name, _, configs in sides if configs}
        if len(why) == 2 and why["a"] == why["b"]:
            named = (f"neither a ({_text(claim.a)}) nor b ({_text(claim.b)}) logs it: "
                     f"{why['a']}")
        else:
            named = "; ".join(f"{name} ({_text(chosen)}) does not log it: {why[name]}"
                              for name, chosen, _ in sides if name in why)
        # what a claim on these configurations could use: what every one of them logs
        both = frozenset.intersection(*(produced.get(c.config_id, frozenset()) for c in a + b))
        by = sorted(m for m in both if not m.startswith(("train_", "val_", "test_")))
        return (f"{claim.metric!r} is not logged by the compared configurations: {named}; "
                f"all of them log {', '.join(by) or 'nothing else'} besides the loss metrics")
    return ""


def _why_not_logged(metric: str, spec: TrialSpec) -> str:
    family = registry.get("activation", spec.activation.name).attrs.get("family")
    hidden = f"model '{spec.model.name}' has no hidden layer whose units could be counted"
    if metric == "dead_fraction":
        return (hidden if family == "relu" else
                f"dead units are counted for the ReLU family; activation "
                f"'{spec.activation.name}' is {family or 'neither'}")
    if metric == "saturated_fraction":
        return (hidden if family == "saturating" else
                f"saturated units are counted for sigmoid and tanh; activation "
                f"'{spec.activation.name}' is not saturating")
    if _is_grad_norm(metric):
        if int(metric.rsplit("layer", 1)[1]) < 1:
            return "weight layers are numbered from 1 (grad_norm.layer1: the input layer)"
        return "the model has fewer weight layers"
    metrics = registry.get("loss", spec.loss.name).attrs["metrics"]
    return f"loss '{spec.loss.name}' reports {', '.join(metrics)}"
