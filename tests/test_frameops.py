"""Conformance of the frame rules (``msf.frameops``): every implementation of every rule against
the rule's reference (its spec in float64 numpy), on synthetic frames; no face data needed.

Tolerances, per rule (what differs is rounding, never geometry):

- fit: 1 LSB per resize step (OpenCV's fixed-point bilinear and its rounding of each step);
  nearest (labels) exact. I420: each plane is fitted as its own picture (same tolerance per
  plane); against fitting the converted BGR frame (colour at half resolution, converted before
  or after the fit), on footage-like colour: mean |diff| < 1.25, 99th percentile ≤ 4.
- crop: as fit for axis-aligned squares; warped squares ≤ 2 LSB (OpenCV quantises warp
  coordinates to 1/32 px), mean < 0.25, on smooth frames. I420 (letterbox): the fitted planes'
  1 LSB per step through the conversion's gains (≤ 4 per step); against the BGR path as for
  the I420 fit.
- paste: exact where squares are axis-aligned; warped squares ≥ 99.9 % of pixels equal (a label
  coordinate exactly between two labels rounds either way: a square on half-pixel edges puts
  whole rows and columns on such ties).
- overlay: ≤ 1 LSB, background pixels exact. I420: each plane ≤ 1 LSB of its spec (Y per pixel,
  U/V per 2×2 block by its top-left class); against the BGR overlay converted, luma ≤ 4 and 99.9 %
  ≤ 1, chroma 97 % ≤ 2.
- hud: the BGR drawing is the reference (OpenCV's text): it changes only its box; I420 within
  mean 0.5 of it, in the same box rounded to whole chroma blocks.
- input: the numpy implementation is the reference; torch equal up to float rounding.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from msf.contract import MODEL_CONTRACT, RESIZE_RULES, RUNTIME_CONTRACT, InputSpec
from msf.frameops import crop as crops
from msf.frameops import fit as fits
from msf.frameops import hud, normalize, overlay, paste
from msf.frameops.base import implementations, rules
from msf.frameops.geometry import Placement, letterbox

torch = pytest.importorskip("torch")


def smooth(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A picture with structure at every scale but no pixel-level noise (what warps are checked on)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def noisy(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth structure plus pixel noise and a gradient: the worst case for resampling."""
    rng = np.random.default_rng(seed)
    grad = np.linspace(0, 60, w)[None, :, None]
    x = smooth(h, w, seed) * 0.7 + rng.integers(0, 40, (h, w, 3)) + grad
    return np.clip(x, 0, 255).astype(np.uint8)


def footage(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Detail in luma, colour that changes slowly (as in camera footage): what the I420 paths,
    which keep colour at half resolution, are compared with the BGR paths on."""
    rng = np.random.default_rng(seed)
    luma = cv2.resize(rng.integers(0, 256, (max(2, h // 16), max(2, w // 16)), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    tint = cv2.resize(rng.integers(-40, 41, (max(2, h // 96), max(2, w // 96), 3)).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    return np.clip(luma[..., None] * 0.8 + 25 + tint, 0, 255).astype(np.uint8)


def blobs(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Label regions of a few to tens of pixels, like a parsed face, background at the left."""
    rng = np.random.default_rng(seed)
    lab = cv2.resize(rng.integers(0, 19, (max(1, h // 8), max(1, w // 8)), dtype=np.uint8), (w, h),
                     interpolation=cv2.INTER_NEAREST)
    lab[:, : w // 4] = 0
    return np.roll(lab, (1, 1), axis=(0, 1))  # class edges inside chroma blocks


def test_every_rule_has_its_implementations():
    impls = {r: sorted(implementations(r)) for r in rules()}
    assert impls == {"crop": ["bgr", "i420", "torch"], "fit": ["bgr", "i420", "torch"], "hud": ["bgr", "i420"],
                     "input": ["bgr", "torch"], "overlay": ["bgr", "i420", "torch"], "paste": ["bgr", "torch"]}


# ---- fit ------------------------------------------------------------------------------------

# (src w, h) -> (dst w, h): block + bilinear, block only, bilinear only, no whole factor (area),
# enlarging, mixed, odd sizes, unchanged
FIT_CASES = [((1280, 720), (384, 216)), ((1920, 1080), (384, 216)), ((512, 512), (384, 384)),
             ((1279, 719), (384, 216)), ((90, 90), (37, 37)), ((40, 30), (101, 77)), ((300, 200), (256, 256)),
             ((101, 77), (40, 30)), ((64, 48), (64, 48)), ((640, 480), (512, 384))]
FIT_IMPLS = sorted(implementations("fit"))


def test_fit_steps_are_the_rule_in_numbers():
    steps = {r: fits.FitSpec(1280, 720, 512, 288, r).steps for r in RESIZE_RULES}
    assert steps == {"block+bilinear": (("block", 640, 360), ("bilinear", 512, 288)), "area": (("area", 512, 288),)}
    assert fits.shrink_factor(1920, 1080, 512, 288) == 3 and fits.shrink_factor(3840, 2160, 512, 288) == 6
    assert fits.shrink_factor(640, 480, 512, 384) == 1 and fits.shrink_factor(1279, 719, 512, 288) == 0
    assert fits.FitSpec(512, 512, 384, 384).steps == (("bilinear", 384, 384),)
    assert fits.FitSpec(40, 30, 101, 77, "area").steps == (("bilinear", 101, 77),)  # enlarging: bilinear
    assert fits.FitSpec(64, 48, 64, 48).steps == ()
    img = noisy(48, 64)
    assert fits.fit(img, 64, 48) is img
    with pytest.raises(ValueError, match="resize rule"):
        fits.FitSpec(1, 1, 1, 1, "cubic")


@pytest.mark.parametrize("impl", FIT_IMPLS)
@pytest.mark.parametrize("rule", fits.RULES)
@pytest.mark.parametrize("src, dst", FIT_CASES, ids=lambda c: "x".join(map(str, c)))
def test_fit_conforms(impl, rule, src, dst):
    (sw, sh), (w, h) = src, dst
    spec = fits.FitSpec(sw, sh, w, h, rule)
    fn = implementations("fit")[impl]
    if rule == "nearest":
        if impl == "i420":
            pytest.skip("label maps have no I420 form")
        lab = np.random.default_rng(1).integers(0, 19, (sh, sw), dtype=np.uint8)
        got = fn(spec, lab) if impl == "bgr" else fn(spec, torch.from_numpy(lab)).numpy()
        assert np.array_equal(got, fits.reference(spec, lab))
        return
    img = noisy(sh, sw)
    tol = max(1, len(spec.steps))
    if impl == "i420":
        if any(v % 2 for v in (sw, sh, w, h)):
            pytest.skip("I420 needs even sizes")
        yuv = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)
        got = fn(spec, yuv)
        for g, p, s in zip(fits.i420_planes(got, h), fits.i420_planes(yuv, sh), (spec, *[fits.chroma_spec(spec)] * 2)):
            assert np.abs(g.astype(int) - fits.reference(s, p)).max() <= tol
        # against the BGR path (the decoded frame fitted), on footage-like colour
        yuv = cv2.cvtColor(footage(sh, sw), cv2.COLOR_BGR2YUV_I420)
        bgr = cv2.cvtColor(fn(spec, yuv), cv2.COLOR_YUV2BGR_I420).astype(int)
        diff = np.abs(bgr - fits.reference(spec, cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)))
        assert diff.mean() < 1.25 and np.percentile(diff, 99) <= 4
        return
    got = fn(spec, img) if impl == "bgr" else fn(spec, torch.from_numpy(img)).numpy()
    assert got.shape == (h, w, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - fits.reference(spec, img)).max() <= tol


@pytest.mark.parametrize("rule", RESIZE_RULES)
def test_training_batches_fit_by_the_same_rule(rule):
    """``msf.data.resize_batch`` (float batches in [0, 1], as training has them) follows the fit
    spec: images within 1 LSB of the reference, labels exactly nearest."""
    from msf.data import resize_batch

    imgs = [noisy(96, 96, s) for s in range(2)]
    labs = [np.random.default_rng(s).integers(0, 19, (96, 96), dtype=np.uint8) for s in range(2)]
    x = torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in imgs])
    y = torch.stack([torch.from_numpy(lb).long() for lb in labs])
    for size in (37, 64, 72, 128):
        xs, ys = resize_batch(x, y, size, rule)
        spec = fits.FitSpec(96, 96, size, size, rule)
        ref = np.stack([fits.reference(spec, i) for i in imgs]).transpose(0, 3, 1, 2) / 255
        assert np.abs(xs.numpy() - ref).max() <= (len(spec.steps) + 0.5) / 255
        lab_spec = fits.FitSpec(96, 96, size, size, "nearest")
        ref_labels = np.stack([fits.reference(lab_spec, lb) for lb in labs])
        assert ys.dtype == y.dtype and np.array_equal(ys.numpy(), ref_labels)
    assert resize_batch(x, y, 96)[0] is x


def test_area_weights_are_cached_and_bounded():
    fits.area_weights.cache_clear()
    for n in range(38, 38 + 80):
        fits.area_weights(90, n, "cpu")
    info = fits.area_weights.cache_info()
    assert info.currsize == info.maxsize == 64
    assert torch.equal(fits.area_weights(90, 37, "cpu"), fits.area_weights(90, 37, "cpu"))


# ---- crop -----------------------------------------------------------------------------------

def _placements(h: int, w: int) -> list[Placement]:
    return [letterbox(h, w), Placement(200, 150, 400), Placement(-50, h - 220, 300), Placement(w - 280, 100, 170),
            Placement(210.5, 140.25, 420.0), Placement(210.5, 140.25, 420.0, 17.0), Placement(w // 2, 80, 1100, -8.0),
            Placement(w - 150, h - 150, 200, 45.0), Placement(-300, -300, 90), Placement(w + 10, 0, 50, 30.0)]


CROP_CASES = [(shape, size, k) for shape in ((720, 1280), (479, 641)) for size in (256, 97) for k in range(10)]


@pytest.mark.parametrize("impl", ["bgr", "torch"])
@pytest.mark.parametrize("rule", RESIZE_RULES)
@pytest.mark.parametrize("shape, size, k", CROP_CASES)
def test_crop_conforms(impl, rule, shape, size, k):
    h, w = shape
    place = _placements(h, w)[k]
    frame = smooth(h, w, k)
    spec = crops.crop_spec(place, h, w, size, rule)
    fn = implementations("crop")[impl]
    got = fn(spec, frame) if impl == "bgr" else fn(spec, torch.from_numpy(frame)).numpy()
    assert got.shape == (size, size, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - crops.reference(spec, frame))
    if spec.empty:
        assert not got.any()
    elif spec.warp is None:
        assert diff.max() <= max(1, len(spec.fit.steps)), place
    else:
        assert diff.max() <= 2 and diff.mean() < 0.25, place


def test_crop_specs_in_numbers():
    assert letterbox(720, 1280) == Placement(0, -280, 1280)
    spec = crops.crop_spec(letterbox(720, 1280), 720, 1280, 512)
    assert (spec.window, spec.canvas, spec.warp) == ((0, 0, 1280, 720), (0, 112, 512, 400), None)
    assert spec.fit.steps == (("block", 640, 360), ("bilinear", 512, 288))
    rot = crops.crop_spec(Placement(700, 80, 1100, -8.0), 720, 1280, 256)
    assert rot.warp is not None and rot.pre == (228, 249)  # shrunk to 1.5× the input scale first
    assert crops.crop_spec(Placement(-300, -300, 90), 720, 1280, 256).empty
    frame = np.zeros((10, 20, 3), np.uint8)
    frame[:, :10] = 255
    out = crops.crop(frame, Placement(-5, 0, 10), 10)
    assert out[:, :5].max() == 0 and out[:, 5:].min() == 255  # outside the frame is padding


@pytest.mark.parametrize("rule", RESIZE_RULES)
@pytest.mark.parametrize("shape, size", [((720, 1280), 384), ((360, 640), 512), ((360, 640), 160),
                                         ((480, 640), 256), ((1080, 1920), 384), ((400, 300), 256)])
def test_crop_i420_conforms(rule, shape, size):
    h, w = shape
    frame = noisy(h, w)
    yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
    spec = crops.crop_spec(letterbox(h, w), h, w, size, rule)
    assert crops.i420_ok(spec, h) and crops.i420_letterbox_size(h, w, size) is not None
    got = implementations("crop")["i420"](spec, yuv, h).astype(int)
    assert np.array_equal(got, crops.i420_letterbox(yuv, h, w, size, rule))
    # the spec in I420: each plane fitted by the reference, then converted
    cx0, cy0, cx1, cy1 = spec.canvas
    small = np.empty(((cy1 - cy0) * 3 // 2, cx1 - cx0), np.uint8)
    fit = spec.fit
    for dst, src, s in zip(fits.i420_planes(small, cy1 - cy0), fits.i420_planes(yuv, h),
                           (fit, fits.chroma_spec(fit), fits.chroma_spec(fit))):
        dst[:] = fits.reference(s, src)
    ref = np.zeros((size, size, 3), int)
    ref[cy0:cy1, cx0:cx1] = cv2.cvtColor(small, cv2.COLOR_YUV2BGR_I420)
    # a plane's 1 LSB per step, through the conversion's gains (up to 2 on U)
    assert np.abs(got - ref).max() <= 4 * max(1, len(fit.steps))
    # against the BGR path (the frame decoded first, then cropped), on footage-like colour
    yuv = cv2.cvtColor(footage(h, w), cv2.COLOR_BGR2YUV_I420)
    got = crops.crop_i420(spec, yuv, h).astype(int)
    diff = np.abs(got - crops.reference(spec, cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)))
    assert diff.mean() < 1.25 and np.percentile(diff, 99) <= 4
    assert not got[:cy0].any() and not got[cy1:].any()  # the letterbox bars


def test_i420_crop_takes_only_whole_chroma_blocks():
    assert crops.i420_letterbox_size(360, 640, 512) == (512, 288)
    assert crops.i420_letterbox_size(361, 640, 512) is None  # odd frame
    assert crops.i420_letterbox_size(360, 640, 101) is None  # 101 columns: odd
    assert not crops.i420_ok(crops.crop_spec(Placement(10, 10, 100, 5.0), 360, 640, 64), 360)
    with pytest.raises(ValueError, match="I420"):
        crops.crop_i420(crops.crop_spec(Placement(1, 0, 100), 360, 640, 64), np.zeros((540, 640), np.uint8), 360)


# ---- paste ----------------------------------------------------------------------------------

def _labels(n: int, count: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = cv2.resize(rng.integers(0, 19, (count, 8, 8), dtype=np.uint8).transpose(1, 2, 0), (n, n),
                     interpolation=cv2.INTER_NEAREST).reshape(n, n, count).transpose(2, 0, 1).copy()
    lab[:, : n // 12] = 0
    return lab


PASTE_CASES = [((720, 1280), [0]), ((720, 1280), [1]), ((720, 1280), [5]), ((720, 1280), [6]),
               ((720, 1280), [1, 5]), ((720, 1280), [1, 2, 3, 4]), ((720, 1280), [0, 1, 2, 3, 5, 6, 7]),
               ((479, 641), [1, 2, 4, 7, 9]), ((1080, 1920), [0]), ((719, 1279), [0]), ((1000, 600), [0]),
               ((512, 512), [0]), ((480, 640), [0])]


@pytest.mark.parametrize("impl", ["bgr", "torch"])
@pytest.mark.parametrize("shape, chosen", PASTE_CASES)
def test_paste_conforms(impl, shape, chosen):
    h, w = shape
    places = [_placements(h, w)[i] for i in chosen]
    ns = [64 if i % 2 else 49 for i in range(len(places))] if impl == "bgr" else [64] * len(places)
    labels = [_labels(n, 1, seed=k)[0] for k, n in enumerate(ns)]
    spec = paste.paste_spec(places, h, w, ns)
    fn = implementations("paste")[impl]
    got = fn(spec, labels) if impl == "bgr" else fn(spec, torch.from_numpy(np.stack(labels))).numpy()
    ref = paste.reference(spec, labels)
    assert got.shape == (h, w) and got.dtype == np.uint8
    if all(p.axis_aligned for p in places):
        assert np.array_equal(got, ref)
    else:
        assert (got == ref).mean() >= 0.999


def test_overlapping_squares_split_by_centrality():
    a, b = Placement(0, 0, 100), Placement(60, 0, 100)
    labels = [np.full((50, 50), 1, np.uint8), np.full((50, 50), 2, np.uint8)]
    out = paste.assemble((100, 200), labels, [a, b])
    assert out[50, 40] == 1 and out[50, 120] == 2  # nearer a's / b's centre
    assert (out[:, 60:100] == 2).mean() > 0.4 and (out[:, 60:100] == 1).mean() > 0.4  # split, not overwritten
    labels[1][:, :25] = 0  # where b says background, a's foreground fills in
    assert paste.assemble((100, 200), labels, [a, b])[50, 95] == 1


# ---- overlay --------------------------------------------------------------------------------

OVERLAY_CASES = [((50, 70), 0.5), ((360, 640), 0.4), ((45, 63), 0.5), ((48, 64), 1.0), ((48, 64), 0.0)]


@pytest.mark.parametrize("impl", ["bgr", "torch"])
@pytest.mark.parametrize("order", overlay.ORDERS)
@pytest.mark.parametrize("shape, alpha", OVERLAY_CASES)
def test_overlay_conforms(impl, order, shape, alpha):
    h, w = shape
    frame, labels = noisy(h, w), blobs(h, w)
    spec = overlay.OverlaySpec(alpha, order)
    fn = implementations("overlay")[impl]
    if impl == "bgr":
        got = fn(spec, frame, labels)
    else:
        got = fn(spec, torch.from_numpy(frame), torch.from_numpy(labels)).numpy()
    assert np.abs(got.astype(int) - overlay.reference(spec, frame, labels)).max() <= 1
    assert np.array_equal(got[labels == 0], frame[labels == 0])


def test_overlay_in_place_and_without_foreground():
    frame, labels = noisy(60, 80), blobs(60, 80)
    ref = overlay.overlay(frame, labels, 0.4)
    inplace = frame.copy()
    assert overlay.overlay(inplace, labels, 0.4, out=inplace) is inplace and np.array_equal(inplace, ref)
    assert np.array_equal(overlay.overlay(frame, np.zeros_like(labels), 0.4), frame)


@pytest.mark.parametrize("shape, alpha", [s for s in OVERLAY_CASES if s[0][0] % 2 == 0 and s[0][1] % 2 == 0])
def test_overlay_i420_conforms(shape, alpha):
    h, w = shape
    labels = blobs(h, w)
    yuv = cv2.cvtColor(noisy(h, w), cv2.COLOR_BGR2YUV_I420)
    spec = overlay.OverlaySpec(alpha)
    impl = implementations("overlay")["i420"]
    assert np.abs(impl(spec, yuv.copy(), labels).astype(int) - overlay.reference_i420(spec, yuv, labels)).max() <= 1
    # against the BGR overlay of the decoded frame, converted back, on footage-like colour
    yuv = cv2.cvtColor(footage(h, w), cv2.COLOR_BGR2YUV_I420)
    got = impl(spec, yuv.copy(), labels).astype(int)
    ref = cv2.cvtColor(overlay.reference(spec, cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420), labels),
                       cv2.COLOR_BGR2YUV_I420).astype(int)
    y_diff, c_diff = np.abs(got[:h] - ref[:h]), np.abs(got[h:] - ref[h:])
    assert y_diff.max() <= 4 and (y_diff <= 1).mean() > 0.999  # luma: conversion rounding only
    assert (c_diff <= 2).mean() > 0.97  # chroma: a block on a class edge takes one class, not a mix
    untouched = (labels == 0).reshape(h // 2, 2, w // 2, 2).all(axis=(1, 3))
    assert np.array_equal(got[:h][labels == 0], yuv[:h][labels == 0])  # background keeps its pixels
    assert np.array_equal(got[h:].reshape(2, h // 2, w // 2)[:, untouched],
                          yuv[h:].reshape(2, h // 2, w // 2)[:, untouched])


# ---- hud ------------------------------------------------------------------------------------

HUD_LINES = ["  7.5 FPS   134 ms", "onnxruntime fp32 (CPU)  auto 512px"]


def _changed(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero((a != b).any(axis=2) if a.ndim == 3 else a != b)
    return None if not len(ys) else (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


@pytest.mark.parametrize("h, w", [(144, 176), (480, 640), (1080, 1920), (720, 1280)])
def test_hud_conforms(h, w):
    frame = noisy(h, w)
    spec = hud.hud_layout(h, w, HUD_LINES)
    assert spec.rows and spec.rows * spec.cols <= hud.MAX_AREA * h * w
    bgr = implementations("hud")["bgr"](spec, frame.copy())
    x0, y0, x1, y1 = _changed(bgr, frame)
    assert x1 <= spec.cols and y1 <= spec.rows  # only its box
    box = bgr[: spec.rows, : spec.cols]
    assert (box.max(axis=2) == box.min(axis=2)).all()  # black box, grey-level text
    yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
    decoded = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
    got = cv2.cvtColor(implementations("hud")["i420"](spec, yuv.copy(), h), cv2.COLOR_YUV2BGR_I420)
    ref = implementations("hud")["bgr"](spec, decoded.copy())
    assert np.abs(got.astype(int) - ref).mean() < 0.5
    x0, y0, x1, y1 = _changed(got, decoded)
    assert x1 <= spec.cols + 1 and y1 <= spec.rows + 1  # the same box, on whole chroma blocks


# ---- input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [RUNTIME_CONTRACT.input, MODEL_CONTRACT.input, InputSpec(dtype="float16"),
                                  InputSpec(dtype="uint8", layout="NCHW", color="rgb", scale=1.0)],
                         ids=["runtime", "model", "fp16", "uint8-nchw-rgb"])
def test_input_conforms(spec):
    spec = replace(spec, size=16)
    crops_ = np.random.default_rng(4).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    ref = normalize.to_input(spec, list(crops_))
    got = implementations("input")["torch"](spec, torch.from_numpy(crops_)).numpy()
    assert got.dtype == ref.dtype and got.shape == ref.shape
    assert np.allclose(got.astype(np.float64), ref.astype(np.float64), rtol=1e-3, atol=1e-6)
