"""Reading a suite file: bytes -> text -> plain YAML data, or a `SuiteError` with line and column.

- Encodings: UTF-8 with or without a byte-order mark, UTF-16 and UTF-32 (with a BOM, or
  UTF-16 recognised by its zero bytes: what PowerShell writes). A byte that does not
  decode is reported by line and column, not by byte offset.
- Characters YAML cannot take or that do not show: control characters, tabs in the
  indentation, no-break and other Unicode spaces where YAML needs a plain space,
  zero-width characters; each reported with line, column and its Unicode name.
- YAML 1.2 core scalars everywhere: `1e-4` and `1.0e-4` are numbers alike, `true` /
  `false` are the only booleans (`off`, `yes` stay text, so a component named `off`
  gets a list of the allowed names), `010` is ten, dates are text.
- Merge keys (`<<: *base`) work; a key given twice in one mapping is an error; keys are
  names (text), never lists or numbers.
- Aliases are bounded: a document that expands to more than `MAX_NODES` values (an
  "alias bomb") is rejected before it is built.
"""

from __future__ import annotations

import codecs
import copy
import errno
import functools
import math
import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nnbench.config.errors import SuiteError
from nnbench.messages import clip, closest, describe

if TYPE_CHECKING:
    from nnbench.config.expand import Suite

__all__ = ["MAX_NODES", "UnwrittenPipe", "decode", "load_suite", "parse_suite", "parse_yaml",
           "read_bytes", "read_input", "read_suite_text"]

MAX_NODES = 100_000  # values a suite document may expand to, aliases counted each time used

# characters YAML forbids (PyYAML's Reader.NON_PRINTABLE), and ones that do not show
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd"
                            "\U00010000-\U0010ffff]")
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_ODD_SPACE = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_INDENT = re.compile(r"^[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]*")


class UnwrittenPipe(OSError):
    """A named pipe that nothing was writing to (`read_bytes`)."""


def read_bytes(path: Path) -> bytes:
    """The file's bytes. A device or a socket is refused (OSError) before it is opened:
    /dev/zero never ends, a terminal waits for typing. A named pipe is opened without
    waiting for a writer: one that nothing writes to raises UnwrittenPipe rather than
    leaving the command waiting for ever (a writer that connects later is not waited for);
    one being written, as `<(cat suite.yaml)` is, reads as usual."""
    _refuse_device(os.stat(path).st_mode)
    nonblock = getattr(os, "O_NONBLOCK", 0)  # none on Windows, which has no named pipes
    fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        _refuse_device(mode)  # replaced by a device since the stat
        if nonblock and stat.S_ISFIFO(mode):
            os.set_blocking(fd, True)
        with open(fd, "rb", closefd=False) as file:
            data = file.read()
    finally:
        os.close(fd)
    if not data and stat.S_ISFIFO(mode):
        raise UnwrittenPipe(errno.ENODATA, "a named pipe that nothing writes to")
    return data


def _refuse_device(mode: int) -> None:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        kind = "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise OSError(errno.EINVAL, f"it is {kind}, not a file")


def read_input(path: Path, kind: str, error: type[SuiteError] = SuiteError) -> bytes:
    """The bytes of a suite or benchmark file (`kind`: "suite file", "benchmark file"); a
    file that cannot be read raises `error`, saying why."""
    try:
        return read_bytes(path)
    except FileNotFoundError:
        why = (f"a broken symbolic link (to {os.readlink(path)}, which does not exist)"
               if path.is_symlink() else f"no such {kind}{_nearby(path)}")
    except IsADirectoryError:
        why = f"is a directory, not a {kind}"
    except UnwrittenPipe:
        why = f"is a named pipe (FIFO) with nothing to read (nothing writes to it), not a {kind}"
    except OSError as err:
        why = f"cannot read {kind}: {err.strerror or err}"
    raise error(str(path), [("", why)])


def _nearby(path: Path) -> str:
    """For a missing file: the closest YAML file's name in its directory (`suites/defualt`
    or `suites/default` for `suites/default.yaml`), or what the directory holds."""
    def yaml_files(directory: Path) -> list[str]:
        return sorted(p.name for p in directory.iterdir()
                      if p.suffix in (".yaml", ".yml") and p.is_file())

    try:
        names = yaml_files(path.parent)
    except OSError:
        return "" if path.parent.exists() else f" (no directory {path.parent})"
    given = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    near = closest(given, names)
    if near is not None:
        return f"; did you mean {path.parent / near}?"
    suites = path.parent / "suites"  # `default` given in a project whose suites are there
    try:
        inside = yaml_files(suites) if suites.is_dir() else []
    except OSError:
        inside = []
    near = closest(given, inside)
    if near is not None:
        return f"; did you mean {suites / near}?"
    if not names:
        return ""
    return f" ({path.parent} holds {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"


def read_suite_text(path: Path) -> str:
    """The file's text, decoded and checked for characters YAML cannot read as meant."""
    return decode(read_input(path, "suite file"), str(path))


def _encoding(data: bytes) -> tuple[str, str]:
    """(codec, how the file is described in messages) from the BOM or the zero bytes."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "UTF-8"
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32", "UTF-32"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "UTF-16"
    # YAML's own detection (spec 5.2): an ASCII first character, then its zero bytes
    if len(data) >= 4 and data[0] and not any(data[1:4]):
        return "utf-32-le", "UTF-32 (little-endian, no BOM)"
    if len(data) >= 4 and not any(data[:3]) and data[3]:
        return "utf-32-be", "UTF-32 (big-endian, no BOM)"
    if len(data) >= 2 and data[0] and not data[1]:
        return "utf-16-le", "UTF-16 (little-endian, no BOM)"
    if len(data) >= 2 and not data[0] and data[1]:
        return "utf-16-be", "UTF-16 (big-endian, no BOM)"
    return "utf-8", "UTF-8"


@functools.lru_cache(maxsize=4)
def decode(data: bytes, path: str) -> str:
    """The file's text, checked for characters YAML cannot read as meant. Remembered for
    the last few files: `validate` reads a file up to three times (is it a benchmark
    file, the suite, the benchmark's message), and a 5 MB value took seconds each time."""
    codec, name = _encoding(data)
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as err:
        raise SuiteError(path, [(_byte_position(data, err.start, codec),
                                 _decode_message(data, err, name))]) from None
    text = text.removeprefix("\ufeff")
    problems = _odd_characters(text)
    if problems:
        raise SuiteError(path, problems)
    return text


def _byte_position(data: bytes, offset: int, codec: str) -> str:
    unit = 2 if codec.startswith("utf-16") else 4 if codec.startswith("utf-32") else 1
    newline = "\n".encode(codec.removesuffix("-sig")) if unit == 1 else None
    if newline is None:  # count characters decoded so far
        prefix = data[:offset - offset % unit].decode(codec, errors="replace")
    else:
        prefix = data[:offset].decode("utf-8", errors="replace")
    line = prefix.count("\n") + 1
    column = len(prefix) - (prefix.rfind("\n") + 1) + 1
    return f"line {line}, column {column}"


def _decode_message(data: bytes, err: UnicodeDecodeError, name: str) -> str:
    byte = data[err.start]
    hint = ""
    if name == "UTF-8" and byte >= 0x80:
        try:
            guess = data[err.start:err.start + 1].decode("cp1252")
            hint = (f" (in Windows-1252/Latin-1 that byte is {guess!r}: the file was probably "
                    f"saved in that encoding)")
        except UnicodeDecodeError:
            pass
    return (f"the file is not valid {name}: byte 0x{byte:02x} cannot be decoded "
            f"({err.reason}){hint}; save it as UTF-8 (or UTF-16 with a byte-order mark)")


def _odd_characters(text: str) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        indent = _INDENT.match(line)
        indent_end = indent.end() if indent else 0
        comment = _comment_start(line)
        for match in _NON_PRINTABLE.finditer(line):
            problems.append((f"line {number}, column {match.start() + 1}",
                             f"the character {_name(match.group())} cannot appear in YAML; "
                             f"delete it"))
        for match in _INVISIBLE.finditer(line[:comment]):
            problems.append((f"line {number}, column {match.start() + 1}",
                             f"an invisible {_name(match.group())} would become part of a "
                             f"name or value; delete it"))
        if "\t" in line[:indent_end] and line[indent_end:].strip():
            problems.append((f"line {number}, column {line.index(chr(9)) + 1}",
                             "a tab in the indentation; YAML indents with spaces only"))
        for match in _ODD_SPACE.finditer(line[:comment]):
            start = match.start()
            before, after = line[start - 1:start], line[start + 1:start + 2]
            structural = start < indent_end or before in ":-,[{" or after in ":,]}"
            if structural:
                problems.append((f"line {number}, column {start + 1}",
                                 f"a {_name(match.group())} where YAML needs a plain space "
                                 f"(typed by some keyboards and copied from web pages); "
                                 f"replace it with a space"))
        if len(problems) > 10:
            break
    return problems


def _comment_start(line: str) -> int:
    """Where a `#` comment starts (outside quotes), or the line's length."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
    return len(line)


def _name(char: str) -> str:
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'control character')})"


# -- the YAML loader -----------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars, unique string keys and merge keys."""

    # filled below; nothing of YAML 1.1's (PyYAML's own class attribute, hence mutable)
    yaml_implicit_resolvers = {}  # noqa: RUF012


def _resolver(tag: str, pattern: str, first: str) -> None:
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", re.compile(pattern), list(first))


_resolver("null", r"^(?:~|null|Null|NULL|)$", "~nN")
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])
_resolver("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_resolver("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789")
_resolver("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                   r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789.")
_resolver("merge", r"^(?:<<)$", "<")


def _tagged(node: yaml.ScalarNode, text: str, wanted: str) -> yaml.constructor.ConstructorError:
    """An explicit tag (`!!int abc`) whose text is not what it says: at its line."""
    return yaml.constructor.ConstructorError(
        None, None, f"{node.tag.rsplit(':', 1)[-1]} {text!r} is not {wanted}", node.start_mark)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    try:
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)
    except ValueError:  # only through an explicit tag: the resolver matched the pattern
        raise _tagged(node, text, "an integer") from None


def _construct_float(loader: _Loader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node)).lower()
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if text == ".nan":
        return math.nan
    try:
        # -0.0 is 0 (+ 0.0 makes it so): `l1: [0, -0.0]` was two levels, each trained,
        # with the same fingerprints and one label
        value = float(text) + 0.0
    except ValueError:
        raise _tagged(node, text, "a number") from None
    if math.isinf(value):  # `lr: 1e400` was read as infinity: "given inf"
        raise yaml.constructor.ConstructorError(
            None, None, f"{text} is beyond the range of a float (about ±1.8e308); where an "
            f"infinity is meant, write .inf", node.start_mark)
    return value


def _construct_bool(loader: _Loader, node: yaml.ScalarNode) -> bool:
    text = str(loader.construct_scalar(node))
    if text.lower() not in ("true", "false"):  # `!!bool yes` was read as false
        raise _tagged(node, text, "true or false (YAML 1.2)")
    return text.lower() == "true"


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            raise yaml.constructor.ConstructorError(
                None, None, f"a {kind} is used as a key; keys are names such as 'activation' "
                            f"(did a ':' end up inside [...] or {{...}}?)", key_node.start_mark)
        key = loader.construct_object(key_node)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"keys are names, got {describe(key)}; quote it if you mean the "
                            f"text '{key_node.value}'", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {seen[key] + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    loader.flatten_mapping(node)  # `<<: *base` brings base's keys; the ones given here win
    return dict(loader.construct_pairs(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node, reason: str) -> None:
        self.node, self.reason = node, reason


def _expanded_size(root: yaml.Node) -> int:
    """Values the document holds once every alias is expanded (stops past MAX_NODES)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _TooLarge(node, "an alias refers to a value that contains it (a cycle)")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                raise _TooLarge(node, f"the document expands to more than {MAX_NODES:,} values "
                                      f"through aliases (*name); a suite needs far fewer: "
                                      f"write the values out or use fewer nested aliases")
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def parse_yaml(text: str, path: str) -> Any:
    """Plain data (dicts, lists, str, int, float, bool, None) of one YAML document: a copy
    (the caller may change it) of what the last few texts parsed to."""
    return copy.deepcopy(_parse(text, path))


@functools.lru_cache(maxsize=4)
def _parse(text: str, path: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _TooLarge as err:
        mark = err.node.start_mark
        raise SuiteError(path, [(f"line {mark.line + 1}, column {mark.column + 1}",
                                 err.reason)]) from None
    except RecursionError:
        raise SuiteError(path, [("", "the document nests too deeply to read")]) from None
    except yaml.YAMLError as err:
        raise SuiteError(path, [_yaml_problem(err, text)]) from None
    finally:
        loader.dispose()


def _yaml_problem(err: yaml.YAMLError, text: str) -> tuple[str, str]:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    msg = getattr(err, "problem", None) or str(err)
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context:
        msg += f" ({context}" + (f" started on line {context_mark.line + 1}"
                                 if context_mark else "") + ")"
    lines = text.splitlines()
    if mark and mark.line < len(lines):
        msg += f"; the line reads {clip(lines[mark.line].strip(), 120)!r}"
    return where, f"invalid YAML: {clip(msg)}"


# -- suites ---------------------------------------------------------------------------------------

def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file. Raises SuiteError listing every problem."""
    if not str(path).strip():  # Path("") is ".": "is a directory"
        raise SuiteError(repr(str(path)), [("", f"{'an empty' if not str(path) else 'a blank'} "
                                                f"path, not a suite file")])
    path = Path(path)
    return parse_suite(read_suite_text(path), str(path))


def parse_suite(text: str, path: str = "<suite>") -> Suite:
    """Validate a suite given as YAML text (`path` names it in messages)."""
    from nnbench.config.validate import validate

    return validate(parse_yaml(text, path), text, path)
