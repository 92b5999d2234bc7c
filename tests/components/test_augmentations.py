"""Batched augmentations equal torchvision's per-image transforms on the same parameters.

For every registered augmentation: draw each sample's parameters for a batch, apply the
batched version once, and compare each image with torchvision.transforms.v2.functional
applied to that image alone with that image's parameters. Geometric ops must match
exactly; colour ops to float rounding (1e-6).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from nnbench import registry
from nnbench.components.augmentations import Augmentation, Normalize

GEOMETRIC = {"random_horizontal_flip", "random_vertical_flip", "random_crop",
             "random_rotation", "random_grayscale", "random_shift"}
AUGMENTATIONS = [i for i in registry.list_components("augmentation")]

CASES: dict[str, dict[str, Any]] = {  # parameters that exercise each augmentation properly
    "random_horizontal_flip": {"p": 0.5},
    "random_vertical_flip": {"p": 0.5},
    "random_crop": {"size": 10, "padding": 2, "fill": 0.25},
    "random_resized_crop": {"size": 9, "scale": [0.2, 1.0]},
    "random_rotation": {"degrees": 45},
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.2},
    "random_grayscale": {"p": 0.5},
    "normalize": {},
    "gaussian_noise": {"std": 0.3},
    "random_shift": {"max_shift": 6},
}


def _batch(kind: str, channels: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    if kind == "signal":
        return torch.randn(16, 40, generator=gen)
    return torch.rand(16, channels, 13, 11, generator=gen)  # odd, non-square on purpose


def test_every_augmentation_has_a_case() -> None:
    assert {i.name for i in AUGMENTATIONS} == set(CASES)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_equals_torchvision_per_image(name: str, channels: int) -> None:
    info = registry.get("augmentation", name)
    if info.attrs["input"] == "signal" and channels == 1:
        pytest.skip("signals have no channels")
    aug: Augmentation = registry.build(
        "augmentation", registry.resolve("augmentation", {"name": name, **CASES[name]}))
    x = _batch(info.attrs["input"], channels)
    if isinstance(aug, Normalize):
        aug.fit(x)
    params = aug.sample(x, torch.Generator().manual_seed(11))
    batched = aug.apply(x, params)
    for k in range(len(x)):
        one: dict[str, Any] = {key: value[k] for key, value in params.items()}
        expected = aug.reference(x[k], one)
        if name in GEOMETRIC:
            assert torch.equal(batched[k], expected), f"sample {k} differs"
        else:
            torch.testing.assert_close(batched[k], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["random_horizontal_flip", "random_crop", "random_rotation",
                                  "color_jitter", "random_resized_crop"])
def test_randomness_is_per_sample(name: str) -> None:
    aug: Augmentation = registry.build(
        "augmentation", registry.resolve("augmentation", {"name": name, **CASES[name]}))
    x = torch.rand(1, 3, 13, 11).expand(32, -1, -1, -1).contiguous()  # 32 copies of one image
    out = aug(x, torch.Generator().manual_seed(0))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 1  # one image, different draws per sample


def test_color_jitter_draws_a_random_order_per_image() -> None:
    aug = registry.build("augmentation", registry.resolve(
        "augmentation", {"name": "color_jitter", **CASES["color_jitter"]}))
    orders = aug.sample(torch.rand(200, 3, 4, 4), torch.Generator().manual_seed(0))["order"]
    assert len({tuple(o) for o in orders.tolist()}) > 12  # many of the 24 permutations
    assert sorted(orders[0].tolist()) == [0, 1, 2, 3]


def test_flip_probability_is_respected() -> None:
    aug = registry.build("augmentation", registry.resolve(
        "augmentation", {"name": "random_horizontal_flip", "p": 0.25}))
    flips = aug.sample(torch.zeros(20000, 1, 2, 2), torch.Generator().manual_seed(0))["flip"]
    assert flips.float().mean().item() == pytest.approx(0.25, abs=0.01)


def test_normalize_uses_training_statistics_per_channel() -> None:
    aug = registry.build("augmentation", registry.resolve("augmentation", "normalize"))
    x = torch.rand(50, 3, 6, 6) * torch.tensor([1.0, 2.0, 4.0]).view(1, 3, 1, 1)
    aug.fit(x)
    out = aug.apply(x, {})
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_normalize_fitted_on_a_gpu_has_the_host_s_statistics() -> None:
    """A checkpoint reloaded on the CPU (`nnbench evaluate`, the MLflow model) fits normalize
    again there: fitted on a GPU, whose reductions add in another order, its statistics
    differed in the last bits from the ones it is evaluated with."""
    x = torch.rand(5000, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 3
    on_host = registry.build("augmentation", registry.resolve("augmentation", "normalize"))
    on_gpu = registry.build("augmentation", registry.resolve("augmentation", "normalize"))
    on_host.fit(x)
    on_gpu.fit(x.cuda())
    assert on_gpu.mean.device.type == "cuda"
    assert torch.equal(on_gpu.mean.cpu(), on_host.mean)
    assert torch.equal(on_gpu.std.cpu(), on_host.std)


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_augmentation_applies_without_reading_the_device(name: str) -> None:
    """A training step augments its batch on the device: applying the drawn parameters
    never reads a tensor on the host (RandomResizedCrop read every box with `.tolist()`: on
    a GPU a sync per training step, and it resized image by image). Tried on "meta"
    tensors, which hold no data: a read fails ("Cannot copy out of meta tensor")."""
    info = registry.get("augmentation", name)
    aug: Augmentation = registry.build(
        "augmentation", registry.resolve("augmentation", {"name": name, **CASES[name]}))
    x = _batch(info.attrs["input"], 3)
    if isinstance(aug, Normalize):
        aug.fit(x)
    params = aug.sample(x, torch.Generator().manual_seed(3))
    shape = aug.apply(x, params).shape
    if isinstance(aug, Normalize):  # its fitted statistics live with the data
        aug.mean, aug.std = aug.mean.to("meta"), aug.std.to("meta")  # type: ignore[union-attr]
    on_meta, meta = x.to("meta"), {key: value.to("meta") for key, value in params.items()}
    with _HostCopies() as copies:
        out = aug.apply(on_meta, meta)
    assert out.shape == shape
    assert copies.ops == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_augmentations_matrix_products_run_in_full_fp32(name: str) -> None:
    """Under `--precision tf32` a trial's matrix products may round to TF32 on a GPU; an
    augmentation's own must not (the rotation's sampling grid could move a pixel across a
    boundary of nearest sampling, a resized crop's every pixel would lose bits): each runs
    at "highest", and the trial's precision is back afterwards."""
    aug: Augmentation = registry.build(
        "augmentation", registry.resolve("augmentation", {"name": name, **CASES[name]}))
    x = _batch(registry.get("augmentation", name).attrs["input"], 3)
    if isinstance(aug, Normalize):
        aug.fit(x)
    params = aug.sample(x, torch.Generator().manual_seed(3))
    products: list[str] = []

    class Products(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            if getattr(func, "__name__", "") in ("matmul", "bmm", "mm", "baddbmm", "einsum"):
                products.append(torch.get_float32_matmul_precision())
            return func(*args, **(kwargs or {}))

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with Products():
            aug.apply(x, params)
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)
    assert set(products) <= {"highest"}
    if name in ("random_rotation", "random_resized_crop"):
        assert products


class _HostCopies(TorchFunctionMode):
    """The calls that copy host data to the device: a tensor made from host values there
    (`torch.tensor([...], device=...)`), a host tensor moved or copied to it. On a GPU each
    is a blocking copy, a sync per step. Host numbers passed to an op (`x / 2.0`) are
    arguments of its kernel, not copies; a `non_blocking` copy (torchvision's hue table)
    is staged without waiting for the device."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        given = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        made_there = name in ("tensor", "as_tensor", "asarray") and \
            torch.device(kwargs.get("device") or "cpu").type != "cpu"
        moved = isinstance(out, torch.Tensor) and out.device.type != "cpu" and \
            not kwargs.get("non_blocking") and \
            any(t.device.type == "cpu" and t.dim() > 0 for t in given)
        if made_there or moved:
            self.ops.append(name)
        return out


@pytest.mark.parametrize(("image", "size", "scale"), [
    ((3, 32, 32), 8, (0.08, 1.0)),  # down to a quarter and less (wide filters)
    ((3, 32, 32), 48, (0.5, 1.0)),  # up
    ((1, 7, 29), 7, (0.9, 1.0)),  # narrow, one axis kept
    ((3, 16, 16), 16, (1.0, 1.0)),  # the whole image at its own size: as is
])
@pytest.mark.parametrize("at_once", [True, False])
def test_random_resized_crop_resizes_as_torchvision_at_any_scale(
        image: tuple[int, int, int], size: int, scale: tuple[float, float], at_once: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every sample's crop and resize at once (a GPU's way, and a CPU's for small images),
    and image by image (a CPU's for larger ones), as torchvision's `resized_crop`
    (antialiased bilinear) gives it one image at a time, within float rounding; with
    TF32 matrix products allowed (--precision tf32), which the resize sets aside for its own
    products (on a GPU; a CPU has no TF32) and leaves allowed after."""
    from nnbench.components import augmentations

    monkeypatch.setattr(augmentations, "BATCHED_CROP_PIXELS", 10**9 if at_once else 0)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # what --precision tf32 sets
    try:
        _resized_as_torchvision(image, size, scale)
        assert torch.get_float32_matmul_precision() == "high"  # left as it was
    finally:
        torch.set_float32_matmul_precision(precision)


def _resized_as_torchvision(image: tuple[int, int, int], size: int,
                            scale: tuple[float, float]) -> None:
    aug: Augmentation = registry.build("augmentation", registry.resolve(
        "augmentation", {"name": "random_resized_crop", "size": size, "scale": list(scale)}))
    x = torch.rand(64, *image, generator=torch.Generator().manual_seed(5))
    params = aug.sample(x, torch.Generator().manual_seed(6))
    out = aug.apply(x, params)
    assert out.shape == (64, image[0], size, size)
    for k in range(len(x)):
        expected = aug.reference(x[k], {key: value[k] for key, value in params.items()})
        torch.testing.assert_close(out[k], expected, atol=1e-5, rtol=0)
    if scale == (1.0, 1.0) and image[1:] == (size, size):
        assert torch.equal(out, x)
