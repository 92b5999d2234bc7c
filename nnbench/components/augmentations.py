"""Data augmentations (registry kind "augmentation"), torchvision.transforms.v2 semantics.

Each augmentation is applied to whole batches on the training device with
per-sample randomness: `sample(n, generator)` draws every sample's parameters from
the trial's augmentation generator, `apply(x, params)` transforms the batch. The
result equals torchvision's per-image functional op with the same parameters
(`reference(image, params_i)`; tests/components/test_augmentations.py checks it).

A trial's `augmentation` is a list applied in order to each training batch.
`normalize` is the exception: its statistics come from the training split (the
notes' `compute_mean_std`) and it is applied to every split, in its place in the list.

attrs["input"]: "image" ((C, H, W) batches), "signal" ((L,) batches) or "any".
attrs["no_effect"](params, input_shape): why the augmentation would leave every input
unchanged (a flip with p 0, a crop the size of the image without padding, saturation
or hue on grey images, ...), or None; validation rejects such a no-op.

torchvision is imported only where an op needs it (colour ops on RGB images, and the
per-image `reference` the tests compare with): validating a suite does not pay for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch.nn import functional as nnf

from nnbench.registry import ComponentInfo, Params, register

KIND = "augmentation"
Batch = dict[str, torch.Tensor]
Shape = tuple[int, ...]


def _tv() -> Any:
    """torchvision.transforms.v2.functional, imported on first use."""
    from torchvision.transforms.v2 import functional

    return functional


def _tv_color() -> Any:
    from torchvision.transforms.v2.functional import _color

    return _color


class LaneGenerators:
    """Every lane's own generator, for `sample` on the batches of a stacked group's lanes
    together ([L·B, ...], lane by lane): a draw of shape (L·B, *rest) through `_rand` is
    each lane's draw of (B, *rest) from its own generator, bitwise, in one op per lane;
    the sample's other ops are per example, so they run once for every lane."""

    def __init__(self, generators: list[torch.Generator]) -> None:
        self.generators = generators


Generators = torch.Generator | LaneGenerators


def _rand(shape: Shape, generator: Generators, device: torch.device,
          dtype: torch.dtype = torch.float32, *, normal: bool = False) -> torch.Tensor:
    """torch.rand(shape) (`normal`: torch.randn) from `generator`; from LaneGenerators,
    each lane's rows from its own generator, as torch draws them (an empty tensor's
    uniform_ or normal_)."""
    if isinstance(generator, torch.Generator):
        draw = torch.randn if normal else torch.rand
        return draw(shape, generator=generator, device=device, dtype=dtype)
    lanes = len(generator.generators)
    if shape[0] % lanes:
        raise ValueError(f"a draw of {shape[0]} rows for {lanes} lanes")
    out = torch.empty((lanes, shape[0] // lanes, *shape[1:]), dtype=dtype, device=device)
    for row, lane in zip(out.unbind(), generator.generators, strict=True):
        (row.normal_ if normal else row.uniform_)(generator=lane)
    return out.view(shape)


class Augmentation:
    """Batched transform with per-sample parameters."""

    stage: Literal["train", "always"] = "train"

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> Batch:
        return {}

    def apply(self, x: torch.Tensor, params: Batch) -> torch.Tensor:
        raise NotImplementedError

    def reference(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """torchvision's per-image functional op with one sample's parameters."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.sample(x, generator))


class LaneSampled(Augmentation):
    """A built-in augmentation: its `sample` draws only through `_rand` and treats
    examples apart, so given LaneGenerators it samples every lane's batch of a stacked
    group at once (`sample_lanes`); a plugin's augmentation is sampled lane by lane."""

    def sample(self, x: torch.Tensor, generator: Generators) -> Batch:
        return {}

    def sample_lanes(self, x: torch.Tensor, generators: LaneGenerators) -> Batch:
        """`sample` of `x`, every lane's examples together ([L·B, ...], lane by lane)."""
        return self.sample(x, generators)


@contextmanager
def _full_fp32() -> Iterator[None]:
    """Matrix products in full fp32 inside, whatever precision the trial's model takes."""
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)


def _uniform(n: int, low: float, high: float, x: torch.Tensor,
             generator: Generators) -> torch.Tensor:
    return _rand((n,), generator, x.device) * (high - low) + low


def _randint(n: int, high: torch.Tensor, generator: Generators) -> torch.Tensor:
    """Per-sample integers in [0, high) (high a tensor of upper bounds)."""
    u = _rand((n,), generator, high.device, torch.float64)
    return (u * high.double()).floor().long().clamp_max(high - 1)


def _per_sample(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (x.dim() - 1)))


# -- flips ---------------------------------------------------------------------------------

class FlipParams(Params):
    p: float = Field(0.5, ge=0, le=1, description="probability of flipping each image")


class _Flip(LaneSampled):
    dim = -1

    def __init__(self, p: FlipParams) -> None:
        self.p = p.p

    def sample(self, x: torch.Tensor, generator: Generators) -> Batch:
        return {"flip": _rand((len(x),), generator, x.device) < self.p}

    def apply(self, x: torch.Tensor, params: Batch) -> torch.Tensor:
        return torch.where(_per_sample(params["flip"], x), x.flip(self.dim), x)

    def reference(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        if not params["flip"]:
            return image
        return _tv().horizontal_flip(image) if self.dim == -1 else _tv().vertical_flip(image)


class _VFlip(_Flip):
    dim = -2


# -- crops ---------------------------------------------------------------------------------

class RandomCropParams(Params):
    size: int = Field(..., ge=1, description="output height and width, pixels")
    padding: int = Field(0, ge=0, description="pixels padded on every side first")
    fill: float = Field(0.0, description="value of the padded pixels")


class _RandomCrop(LaneSampled):
    def __init__(self, p: RandomCropParams) -> None:
        self.size, self.padding, self.fill = p.size, p.padding, p.fill

    def sample(self, x: torch.Tensor, generator: Generators) -> Batch:
        height, width = x.shape[-2] + 2 * self.padding, x.shape[-1] + 2 * self.padding
        if self.size > min(height, width):
            raise ValueError(f"random_crop size {self.size} is larger than the "
                             f"{x.shape[-2]}×{x.shape[-1]} image padded by {self.padding} "
                             f"({height}×{width}); allowed: size up to {min(height, width)}, "
                             f"or more padding")
        if self.padding >= self.size:  # a crop inside the padding holds nothing of the image
            raise ValueError(f"random_crop padding {self.padding} is not smaller than size "
                             f"{self.size}: some crops would hold only padding, no pixel of "
                             f"the image; allowed: padding 0 to {self.size - 1}")
        n = len(x)
        top = _randint(n, torch.full((n,), height - self.size + 1, device=x.device), generator)
        left = _randint(n, torch.full((n,), width - self.size + 1, device=x.device), generator)
        return {"top": top, "left": left}

    def apply(self, x: torch.Tensor, params: Batch) -> torch.Tensor:
        p = self.padding
        padded = nnf.pad(x, [p, p, p, p], value=self.fill) if p else x
        offsets = torch.arange(self.size, device=x.device)
        rows = (params["top"][:, None] + offsets)[:, :, None]  # (n, size, 1)
        cols = (params["left"][:, None] + offsets)[:, None, :]  # (n, 1, size)
        batch = torch.arange(len(x), device=x.device)[:, None, None]
        # (n, size, size, C) -> NCHW, contiguous: oneDNN's convolution backward on a
        # channels-last-strided input corrupts memory on some CPUs (torch 2.14.1, AVX2
        # AMD EPYC: 'double free or corruption' or a segfault in the dry build)
        return padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()

    def reference(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        if self.padding:
            image = _tv().pad(image, [self.padding], fill=self.fill)
        return _tv().crop(image, int(params["top"]), int(params["left"]), self.size, self.size)


class RandomResizedCropParams(Params):
    size: int = Field(..., ge=1, description="output height and width, pixels")
    scale: tuple[float, float] = Field((0.08, 1.0), description="crop area / image area range")
    ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="crop aspect-ratio range")

    @model_validator(mode="after")
    def _ranges(self) -> RandomResizedCropParams:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {list(self.scale)}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {list(self.ratio)}")
        return self


# on a CPU, images of at most this many pixels are resized all at once (dense matrix
# products: 128 8×8 digits 0.13 ms against 0.76 ms image by image, 28×28 1.38 against
# 1.83 ms), larger ones image by image (3×32×32: 2.6 ms against 3.6 ms at once; 224×224
# 6× faster); on a GPU always at once (image by image read every box on the host)
BATCHED_CROP_PIXELS = 28 * 28


def _resize_weights(start: torch.Tensor, length: torch.Tensor, extent: int, size: int
                    ) -> torch.Tensor:
    """Per sample, the `[size, extent]` weights that take the `length` pixels from `start`
    of an axis of `extent` pixels to `size` pixels as torch's bilinear antialiased
    interpolation does (`_compute_indices_min_size_weights_aa`): output pixel i is centred
    at `scale * (i + 0.5)` in the crop (`scale = length / size`), and takes the crop's
    pixels j with the triangle filter `1 - |j + 0.5 - centre| / max(scale, 1)`, normalised
    to sum to 1; a crop of `size` pixels is taken as is (weight 1 on its own pixel).
    Pixels outside the crop weigh 0. In float32, as torch's float kernel computes them,
    `[n, size, extent]`."""
    # a divisor filled on the device: a host number's division is a multiplication by its
    # reciprocal on a GPU (a bit off), a tensor made from it a host-to-device copy
    size_t = torch.full((), float(size), device=length.device)
    scale = (length.float() / size_t)[:, None, None]
    centre = scale * (torch.arange(size, device=start.device, dtype=torch.float32)[:, None]
                      + 0.5)
    j = torch.arange(extent, device=start.device, dtype=torch.float32)[None, None, :] \
        - start.float()[:, None, None]  # each pixel's place in the crop
    weight = (1 - (j + 0.5 - centre).abs() / scale.clamp_min(1.0)).clamp_min(0)
    weight = weight * ((j >= 0) & (j < length.float()[:, None, None]))
    return weight / weight.sum(dim=2, keepdim=True)


class _RandomResizedCrop(LaneSampled):
    """torchvision's sampling (10 tries, then a centre crop), vectorised over the batch;
    the resize is torchvision's bilinear antialiased `resized_crop` (torch's
    `interpolate(antialias=True)`), for every sample at once: each sample's crop and resize
    is one weight matrix per axis (`_resize_weights`), applied as two batched matrix
    products, with no loop over the samples and no read of their boxes on the host (a
    `.tolist()` per step was a GPU sync per step); larger images on a CPU one at a time
    (BATCHED_CROP_PIXELS)."""

    tries = 10

    def __init__(self, p: RandomResizedCropParams) -> None:
        self.size, self.scale, self.ratio = p.size, p.scale, p.ratio

    def sample(self, x: torch.Tensor, generator: Generators) -> Batch:
        n, (height, width) = len(x), x.shape[-2:]
        shape = (n, self.tries)
        area = height * width
        target = area * (_rand(shape, generator, x.device)
                         * (self.scale[1] - self.scale[0]) + self.scale[0])
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(_rand(shape, generator, x.device) * (log_hi - log_lo) + log_lo)
        w = torch.sqrt(target.double() * aspect).round().long()
        h = torch.sqrt(target.double() / aspect).round().long()
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = torch.where(ok.any(1), ok.long().argmax(1), 0)
        pick = torch.arange(n, device=x.device)
        h, w = h[pick, first], w[pick, first]
        # fallback centre crop for samples with no valid try (torchvision's rule)
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            fw, fh = width, round(width / min(self.ratio))
        elif in_ratio > max(self.ratio):
            fw, fh = round(height * max(self.ratio)), height
        else:
            fw, fh = width, height
        found = ok.any(1)
        h = torch.where(found, h, fh)
        w = torch.where(found, w, fw)
        top = _randint(n, height - h + 1, generator)
        left = _randint(n, width - w + 1, generator)
        top = torch.where(found, top, (height - fh) // 2)
        left = torch.where(found, left, (width - fw) // 2)
        return {"top": top, "left": left, "height": h, "width": w}

    def apply(self, x: torch.Tensor, params: Batch) -> torch.Tensor:
        if x.device.type == "cpu" and x.shape[-2] * x.shape[-1] > BATCHED_CROP_PIXELS:
            # larger images on a CPU: one resize per image (its sums skip the zero weights)
            boxes = torch.stack([params[k] for k in ("top", "left", "height", "width")],
                                1).tolist()
            return torch.stack([self._resized_crop(image, *box)
                                for image, box in zip(x, boxes, strict=True)])
        rows = _resize_weights(params["top"], params["height"], x.shape[-2], self.size)
        cols = _resize_weights(params["left"], params["width"], x.shape[-1], self.size)
        # in full fp32 whatever --precision allows the model's matrix products (TF32 would
        # round every pixel to a 10-bit mantissa; torch's own resize kernel does not)
        with _full_fp32():
            # [n, size, H] @ [n, C, H, W] @ [n, W, size]: each sample's crop, resized
            return torch.matmul(torch.matmul(rows[:, None], x), cols.transpose(1, 2)[:, None])

    def _resized_crop(self, image: torch.Tensor, top: int, left: int, height: int,
                      width: int) -> torch.Tensor:
        """torchvision's `resized_crop` on a float image: the crop, then (unless it already
        has the size) `interpolate(bilinear, align_corners=False, antialias=True)`."""
        crop = image[..., top:top + height, left:left + width]
        if (height, width) == (self.size, self.size):
            return crop
        return nnf.interpolate(crop[None], size=[self.size, self.size], mode="bilinear",
                               align_corners=False, antialias=True)[0]

    def reference(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        box = [int(params[k]) for k in ("top", "left", "height", "width")]
        return _tv().resized_crop(image, *box, size=[self.size, self.size], antialias=True)


# -- rotation ------------------------------------------------------------------------------

class RotationParams(Params):
    degrees: float = Field(..., gt=0, le=180, description="angle drawn from U(-degrees, degrees)")


class _RandomRotation(LaneSampled):
    """Nearest-neighbour rotation about the centre, zeros outside (torchvision's defaults),
    with torchvision's inverse-affine sampling grid built for every sample at once."""

    def __init__(self, p: RotationParams) -> None:
        self.degrees = p.degrees

    def sample(self, x: torch.Tensor, generator: Generators) -> Batch:
        return {"angle": _uniform(len(x), -self.degrees, self.degrees, x, generator)}

    def apply(self, x: torch.Tensor, params: Batch) -> torch.Tensor:
        n, (height, width) = len(x), x.shape[-2:]
        rad = params["angle"].double() * (-math.pi / 180.0)  # torchvision rotates by -angle
        cos, sin, zero = rad.cos(), rad.sin(), torch.zeros_like(rad)
        theta = torch.stack([cos, sin, zero, -sin, cos, zero], 1).to(x.dtype).view(n, 2, 3)
        base = torch.empty(1, height, width, 3, dtype=x.dtype, device=x.device)
        base[..., 0].copy_(torch.linspace(-width * 0.5 + 0.5, width * 0.5 - 0.5, width,
                                          device=x.device))
        base[..., 1].copy_(torch.linspace(-height * 0.5 + 0.5, height * 0.5 - 0.5, height,
                                          device=x.device).unsqueeze(-1))
        base[..., 2].fill_(1)
        # each row of theta over half its axis's size, in a tensor filled on the device (one
        # of host numbers is a host-to-device copy, a GPU sync every step; a host number as
        # divisor, a multiplication by its reciprocal on a GPU: a bit off)
        half = torch.full((1, 2, 1), 0.5 * width, dtype=x.dtype, device=x.device)
        half[:, 1] = 0.5 * height
        theta = theta / half
        with _full_fp32():  # TF32 could move a pixel across a boundary of nearest sampling
            grid = base.view(1, height * width, 3).expand(n, -1, -1).bmm(
                theta.transpose(1, 2)).view(n, height, width, 2)
        return nnf.grid_sample(x, grid, mode="nearest", padding_mode="zeros",
                               align_corners=False)

    def reference(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return _tv().rotate(image, float(params["angle"]), fill=0.0)


# -- colour --------------------------------------------------------------------------------

class ColorJitterParams(Params):
    brightness: float = Field(0.0, ge=0, description="factor from [max(0, 1-b), 1+b]")
    contrast: float = Field(0.0, ge=0, description="factor from [max(0, 1-c), 1+c]")
    saturation: float = Field(0.0, ge=0, description="factor from [max(0, 1-s), 1+s]")
    hue: float = Field(0.0, ge=0, le=0.5, description="hue shift from [-h, h]")


def _blend(image1: torch.Tensor, image2: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    return (image1 * ratio + image2 * (1.0 - ratio)).clamp_(0, 1.0)


class _ColorJitter(LaneSampled):
    """Brightness, contrast, saturation and hue in a random order per image
    (torchvision's `fn_idx`), with per-image factors; images in [0, 1]."""

    def __init__(self, p: ColorJitterParams) -> None:
        def spread(v: float) -> tuple[float, float] | None:
            return (max(0.0, 1 - v), 1 + v) if v else None

        self.ranges = [spread(p.brightness), spread(p.contrast), spread(p.saturation),
                       (-p.hue, p.hue) if p.hue else None]

    def sample(self, x: torch.Tensor, generator: Generators) -> Batch:
        n = len(x)
        order = _rand((n, 4), generator, x.device).argsort(dim=1)
        params = {"order": order}
        for name, bounds in zip(("brightness", "contrast", "saturation", "hue"), self.ranges,
                                strict=True):
            if bounds is not None:
                params[name] = _uniform(n, bounds[0], bounds[1], x, generator)
        return params

    @staticmethod
    def _op(x: torch.Tensor, op: int, factor: torch.Tensor) -> torch.Tensor:
        if op == 0:  # brightness
            return (x * factor).clamp_(0, 1.0)
        if op == 1:  # contrast
            gray = _tv().rgb_to_grayscale(x, 1) if x.shape[-3] == 3 else x
            return _blend(x, gray.mean(dim=(-3, -2, -1), keepdim=True), factor)
        if x.shape[-3] == 1:  # saturation and hue leave grey images alone (as PIL does)
            return x
        if op == 2:  # saturation
            return _blend(x, _tv().rgb_to_grayscale(x, 1), factor)
        hsv = _tv_color()._rgb_to_hsv(x)  # hue
        h, s, v = hsv.unbind(dim=-3)
        h = (h + factor[:, 0]).remainder(1.0)
        return _tv_color()._hsv_to_rgb(torch.stack((h, s, v), dim=-3))

    def apply(self, x: torch.Tensor, params: Batch) -> torch.Tensor:
        names = ("brightness", "contrast", "saturation", "hue")
        for step in range(4):
            for op, name in enumerate(names):
                if name not in params:
                    continue
                chosen = params["order"][:, step] == op
                factor = _per_sample(params[name], x)
                x = torch.where(_per_sample(chosen, x), self._op(x, op, factor), x)
        return x

    def reference(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        F = _tv()
        kernels = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
        names = ("brightness", "contrast", "saturation", "hue")
        for op in params["order"].tolist():
            if names[op] in params:
                image = kernels[op](image, float(params[names[op]]))
        return image


class GrayscaleParams(Params):
    p: float = Field(0.1, ge=0, le=1, description="probability of turning an image grey")


class _RandomGrayscale(LaneSampled):
    def __init__(self, p: GrayscaleParams) -> None:
        self.p = p.p

    def sample(self, x: torch.Tensor, generator: Generators) -> Batch:
        return {"gray": _rand((len(x),), generator, x.device) < self.p}

    def apply(self, x: torch.Tensor, params: Batch) -> torch.Tensor:
        if x.shape[-3] == 1:  # a grey image is its own greyscale
            return x
        gray = _tv().rgb_to_grayscale(x, x.shape[-3])
        return torch.where(_per_sample(params["gray"], x), gray, x)

    def reference(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return _tv().rgb_to_grayscale(image, image.shape[-3]) if params["gray"] else image


# -- normalisation and 1-D signals -------------------------------------------------------------

class NormalizeParams(Params):
    mean: tuple[float, ...] | None = Field(
        None, min_length=1, description="per channel; None: computed from the training split")
    std: tuple[float, ...] | None = Field(
        None, min_length=1, description="per channel; None: computed from the training split")

    @model_validator(mode="after")
    def _both_or_neither(self) -> NormalizeParams:
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither (computed from train)")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {list(self.std)}")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std) \
                and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(f"mean and std need one value each per channel, got "
                             f"{len(self.mean)} means and {len(self.std)} stds")
        return self


class Normalize(Augmentation):
    """(x - mean) / std per channel (images) or overall (signals, vectors: per feature)."""

    stage = "always"

    def __init__(self, p: NormalizeParams) -> None:
        self.given = p
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def fit(self, x_train: torch.Tensor) -> None:
        """Set the statistics: given ones, or the training split's (compute_mean_std)."""
        shape = [1, -1, 1, 1] if x_train.dim() == 4 else [1, -1]
        if self.given.mean is not None and self.given.std is not None:
            # one value per channel (images) or per feature (vectors, signals), or one for all
            per = x_train.shape[1]
            what = "channel" if x_train.dim() == 4 else "feature"
            for key in ("mean", "std"):
                values = getattr(self.given, key)
                if len(values) not in (1, per):
                    raise ValueError(
                        f"normalize {key} has {len(values)} values but the inputs have {per} "
                        f"{what}{'s' if per != 1 else ''} of shape {tuple(x_train.shape[1:])}; "
                        f"give {'1 value' if per == 1 else f'1 or {per} values'} (or leave mean "
                        f"and std out to compute them from the training split)")
            self.mean = torch.tensor(self.given.mean, device=x_train.device).view(shape)
            self.std = torch.tensor(self.given.std, device=x_train.device).view(shape)
            return
        # on the host, as standardize's are: a GPU's reductions add in another order, and
        # a checkpoint reloaded on the CPU (evaluate, the MLflow model) fits them again
        dims = [0, 2, 3] if x_train.dim() == 4 else [0]
        host = x_train.cpu()
        self.mean = host.mean(dim=dims).view(shape).to(x_train.device)
        self.std = host.std(dim=dims).clamp_min(1e-8).view(shape).to(x_train.device)

    def apply(self, x: torch.Tensor, params: Batch) -> torch.Tensor:
        if self.mean is None or self.std is None:
            raise RuntimeError("normalize needs fit(x_train) before use")
        return (x - self.mean) / self.std

    def reference(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        if self.mean is None or self.std is None:
            raise RuntimeError("normalize needs fit(x_train) before use")
        return _tv().normalize(image, self.mean.flatten().tolist(), self.std.flatten().tolist())


class NoiseParams(Params):
    std: float = Field(0.1, gt=0, description="sd of the Gaussian noise added to every value")


class _GaussianNoise(LaneSampled):
    def __init__(self, p: NoiseParams) -> None:
        self.std = p.std

    def sample(self, x: torch.Tensor, generator: Generators) -> Batch:
        return {"noise": _rand(tuple(x.shape), generator, x.device, x.dtype, normal=True)}

    def apply(self, x: torch.Tensor, params: Batch) -> torch.Tensor:
        return x + self.std * params["noise"]

    def reference(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return image + self.std * params["noise"]


class ShiftParams(Params):
    max_shift: int = Field(4, ge=1, description="shift drawn from {-max_shift..max_shift} steps")


class _RandomShift(LaneSampled):
    """Shift each 1-D signal by a random number of steps, filling with zeros."""

    def __init__(self, p: ShiftParams) -> None:
        self.max_shift = p.max_shift

    def sample(self, x: torch.Tensor, generator: Generators) -> Batch:
        length = x.shape[-1]
        if self.max_shift >= length:  # shifted out whole: an example of zeros kept its label
            blank = 2 * (self.max_shift - length + 1)
            raise ValueError(f"random_shift max_shift {self.max_shift} is not shorter than the "
                             f"{length}-step signals: {blank} of its {2 * self.max_shift + 1} "
                             f"shifts leave only zeros; allowed: max_shift 1 to {length - 1}")
        n = len(x)
        span = torch.full((n,), 2 * self.max_shift + 1, device=x.device)
        return {"shift": _randint(n, span, generator) - self.max_shift}

    def apply(self, x: torch.Tensor, params: Batch) -> torch.Tensor:
        length = x.shape[-1]
        source = torch.arange(length, device=x.device)[None, :] - params["shift"][:, None]
        valid = (source >= 0) & (source < length)
        shifted = x.gather(-1, source.clamp(0, length - 1).expand_as(x))
        return torch.where(valid, shifted, torch.zeros_like(shifted))

    def reference(self, image: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        s, out = int(params["shift"]), torch.zeros_like(image)
        if s >= 0:
            out[s:] = image[:len(image) - s]
        else:
            out[:s] = image[-s:]
        return out


_ENTRIES: list[tuple[str, type[Augmentation], type[Params], str, str, dict[str, Any]]] = [
    ("random_horizontal_flip", _Flip, FlipParams, "mirror left-right with probability p",
     "image", {}),
    ("random_vertical_flip", _VFlip, FlipParams, "mirror top-bottom with probability p",
     "image", {}),
    ("random_crop", _RandomCrop, RandomCropParams,
     "pad, then crop size×size at a random position", "image", {"size": 8, "padding": 1}),
    ("random_resized_crop", _RandomResizedCrop, RandomResizedCropParams,
     "crop a random area/aspect, resize to size×size (bilinear, antialiased)", "image",
     {"size": 8}),
    ("random_rotation", _RandomRotation, RotationParams,
     "rotate by U(-degrees, degrees) about the centre (nearest, zeros outside)", "image",
     {"degrees": 10}),
    ("color_jitter", _ColorJitter, ColorJitterParams,
     "random brightness / contrast / saturation / hue, in random order", "image",
     {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.1}),
    ("random_grayscale", _RandomGrayscale, GrayscaleParams,
     "turn the image grey with probability p (channels kept)", "image", {}),
    ("normalize", Normalize, NormalizeParams,
     "(x - mean) / std, statistics from the training split unless given; all splits", "any",
     {}),
    ("gaussian_noise", _GaussianNoise, NoiseParams, "add N(0, std²) noise to every value", "any",
     {}),
    ("random_shift", _RandomShift, ShiftParams,
     "shift a 1-D signal by up to ±max_shift steps, zero fill", "signal", {}),
]


# -- settings that leave every input unchanged (validation rejects them) -----------------------

def _image(shape: Shape) -> tuple[int, int, int] | None:
    return (shape[0], shape[1], shape[2]) if len(shape) == 3 else None


def _flip_no_effect(p: FlipParams, shape: Shape) -> str | None:
    return "p is 0: no image is ever flipped" if p.p == 0 else None


def _crop_no_effect(p: RandomCropParams, shape: Shape) -> str | None:
    image = _image(shape)
    if image and p.padding == 0 and image[1] == image[2] == p.size:
        return (f"size {p.size} is the whole {image[1]}×{image[2]} image and padding is 0: "
                f"every crop is the image itself (pad first, e.g. padding: {max(1, p.size // 8)})")
    return None


def _resized_crop_no_effect(p: RandomResizedCropParams, shape: Shape) -> str | None:
    image = _image(shape)
    if image and p.scale == (1.0, 1.0) and image[1] == image[2] == p.size \
            and p.ratio[0] <= 1.0 <= p.ratio[1]:
        return (f"scale [1, 1] keeps the whole {image[1]}×{image[2]} image and size {p.size} "
                f"is its size: every crop is the image itself")
    return None


def _jitter_no_effect(p: ColorJitterParams, shape: Shape) -> str | None:
    if not (p.brightness or p.contrast or p.saturation or p.hue):
        return "brightness, contrast, saturation and hue are all 0"
    image = _image(shape)
    if image and image[0] == 1 and not (p.brightness or p.contrast):
        return "saturation and hue leave grey (1-channel) images unchanged"
    return None


def _grayscale_no_effect(p: GrayscaleParams, shape: Shape) -> str | None:
    if p.p == 0:
        return "p is 0: no image is ever turned grey"
    image = _image(shape)
    return "the images are already grey (1 channel)" if image and image[0] == 1 else None


def _normalize_no_effect(p: NormalizeParams, shape: Shape) -> str | None:
    if p.mean is not None and p.std is not None and set(p.mean) == {0.0} \
            and set(p.std) == {1.0}:
        return "mean 0 and std 1 leave every value unchanged"
    return None


_NO_EFFECT: dict[str, Any] = {
    "random_horizontal_flip": _flip_no_effect, "random_vertical_flip": _flip_no_effect,
    "random_crop": _crop_no_effect, "random_resized_crop": _resized_crop_no_effect,
    "color_jitter": _jitter_no_effect, "random_grayscale": _grayscale_no_effect,
    "normalize": _normalize_no_effect,
}
_DEFAULTS = {
    "random_horizontal_flip": "torchvision's RandomHorizontalFlip (p=0.5)",
    "random_vertical_flip": "torchvision's RandomVerticalFlip (p=0.5)",
    "random_crop": "torchvision's RandomCrop (padding 0, fill 0, constant padding)",
    "random_resized_crop": "torchvision's RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, "
                           "bilinear, antialias)",
    "random_rotation": "torchvision's RandomRotation (nearest, no expand, centre, fill 0)",
    "color_jitter": "torchvision's ColorJitter (every factor 0 = off)",
    "random_grayscale": "torchvision's RandomGrayscale (p=0.1)",
    "normalize": "the notes' compute_mean_std: statistics of the training split",
    "gaussian_noise": "torchvision's GaussianNoise has sigma 0.1 like this std, but clips to "
                      "[0, 1]; this one does not clip (inputs are not always images in [0, 1])",
    "random_shift": "nnbench's own (no torchvision counterpart)",
}
for name, cls, params, doc, kind, example in _ENTRIES:
    register(ComponentInfo(kind=KIND, name=name, build=cls, params=params, doc=doc,
                           attrs={"input": kind, "no_effect": _NO_EFFECT.get(name)},
                           example=example, defaults=_DEFAULTS[name]))
