"""torchvision datasets: `mnist`, `fashion_mnist`, `cifar10`, loaded by torchvision's own code.

Files live under the data root: `$NNBENCH_DATA`, else `~/.cache/nnbench/data`. With
`download: false` (the default) nothing is fetched; when the files are missing, or a
download fails, the error lists which files were expected where (`nnbench validate`
says so too, from the files' presence, headers and sizes, without importing torchvision
or reading their data: a truncated file is named before a run loads it). Images
become float tensors in [0, 1], shaped (C, H, W), as `ToTensor()` would make them. The
arrays pass the data checks (`nnbench.data.checks`: labels 0..9, no empty split) once
per set of files, keyed by their sizes and modification times.
"""

from __future__ import annotations

import math
import os
import struct
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from nnbench.data import DataShape, SplitParams, TensorData, split
from nnbench.data.checks import DataError, Source, source_key
from nnbench.messages import first_line
from nnbench.registry import ComponentInfo, register

KIND = "dataset"


class VisionParams(SplitParams):
    download: bool = Field(False, description="fetch missing files from the dataset's mirrors")


# name -> (torchvision class, folder under the root, files torchvision reads, classes)
_SOURCES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mnist": ("MNIST", "MNIST/raw", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw",
                      ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    "cifar10": ("CIFAR10", "cifar-10-batches-py",
                ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")),
}


class DatasetNotFoundError(FileNotFoundError):
    pass


def data_root() -> Path:
    return Path(os.environ.get("NNBENCH_DATA") or Path.home() / ".cache" / "nnbench" / "data")


def _to_images(data: torch.Tensor | np.ndarray) -> torch.Tensor:
    images = torch.as_tensor(np.asarray(data))
    # (N, H, W) grey or (N, H, W, C) colour -> (N, C, H, W)
    # contiguous NCHW: oneDNN's convolution backward on a channels-last-strided input
    # corrupts memory on some CPUs (torch 2.14.1, AVX2 AMD EPYC: double free or segfault)
    images = images[:, None] if images.dim() == 3 else \
        images.permute(0, 3, 1, 2).contiguous()
    return images.float().div_(255.0)


def _not_found(name: str, root: str, why: str) -> DatasetNotFoundError:
    _, folder, files = _SOURCES[name]
    expected = "\n".join(f"  {Path(root) / folder / f}" for f in files)
    return DatasetNotFoundError(
        f"dataset {name!r} not found under {root} ({why}).\nExpected these files:\n"
        f"{expected}\nPut them there, set NNBENCH_DATA to where they are, or set "
        f"download: true in the suite.")


@lru_cache(maxsize=2)
def _load(name: str, root: str, download: bool) -> tuple[torch.Tensor, ...]:
    from torchvision import datasets

    cls_name, _, _ = _SOURCES[name]
    cls = getattr(datasets, cls_name)
    try:
        train, test = (cls(root=root, train=flag, download=download) for flag in (True, False))
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError
        _, folder, files = _SOURCES[name]
        if all((Path(root) / folder / f).is_file() for f in files):  # there, but unreadable
            try:
                _refuse_unopenable(name, Path(root) / folder, files)
            except DataError as denied:  # (torchvision's error is no part of it)
                raise denied from None
            damaged = _damaged(Path(root) / folder, files) or [
                f"torchvision: {type(err).__name__}: {first_line(err)}"]
            raise DataError(_damaged_message(name, Path(root) / folder, damaged)) from None
        if not download:
            raise _not_found(name, root, f"download is false; {_missing(name, root)}") from None
        raise _not_found(name, root, f"could not download it: {err}") from None
    return (_to_images(train.data), torch.as_tensor(train.targets),
            _to_images(test.data), torch.as_tensor(test.targets))


def _missing(name: str, root: str) -> str:
    """"2 of 4 files missing: a, b (a directory)": those of dataset `name` under `root` that
    are not regular files."""
    _, folder, files = _SOURCES[name]
    missing = [Path(root) / folder / f for f in files if not (Path(root) / folder / f).is_file()]
    kinds = ", ".join(f"{path.name} ({'a directory' if path.is_dir() else 'not a regular file'})"
                      if path.exists() else path.name for path in missing)
    return f"{len(missing)} of {len(files)} files missing: {kinds}"


def _refuse_unopenable(name: str, folder: Path, files: tuple[str, ...]) -> None:
    """Raise DataError naming each of `files` that cannot be opened for reading, with the
    system's reason ("... is damaged; delete it" misled where one was only unreadable to
    this user)."""
    denied = []
    for file in files:
        try:
            with open(folder / file, "rb"):
                pass
        except OSError as err:
            denied.append(f"{folder / file} ({err.strerror or type(err).__name__})")
    if denied:
        raise DataError(f"dataset {name!r}: nnbench cannot open {'; '.join(denied)}: give "
                        f"this user read access, or set NNBENCH_DATA to a copy it can read")


# an idx file's type code (its header's third byte) -> bytes per value: torchvision's
# read_image_file and read_label_file take unsigned bytes (0x08) only, as MNIST's files are
_IDX_ITEM = {0x08: 1}


def _truncated(path: Path) -> str | None:
    """Why a file's header and size disagree, from its first bytes and its size alone (its
    data are not read): an idx file (MNIST's) must be as long as its header's dimensions
    say; a CIFAR-10 batch, a pickle, must end with the pickle's STOP opcode (it is never
    unpickled here). None when they agree."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if path.parent.name == "cifar-10-batches-py":
            if size == 0:
                return f"{path.name}: empty"
            f.seek(-1, os.SEEK_END)
            return None if f.read(1) == b"." else \
                f"{path.name}: it does not end as a pickle does (cut short)"
        magic = f.read(4)
        ndim = 3 if "images" in path.name else 1
        if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in _IDX_ITEM \
                or magic[3] != ndim:
            return (f"{path.name}: its header is not that of an idx file of unsigned bytes in "
                    f"{ndim} dimension(s)")
        header = f.read(4 * ndim)
        if len(header) < 4 * ndim:
            return f"{path.name}: {size} bytes, shorter than its header"
        dims = struct.unpack(f">{ndim}I", header)
        expected = 4 + 4 * ndim + math.prod(dims) * _IDX_ITEM[magic[2]]
    if size == expected:
        return None
    return (f"{path.name}: {size:,} bytes where its header ({'×'.join(map(str, dims))}) says "
            f"{expected:,}: {'cut short' if size < expected else 'longer than its data'}")


def _check(name: str, p: VisionParams) -> None:
    """`nnbench validate`'s look at the files (`attrs["check"]`): each there must be as long
    as its header says, or end as a pickle does; missing files are `_source`'s to name."""
    _, folder, files = _SOURCES[name]
    where = data_root() / folder
    if not all((where / f).is_file() for f in files):
        return
    _refuse_unopenable(name, where, files)
    damaged = [why for why in map(_truncated, (where / f for f in files)) if why]
    if damaged:
        raise DataError(_damaged_message(name, where, damaged))
    foreign = _not_mnist(name, where, files) if folder.endswith("/raw") else []
    if foreign:
        raise DataError(f"dataset {name!r}: its files under {where} are intact, but not "
                        f"{name}'s ({'; '.join(foreign)}); put {name}'s own files there")


def _not_mnist(name: str, where: Path, files: tuple[str, ...]) -> list[str]:
    """How MNIST-format files (headers checked by `_truncated`) differ from the dataset's
    shape: images of another size (27×27 passed validate, and the run blamed the model's
    declared input shape), fewer labels than images, labels past its 10 classes (the run
    said to raise num_classes, which the dataset does not take). Reads the labels only."""
    height, width = _SHAPES[name][2][1:]
    out = []
    for images, labels in (files[:2], files[2:]):
        with open(where / images, "rb") as f:
            count, *size = struct.unpack(">3I", f.read(16)[4:])
        values = np.fromfile(where / labels, dtype=np.uint8, offset=8)
        if tuple(size) != (height, width):
            out.append(f"{images}: images of {size[0]}×{size[1]} where {name}'s are "
                       f"{height}×{width}")
        if count != values.size:
            out.append(f"{images} holds {count:,} images and {labels} {values.size:,} labels: "
                       f"one label per image")
        if values.size and int(values.max()) > 9:
            out.append(f"{labels}: labels up to {int(values.max())} where {name} has 10 "
                       f"classes (0 to 9)")
    return out


def _damaged_message(name: str, where: Path, damaged: list[str]) -> str:
    return (f"dataset {name!r}: its files under {where} are there, but torchvision cannot "
            f"read {'them' if len(damaged) > 1 else 'one'} ({'; '.join(damaged)}): damaged "
            f"or truncated; delete {'them' if len(damaged) > 1 else 'it'} and download again "
            f"(download: true), or put intact copies there")


def _damaged(folder: Path, files: tuple[str, ...]) -> list[str]:
    """Each of `files` that fails torchvision's own check of its format, with why (the
    dataset class said only "AssertionError" for a damaged MNIST file, naming none): MNIST's
    are parsed by its readers; CIFAR-10's pickles are never unpickled here (a tampered one
    could run code), only checked against the md5 sums torchvision verifies them by."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.mnist import read_image_file, read_label_file
    from torchvision.datasets.utils import check_integrity

    md5 = {name: digest for name, digest in (*CIFAR10.train_list, *CIFAR10.test_list)}
    md5[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    out = []
    for name in files:
        path = folder / name
        if name in md5:
            if not check_integrity(str(path), md5[name]):
                out.append(f"{name}: its md5 is not the published file's")
            continue
        try:  # MNIST's format: images idx3, labels idx1
            (read_image_file if "images" in name else read_label_file)(str(path))
        except Exception as err:  # any refusal names the file (a bare assert: its header)
            why = first_line(err) if str(err).strip() else ""
            out.append(f"{name}: {type(err).__name__}: {why}" if why else
                       f"{name}: not in the format its name says (its header is wrong)")
    return out


def _source(name: str, p: VisionParams) -> Source:
    """Where the files are, and the key of their check (their sizes and times); raises
    DatasetNotFoundError when some are missing and download is false. Reads no data."""
    root = str(data_root())
    _, folder, files = _SOURCES[name]
    paths = [Path(root) / folder / f for f in files]
    missing = [path for path in paths if not path.is_file()]
    if len(files) > 4:  # CIFAR-10: the training images and labels come from five batches
        names = {"x": "data_batch_1..5", "y": "data_batch_1..5 (labels)",
                 "x_test": "test_batch", "y_test": "test_batch (labels)"}
    else:
        names = dict(zip(("x", "y", "x_test", "y_test"), files, strict=True))
    where = str(Path(root) / folder)
    if missing:
        if not p.download:
            raise _not_found(name, root, f"download is false; {_missing(name, root)}")
        return Source(where=where, names=names)  # fetched, then checked, by the build
    # size, times and inode: a file replaced by a copy that kept its size and modification
    # time (cp -p, rsync -a, tar) still has a new inode and change time, so it is re-checked
    stats = [(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
             for path, st in ((path, path.stat()) for path in paths)]
    return Source(where=where, names=names,
                  key=source_key(name, version("torchvision"), stats))


def _builder(name: str):  # type: ignore[no-untyped-def]
    def build(p: VisionParams, seed: int, device: torch.device) -> TensorData:
        x, y, x_test, y_test = _load(name, str(data_root()), p.download)
        return split(x, y, p, seed=seed, device=device, targets="class", num_classes=10,
                     x_test=x_test, y_test=y_test, source=_source(name, p))
    return build


# name -> (train, test, (C, H, W)): the official splits torchvision reads
_SHAPES: dict[str, tuple[int, int, tuple[int, int, int]]] = {
    "mnist": (60000, 10000, (1, 28, 28)),
    "fashion_mnist": (60000, 10000, (1, 28, 28)),
    "cifar10": (50000, 10000, (3, 32, 32)),
}


def _shape(name: str):  # type: ignore[no-untyped-def]
    def shape(p: VisionParams) -> DataShape:
        train, test, image = _SHAPES[name]
        return DataShape(examples=train, test=test, input_shape=image, targets="class",
                         num_classes=10)
    return shape


for _name, _doc in [("mnist", "MNIST handwritten digits: 28×28 grey, 60k train / 10k test"),
                    ("fashion_mnist", "Fashion-MNIST: 28×28 grey clothing, 60k / 10k"),
                    ("cifar10", "CIFAR-10: 32×32 colour images, 50k train / 10k test")]:
    register(ComponentInfo(kind=KIND, name=_name, build=_builder(_name), params=VisionParams,
                           doc=_doc, attrs={"targets": "class", "input": "image",
                                            "shape": _shape(_name),
                                            "source": lambda p, n=_name: _source(n, p),
                                            "check": lambda p, n=_name: _check(n, p),
                                            # shape gives the published sizes, not the files'
                                            "official_sizes": True},
                           defaults="torchvision's official train/test split"))
