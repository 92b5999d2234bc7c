"""The dataset cache: MNIST-1D's examples are generated once and read back bit for bit by
later processes; a bad or unwritable cache costs time, never data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nnbench import seeding
from nnbench.data import embedded

SAMPLES = 200


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty cache, and no arrays in memory (as a new process starts)."""
    monkeypatch.setenv("NNBENCH_CACHE", str(tmp_path / "cache"))
    embedded._mnist1d_arrays.cache_clear()
    yield tmp_path / "cache"
    embedded._mnist1d_arrays.cache_clear()


def _the_package_s_own(num_samples: int) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    with seeding.numpy_rng_preserved():  # make_dataset reseeds numpy/random globally
        data = make_dataset(args)
    return data["x"], data["y"], data["x_test"], data["y_test"]


def _same_bits(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...]) -> None:
    assert len(got) == len(want) == 4
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def _npz_files(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.npz"))


def _never_generate(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(num_samples: int) -> tuple[np.ndarray, ...]:
        raise AssertionError("generated again instead of read from the cache")

    monkeypatch.setattr(embedded, "_make_mnist1d", fail)


def test_mnist1d_is_generated_once_then_read_back_bit_for_bit(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = embedded._mnist1d_arrays(SAMPLES)
    _same_bits(made, _the_package_s_own(SAMPLES))
    (file,) = _npz_files(cache)
    assert file.name == f"{SAMPLES}.npz" and file.parent.parent.name == "mnist1d"
    assert file.parent.name.startswith("mnist1d0.") and "-numpy" in file.parent.name
    assert list(cache.rglob("*.tmp")) == []  # written under a temporary name, then renamed

    embedded._mnist1d_arrays.cache_clear()  # a later process ...
    _never_generate(monkeypatch)  # ... reads the file instead of generating
    _same_bits(embedded._mnist1d_arrays(SAMPLES), made)


def test_a_damaged_cache_file_is_made_again(cache: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    embedded._mnist1d_arrays(SAMPLES)
    (file,) = _npz_files(cache)
    file.write_bytes(file.read_bytes()[:100])  # cut short, as a full disk would leave it
    embedded._mnist1d_arrays.cache_clear()
    _same_bits(embedded._mnist1d_arrays(SAMPLES), _the_package_s_own(SAMPLES))
    embedded._mnist1d_arrays.cache_clear()
    _never_generate(monkeypatch)  # the file was written again, whole
    assert embedded._mnist1d_arrays(SAMPLES)[0].shape == (160, 40)


def test_an_unwritable_cache_still_gives_the_data(
        cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("NNBENCH_CACHE", str(blocker))  # every mkdir under it fails
    _same_bits(embedded._mnist1d_arrays(SAMPLES), _the_package_s_own(SAMPLES))
    assert blocker.read_text() == "not a directory"


def test_another_package_version_never_reads_the_old_file(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    embedded._mnist1d_arrays(SAMPLES)
    embedded._mnist1d_arrays.cache_clear()
    monkeypatch.setattr(embedded, "version", lambda name: "9.9" if name == "mnist1d" else "1")
    made_again: list[int] = []
    real = embedded._make_mnist1d
    monkeypatch.setattr(embedded, "_make_mnist1d",
                        lambda n: made_again.append(n) or real(n))  # type: ignore[func-returns-value]
    embedded._mnist1d_arrays(SAMPLES)
    assert made_again == [SAMPLES]
    assert len(_npz_files(cache)) == 2


def test_an_interrupted_cache_write_leaves_no_temporary_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Ctrl-C in the middle of writing a cache file: the interrupt goes on up, and neither
    the file nor its half-written temporary is left in the cache's folder."""
    from nnbench.data import cache

    def interrupted(out: object, **arrays: np.ndarray) -> None:
        out.write(b"PK half an archive")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    path = tmp_path / "mnist1d" / "x.npz"
    with pytest.raises(KeyboardInterrupt):
        cache.write_arrays(path, {"x": np.zeros(3)})
    assert list(path.parent.iterdir()) == []
