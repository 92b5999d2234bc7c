"""The `file` dataset: your own tensors from .npz / .pt, checked from the header, split like
every dataset, and part of the trial_id through the file's content hash."""

from __future__ import annotations

import io
import textwrap
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nnbench import cli, registry
from nnbench.config import load_suite
from nnbench.data import dataset_attrs
from nnbench.data.files import FileParams, file_metadata
from nnbench.train import train_trial

CPU = torch.device("cpu")
RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(100, 6)).astype(np.float32), np.arange(100) % 4
X_TEST, Y_TEST = RNG.normal(size=(30, 6)).astype(np.float32), np.arange(30) % 4


def _build(**params: Any) -> Any:
    return registry.build("dataset", registry.resolve("dataset", {"name": "file", **params}),
                          seed=3, device=CPU)


def test_npz_with_a_test_split_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)
    data = _build(path=str(path), val_fraction=0.2)
    assert data.sizes() == {"train": 80, "val": 20, "test": 30}
    assert torch.equal(data.x_test, torch.as_tensor(X_TEST))  # the file's test split, as is
    assert (data.targets, data.num_classes, data.input_shape) == ("class", 4, (6,))
    assert data.y_train.dtype == torch.int64 and data.x_train.dtype == torch.float32
    rows = {tuple(r) for r in np.concatenate([data.x_train.numpy(), data.x_val.numpy()])}
    assert rows == {tuple(r) for r in X}  # train + val is x, split by the seed


def test_pt_gives_the_same_data_as_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)
    torch.save({"x": torch.as_tensor(X), "y": torch.as_tensor(Y), "x_test":
                torch.as_tensor(X_TEST), "y_test": torch.as_tensor(Y_TEST)}, tmp_path / "d.pt")
    a, b = _build(path=str(tmp_path / "d.npz")), _build(path=str(tmp_path / "d.pt"))
    for key in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("x_dtype", [">f4", ">f8"])
def test_big_endian_arrays_give_the_same_data(tmp_path: Path, x_dtype: str,
                                              standardize: bool) -> None:
    """Arrays saved big-endian (MATLAB, some instruments) passed validate, then `run`
    stopped with torch's traceback: "given numpy array has byte order different from the
    native byte order"."""
    np.savez(tmp_path / "le.npz", x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)
    np.savez(tmp_path / "be.npz", x=X.astype(x_dtype), y=Y.astype(">i8"),
             x_test=X_TEST.astype(x_dtype), y_test=Y_TEST.astype(">i8"))
    a, b = (_build(path=str(tmp_path / f"{order}.npz"), standardize=standardize)
            for order in ("le", "be"))
    for key in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key


def test_without_a_test_split_one_is_held_out(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, inputs=X, labels=Y)
    data = _build(path=str(path), x="inputs", y="labels", test_fraction=0.3, val_fraction=0.1)
    assert data.sizes() == {"train": 63, "val": 7, "test": 30}
    assert _build(path=str(path), x="inputs", y="labels").sizes()["test"] == 20  # default 0.2


def test_standardize_and_k_fold_work_as_for_every_dataset(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=X * 5 + 3, y=Y, x_test=X_TEST, y_test=Y_TEST)
    folds = [_build(path=str(path), folds=4, fold=k, standardize=True) for k in range(4)]
    assert [f.sizes()["val"] for f in folds] == [25, 25, 25, 25]
    plain = [_build(path=str(path), folds=4, fold=k) for k in range(4)]
    validated = [tuple(r) for f in plain for r in f.x_val.tolist()]
    assert sorted(validated) == sorted(tuple(r) for r in (X * 5 + 3).tolist())  # each once
    assert folds[0].x_train.mean().abs() < 1e-5
    assert (folds[0].x_train.std(dim=0) - 1).abs().max() < 1e-4


def test_signals_images_and_real_targets(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", x=RNG.normal(size=(50, 16)), y=np.arange(50) % 2)
    signal = registry.resolve("dataset", {"name": "file", "path": str(tmp_path / "s.npz"),
                                          "input": "signal"})
    assert dataset_attrs(signal) == {"targets": "class", "input": "signal"}
    np.savez(tmp_path / "g.npz", x=RNG.random((50, 8, 8)), y=np.arange(50) % 3)
    grey = _build(path=str(tmp_path / "g.npz"), input="image")
    assert grey.input_shape == (1, 8, 8)  # grey images gain their channel axis
    np.savez(tmp_path / "c.npz", x=RNG.random((50, 3, 6)), y=np.arange(50) % 3)
    auto = registry.resolve("dataset", {"name": "file", "path": str(tmp_path / "c.npz")})
    assert dataset_attrs(auto)["input"] == "signal"  # (N, C, L)
    np.savez(tmp_path / "r.npz", x=RNG.normal(size=(40, 3)), y=RNG.normal(size=(40, 2)))
    real = _build(path=str(tmp_path / "r.npz"), targets="real")
    assert (real.targets, real.target_dim, real.y_train.dtype) == ("real", 2, torch.float32)


def test_metadata_comes_from_the_header_alone(tmp_path: Path) -> None:
    """x's header promises 1000 × 40 floats, its data is missing: the header is enough."""
    path = tmp_path / "big.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (1000, 40)})
    labels = io.BytesIO()
    np.save(labels, np.arange(1000) % 10)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue())  # magic and header, no data
        archive.writestr("y.npy", labels.getvalue())
    params = FileParams.model_validate({"path": str(path), "input": "signal"})
    meta = file_metadata(params)
    assert (meta.n_examples, meta.n_test, meta.input_shape, meta.input, meta.targets,
            meta.num_classes) == (1000, None, (40,), "signal", "class", 10)
    with pytest.raises(ValueError, match="x"):  # the data itself is not there
        _build(path=str(path))


def _suite(tmp_path: Path, dataset: str, model: str = "{name: mlp, hidden: [8]}",
           loss: str = "cross_entropy") -> Path:
    path = tmp_path / "own.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: own
        task:
          dataset: {dataset}
          model: {model}
          loss: {loss}
        fixed:
          optimizer: {{name: adam, lr: 0.01}}
          epochs: 2
          batch_size: 16
        seeds: 1
        """))
    return path


def test_a_suite_trains_on_a_file_and_the_file_is_part_of_the_trial_id(tmp_path: Path) -> None:
    data = tmp_path / "d.npz"
    np.savez(data, x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)
    suite_path = _suite(tmp_path, f"{{name: file, path: {data}}}")
    spec = load_suite(suite_path).trials()[0]
    result = train_trial(spec, CPU)
    assert result.status == "finished", result.reason
    assert result.final["test_accuracy"] >= 0
    key = "dataset:file"
    assert dict(spec.digests)[key].startswith("sha256:")

    np.savez(data, x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)  # rewritten, same bytes
    assert load_suite(suite_path).trials()[0].trial_id == spec.trial_id
    np.savez(data, x=X + 1, y=Y, x_test=X_TEST, y_test=Y_TEST)  # different data
    changed = load_suite(suite_path).trials()[0]
    assert changed.trial_id != spec.trial_id
    assert replace(changed, digests=spec.digests).trial_id == spec.trial_id  # only the data


def test_signals_from_a_file_train_a_cnn1d_and_a_gru(tmp_path: Path) -> None:
    data = tmp_path / "s.pt"
    torch.save({"x": torch.randn(60, 2, 16), "y": torch.arange(60) % 3}, data)
    for model in ("cnn1d", "{name: gru, hidden_size: 4, readout: mean}"):
        spec = load_suite(_suite(tmp_path, f"{{name: file, path: {data}}}", model)).trials()[0]
        result = train_trial(spec, CPU)
        assert result.status == "finished", result.reason


def _with(array: np.ndarray, index: Any, value: float) -> np.ndarray:
    changed = array.copy()
    changed[index] = value
    return changed


def _crc_damaged(x: np.ndarray, y: np.ndarray) -> Callable[[Path], None]:
    """x's member fails its CRC check: found while reading the headers when x is small
    (read whole), while loading the data when it is large."""
    def write(path: Path) -> None:
        np.savez(path, x=x, y=y)
        raw = bytearray(path.read_bytes())
        raw[raw.find(x.tobytes()[:64]) + len(x.tobytes()) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    return write


BIG_X = RNG.normal(size=(4000, 50)).astype(np.float32)


def _nested_pt(path: Path) -> None:
    with warnings.catch_warnings():  # torch: "nested tensors is in prototype stage"
        warnings.simplefilter("ignore", UserWarning)
        x = torch.nested.nested_tensor([torch.zeros(2, 6), torch.zeros(3, 6)])
    torch.save({"x": x, "y": torch.as_tensor(Y[:2])}, path.with_suffix(".pt"))


BAD_FILES: dict[str, tuple[Callable[[Path], Any], str, str]] = {
    "missing": (lambda p: None, "{name: file, path: nowhere/d.npz}",
                "task.dataset: dataset 'file': no such file nowhere/d.npz (relative to "),
    "suffix": (lambda p: None, "{name: file, path: d.csv}",
               "task.dataset: dataset 'file': path must end in .npz or .pt, got "
               "'d.csv'"),
    "no_key": (lambda p: np.savez(p, inputs=X, y=Y), "{name: file, path: d.npz}",
               "d.npz has no array 'x' (it holds: inputs, y); name the key with `x: KEY`"),
    "lengths": (lambda p: np.savez(p, x=X, y=Y[:90]), "{name: file, path: d.npz}",
                "'x' has 100 rows but 'y' has shape (90,); one target per example"),
    "float_labels": (lambda p: np.savez(p, x=X, y=Y + 0.5), "{name: file, path: d.npz}",
                     "d.npz: array 'y' holds labels that are not whole numbers (100 of 100); "
                     "the first is y[0] = 0.5; class labels must be integers 0..k-1; for real "
                     "values set targets: real"),
    "negative": (lambda p: np.savez(p, x=X, y=Y - 1), "{name: file, path: d.npz}",
                 "d.npz: array 'y' holds labels outside 0..k-1 (25 of 100); the first is "
                 "y[0] = -1; class labels start at 0: relabel them, e.g. y - y.min()"),
    "label_range": (lambda p: np.savez(p, x=X, y=Y), "{name: file, path: d.npz, "
                                                     "num_classes: 3}",
                    "d.npz: array 'y' holds labels outside 0..2 (num_classes=3) (25 of 100); "
                    "the first is y[3] = 3"),
    "test_label": (lambda p: np.savez(p, x=X, y=Y, x_test=X_TEST, y_test=_with(Y_TEST, 5, -2)),
                   "{name: file, path: d.npz}",
                   "d.npz: array 'y_test' holds labels outside 0..k-1 (1 of 30); the first is "
                   "y_test[5] = -2"),
    # an internal numpy error ("zero-size array to reduction operation minimum") before
    "no_targets": (lambda p: np.savez(p, x=X, y=np.zeros((100, 0), np.float32)),
                   "{name: file, path: d.npz, targets: real}",
                   "d.npz: 'y' has shape (100, 0); real targets are (N,) or (N, k) with k at "
                   "least 1"),
    "nan_label": (lambda p: np.savez(p, x=X, y=_with(Y.astype(float), 9, np.nan)),
                  "{name: file, path: d.npz}",
                  "d.npz: array 'y' holds non-finite labels (1 of 100); the first is "
                  "y[9] = nan"),
    "nan_x": (lambda p: np.savez(p, x=_with(X, (7, 2), np.nan), y=Y),
              "{name: file, path: d.npz}",
              "d.npz: array 'x' holds non-finite values (1 of 600); the first is x[7, 2] = "
              "nan; inputs must be finite numbers"),
    "inf_x_test": (lambda p: np.savez(p, x=X, y=Y, x_test=_with(X_TEST, (3, 0), -np.inf),
                                      y_test=Y_TEST),
                   "{name: file, path: d.npz}",
                   "d.npz: array 'x_test' holds non-finite values (1 of 180); the first is "
                   "x_test[3, 0] = -inf"),
    "overflow": (lambda p: np.savez(p, x=_with(X.astype(np.float64), (5, 1), 1e300), y=Y),
                 "{name: file, path: d.npz}",
                 "d.npz: array 'x' holds values beyond float32's range (±3.4e+38) (1 of 600); "
                 "the first is x[5, 1] = 1e+300; training computes in float32"),
    "empty_test": (lambda p: np.savez(p, x=X, y=Y, x_test=X_TEST[:0], y_test=Y_TEST[:0]),
                   "{name: file, path: d.npz}",
                   "'x_test' has shape (0, 6); expected one row per example"),
    "crc": (_crc_damaged(X, Y), "{name: file, path: d.npz}",
            "d.npz: array 'x' cannot be read (BadZipFile: Bad CRC-32 for file 'x.npy'); the "
            "file is damaged or was written incompletely"),
    "crc_large": (_crc_damaged(BIG_X, np.arange(4000) % 4), "{name: file, path: d.npz}",
                  "d.npz: array 'x' cannot be read (BadZipFile: Bad CRC-32 for file 'x.npy'); "
                  "the file is damaged or was written incompletely"),
    "pt_lists": (lambda p: torch.save({"x": X.tolist(), "y": Y.tolist()}, p.with_suffix(".pt")),
                 "{name: file, path: d.pt}",
                 "d.pt: 'x' holds a Python list, not a tensor; save tensors, e.g. "
                 "torch.save({'x': torch.as_tensor(values)}, path)"),
    # torch's own words began "Weights only load failed. This file can still be loaded,
    # to do so you have two options," with terminal bold codes inside
    "pt_numpy_arrays": (lambda p: torch.save({"x": X, "y": Y}, p.with_suffix(".pt")),
                        "{name: file, path: d.pt}",
                        "d.pt cannot be read by torch.load(weights_only=True) (UnpicklingError: "
                        "Unsupported global: GLOBAL numpy._core.multiarray._reconstruct was not "
                        "an allowed global by default; it holds numpy arrays: save torch "
                        "tensors, or the arrays as .npz)"),
    # every trial diverged (an infinite squared error), and the run blamed the trials
    "targets_whose_squares_overflow": (
        lambda p: np.savez(p, x=X, y=(np.arange(100) * 1e18).astype(np.float32)),
        "{name: file, path: d.npz, targets: real}",
        "d.npz: array 'y' holds targets beyond ±1.84e+19, whose squares overflow float32 (81 "
        "of 100); the first is y[19] = 1.9e+19; a squared-error loss on them is infinite and "
        "every trial would diverge; rescale the targets"),
    "directory": (lambda p: p.mkdir(), "{name: file, path: d.npz}",
                  "dataset 'file': d.npz is a directory; path must name a .npz or .pt file"),
    "half_test": (lambda p: np.savez(p, x=X, y=Y, x_test=X_TEST), "{name: file, path: d.npz}",
                  "has 'x_test' but no 'y_test'; a test split needs both"),
    # keys the suite names: 20% of x was held out as the test split instead, unsaid
    "test_keys_not_there": (lambda p: np.savez(p, x=X, y=Y, xt=X_TEST, yt=Y_TEST),
                            "{name: file, path: d.npz, x_test: x_tst, y_test: y_tst}",
                            "d.npz has no array 'x_tst' (it holds: x, xt, y, yt); name the key "
                            "of its test split with `x_test: KEY`, or leave x_test and y_test "
                            "out to hold a test split out of 'x'"),
    "test_fraction": (lambda p: np.savez(p, x=X, y=Y, x_test=X_TEST, y_test=Y_TEST),
                      "{name: file, path: d.npz, test_fraction: 0.3}",
                      "test_fraction=0.3 but"),
    "strings": (lambda p: np.savez(p, x=np.array([["a"]] * 100), y=Y),
                "{name: file, path: d.npz}", "'x' has dtype <U1; expected numbers"),
    "shape": (lambda p: np.savez(p, x=RNG.random((100, 2, 3, 4, 5)), y=Y),
              "{name: file, path: d.npz}", "input: auto expects (N, D), (N, C, L) or "
                                           "(N, C, H, W)"),
    "not_npz": (lambda p: p.write_text("hello"), "{name: file, path: d.npz}",
                "d.npz is not a readable .npz archive"),
    "no_features": (lambda p: np.savez(p, x=X[:, :0], y=Y), "{name: file, path: d.npz}",
                    "'x' has shape (100, 0); expected one row per example and at least one "
                    "feature"),  # was the model's "float division by zero"
    "label_ids": (lambda p: np.savez(p, x=X, y=_with(Y, 0, 10**9)), "{name: file, path: d.npz}",
                  "'y' holds 5 distinct labels, the largest 1000000000; classes are numbered "
                  "0..k-1 (k = the largest label + 1 = 1,000,000,001 here): renumber them "
                  "0..4"),  # was a model of 9,000,000,065 parameters refused
    # one training example: its standard deviation was nan, the trial "diverged"
    "standardize_one": (lambda p: np.savez(p, x=X[:3], y=Y[:3]),
                        "{name: file, path: d.npz, standardize: true, val_fraction: 0.5, "
                        "test_fraction: 0.34}",
                        "standardize: true needs at least 2 training examples for a standard "
                        "deviation, and the split leaves 1"),
    "too_few_to_split": (lambda p: np.savez(p, x=X[:2], y=Y[:2]),
                         "{name: file, path: d.npz, val_fraction: 0.5, test_fraction: 0.5}",
                         "gives 0 validation and 1 training examples; both must be at least 1 "
                         "(too few to split: give the dataset more examples)"),
    # "could not be checked: RuntimeError: Internal error: NestedTensorImpl ...", a
    # TypeError on float8, "Cannot copy out of meta tensor": no file or key named
    "nested_pt": (_nested_pt, "{name: file, path: d.pt}",
        "d.pt: 'x' is a nested tensor (rows of different shapes); pad or crop them to one "
        "shape and stack them, then save it as one dense tensor of numbers"),
    "float8_pt": (lambda p: torch.save({"x": torch.as_tensor(X).to(torch.float8_e4m3fn),
                                        "y": torch.as_tensor(Y)}, p.with_suffix(".pt")),
                  "{name: file, path: d.pt}",
                  "d.pt: 'x' has dtype torch.float8_e4m3fn, which nnbench does not read; "
                  "save it as one dense tensor of numbers: torch.save({'x': t.float(), ...}, "
                  "path) (t.long() for class labels)"),
    "meta_pt": (lambda p: torch.save({"x": torch.empty(100, 6, device="meta"),
                                      "y": torch.as_tensor(Y)}, p.with_suffix(".pt")),
                "{name: file, path: d.pt}", "d.pt: 'x' is a meta tensor, which holds no values"),
    "sparse_pt": (lambda p: torch.save({"x": torch.as_tensor(X).to_sparse(),
                                        "y": torch.as_tensor(Y)}, p.with_suffix(".pt")),
                  "{name: file, path: d.pt}",
                  "d.pt: 'x' is a torch.sparse_coo tensor; store it dense"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_reported_before_anything_runs(case: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    write, dataset, fragment = BAD_FILES[case]
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "d.npz")
    path = _suite(tmp_path, dataset, loss="mse" if "targets: real" in dataset
                  else "cross_entropy")
    before = sorted(tmp_path.rglob("*"))
    assert cli.main(["run", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert fragment in err, err
    assert err.startswith(f"{path}: task.dataset")
    assert "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # no mlflow.db, optuna.db, report


def test_a_pt_file_python_pickled_is_refused_without_torch_s_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A .pt file written by Python's pickle: torch's "Detected pickle protocol 4"
    UserWarning came before nnbench's own words."""
    import pickle
    import warnings

    monkeypatch.chdir(tmp_path)
    with (tmp_path / "d.pt").open("wb") as f:
        pickle.dump({"x": X, "y": Y}, f, protocol=4)
    path = _suite(tmp_path, "{name: file, path: d.pt}")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert cli.main(["validate", str(path)]) == 2
    assert [str(w.message) for w in shown] == []
    err = capsys.readouterr().err
    assert "d.pt cannot be read by torch.load(weights_only=True) (UnpicklingError: " in err, err


def test_a_file_dataset_needs_a_fitting_model(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "v.npz", x=X, y=Y)
    path = _suite(tmp_path, f"{{name: file, path: {tmp_path / 'v.npz'}}}", "cnn1d")
    assert cli.main(["validate", str(path)]) == 2
    assert "model 'cnn1d' needs signal inputs but dataset 'file' gives vector inputs" in \
        capsys.readouterr().err


def test_evaluate_of_a_trial_whose_data_file_is_gone_says_so(
        tmp_path: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    """It printed the changed-file warning, then a traceback (DatasetNotFoundError), exit 1."""
    from mlflow.tracking import MlflowClient

    data = tmp_path / "d.npz"
    np.savez(data, x=X, y=Y, x_test=X_TEST, y_test=Y_TEST)
    path = _suite(tmp_path, f"{{name: file, path: {data}}}")
    path.write_text(path.read_text() + "checkpoint: true\n")
    assert cli.main(["run", str(path), "--device", "cpu", "--tracking-uri", tracking_uri,
                     "--report-dir", str(tmp_path / "reports")]) == 0
    experiment = MlflowClient(tracking_uri).get_experiment_by_name("own")
    assert experiment is not None
    (run,) = MlflowClient(tracking_uri).search_runs(
        [experiment.experiment_id], filter_string="tags.`nnbench.role` = 'trial'")
    data.unlink()
    capsys.readouterr()
    assert cli.main(["evaluate", run.info.run_id, "--tracking-uri", tracking_uri,
                     "--device", "cpu"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"run {run.info.run_id}: its test split cannot be rebuilt: dataset 'file': no " \
           f"such file {data}" in err, err
    assert "run evaluate where the trial's data is, or put the file back" in err
