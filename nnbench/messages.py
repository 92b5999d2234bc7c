"""How nnbench words problems: closest names, bounded value descriptions, key paths.

Every error that names a key, a given value and what is allowed is built from these
helpers, so suite files, component parameters and command-line options read alike:

- `closest(name, choices)`: the nearest valid name (case-insensitive), or None;
- `did_you_mean(name, choices)`: "did you mean 'relu'? " or "";
- `describe(value)`: `'reluu' (str)`, never longer than a line, whatever the value
  (a 10 MB list reads `[0, 1, 2, ...] (list of 1000000 items)`);
- `key_path(prefix, loc)`: `fixed.optimizer.betas[1]` from a pydantic error location;
- `pydantic_problems(err, prefix)`: one (key path, message) per pydantic error, the one
  place where pydantic's wording becomes nnbench's;
- `mlflow_ui(tracking_uri)`: the command that shows a store's runs, as the user's shell
  runs it.

Nothing here imports torch or pydantic at module level: `nnbench validate` stays light.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = ["MAX_VALUE_CHARS", "UsageError", "clip", "closest", "describe", "did_you_mean",
           "key_path", "mlflow_ui", "pydantic_problems"]

MAX_VALUE_CHARS = 80  # a value quoted in a message never takes more than this
MAX_MESSAGE_CHARS = 600  # one problem's message never takes more than this

_repr = reprlib.Repr()
_repr.maxstring = MAX_VALUE_CHARS - 10
_repr.maxother = MAX_VALUE_CHARS - 10
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 6
_repr.maxlevel = 3


class UsageError(Exception):
    """Bad input found before any work: printed, exit 2."""


def closest(name: object, choices: Iterable[str]) -> str | None:
    """The valid name `name` most likely meant (case-insensitive), or None."""
    options = list(choices)
    text = str(name)
    for option in options:  # a case slip is the likeliest typo of all
        if option.lower() == text.lower():
            return option
    lowered = {o.lower(): o for o in options}
    match = difflib.get_close_matches(text.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """`did you mean 'relu'? ` (with the trailing space), or "" when nothing is close."""
    match = closest(name, choices)
    return f"did you mean '{match}'? " if match is not None and match != str(name) else ""


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text`, cut to `limit` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # a terminal's colour and weight codes


def first_line(err: BaseException, *, with_type: bool = False, limit: int = 300) -> str:
    """An exception as one line: its message's first line, clipped to `limit` (`bad
    value`), with its type's name in front when `with_type` (`TypeError: bad value`); the
    type's name alone when the message is empty."""
    lines = _ANSI.sub("", str(err)).strip().splitlines()  # torch.load's bold, as plain text
    if not lines:
        return type(err).__name__
    text = clip(lines[0], limit)
    return f"{type(err).__name__}: {text}" if with_type else text


def describe(value: Any) -> str:
    """`'reluu' (str)`, `0.1 (float)`, `[1, 2, ...] (list of 9 items)`: one short line."""
    kind = type(value).__name__
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} (float)"
    text = _repr.repr(value)
    if isinstance(value, list | tuple | dict | set) and len(value) > 6:
        return f"{clip(text, MAX_VALUE_CHARS)} ({kind} of {len(value)} items)"
    return f"{clip(text, MAX_VALUE_CHARS)} ({kind})"


def key_path(prefix: str, loc: Sequence[int | str]) -> str:
    """`prefix.a.b[0]` from a location tuple (pydantic's `loc`)."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _keys_at(model: Any, loc: Sequence[Any]) -> list[str] | None:
    """The keys of the pydantic model found at `loc` inside `model` (through its fields,
    dict values, list items and optional members); None when it is not one."""
    from typing import Union, get_args, get_origin

    from pydantic import BaseModel

    def models(annotation: Any) -> list[Any]:
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        if origin is dict:
            return models(get_args(annotation)[1])
        if origin in (list, tuple, Union) or type(annotation).__name__ == "UnionType":
            return [m for a in get_args(annotation) for m in models(a)]
        if origin is not None and get_args(annotation):  # Annotated
            return models(get_args(annotation)[0])
        return []

    current: list[Any] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        fields = [m.model_fields[part].annotation for m in current if part in m.model_fields]
        if fields:
            current = [m for a in fields for m in models(a)]
        else:  # a dict's key: its values' models are already `current`
            continue
        if not current:
            return None
    return list(current[0].model_fields) if len(current) == 1 else None


_BOUNDS = frozenset({"less_than", "less_than_equal", "greater_than", "greater_than_equal"})


def pydantic_problems(err: ValidationError, prefix: str = "", *, what: str = "",
                      allowed: Sequence[str] = (), model: Any = None) -> list[tuple[str, str]]:
    """One (key path, message) per error of a pydantic validation.

    `what` names the thing validated ("optimizer 'sgd'"); `allowed` lists its keys, for
    unknown-key errors (with the closest one); `model`, the pydantic model validated: an
    unknown key inside one of its nested models lists that model's keys instead.
    """
    merged: dict[str, list[str]] = {}  # key -> messages (a union fails once per member)
    givens: dict[str, str] = {}
    errors = err.errors()
    # a sequence whose every item was refused is then "too short after validation" (blocks:
    # [0, 0, 0]: "at least 1 item after validation, not 0, given [0, 0, 0]"): the items say it
    refused_items = {tuple(e["loc"][:-1]) for e in errors
                     if e["loc"] and isinstance(e["loc"][-1], int)}
    for e in errors:
        loc = list(e["loc"])
        if e["type"] == "too_short" and tuple(loc) in refused_items and isinstance(
                e["input"], Sequence) and len(e["input"]) >= e.get("ctx", {}).get(
                "min_length", 0):  # (given too few as well: that is said)
            continue
        if e["type"] != "extra_forbidden":  # a user's key is never a union tag
            # pydantic names the union member it tried ("int", "literal['full']"): drop it
            loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS
                                                                   or p.startswith("function-")))]
        key = key_path(prefix, loc)
        given = describe(e["input"])
        if e["type"] == "extra_forbidden":
            name = str(loc[-1]) if loc else ""
            nested = _keys_at(model, loc[:-1]) if model is not None and len(loc) > 1 else None
            keys: Sequence[str] = allowed if nested is None else nested
            hint = (f"{did_you_mean(name, keys)}allowed: {', '.join(keys)}" if keys else
                    f"{what or 'it'} takes no parameters")  # ("allowed: none" read as a value)
            msg = (f"unknown parameter {name!r} for {what} (given {given}); {hint}" if what
                   else f"unknown key {name!r} (given {given}); {hint}")
            merged.setdefault(key, []).append(msg)
            continue
        if e["type"] == "missing":
            merged.setdefault(key, []).append(f"{what + ': ' if what else ''}missing; "
                                              f"it is required")
            continue
        text = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        text = _EXPECTED.get(e["type"], text[:1].lower() + text[1:])
        bound = next(iter(e.get("ctx", {}).values()), None) \
            if e["type"] in _BOUNDS else None
        if isinstance(bound, float) and abs(bound) >= 1e15:  # float32's largest: 3.4e+38
            text = f"{text.rpartition(' to ')[0]} to {bound:.2g}"
        pending = key in merged and merged[key][-1].endswith(_GIVEN_MARK)
        if e["type"] == "literal_error" and not pending:
            choices = re.findall(r"'([^']*)'", str(e.get("ctx", {}).get("expected", "")))
            names = [str(p) for p in loc if isinstance(p, str)]
            thing = names[-2] if names[-1:] == ["name"] and len(names) > 1 else \
                (names[-1] if names else "value")
            text = (f"unknown {thing} {given}; "
                    f"{did_you_mean(e['input'], choices)}allowed: {', '.join(choices)}")
            merged.setdefault(key, []).append(f"{what + ': ' if what else ''}{text}")
            continue
        if e["type"].startswith("bool") and str(e["input"]).lower() in _YAML11_BOOLS:
            text += " (YAML 1.2: yes/no/on/off are text)"
        if pending:
            previous = merged[key][-1].removesuffix(_GIVEN_MARK)
            merged[key][-1] = f"{previous} or {text.removeprefix('input should be ')}" \
                              f"{_GIVEN_MARK}"
        else:
            merged.setdefault(key, []).append(f"{what + ': ' if what else ''}{text}{_GIVEN_MARK}")
        givens[key] = given
    problems: list[tuple[str, str]] = []
    for key, messages in merged.items():
        for msg in messages:
            if msg.endswith(_GIVEN_MARK):
                msg = f"{msg.removesuffix(_GIVEN_MARK)}, given {givens[key]}"
            problems.append((key, clip(msg)))
    return problems


_GIVEN_MARK = "\x00given"
# what a value of the wrong type should have been, in the words messages use
_EXPECTED = {
    "bool_type": "expected true or false", "bool_parsing": "expected true or false",
    "int_type": "expected an integer", "int_parsing": "expected an integer",
    "int_from_float": "expected an integer (no fractional part)",
    "float_type": "expected a number", "float_parsing": "expected a number",
    "finite_number": "expected a finite number (.inf and .nan are not allowed here)",
    "string_type": "expected text", "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "list_type": "expected a list", "tuple_type": "expected a list",
}
_YAML11_BOOLS = {"yes", "no", "on", "off", "y", "n"}
_TYPE_TAGS = {"int", "float", "str", "bool", "list", "tuple", "dict", "none", "literal",
              "constrained-int", "constrained-float", "function-after", "function-plain"}


def mlflow_ui(tracking_uri: str) -> str:
    """`mlflow ui --backend-store-uri URI` with the `mlflow` of nnbench's own environment as
    the user's shell reaches it (`script`)."""
    import shlex

    return f"{shlex.quote(script('mlflow'))} ui --backend-store-uri {shlex.quote(tracking_uri)}"


def script(name: str) -> str:
    """The command `name` (mlflow, optuna) of nnbench's own environment as the user's shell
    reaches it: `.venv/bin/NAME` where that environment lies under the working directory
    (nox's: its bin directory is on the PATH of nox's sessions only, so a plain `mlflow`
    was "command not found" after `nox -s ablate`), `NAME` where the PATH finds that one,
    else its full path."""
    import shutil
    import sys
    from pathlib import Path

    path = Path(sys.executable).parent / name
    if not path.exists():
        return name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        found = shutil.which(name)
        return name if found and Path(found) == path else str(path)


def upgrade_command(name: str, args: str, url: str) -> tuple[str, str]:
    """(`url` as a message shows it, the command `NAME ARGS URL` that upgrades the tables of
    that database, with what to do first): its password neither shown nor in the command,
    which names it PASSWORD to be filled in."""
    import shlex

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    secret = parsed.password is not None or "password" in parsed.query
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": "PASSWORD"})
    shown = parsed.render_as_string(hide_password=True)
    if parsed.password is not None:
        parsed = parsed.set(password="PASSWORD")
    command = (f"`{shlex.quote(script(name))} {args} "
               f"{shlex.quote(parsed.render_as_string(hide_password=False))}`")
    first = ("a copy of the file first" if parsed.get_backend_name() == "sqlite"
             else "a backup of the database first")
    password = "with the database's password for PASSWORD; " if secret else ""
    return shown, f"{command} ({password}{first}, if processes of the older version use it)"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n noun`, the noun in the plural unless n is 1: "1 configuration", "2 seeds"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def article(word: str) -> str:
    """`word` with its indefinite article: "an activation", "a model"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def decimals(value: float | None, digits: int = 4, *, plus: bool = False) -> str:
    """A number as reports and their sentences print it: `digits` decimals, a half rounded
    up as a reader rounds the number's shortest decimal form (a mean best epoch of 15.25
    printed 15.2: Python's format rounds half to even, on the binary value, so a sentence's
    0.812 stood above its table's 0.813); "–" for none; one beyond a million (a finite
    loss of 8.8e35) in scientific form, not 36 digits. `plus`: a sign on positive ones too."""
    if value is None or value != value:
        return "–"
    sign = "+" if plus and value >= 0 and not math.copysign(1, value) < 0 else ""
    if abs(value) >= 1e6:
        return sign + (f"{value:.{digits}g}" if math.isinf(value) else
                       f"{value:.{max(1, digits - 1)}e}")
    return sign + str(Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-digits),
                                                           rounding=ROUND_HALF_UP))
