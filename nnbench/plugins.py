"""Plugins: users' own components (models, datasets, activations, ...), registered exactly
like nnbench's own.

Two ways in:

- a suite names modules to import before any of its component names is resolved::

      plugins: [mylab.nets]        # searched in the suite file's folder, the working
                                   # directory, then sys.path

- an installed package declares an entry point in the group `nnbench.components`,
  loaded on the first registry lookup of every process::

      [project.entry-points."nnbench.components"]
      mylab = "mylab.nets"              # a module: importing it registers its components
      mylab_setup = "mylab.nets:setup"  # or a function, called once

A plugin registers with `nnbench.registry.register(ComponentInfo(...))` when imported;
its components record the plugin module as their `source` and go through the same
checks, listing (`nnbench list`), validation and contract tests (`nnbench.testing`) as
built-ins. An import error, an invalid registration, a name already taken or a module
that registers nothing raise `PluginError` naming the plugin; a failed plugin leaves
nothing registered.

The contract a suite's validation holds a plugin to: parameters of types with a
faithful JSON form (`registry.PARAM_TYPES`: Path, datetime, Enum, Decimal, tuples,
nested models, ...; never a set), which is how they enter the trial_id; a model whose
output is one column per class or regression target (the dry build names the plugin,
the model's class and both widths otherwise). An exception a plugin raises while a
suite is checked is that file's problem (`describe_error`), never a traceback.

Provenance and "done": a plugin's `sha256` covers the source of its top-level package
(every .py file under it; a lone module: its file), its `version` is its distribution's
version (else `__version__`, else "unversioned"). A trial that uses a plugin's component
carries the plugin's hash in its spec (`TrialSpec.digests`), hence in its trial_id:
after any edit of the plugin's code its trials are new trials, trained on the next run
(the old runs stay in MLflow, and reports show the new ones). Trials that use only
built-in components are not affected. A component may also declare
`attrs["digest"](params) -> str` for what else it reads (the `file` dataset: the data
file's SHA-256), which enters the trial_id the same way.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from nnbench import registry
from nnbench.messages import first_line
from nnbench.registry import BUILTIN, ComponentSpec, RegistrationError

__all__ = ["GROUP", "Plugin", "PluginError", "component_digests", "describe_error",
           "describe_source", "load_entry_points", "load_plugin", "load_suite_plugins",
           "loaded"]

GROUP = "nnbench.components"  # entry-point group of installed plugins
MODULE_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin module and what it registered."""

    module: str  # the import name, e.g. mylab.nets
    origin: str  # "suite" or "entry point NAME"
    version: str  # distribution version, __version__, or "unversioned"
    sha256: str  # first 16 hex digits of the hash of its source files
    files: int  # how many source files the hash covers
    components: tuple[tuple[str, str], ...]  # (kind, name) it registered

    def label(self) -> str:
        """`mylab.nets 0.3 (sha256 1f2e...)`: how reports and MLflow tags show it."""
        return f"{self.module} {self.version} (sha256 {self.sha256}, {self.files} files)"


class PluginError(ValueError):
    """A plugin could not be loaded; the message names it and says why."""

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {message}")


_PLUGINS: dict[str, Plugin] = {}
# what registered while each plugin loaded: its own components and those of the other
# plugin modules it imported (a plugin that only imports the lab's models registers none)
_LOADED_WITH: dict[str, tuple[tuple[str, str], ...]] = {}
_ENTRY_POINTS: dict[str, Any] = {"state": "new", "error": None}  # new | loading | done


def loaded() -> dict[str, Plugin]:
    """Every plugin loaded in this process, by module name."""
    return dict(_PLUGINS)


# -- provenance of a module's source ---------------------------------------------------------

def _source_files(module: str) -> list[tuple[str, Path]]:
    """(name relative to the package, path) of every .py file of the module's top-level
    package, or of the module's own file."""
    top = module.partition(".")[0]
    loaded_module = sys.modules.get(top)
    if loaded_module is None:
        return []
    folders = [Path(f) for f in getattr(loaded_module, "__path__", []) or []]
    if folders:
        return sorted({(str(p.relative_to(folder)), p) for folder in folders
                       for p in folder.rglob("*.py")})
    file = getattr(loaded_module, "__file__", None)
    return [(Path(file).name, Path(file))] if file else []


def source_paths(module: str) -> list[Path]:
    """The source files a plugin's hash covers (what "nothing changed" must re-check)."""
    return [path for _, path in _source_files(module)]


def _hash_files(files: Sequence[tuple[str, Path]]) -> str:
    """SHA-256 over each file's relative name and bytes (the folder they sit in does not
    count: the same code checked out elsewhere has the same hash)."""
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


def _version(module: str) -> str:
    top = module.partition(".")[0]
    for dist in _distributions().get(top, []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    for name in (module, top):
        version = getattr(sys.modules.get(name), "__version__", None)
        if version:
            return str(version)
    return "unversioned"


def describe_source(module: str) -> tuple[str, str, int]:
    """(version, sha256, files) of a module that registered components."""
    files = _source_files(module)
    return _version(module), _hash_files(files) if files else "unknown", len(files)


def _digest_of(source: str) -> str:
    plugin = _PLUGINS.get(source)
    sha256 = plugin.sha256 if plugin is not None else describe_source(source)[1]
    return f"sha256:{sha256}"


def component_digests(components: Iterable[tuple[str, ComponentSpec]]
                      ) -> tuple[tuple[str, str], ...]:
    """What the given (kind, spec) pairs name but do not hold, as sorted (key, digest) pairs:
    `plugin:<module>` for plugin components, `<kind>:<name>` for `attrs["digest"]`."""
    out: dict[str, str] = {}
    for kind, spec in components:
        info = registry.get(kind, spec.name)
        if info.source != BUILTIN:
            out[f"plugin:{info.source}"] = _digest_of(info.source)
        digest = info.attrs.get("digest")
        if digest is not None:
            out[f"{kind}:{spec.name}"] = str(digest(info.params.model_validate(spec.kwargs)))
    return tuple(sorted(out.items()))


# -- loading ---------------------------------------------------------------------------------

def _where(err: BaseException) -> str:
    """`file.py, line 3` of the innermost frame of an import error (or a SyntaxError)."""
    if isinstance(err, SyntaxError) and err.filename:
        return f" ({err.filename}, line {err.lineno})"
    package = str(Path(__file__).resolve().parent)
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if "importlib" not in f.filename and not f.filename.startswith("<frozen")
              and not f.filename.startswith(package)]
    return f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""


def describe_error(err: BaseException) -> str:
    """`TypeError: bad value (mylab/nets.py, line 12)`: an unexpected error raised by a
    plugin's code (a validator, a shape function) while a suite is checked, as one line."""
    return f"{first_line(err, with_type=True)}{_where(err)}"


def _record(module: str, origin: str, components: list[tuple[str, str]]) -> Plugin:
    version, sha256, files = describe_source(module)
    plugin = Plugin(module=module, origin=origin, version=version, sha256=sha256, files=files,
                    components=tuple(components))
    _PLUGINS[module] = plugin
    return plugin


def _still_registered(module: str) -> bool:
    """Whether what registered while `module` loaded is all still registered (a registry
    reset in between: load it again)."""
    known = {(info.kind, info.name) for info in registry.list_components()}
    loaded_with = _LOADED_WITH.get(module) or tuple(_registered_by(module))
    return bool(loaded_with) and set(loaded_with) <= known


def _registered_by(module: str) -> list[tuple[str, str]]:
    return [(info.kind, info.name) for info in registry.list_components()
            if info.source == module]


def _not_a_module_name(given: str) -> str:
    """Why `given` is no module name, and the name to write where it is a module's file
    by a relative path below the suite's folder (mylab/nets.py: mylab.nets)."""
    path = given.replace("\\", "/")
    what = "empty" if not given.strip() else (
        "spaces" if given != given.strip() or " " in given else
        "a module's file" if given.endswith(".py") else
        "a file path" if "/" in path else "not a module name")
    parts = path[:-3].split("/") if path.endswith(".py") else []
    while parts and parts[0] == ".":
        parts = parts[1:]
    # every folder and the file a name (not "", "..", "a.b"): then it imports as dotted
    name = ".".join(parts) if parts and all(p.isidentifier() for p in parts) else "mylab.nets"
    return (f"expected a module name such as {name} (dotted Python identifiers, as in an "
            f"import statement); got {what}")


def _names_a_file(module: str, search: Sequence[Path]) -> bool:
    """`module` is a module's file where it is searched (lab.py beside the suite, or
    mylab.nets.py for mylab/nets.py), not a submodule named py."""
    if not module.endswith(".py"):
        return False
    stem = module[:-3]
    return any((Path(d) / module).is_file() or (Path(d) / f"{stem.replace('.', '/')}.py").is_file()
               for d in search)


def load_plugin(module: str, search: Sequence[Path] = (), *, origin: str = "suite") -> Plugin:
    """Import a plugin module (searching `search` first) and record what it registered.

    Idempotent: a plugin already loaded is returned as is. Raises PluginError.
    """
    if not isinstance(module, str) or not MODULE_PATTERN.fullmatch(module) \
            or _names_a_file(module, search):
        raise PluginError(str(module), _not_a_module_name(str(module)))
    registry.kinds()  # built-ins and entry points first: duplicates are named against them
    if module in _PLUGINS and _still_registered(module):
        return _PLUGINS[module]
    for folder in reversed(search):
        text = str(Path(folder).resolve())
        if text not in sys.path:
            sys.path.insert(0, text)
    importlib.invalidate_caches()
    try:
        with registry.registering_as(module) as added:
            if module in sys.modules:  # imported before: registered already, or re-run it
                existing = _registered_by(module)
                if existing:
                    return _record(module, origin, existing)
                importlib.reload(sys.modules[module])
            else:
                importlib.import_module(module)
    except RegistrationError as err:
        raise PluginError(module, f"invalid registration: {err}{_where(err)}") from None
    except ModuleNotFoundError as err:
        if err.name and (module == err.name or module.startswith(f"{err.name}.")):
            places = ", ".join(str(p) for p in dict.fromkeys(search))  # suite dir = cwd
            raise PluginError(module, f"no module named {err.name!r} (searched "
                                      f"{places + ', ' if places else ''}then sys.path)"
                              ) from None
        raise PluginError(module, f"import failed: ModuleNotFoundError: {err}{_where(err)}"
                          ) from None
    except SystemExit as err:  # `sys.exit()` at import: nnbench exited 0, having done nothing
        raise PluginError(module, f"import failed: the module called sys.exit({err.code!r})"
                                  f"{_where(err)}; a plugin module only registers components"
                          ) from None
    except Exception as err:
        raise PluginError(module, f"import failed: {type(err).__name__}: {err}{_where(err)}"
                          ) from None
    if not added:
        raise PluginError(module, "registered no component; a plugin module calls "
                                  "nnbench.registry.register(ComponentInfo(...)) when imported")
    by_source: dict[str, list[tuple[str, str]]] = {module: []}
    for kind, name in added:  # (another plugin module it imported registered its own)
        by_source.setdefault(registry.get(kind, name).source, []).append((kind, name))
    for source, components in by_source.items():
        if source not in (module, registry.BUILTIN):
            _record(source, origin, components)
            _LOADED_WITH[source] = tuple(components)
    _LOADED_WITH[module] = tuple(added)
    return _record(module, origin, by_source[module])


def load_suite_plugins(raw: Any, suite_path: str) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """A suite's `plugins:` value: load each module; returns (names, problems)."""
    if raw is None:
        return (), []
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        return (), [("plugins", f"expected a list of module names (e.g. [mylab.nets]), "
                                f"got {raw!r} ({type(raw).__name__})")]
    search = [Path.cwd()]
    if Path(suite_path).is_file():
        search.insert(0, Path(suite_path).resolve().parent)
    problems: list[tuple[str, str]] = []
    for i, module in enumerate(raw):
        if module in raw[:i]:  # (validate said ok: it is imported once all the same)
            problems.append((f"plugins[{i}]", f"{module!r} is given twice (also "
                                              f"plugins[{raw.index(module)}]); list each "
                                              f"module once"))
            continue
        try:
            load_plugin(module, search)
        except PluginError as err:
            problems.append((f"plugins[{i}]", str(err)))
    return tuple(raw), problems


def load_entry_points() -> list[Plugin]:
    """Load the installed plugins (entry points of group `nnbench.components`), once.

    A broken one raises PluginError now and on every later call, naming the entry point.
    """
    state = _ENTRY_POINTS["state"]
    if state == "loading":  # an entry point's own import looks components up
        return []
    if _ENTRY_POINTS["error"] is not None:
        raise _ENTRY_POINTS["error"]
    if state == "done":
        return [p for p in _PLUGINS.values() if p.origin.startswith("entry point")]
    entries = sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name)
    if not entries:  # nothing installed: import nothing (commands that need no torch stay fast)
        _ENTRY_POINTS["state"] = "done"
        return []
    registry.load_builtins()  # first: a plugin taking a built-in name is the one refused
    _ENTRY_POINTS["state"] = "loading"
    try:
        for entry in entries:
            _load_entry_point(entry)
    except PluginError as err:
        _ENTRY_POINTS["error"] = err
        raise
    finally:
        _ENTRY_POINTS["state"] = "done"
    return [p for p in _PLUGINS.values() if p.origin.startswith("entry point")]


def _load_entry_point(entry: metadata.EntryPoint) -> None:
    dist = getattr(entry, "dist", None)
    owner = f" of {dist.name} {dist.version}" if dist is not None else ""
    name = f"entry point {entry.name} = {entry.value}{owner}"
    module = entry.module
    try:
        with registry.registering_as(module) as added:
            target = entry.load()
            if entry.attr:
                if not callable(target):
                    raise PluginError(name, f"{entry.attr} is not callable")
                target()
    except PluginError:
        raise
    except RegistrationError as err:
        raise PluginError(name, f"invalid registration: {err}{_where(err)}") from None
    except SystemExit as err:
        raise PluginError(name, f"import failed: it called sys.exit({err.code!r})"
                                f"{_where(err)}") from None
    except Exception as err:
        raise PluginError(name, f"import failed: {type(err).__name__}: {err}{_where(err)}"
                          ) from None
    if not added:
        raise PluginError(name, "registered no component")
    _record(module, f"entry point {entry.name}", added)


_State = tuple[dict[str, Plugin], dict[str, Any], dict[str, tuple[tuple[str, str], ...]]]


def _save() -> _State:
    """The loading state, for `_restore` (nnbench.testing.isolated_registry)."""
    return dict(_PLUGINS), dict(_ENTRY_POINTS), dict(_LOADED_WITH)


def _forget_entry_points() -> None:
    """Discover and load the entry points again on the next lookup (tests)."""
    _ENTRY_POINTS.update(state="new", error=None)
    _distributions.cache_clear()


def _restore(old: _State) -> None:
    _PLUGINS.clear()
    _PLUGINS.update(old[0])
    _ENTRY_POINTS.clear()
    _ENTRY_POINTS.update(old[1])
    _LOADED_WITH.clear()
    _LOADED_WITH.update(old[2])
