"""The data checks (nnbench.data.checks): every dataset's arrays (a user's file, the built-in
sets, torchvision's files) are checked before any trial trains, once per content; bad data
is exit 2 naming the file, the array, the first bad index and value, with nothing created;
`validate` reports what `run` would refuse; a trial on bad data is never "diverged"."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nnbench import cli, registry
from nnbench.config import load_suite
from nnbench.data import checks, embedded, files, vision
from nnbench.data.checks import DataError, Source, check_arrays, check_dataset
from nnbench.train import train_trial
from tests.conftest import BENCHMARK_TASK, REPO, _write_idx

CPU = torch.device("cpu")
RNG = np.random.default_rng(1)
X, Y = RNG.normal(size=(100, 6)).astype(np.float32), np.arange(100) % 4


@pytest.fixture
def fresh_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty check cache (markers and this process's memory): as on a new machine."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NNBENCH_CACHE", str(cache))
    monkeypatch.setattr(checks, "_CHECKED", set())
    return cache


def _suite(folder: Path, dataset: str, *, tune: bool = False) -> Path:
    text = textwrap.dedent(f"""\
        name: own
        task: {{dataset: {dataset}, model: {{name: mlp, hidden: [8]}}}}
        fixed:
          optimizer: {{name: sgd, lr: 0.01}}
          epochs: 1
          batch_size: 16
        """)
    text += textwrap.dedent("""\
        tune:
          space: {optimizer.lr: {type: float, low: 1.0e-4, high: 1.0, log: true}}
          trials: 2
          objective: {metric: val_accuracy}
          seeds: 1
        """) if tune else "seeds: 1\n"
    path = folder / ("tuned.yaml" if tune else "own.yaml")
    path.write_text(text)
    return path


def _refused(argv: list[str], folder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a command that must refuse: exit 2, no traceback, nothing created in `folder`."""
    before = sorted(folder.rglob("*"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert sorted(folder.rglob("*")) == before, "something was created"
    return err


# -- the rules, on arrays ---------------------------------------------------------------------

SOURCE = Source("data/sig.npz", names={"x": "inputs", "y": "labels"})


@pytest.mark.parametrize(("arrays", "fragment"), [
    ({"x": np.where(np.arange(24).reshape(2, 3, 4) == 17, np.nan, 1.0), "y": [0, 1]},
     "data/sig.npz: array 'inputs' holds non-finite values (1 of 24); the first is "
     "inputs[1, 1, 1] = nan"),
    ({"x": X[:0], "y": Y[:0]}, "array 'inputs' is empty (shape (0, 6)); every split needs"),
    ({"x": X, "y": Y[:90]}, "array 'inputs' has 100 examples but 'labels' has 90; one target "
                            "per example"),
    ({"x": X, "y": Y, "x_test": X[:5], "y_test": Y[:4]},
     "array 'x_test' has 5 examples but 'y_test' has 4"),
    ({"x": torch.tensor([[1.0], [float("inf")]], dtype=torch.bfloat16), "y": [0, 1]},
     "array 'inputs' holds non-finite values (1 of 2); the first is inputs[1, 0] = inf"),
    ({"x": X, "y": np.arange(100) % 5}, "array 'labels' holds labels outside 0..3 "
                                        "(num_classes=4) (20 of 100); the first is "
                                        "labels[4] = 4"),
])
def test_the_first_bad_value_is_named_with_its_index(arrays: dict[str, Any],
                                                     fragment: str) -> None:
    with pytest.raises(DataError) as caught:
        check_arrays(SOURCE, targets="class", num_classes=4, **arrays)
    assert fragment in str(caught.value)


def test_float16_inputs_are_checked_without_numpy_warnings() -> None:
    """float16 data was compared with float32's range in float16, where it overflows:
    numpy printed "RuntimeWarning: overflow encountered in cast" before nnbench's own
    words."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_arrays(SOURCE, x=X.astype(np.float16), y=Y, targets="class", num_classes=4)
        bad = X.astype(np.float16)
        bad[3, 2] = np.inf
        with pytest.raises(DataError, match=r"holds non-finite values \(1 of 600\); the first "
                                            r"is inputs\[3, 2\] = inf"):
            check_arrays(SOURCE, x=bad, y=Y, targets="class", num_classes=4)


def test_real_targets_must_be_finite_and_good_data_passes() -> None:
    y = RNG.normal(size=(100, 2))
    check_arrays(SOURCE, x=X, y=y, targets="real")
    y[40, 1] = np.nan
    with pytest.raises(DataError, match=r"array 'labels' holds non-finite values \(1 of 200\); "
                                        r"the first is labels\[40, 1\] = nan; real targets"):
        check_arrays(SOURCE, x=X, y=y, targets="real")
    # whole-number float labels and boolean labels are class labels
    check_arrays(SOURCE, x=X, y=Y.astype(np.float64), targets="class", num_classes=4)
    check_arrays(SOURCE, x=X, y=Y % 2 == 0, targets="class", num_classes=2)


# -- once per content ----------------------------------------------------------------------------

def _file_spec(path: Path) -> Any:
    return registry.resolve("dataset", {"name": "file", "path": str(path)})


def test_data_is_checked_once_per_file_content(tmp_path: Path, fresh_checks: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=X, y=Y)
    check_dataset(_file_spec(path), seed=0, load=True)
    # the markers of a pass: the arrays', and the build's agreeing with its declared shape
    assert len(list((fresh_checks / "checks").iterdir())) == 2

    # a new process (memory empty, arrays never loaded): the marker alone answers
    monkeypatch.setattr(checks, "_CHECKED", set())
    files._arrays.cache_clear()
    loads = files._arrays

    def never(*_args: Any) -> Any:
        raise AssertionError("the data was loaded again")

    monkeypatch.setattr(files, "_arrays", never)
    check_dataset(_file_spec(path), seed=0, load=True)
    check_dataset(_file_spec(path), seed=0, load=False)

    # new content is new data: checked again, and refused
    monkeypatch.setattr(files, "_arrays", loads)
    np.savez(path, x=np.where(X > 2.5, np.inf, X), y=Y)
    with pytest.raises(DataError, match="array 'x' holds non-finite values"):
        check_dataset(_file_spec(path), seed=0, load=True)
    assert len(list((fresh_checks / "checks").iterdir())) == 2  # a failure leaves no marker


# -- built-in and torchvision datasets -----------------------------------------------------------

def test_built_in_datasets_go_through_the_same_checks(fresh_checks: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    x = RNG.normal(size=(569, 30)).astype(np.float32)
    x[10, 3] = np.nan
    monkeypatch.setattr(embedded, "_bundled", lambda name: (x, np.arange(569) % 2))
    with pytest.raises(DataError) as caught:
        registry.build("dataset", registry.resolve("dataset", "breast_cancer"), seed=0,
                       device=CPU)
    assert "dataset 'breast_cancer': array 'x' holds non-finite values (1 of 17070); the " \
           "first is x[10, 3] = nan" in str(caught.value)

    signals = RNG.normal(size=(80, 40)).astype(np.float32)
    labels = np.arange(80) % 10
    monkeypatch.setattr(embedded, "_mnist1d_arrays", lambda n: (
        signals, labels, signals[:20], np.where(np.arange(20) == 7, 10, labels[:20])))
    with pytest.raises(DataError) as caught:
        registry.build("dataset", registry.resolve("dataset", "mnist1d"), seed=0, device=CPU)
    assert "dataset 'mnist1d': array 'y_test' holds labels outside 0..9 (num_classes=10) " \
           "(1 of 20); the first is y_test[7] = 10" in str(caught.value)


def test_a_built_in_dataset_with_bad_values_stops_run_before_anything(
        tmp_path: Path, fresh_checks: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import sklearn.datasets

    def circles(**_kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        points = RNG.normal(size=(300, 2))
        points[42, 0] = -np.inf
        return points, np.arange(300) % 2

    monkeypatch.setattr(sklearn.datasets, "make_circles", circles)
    monkeypatch.chdir(tmp_path)
    path = _suite(tmp_path, "{name: circles, n_samples: 300}")
    err = _refused(["run", str(path), "--device", "cpu"], tmp_path, capsys)
    assert f"{path}: task.dataset: dataset 'circles': array 'x' holds non-finite values " \
           f"(1 of 600); the first is x[42, 0] = -inf" in err


def _mnist_files(root: Path, bad_label: int | None) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        labels = np.arange(n) % 10
        if prefix == "train" and bad_label is not None:
            labels[5] = bad_label
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


MNIST = "{name: mnist, val_fraction: 0.2}"


def test_torchvision_files_go_through_the_same_checks(tmp_path: Path, fresh_checks: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    _mnist_files(root, bad_label=12)
    monkeypatch.setenv("NNBENCH_DATA", str(root))
    vision._load.cache_clear()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    path = _suite(work, MNIST)
    try:
        err = _refused(["run", str(path), "--device", "cpu"], work, capsys)
    finally:
        vision._load.cache_clear()
    assert f"{path}: task.dataset: {root / 'MNIST' / 'raw'}: array 'train-labels-idx1-ubyte' " \
           f"holds labels outside 0..9 (num_classes=10) (1 of 60); the first is " \
           f"train-labels-idx1-ubyte[5] = 12" in err


# -- every training command checks first; validate says what run would refuse -------------------

@pytest.mark.parametrize("command", ["run", "worker", "tune", "submit", "bench"])
def test_every_training_command_refuses_bad_data_creating_nothing(
        command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    np.savez(tmp_path / "d.npz", x=np.where(np.arange(600).reshape(100, 6) == 99, np.nan, X),
             y=Y)
    path = _suite(tmp_path, "{name: file, path: d.npz}", tune=command == "tune")
    argv = [command, str(path), "--device", "cpu"]
    if command == "submit":
        argv += ["--local", "--storage", f"sqlite:///{tmp_path / 'queue.db'}"]
    if command == "bench":  # two tasks: the bad file's and a clean one
        levels = "[{name: sgd, lr: 0.05}, {name: adam, lr: 0.01}]"
        path.write_text(BENCHMARK_TASK.format(name="own", dataset="{name: file, path: d.npz}",
                                              loss="cross_entropy", levels=levels, seeds=1,
                                              epochs=1))
        (tmp_path / "circ.yaml").write_text(BENCHMARK_TASK.format(
            name="circ", dataset="{name: circles, n_samples: 300}", loss="cross_entropy",
            levels=levels, seeds=1, epochs=1))
        bench = tmp_path / "bench.yaml"
        bench.write_text("name: b\ntasks:\n" + "".join(
            f"  - {{suite: {name}, target: {{metric: val_accuracy, value: 0.8}}}}\n"
            for name in (path.name, "circ.yaml")))
        argv = ["bench", str(bench), "--device", "cpu"]
    err = _refused(argv, tmp_path, capsys)
    assert f"{path.name}: task.dataset: {tmp_path / 'd.npz'}: array 'x' holds non-finite " \
           f"values (1 of 600); the first is x[16, 3] = nan" in err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()


def test_validate_names_missing_dataset_files_with_their_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path / "empty"))
    suite = REPO / "suites" / "seed_mnist_mlp.yaml"
    assert cli.main(["validate", str(suite)]) == 2
    captured = capsys.readouterr()
    assert ": ok" not in captured.out
    assert f"{suite}: task.dataset: dataset 'mnist' not found under {tmp_path / 'empty'} " \
           f"(download is false; 4 of 4 files missing: train-images-idx3-ubyte, " \
           f"train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)" \
           in captured.err
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert str(tmp_path / "empty" / "MNIST" / "raw" / name) in captured.err
    assert "set NNBENCH_DATA to where they are, or set download: true" in captured.err


def test_validate_accepts_present_files_and_download_true(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path / "data"))
    fetching = _suite(tmp_path, "{name: mnist, download: true}")
    assert cli.main(["validate", str(fetching)]) == 0, capsys.readouterr().err
    _mnist_files(tmp_path / "data", bad_label=None)
    present = _suite(tmp_path, MNIST)
    assert cli.main(["validate", str(present)]) == 0, capsys.readouterr().err
    assert f"{present}: ok" in capsys.readouterr().out


def test_validate_names_mnist_files_of_other_shapes_or_labels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Intact idx files that are not MNIST's passed validate: 27×27 images (the run then
    blamed the model's declared input shape, in words for plugin authors), 50 labels for
    60 images, labels up to 199 (the run said to raise num_classes, which mnist does not
    take)."""
    root = tmp_path / "data"
    monkeypatch.setenv("NNBENCH_DATA", str(root))
    _mnist_files(root, bad_label=None)
    raw = root / "MNIST" / "raw"
    rng = np.random.default_rng(1)
    _write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (60, 27, 27)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(50) % 200 * 4 % 200)
    path = _suite(tmp_path, MNIST)
    assert cli.main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: task.dataset: dataset 'mnist': its files under {raw} are intact, but not "
        f"mnist's (train-images-idx3-ubyte: images of 27×27 where mnist's are 28×28; "
        f"t10k-images-idx3-ubyte holds 20 images and t10k-labels-idx1-ubyte 50 labels: one "
        f"label per image; t10k-labels-idx1-ubyte: labels up to 196 where mnist has 10 "
        f"classes (0 to 9)); put mnist's own files there"]
    _mnist_files(tmp_path / "intact", bad_label=None)
    monkeypatch.setenv("NNBENCH_DATA", str(tmp_path / "intact"))
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_validate_names_a_truncated_mnist_or_cifar_file_from_its_header_and_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """validate looked only at the files' presence: a truncated file passed it, and the run
    then refused it. Now the sizes are checked against the idx headers (MNIST) and a CIFAR-10
    batch must end as a pickle does; no data is read, nothing is unpickled."""
    from tests.conftest import _write_cifar10

    root = tmp_path / "data"
    monkeypatch.setenv("NNBENCH_DATA", str(root))
    _mnist_files(root, bad_label=None)
    raw = root / "MNIST" / "raw"
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-784])  # one image short
    path = _suite(tmp_path, MNIST)
    assert cli.main(["validate", str(path)]) == 2
    assert f"{path}: task.dataset: dataset 'mnist': its files under {raw} are there, but " \
           f"torchvision cannot read one (t10k-images-idx3-ubyte: 14,912 bytes where its " \
           f"header (20×28×28) says 15,696: cut short): damaged or truncated; delete it and " \
           f"download again" in capsys.readouterr().err
    images.write_bytes(b"\0\0\x08\x01" + bytes(20))  # a labels header in an images file
    assert cli.main(["validate", str(path)]) == 2
    assert "(t10k-images-idx3-ubyte: its header is not that of an idx file of unsigned bytes " \
           "in 3 dimension(s))" in capsys.readouterr().err

    _write_cifar10(root, per_batch=4)
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-10])
    cifar = _suite(tmp_path, "{name: cifar10}")
    assert cli.main(["validate", str(cifar)]) == 2
    assert f"{cifar}: task.dataset: dataset 'cifar10': its files under " \
           f"{root / 'cifar-10-batches-py'} are there, but torchvision cannot read one " \
           f"(data_batch_3: it does not end as a pickle does (cut short))" \
           in capsys.readouterr().err
    _write_cifar10(tmp_path / "intact", per_batch=4)
    batch.write_bytes((tmp_path / "intact" / "cifar-10-batches-py" / "data_batch_3")
                      .read_bytes())
    assert cli.main(["validate", str(cifar)]) == 0, capsys.readouterr().err


def test_validate_checks_the_content_of_a_file_dataset(tmp_path: Path, fresh_checks: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x=X, y=Y, x_test=np.where(np.arange(30)[:, None] == 29, np.inf, X[:30]),
             y_test=Y[:30])
    path = _suite(tmp_path, f"{{name: file, path: {data}}}")
    assert cli.main(["validate", str(path)]) == 2
    assert f"{path}: task.dataset: {data}: array 'x_test' holds non-finite values (6 of 180); " \
           f"the first is x_test[29, 0] = inf" in capsys.readouterr().err
    np.savez(data, x=X, y=Y, x_test=X[:30], y_test=Y[:30])
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err


# -- statuses mean what they say ---------------------------------------------------------------

def test_a_trial_on_non_finite_data_fails_and_is_never_diverged(tmp_path: Path) -> None:
    """Before the checks, NaN inputs made the loss NaN and the trial was "diverged"."""
    data = tmp_path / "d.npz"
    np.savez(data, x=np.where(np.arange(600).reshape(100, 6) == 0, np.nan, X), y=Y)
    spec = load_suite(_suite(tmp_path, f"{{name: file, path: {data}}}")).trials()[0]
    result = train_trial(spec, CPU)
    assert result.status == "failed"
    assert "array 'x' holds non-finite values (1 of 600); the first is x[0, 0] = nan" in \
        result.reason
