"""Datasets: seeded splits, cross-validation folds, the notes' data, torchvision loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nnbench import registry
from nnbench.data import TensorData, vision
from nnbench.registry import ComponentError

CPU = torch.device("cpu")


def _data(value: Any, seed: int = 0) -> TensorData:
    return registry.build("dataset", registry.resolve("dataset", value), seed=seed, device=CPU)


def test_circles_are_the_notes_data() -> None:
    from sklearn.datasets import make_circles

    data = _data("circles")
    x, _ = make_circles(n_samples=2000, noise=0.1, factor=0.4, random_state=42)
    assert sum(data.sizes().values()) == 2000
    assert data.sizes()["test"] == 400
    every = torch.cat([data.x_train, data.x_val, data.x_test])
    assert torch.equal(torch.sort(every[:, 0]).values,
                       torch.sort(torch.as_tensor(x[:, 0], dtype=torch.float32)).values)


def test_regression_is_the_notes_torch_seed_42_draw() -> None:
    torch.manual_seed(42)  # exactly what the notes do
    x, y = torch.randn(100, 20), torch.randn(100, 1)
    data = _data({"name": "regression", "test_fraction": 0.1, "val_fraction": 0.1})
    every_x = torch.cat([data.x_train, data.x_val, data.x_test])
    every_y = torch.cat([data.y_train, data.y_val, data.y_test])
    order_mine, order_notes = every_x[:, 0].argsort(), x[:, 0].argsort()
    assert torch.equal(every_x[order_mine], x[order_notes])
    assert torch.equal(every_y[order_mine], y[order_notes])
    assert data.targets == "real" and data.target_dim == 1


def test_splits_are_seeded_disjoint_and_complete() -> None:
    a, b, other = _data("moons", seed=1), _data("moons", seed=1), _data("moons", seed=2)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_val, other.x_val)
    rows = {tuple(r) for r in torch.cat([a.x_train, a.x_val, a.x_test]).tolist()}
    assert len(rows) == 2000  # every example once: the splits are disjoint


def test_digits_are_images_in_unit_range() -> None:
    data = _data("digits")
    assert data.input_shape == (1, 8, 8)
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) <= 1.0
    assert data.num_classes == 10


def test_standardize_uses_training_statistics() -> None:
    data = _data("breast_cancer")
    assert torch.allclose(data.x_train.mean(0), torch.zeros(30), atol=1e-4)
    assert torch.allclose(data.x_train.std(0), torch.ones(30), atol=1e-4)
    assert not torch.allclose(data.x_test.mean(0), torch.zeros(30), atol=1e-4)


def test_diabetes_is_a_standardized_regression() -> None:
    data = _data("diabetes")
    every = torch.cat([data.y_train, data.y_val, data.y_test])
    assert data.targets == "real" and every.shape == (442, 1)
    assert float(every.mean()) == pytest.approx(0.0, abs=1e-5)


def test_k_fold_validation_splits_partition_the_training_pool() -> None:
    folds = [_data({"name": "moons", "folds": 5, "fold": k}) for k in range(5)]
    vals = [{tuple(r) for r in f.x_val.tolist()} for f in folds]
    assert all(len(v) == 320 for v in vals)  # 1600 train+val examples / 5
    assert len(set().union(*vals)) == 1600  # the folds partition the pool
    assert all(torch.equal(f.x_test, folds[0].x_test) for f in folds)  # test stays out


@pytest.mark.parametrize(("params", "message"), [
    ({"folds": 1}, "folds must be 0 (off) or at least 2"),
    ({"folds": 3, "fold": 3}, "fold must be < folds"),
    ({"fold": 2}, "fold is set but folds is 0"),
])
def test_bad_fold_settings_are_rejected(params: dict[str, int], message: str) -> None:
    with pytest.raises(ComponentError) as caught:
        registry.resolve("dataset", {"name": "moons", **params})
    assert message in str(caught.value)


@pytest.mark.parametrize(("name", "shape", "n_train_val"), [
    ("mnist", (1, 28, 28), 60), ("fashion_mnist", (1, 28, 28), 60),
    ("cifar10", (3, 32, 32), 60)])
def test_torchvision_datasets_load_through_torchvision(vision_data: Path, name: str,
                                                       shape: tuple[int, ...],
                                                       n_train_val: int) -> None:
    data = _data(name)
    assert data.input_shape == shape
    assert data.sizes()["train"] + data.sizes()["val"] == n_train_val
    assert data.x_train.dtype == torch.float32
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) <= 1.0
    assert set(data.y_test.tolist()) <= set(range(10))


def test_cifar10_pixels_keep_their_channel_layout(vision_data: Path) -> None:
    import pickle

    entry = pickle.loads((vision_data / "cifar-10-batches-py" / "test_batch").read_bytes())
    first = np.asarray(entry["data"][0], dtype=np.float32).reshape(3, 32, 32) / 255
    data = _data("cifar10")
    assert torch.equal(data.x_test[0], torch.as_tensor(first))


def test_missing_files_name_what_was_expected_where(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path))
    vision._load.cache_clear()
    with pytest.raises(vision.DatasetNotFoundError) as caught:
        _data("mnist")
    message = str(caught.value)
    assert f"dataset 'mnist' not found under {tmp_path} (download is false" in message
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert str(tmp_path / "MNIST" / "raw" / name) in message
    assert "NNBENCH_DATA" in message and "download: true" in message


def test_a_truncated_file_is_named_damaged_not_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All files there, one truncated: it said "dataset 'mnist' not found ... Put them
    there", although they were."""
    from nnbench.data.checks import DataError
    from tests.conftest import _write_mnist_like

    _write_mnist_like(tmp_path, "MNIST", 20, 10)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path))
    vision._load.cache_clear()
    with pytest.raises(DataError) as caught:
        _data("mnist")
    message = str(caught.value)
    assert message.startswith(f"dataset 'mnist': its files under {tmp_path / 'MNIST' / 'raw'} "
                              f"are there, but torchvision cannot read one "
                              f"(train-images-idx3-ubyte: RuntimeError: "), message
    assert "): damaged or truncated; delete it and download again (download: true), or put " \
           "intact copies there" in message
    vision._load.cache_clear()


def test_a_file_this_user_cannot_open_is_said_unreadable_not_damaged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file without read permission for this user was reported "damaged or truncated;
    delete it and download again". Root reads any file, so the refusal is the system's
    PermissionError raised by open() for that one path."""
    import builtins

    from nnbench.data.checks import DataError
    from tests.conftest import _write_mnist_like

    _write_mnist_like(tmp_path, "MNIST", 20, 10)
    locked = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    real_open = builtins.open

    def guarded(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(str(file)) == locked:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path))
    vision._load.cache_clear()
    with pytest.raises(DataError) as caught:
        _data("mnist")
    assert str(caught.value) == (
        f"dataset 'mnist': nnbench cannot open {locked} (Permission denied): give this user "
        f"read access, or set NNBENCH_DATA to a copy it can read"), str(caught.value)
    vision._load.cache_clear()


def test_damaged_files_are_named_and_a_directory_in_a_files_place_is_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random bytes in two MNIST files: torchvision's "AssertionError: AssertionError" named
    none; a directory where a file belongs read "1 of 4 files missing"."""
    from nnbench.data.checks import DataError
    from tests.conftest import _write_mnist_like

    _write_mnist_like(tmp_path, "MNIST", 20, 10)
    raw = tmp_path / "MNIST" / "raw"
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (raw / name).write_bytes(bytes(range(100)))
    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path))
    vision._load.cache_clear()
    with pytest.raises(DataError) as caught:
        _data("mnist")
    assert "torchvision cannot read them (train-labels-idx1-ubyte: not in the format its " \
           "name says (its header is wrong); t10k-images-idx3-ubyte: not in the format its " \
           "name says (its header is wrong)): damaged or truncated; delete them" \
           in str(caught.value), str(caught.value)
    (raw / "t10k-images-idx3-ubyte").unlink()
    (raw / "t10k-images-idx3-ubyte").mkdir()
    vision._load.cache_clear()
    with pytest.raises(vision.DatasetNotFoundError) as missing:
        _data("mnist")
    assert "(download is false; 1 of 4 files missing: t10k-images-idx3-ubyte (a directory))" \
        in str(missing.value), str(missing.value)
    vision._load.cache_clear()


def test_failed_download_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision import datasets

    def offline(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path))
    monkeypatch.setattr(datasets.CIFAR10, "download", offline)
    vision._load.cache_clear()
    with pytest.raises(vision.DatasetNotFoundError) as caught:
        _data({"name": "cifar10", "download": True})
    message = str(caught.value)
    assert "could not download it: network is unreachable" in message
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_5") in message


@pytest.mark.parametrize("params", [
    {}, {"val_fraction": 0.37}, {"folds": 5, "fold": 4}, {"folds": 7, "fold": 0},
    {"test_fraction": 0.5, "val_fraction": 0.01}, {"n_samples": 11, "test_fraction": 0.1},
    {"n_samples": 13, "folds": 3, "fold": 2},
])
def test_split_sizes_are_the_sizes_split_makes(params: dict[str, Any]) -> None:
    """The dry build's arithmetic (split_sizes) and the real split agree exactly."""
    from nnbench.data import SplitParams, shape_of, split_sizes

    spec = registry.resolve("dataset", {"name": "moons", **params})
    info = registry.get("dataset", "moons")
    validated = info.params.model_validate(spec.kwargs)
    assert isinstance(validated, SplitParams)
    planned = split_sizes(shape_of("moons", validated), validated)
    built = registry.build("dataset", spec, seed=3, device=CPU).sizes()
    assert (planned.train, planned.val, planned.test) == (built["train"], built["val"],
                                                           built["test"])


@pytest.mark.parametrize(("params", "message"), [
    ({"n_samples": 20, "val_fraction": 0.01}, "gives 0 validation"),
    ({"n_samples": 20, "test_fraction": 0.01}, "leaves 0 test examples"),
    ({"n_samples": 20, "folds": 50}, "folds=50 is more than the 16 examples"),
])
def test_empty_splits_are_refused_by_plan_and_by_split(params: dict[str, Any],
                                                       message: str) -> None:
    from nnbench.data import SplitParams, shape_of, split_sizes

    spec = registry.resolve("dataset", {"name": "moons", **params})
    validated = registry.get("dataset", "moons").params.model_validate(spec.kwargs)
    assert isinstance(validated, SplitParams)
    with pytest.raises(ValueError, match=message):
        split_sizes(shape_of("moons", validated), validated)
    with pytest.raises(ValueError, match=message):
        registry.build("dataset", spec, seed=0, device=CPU)


@pytest.mark.parametrize("value", [
    {"name": "digits", "standardize": True},  # made anew at each build: held by content
    {"name": "circles", "n_samples": 200},
    {"name": "diabetes", "folds": 3, "fold": 2},  # real targets, cross-validation
    {"name": "mnist1d", "num_samples": 400},  # an official test split after the rest
])
def test_every_split_seed_shares_one_copy_of_the_examples(value: dict[str, Any]) -> None:
    """Two split seeds on one device: the same examples tensor, each split a set of rows
    that together cover every example once; the rows read standardized when asked."""
    first, second = _data(value, seed=0), _data(value, seed=1)
    assert first.x is second.x and first.y is second.y
    for data in (first, second):
        rows = torch.cat([data.train, data.val, data.test])
        assert sorted(rows.tolist()) == list(range(len(data.x)))
    assert not torch.equal(first.train, second.train)
    if first.shift is not None:  # digits asked; diabetes standardizes by default
        assert second.shift is not None and not torch.equal(first.shift, second.shift)
        assert torch.allclose(first.x_train.mean(dim=0), torch.zeros(first.input_shape),
                              atol=1e-5)
    else:
        assert torch.equal(first.x_train, first.x[first.train])


def test_arrays_without_a_content_key_are_held_while_in_use_and_never_aliased() -> None:
    """`held` without a content key: the same arrays give the same tensor while it is in
    use, a copy (changing the arrays afterwards changes nothing held), and other arrays
    of the same shape another tensor."""
    from nnbench.data import held

    a = np.arange(12, dtype=np.float32).reshape(6, 2)
    first = held([a], torch.float32, CPU)
    assert held([a], torch.float32, CPU) is first
    a[0, 0] = 99.0
    assert first[0, 0].item() == 0.0
    other = held([np.zeros((6, 2), dtype=np.float32)], torch.float32, CPU)
    assert other is not first and other.sum().item() == 0.0


def test_a_damaged_cifar_batch_is_named_by_its_md5_never_unpickled(
        vision_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CIFAR-10 batch that fails torchvision's md5 check is named without unpickling it (a
    tampered pickle could run code)."""
    import pickle
    import shutil

    from nnbench.data.checks import DataError

    shutil.copytree(vision_data / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes() + b"tampered")
    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("a batch was unpickled"))
    vision._load.cache_clear()
    with pytest.raises(DataError) as caught:
        _data("cifar10")
    assert "torchvision cannot read one (data_batch_3: its md5 is not the published " \
           "file's): damaged or truncated; delete it" in str(caught.value), str(caught.value)
    vision._load.cache_clear()
