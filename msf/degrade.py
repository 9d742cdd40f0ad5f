"""What real footage does to a face: low resolution, blur, sensor noise, low light and JPEG or
H.264 compression, applied to a face crop and undone in size only (the crop is enlarged back),
the way a small, compressed face reaches the model.

Two uses, one set of operations:

- :class:`Degrade` is a random training stage (seeded through torch's RNG, like
  :class:`msf.augment.Augment`);
- :func:`degradation_suite` is the fixed, named set of degradations ``msf-eval --degrade`` and
  ``msf-bench --degrade`` score (deterministic: noise is seeded per row and image).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from msf.errors import MsfError


def shrink(img: np.ndarray, side: int) -> np.ndarray:
    """The image at ``side`` px on its longer side (area averaging, as a camera's sensor bins)."""
    h, w = img.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return img
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def enlarge(img: np.ndarray, shape: tuple[int, int], interp: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Back to ``shape`` (H, W): what the runtime's crop warp does to a small face."""
    if img.shape[:2] == shape:
        return img
    return cv2.resize(img, (shape[1], shape[0]), interpolation=interp)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (defocus, motion-free): ``sigma`` in pixels of ``img``."""
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma) if sigma > 0 else img


def noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian sensor noise, ``sigma`` in 8-bit levels, independent per channel."""
    if sigma <= 0:
        return img
    out = img.astype(np.float32) + rng.normal(0.0, sigma, img.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def low_light(img: np.ndarray, gain: float, gamma: float) -> np.ndarray:
    """A darker exposure: ``255 · gain · (x/255)^gamma`` (gamma > 1 crushes the shadows)."""
    lut = np.clip(255.0 * gain * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
    return cv2.LUT(img, lut)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG round trip at ``quality`` (1-100; 4:2:0 chroma, as cameras and browsers write)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise MsfError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def h264(img: np.ndarray, crf: int) -> np.ndarray:
    """An H.264 intra-frame round trip through PyAV's libx264 at constant quality ``crf`` (higher =
    coarser; 35-40 looks like a low-bitrate video call). RGB in, RGB out, same size."""
    import av

    h, w = img.shape[:2]
    pad = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # yuv420p needs even sides
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = pad.shape[1], pad.shape[0], "yuv420p"
    enc.thread_count = 1  # one small frame: threads cost more than they save
    enc.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency"}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pad), format="rgb24").reformat(format="yuv420p")
    packets = list(enc.encode(frame)) + list(enc.encode(None))
    dec = av.CodecContext.create("h264", "r")
    out = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
    if not out:
        raise MsfError("H.264 round trip produced no frame")
    return out[-1].to_ndarray(format="rgb24")[:h, :w]


def _torch_uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand(()).item()


def _chance(p: float) -> bool:
    return p > 0 and torch.rand(()).item() < p


@dataclass
class Degrade:
    """Random degradation of a training image (RGB uint8; the mask is untouched, the image keeps
    its size). Each step has its own probability; ``p`` gates the whole stage, so a share of
    the images stays clean. Order, as in a camera: exposure, shrink to the face's pixel size,
    blur, noise, compression (JPEG or H.264), then enlarged back with a random interpolation."""

    p: float = 0.0                      # 0 = off (the published recipe)
    p_shrink: float = 0.7
    side: tuple[int, int] = (40, 320)   # face side in px, drawn log-uniformly
    p_blur: float = 0.25
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    p_noise: float = 0.3
    noise_sigma: tuple[float, float] = (1.0, 10.0)
    p_low_light: float = 0.15
    gain: tuple[float, float] = (0.25, 0.8)
    gamma: tuple[float, float] = (1.0, 1.6)
    p_jpeg: float = 0.55
    jpeg_quality: tuple[int, int] = (20, 80)
    p_h264: float = 0.15                # taken instead of JPEG when drawn
    h264_crf: tuple[int, int] = (28, 42)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if not _chance(self.p):
            return img
        shape = img.shape[:2]
        if _chance(self.p_low_light):
            img = low_light(img, _torch_uniform(*self.gain), _torch_uniform(*self.gamma))
        if _chance(self.p_shrink):
            lo, hi = math.log(self.side[0]), math.log(self.side[1])
            img = shrink(img, round(math.exp(_torch_uniform(lo, hi))))
        if _chance(self.p_blur):
            img = blur(img, _torch_uniform(*self.blur_sigma))
        if _chance(self.p_noise):
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
            img = noise(img, _torch_uniform(*self.noise_sigma), np.random.default_rng(seed))
        if _chance(self.p_h264):
            img = h264(img, round(_torch_uniform(*self.h264_crf)))
        elif _chance(self.p_jpeg):
            img = jpeg(img, round(_torch_uniform(*self.jpeg_quality)))
        interp = cv2.INTER_LINEAR if _chance(0.7) else cv2.INTER_CUBIC
        return enlarge(img, shape, interp)


@dataclass(frozen=True)
class Degradation:
    """One named, deterministic degradation of the evaluation suite."""

    name: str
    description: str
    apply: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    group: str  # "size", "size+jpeg", "compression", "optics", "light"

    def __call__(self, img: np.ndarray, seed: int) -> np.ndarray:
        return enlarge(self.apply(img, np.random.default_rng(seed)), img.shape[:2])


def _size(side: int) -> Degradation:
    return Degradation(f"s{side}", f"face shrunk to {side} px", lambda im, rng: shrink(im, side), "size")


def _size_jpeg(side: int, q: int) -> Degradation:
    return Degradation(f"s{side}_q{q}", f"face at {side} px, JPEG quality {q}",
                       lambda im, rng: jpeg(shrink(im, side), q), "size+jpeg")


SUITE_SIDES = (256, 192, 128, 96, 64)


def degradation_suite() -> list[Degradation]:
    """The fixed evaluation set: sizes alone, sizes with JPEG quality 40, JPEG 30/50, an H.264
    round trip, blur, noise and low light. Every image is enlarged back to its own size."""
    rows = [_size(s) for s in SUITE_SIDES]
    rows += [_size_jpeg(s, 40) for s in SUITE_SIDES]
    rows += [
        _size_jpeg(128, 30),
        _size_jpeg(128, 50),
        Degradation("s128_h264", "face at 128 px, H.264 intra frame at CRF 38 (libx264)",
                    lambda im, rng: h264(shrink(im, 128), 38), "compression"),
        Degradation("blur", "Gaussian blur, sigma 2.5 px at 512 px (defocus)",
                    lambda im, rng: blur(im, 2.5 * im.shape[0] / 512), "optics"),
        Degradation("noise", "face at 192 px with sensor noise, sigma 8 levels",
                    lambda im, rng: noise(shrink(im, 192), 8.0, rng), "optics"),
        Degradation("low_light", "face at 192 px, exposure x0.3 and gamma 1.4, noise sigma 4, JPEG 70",
                    lambda im, rng: jpeg(noise(low_light(shrink(im, 192), 0.3, 1.4), 4.0, rng), 70), "light"),
    ]
    return rows


def select_degradations(spec: str | None) -> list[Degradation]:
    """``all`` (or None) = the whole suite; else comma-separated row names."""
    suite = degradation_suite()
    if spec in (None, "", "all"):
        return suite
    by_name = {d.name: d for d in suite}
    picked = []
    for name in spec.split(","):
        name = name.strip()
        if name not in by_name:
            raise MsfError(f"unknown degradation {name!r}; known: all, {', '.join(by_name)}")
        picked.append(by_name[name])
    return picked


def degrade_pairs(pairs: list[tuple[np.ndarray, np.ndarray]], deg: Degradation, seed: int = 0,
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (image, mask) pairs with each image degraded (image i seeded by ``(seed, i)``)."""
    return [(deg(img, seed * 100_003 + i), mask) for i, (img, mask) in enumerate(pairs)]
