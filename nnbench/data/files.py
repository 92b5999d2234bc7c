"""Your own data without code: the `file` dataset reads tensors from a .npz or .pt file.

    task:
      dataset: {name: file, path: data/signals.npz, targets: class, input: signal}

The file holds `x` (inputs, one row per example) and `y` (targets), and optionally
`x_test` / `y_test`, an official test split kept as is (the key names are parameters).
Without a test split, `test_fraction` of the examples (default 0.2) is held out, seeded
like the validation split. Splits, `standardize` and k-fold (`folds`, `fold`) work as for
every dataset.

- `.npz`: `numpy.savez(path, x=..., y=..., x_test=..., y_test=...)` (read with
  allow_pickle off);
- `.pt`: `torch.save({"x": tensor, "y": tensor, ...}, path)` (read with weights_only).

`targets: class`: integer labels 0..k-1 (k = `num_classes`, else the largest label + 1);
`targets: real`: numbers, one per example (N,) or several (N, k). `input: auto` takes the
kind from x's shape: (N, D) vector, (N, C, L) signal, (N, C, H, W) image; `input: signal`
reads (N, L) as 1-D signals (for cnn1d, gru), `input: image` reads (N, H, W) as grey images.
Relative paths start at the working directory.

Validation reads the file's header (`file_metadata`: keys, shapes, dtypes, and the
labels for the class count), then the arrays' content is checked once per file content
(`nnbench.data.checks`: finite inputs and real targets, labels 0..k-1, no empty split;
a damaged archive member or a value that is not a tensor is named too). The file's SHA-256
is part of every trial's id (`attrs["digest"]`) and the key of that check: a changed file
is different data, its trials train again and it is checked again.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from nnbench.data import (
    DEFAULT_TEST_FRACTION,
    DataShape,
    HeldOutParams,
    SplitParams,
    Targets,
    TensorData,
    split,
)
from nnbench.data.checks import (
    DataError,
    Source,
    as_numpy,
    check_arrays,
    check_class_labels,
    source_key,
)
from nnbench.data.vision import DatasetNotFoundError
from nnbench.messages import first_line
from nnbench.registry import ComponentInfo, register

__all__ = ["DatasetFileError", "FileMetadata", "FileParams", "file_digest", "file_metadata"]

KIND = "dataset"
SUFFIXES = (".npz", ".pt")


class DatasetFileError(DataError):
    """The file cannot serve as a dataset: the message says what is wrong and what to do."""


class FileParams(SplitParams):
    path: str = Field(..., min_length=1, description="a .npz or .pt file with x, y (and "
                                                     "x_test, y_test); relative to the working "
                                                     "directory")
    targets: Literal["class", "real"] = Field("class", description="class labels 0..k-1, or "
                                                                   "real values")
    input: Literal["auto", "vector", "signal", "image"] = Field(
        "auto", description="auto: (N, D) vector, (N, C, L) signal, (N, C, H, W) image")
    num_classes: int | None = Field(None, ge=2, description="classes (default: largest "
                                                            "label + 1)")
    test_fraction: float | None = Field(
        None, gt=0, lt=1, description="share held out as test when the file has no x_test "
                                      "(default 0.2)")
    x: str = Field("x", min_length=1, description="key of the inputs")
    y: str = Field("y", min_length=1, description="key of the targets")
    x_test: str = Field("x_test", min_length=1, description="key of the test inputs, if any")
    y_test: str = Field("y_test", min_length=1, description="key of the test targets, if any")

    @model_validator(mode="after")
    def _suffix(self) -> FileParams:
        if not self.path.endswith(SUFFIXES):
            raise ValueError(f"path must end in {' or '.join(SUFFIXES)}, got {self.path!r}")
        return self


@dataclass(frozen=True)
class FileMetadata:
    """What a dataset file holds, read from its header (and its labels)."""

    path: str
    n_examples: int  # rows of x (split into train and validation, and test if held out)
    n_test: int | None  # rows of x_test; None: the test split is held out of x
    input_shape: tuple[int, ...]  # one example, as the model sees it
    input: str  # vector | signal | image
    targets: Targets  # class | real
    num_classes: int  # 0 for real targets
    target_dim: int  # real values per example (1 for class labels)


# -- reading headers -----------------------------------------------------------------------

_Header = tuple[tuple[int, ...], np.dtype[Any]]


def _npz_headers(path: Path) -> dict[str, _Header]:
    """Shape and dtype of every array in a .npz, from the .npy headers (no data read)."""
    headers: dict[str, _Header] = {}
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    member = ""
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as f:  # a small member is read whole: its CRC too
                    version = np.lib.format.read_magic(f)
                    reader = readers.get(version)
                    if reader is None:  # a newer header format: read the array itself
                        with np.load(path, allow_pickle=False) as data:
                            array = data[member.removesuffix(".npy")]
                        shape, dtype = array.shape, array.dtype
                    else:
                        shape, _fortran, dtype = reader(f)
                headers[member.removesuffix(".npy")] = (tuple(shape), np.dtype(dtype))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        if member:  # the archive opened, one array did not
            raise _damaged(path, member.removesuffix(".npy"), err) from None
        raise DatasetFileError(f"{path} is not a readable .npz archive ({err}); write it with "
                               f"numpy.savez(path, x=..., y=...)") from None
    return headers


def _damaged(path: Path, key: str, err: BaseException) -> DatasetFileError:
    detail = str(err).splitlines()[0] if str(err) else "no detail"
    return DatasetFileError(f"{path}: array {key!r} cannot be read ({type(err).__name__}: "
                            f"{detail}); the file is damaged or was written incompletely: "
                            f"write it again with numpy.savez(path, x=..., y=...)")


def _pt_load(path: Path, mmap: bool) -> Mapping[str, Any]:
    try:
        with warnings.catch_warnings():
            # a sparse tensor's: refused below, said there; a file Python's pickle wrote
            # (torch's "Detected pickle protocol N"): refused below, or read as it is
            warnings.filterwarnings("ignore", "Validating sparse tensor invariants")
            warnings.filterwarnings("ignore", ".*pickle protocol")
            try:
                data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError:
                if not mmap:
                    raise
                data = torch.load(path, map_location="cpu", weights_only=True)  # legacy
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError...
        # past torch's preamble ("Weights only load failed ... two options"), its reason
        why = next((line.split("error:", 1)[1].split(". Please use")[0].strip() for line in
                    str(err).splitlines() if "WeightsUnpickler error:" in line), None)
        why = f"{type(err).__name__}: {why or first_line(err)}"
        if "GLOBAL numpy" in why:
            why += "; it holds numpy arrays: save torch tensors, or the arrays as .npz"
        raise DatasetFileError(f"{path} cannot be read by torch.load(weights_only=True) "
                               f"({why}); write it with torch.save({{'x': tensor, 'y': "
                               f"tensor}}, path)") from None
    if not isinstance(data, Mapping):
        raise DatasetFileError(f"{path} holds a {type(data).__name__}; expected a dict of "
                               f"tensors, e.g. torch.save({{'x': x, 'y': y}}, path)")
    return data


def _pt_headers(path: Path) -> dict[str, _Header | str]:
    """Shape and dtype of every tensor in a .pt dict; the type's name for other values."""
    headers: dict[str, _Header | str] = {}
    for key, value in _pt_load(path, mmap=True).items():
        if isinstance(value, torch.Tensor) and value.layout != torch.strided:
            raise DatasetFileError(f"{path}: {str(key)!r} is a {value.layout} tensor; store "
                                   f"it dense: torch.save({{{str(key)!r}: t.to_dense(), ...}})")
        if isinstance(value, torch.Tensor):  # memory-mapped: the shape reads no data
            _readable_tensor(path, str(key), value)
            try:
                dtype = torch.empty(0, dtype=value.dtype).numpy().dtype
            except TypeError:  # bfloat16 has no numpy dtype: read as float32
                dtype = np.dtype("float32")
            headers[str(key)] = (tuple(value.shape), dtype)
        else:  # a list, a number, a nested dict...: there, but not an array
            headers[str(key)] = type(value).__name__
    return headers


def _readable_tensor(path: Path, key: str, value: torch.Tensor) -> None:
    """Refuse the tensors nnbench cannot read as data, naming the file and key (they were
    "could not be checked: RuntimeError: Internal error: NestedTensorImpl doesn't support
    sizes", a TypeError on float8, "Cannot copy out of meta tensor")."""
    save = (f"save it as one dense tensor of numbers: torch.save({{{key!r}: t.float(), ...}}, "
            f"path) (t.long() for class labels)")
    if value.is_nested:
        raise DatasetFileError(f"{path}: {key!r} is a nested tensor (rows of different "
                               f"shapes); pad or crop them to one shape and stack them, then "
                               f"{save}")
    if value.is_meta:
        raise DatasetFileError(f"{path}: {key!r} is a meta tensor, which holds no values; "
                               f"{save}")
    if value.dtype not in (torch.bfloat16, torch.float16):
        try:
            torch.empty(0, dtype=value.dtype).numpy()
        except TypeError:
            raise DatasetFileError(f"{path}: {key!r} has dtype {value.dtype}, which nnbench "
                                   f"does not read; {save}") from None


def _npz_read(path: Path, keys: tuple[str, ...]) -> tuple[np.ndarray | None, ...]:
    """The arrays `keys` of a .npz (None where absent); a damaged member (a failed CRC
    check, a truncated file) is a DatasetFileError naming it."""
    key = ""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = []
            for key in keys:
                arrays.append(np.asarray(data[key]) if key in data else None)
            return tuple(arrays)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        if key:
            raise _damaged(path, key, err) from None
        raise DatasetFileError(f"{path} is not a readable .npz archive ({err}); write it with "
                               f"numpy.savez(path, x=..., y=...)") from None


def _read_labels(path: Path, key: str) -> np.ndarray:
    if path.suffix == ".npz":
        (labels,) = _npz_read(path, (key,))
        assert labels is not None  # the header listed it
        return labels
    return np.asarray(as_numpy(_pt_load(path, mmap=True)[key]))


def _resolve(path: str) -> Path:
    resolved = Path(path).expanduser()
    if resolved.is_dir():
        held = sorted(p.name for p in resolved.iterdir() if p.suffix in SUFFIXES)[:5]
        hint = f" (it holds {', '.join(held)})" if held else ""
        raise DatasetFileError(f"dataset 'file': {path} is a directory{hint}; path must name "
                               f"a .npz or .pt file")
    if not resolved.is_file():
        where = "" if resolved.is_absolute() else f" (relative to {Path.cwd()})"
        raise DatasetNotFoundError(f"dataset 'file': no such file {path}{where}")
    return resolved


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def file_metadata(p: FileParams) -> FileMetadata:
    """Read a dataset file's header: example counts, input shape, input kind, targets and
    classes. Raises DatasetFileError (DatasetNotFoundError when it is missing)."""
    path = _resolve(p.path)
    return _metadata(_stamp(path), p.x, p.y, p.x_test, p.y_test, p.targets, p.input,
                     p.num_classes, p.test_fraction)


@lru_cache(maxsize=64)
def _metadata(stamp: tuple[str, int, int], x_key: str, y_key: str, x_test_key: str,
              y_test_key: str, targets: Targets, input_kind: str, num_classes: int | None,
              test_fraction: float | None) -> FileMetadata:
    path = Path(stamp[0])
    read = _npz_headers(path) if path.suffix == ".npz" else _pt_headers(path)
    held = ", ".join(sorted(read)) or "no arrays"
    for key in (x_key, y_key, x_test_key, y_test_key):
        found = read.get(key)
        if isinstance(found, str):
            raise DatasetFileError(f"{path}: {key!r} holds a Python {found}, not a tensor; "
                                   f"save tensors, e.g. torch.save({{{key!r}: "
                                   f"torch.as_tensor(values)}}, path)")
    headers = {k: v for k, v in read.items() if not isinstance(v, str)}
    for key, param in ((x_key, "x"), (y_key, "y")):
        if key not in headers:
            raise DatasetFileError(f"{path} has no array {key!r} (it holds: {held}); name the "
                                   f"key with `{param}: KEY`")
    has_test = [k in headers for k in (x_test_key, y_test_key)]
    if any(has_test) and not all(has_test):
        present, absent = (x_test_key, y_test_key) if has_test[0] else (y_test_key, x_test_key)
        raise DatasetFileError(f"{path} has {present!r} but no {absent!r}; a test split "
                               f"needs both (it holds: {held})")
    renamed = [(k, param) for k, param, default in ((x_test_key, "x_test", "x_test"),
                                                    (y_test_key, "y_test", "y_test"))
               if k != default and k not in headers]
    if renamed:  # keys the suite names must be there (it held out a split of x instead)
        key, param = renamed[0]
        raise DatasetFileError(f"{path} has no array {key!r} (it holds: {held}); name the "
                               f"key of its test split with `{param}: KEY`, or leave "
                               f"x_test and y_test out to hold a test split out of {x_key!r}")
    test = all(has_test)
    if test and test_fraction is not None:
        raise DatasetFileError(f"test_fraction={test_fraction} but {path} has its own test "
                               f"split ({x_test_key!r}, {y_test_key!r}); remove test_fraction")
    x_shape, y_shape = headers[x_key][0], headers[y_key][0]
    pairs = [(x_key, y_key)] + ([(x_test_key, y_test_key)] if test else [])
    for xk, yk in pairs:
        (xs, xd), (ys, yd) = headers[xk], headers[yk]
        if len(xs) < 2 or xs[0] == 0 or 0 in xs[1:]:
            raise DatasetFileError(f"{path}: {xk!r} has shape {xs}; expected one row per "
                                   f"example and at least one feature, e.g. (N, D)")
        if not ys or ys[0] != xs[0]:
            raise DatasetFileError(f"{path}: {xk!r} has {xs[0]} rows but {yk!r} has shape "
                                   f"{ys}; one target per example")
        if xd.kind not in "biuf":
            raise DatasetFileError(f"{path}: {xk!r} has dtype {xd}; expected numbers")
        if yd.kind not in "biuf":
            raise DatasetFileError(f"{path}: {yk!r} has dtype {yd}; expected numbers")
    if test and headers[x_test_key][0][1:] != x_shape[1:]:
        raise DatasetFileError(f"{path}: {x_test_key!r} examples have shape "
                               f"{headers[x_test_key][0][1:]}, {x_key!r} examples "
                               f"{x_shape[1:]}; they must match")
    kind, shape = _input_kind(path, x_key, x_shape, input_kind)
    if targets == "class":
        labels = [_read_labels(path, yk) for _, yk in pairs]
        for (_, yk), y in zip(pairs, labels, strict=True):
            if y.ndim != 1 or y.dtype.kind not in "biuf":
                raise DatasetFileError(f"{path}: {yk!r} must hold integer class labels, one "
                                       f"per example (shape (N,)); got shape {y.shape}, dtype "
                                       f"{y.dtype}; for real values set targets: real")
            # whole numbers, >= 0, and < num_classes when it is given
            check_class_labels(str(path), yk, y, num_classes)
        largest = max(int(y.max()) for y in labels if len(y))
        distinct = len(set().union(*(np.unique(y).tolist() for y in labels)))
        if num_classes is None and largest >= 1000 and largest + 1 > 10 * distinct:
            # the labels are ids, not 0..k-1: a head of largest + 1 outputs is a mistake
            raise DatasetFileError(f"{path}: {y_key!r} holds {distinct} distinct labels, the "
                                   f"largest {largest}; classes are numbered 0..k-1 (k = the "
                                   f"largest label + 1 = {largest + 1:,} here): renumber "
                                   f"them 0..{distinct - 1} (or give num_classes, if the "
                                   f"file holds only some of the classes)")
        classes = num_classes or largest + 1
        if classes < 2:
            raise DatasetFileError(f"{path}: every label is 0; classification needs at least "
                                   f"2 classes (set num_classes)")
        target_dim = 1
    else:
        if len(y_shape) > 2 or (len(y_shape) == 2 and y_shape[1] == 0):
            raise DatasetFileError(f"{path}: {y_key!r} has shape {y_shape}; real targets are "
                                   f"(N,) or (N, k) with k at least 1")
        if num_classes is not None:
            raise DatasetFileError(f"num_classes={num_classes} is for targets: class; "
                                   f"{path} is read with targets: real")
        classes, target_dim = 0, (y_shape[1] if len(y_shape) == 2 else 1)
    return FileMetadata(path=str(path), n_examples=x_shape[0],
                        n_test=headers[x_test_key][0][0] if test else None, input_shape=shape,
                        input=kind, targets=targets, num_classes=classes,
                        target_dim=target_dim)


def _input_kind(path: Path, key: str, shape: tuple[int, ...],
                wanted: str) -> tuple[str, tuple[int, ...]]:
    """The input kind and one example's shape, as the model will see it."""
    ndim, example = len(shape), tuple(shape[1:])
    auto = {2: "vector", 3: "signal", 4: "image"}
    kind = auto.get(ndim, "") if wanted == "auto" else wanted
    allowed = {"vector": (2,), "signal": (2, 3), "image": (3, 4)}
    if not kind or ndim not in allowed[kind]:
        shapes = {"vector": "(N, D)", "signal": "(N, L) or (N, C, L)",
                  "image": "(N, H, W) or (N, C, H, W)"}
        wants = f"input: {kind}" if kind else "input: auto"
        raise DatasetFileError(f"{path}: {key!r} has shape {shape}; {wants} expects "
                               f"{shapes.get(kind, '(N, D), (N, C, L) or (N, C, H, W)')}")
    if kind == "image" and ndim == 3:
        example = (1, *example)  # grey images gain their channel axis
    return kind, example


# -- content hash and loading ------------------------------------------------------------------

def file_digest(p: FileParams) -> str:
    """`sha256:<16 hex>` of the file's bytes (part of the trial_id); never raises: an
    unreadable file gets a marker and validation reports why."""
    try:
        return _digest(_stamp(Path(p.path).expanduser()))
    except OSError as err:
        return f"unreadable: {type(err).__name__}"


@lru_cache(maxsize=64)
def _digest(stamp: tuple[str, int, int]) -> str:
    digest = hashlib.sha256()
    with open(stamp[0], "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()[:16]}"


@lru_cache(maxsize=2)
def _arrays(stamp: tuple[str, int, int], keys: tuple[str, ...]) -> tuple[np.ndarray | None, ...]:
    path = Path(stamp[0])
    if path.suffix == ".npz":
        return _npz_read(path, keys)
    loaded = _pt_load(path, mmap=False)
    return tuple(as_numpy(loaded[k]) if k in loaded else None for k in keys)


def _source(p: FileParams) -> Source:
    """Where the arrays come from, and the key of their check: the file's SHA-256 and what
    the check depends on (the keys read, targets, classes). No data is read."""
    meta = file_metadata(p)
    digest = file_digest(p)
    key = None if digest.startswith("unreadable") else source_key(
        "file", digest, p.x, p.y, p.x_test, p.y_test, meta.targets, meta.num_classes)
    return Source(where=meta.path, names={"x": p.x, "y": p.y, "x_test": p.x_test,
                                          "y_test": p.y_test}, key=key)


def _loaded(p: FileParams) -> tuple[FileMetadata, tuple[np.ndarray | None, ...]]:
    meta = file_metadata(p)
    keys = (p.x, p.y) + ((p.x_test, p.y_test) if meta.n_test is not None else ())
    return meta, _arrays(_stamp(Path(meta.path)), keys) + (None,) * (4 - len(keys))


def _check(p: FileParams) -> None:
    """The data checks on the file's arrays, without splitting them (`nnbench validate`)."""
    meta, (x, y, x_test, y_test) = _loaded(p)
    check_arrays(_source(p), x=x, y=y, x_test=x_test, y_test=y_test, targets=meta.targets,
                 num_classes=meta.num_classes)


def _build_file(p: FileParams, seed: int, device: torch.device) -> TensorData:
    meta, (x, y, x_test, y_test) = _loaded(p)
    assert x is not None and y is not None
    source = _source(p)
    if meta.input == "image" and x.ndim == 3:  # grey images: add the channel axis
        x, x_test = x[:, None], x_test[:, None] if x_test is not None else None
    if meta.n_test is None:  # no test split in the file: hold one out, seeded
        held = HeldOutParams(val_fraction=p.val_fraction, folds=p.folds, fold=p.fold,
                             standardize=p.standardize,
                             test_fraction=p.test_fraction or DEFAULT_TEST_FRACTION)
        return split(x, y, held, seed=seed, device=device, targets=meta.targets,
                     num_classes=meta.num_classes, source=source)
    return split(x, y, p, seed=seed, device=device, targets=meta.targets,
                 num_classes=meta.num_classes, x_test=x_test, y_test=y_test, source=source)


def _shape(p: FileParams) -> DataShape:
    """The dataset-shape contract (nnbench.data), from the file's header alone."""
    meta = file_metadata(p)
    return DataShape(examples=meta.n_examples, test=meta.n_test, input_shape=meta.input_shape,
                     targets=meta.targets, num_classes=meta.num_classes,
                     target_dim=meta.target_dim)


def _attrs_for(p: FileParams) -> dict[str, str]:
    meta = file_metadata(p)
    return {"targets": meta.targets, "input": meta.input}


def _contract_example(folder: Path) -> dict[str, Any]:
    """A small file for the contract check: 60 signals of length 12, 3 classes, no test."""
    rng = np.random.default_rng(0)
    path = folder / "example.npz"
    np.savez(path, x=rng.normal(size=(60, 12)).astype(np.float32), y=np.arange(60) % 3)
    return {"path": str(path), "input": "signal"}


register(ComponentInfo(
    kind=KIND, name="file", build=_build_file, params=FileParams,
    doc="your own tensors from a .npz or .pt file (x, y, optional x_test, y_test)",
    example={"path": "data.npz"},
    defaults="nnbench's split options; x/y/x_test/y_test keys as numpy.savez names them",
    attrs={"targets": "class", "input": "vector", "attrs_for": _attrs_for,
           "digest": file_digest, "metadata": file_metadata, "shape": _shape,
           "source": _source, "check": _check,
           # the files a trial reads beyond its spec (nnbench.fresh re-checks them)
           "files": lambda p: [_resolve(p.path).resolve()],
           "contract_example": _contract_example}))
