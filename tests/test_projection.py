"""The slab projection (sr_engine.projection): every strict sample rounds back to its 8-bit LR image, the projection
is the weighted closest point (KKT conditions, and agreement with Dykstra's algorithm on tiny sizes), points of the
set are left alone, the background weights protect the background, and what cannot be met raises."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sr_engine.degradation import Degradation, get_degradation
from sr_engine.projection import (
    StrictProjectionError,
    background_weights,
    declip_lr,
    default_margin,
    haar_shrink,
    project_slab,
    rounding_shift,
    rounds_back,
    slab_bounds,
    shrink_levels,
    strict_project,
)

FAST = settings(max_examples=30, deadline=None, derandomize=True)

# (hr_size, scale, channels): MNIST x4, x8, a plate-like width, RGB
SETTINGS = [((28, 28), 4, 1), ((32, 32), 8, 1), ((16, 64), 4, 1), ((16, 32), 4, 3)]


def _smooth(gen: torch.Generator, shape: tuple[int, ...], coarse: int = 4, binary: bool = False) -> torch.Tensor:
    """Random smooth float64 images ``shape = (..., H, W)`` on about [0, 1] (``binary``: blobs of 0 and 1)."""
    lead, (h, w) = shape[:-2], shape[-2:]
    c = torch.rand((math.prod(lead), 1, max(h // coarse, 1), max(w // coarse, 1)), generator=gen, dtype=torch.float64)
    c = (c > 0.5).to(c.dtype) if binary else c
    return F.interpolate(c, size=(h, w), mode="bicubic", align_corners=False).reshape(shape)


def _lr_of(deg: Degradation, hr: torch.Tensor) -> np.ndarray:
    """The 8-bit LR image ``round(clip(255 D hr))``."""
    return np.round(np.clip(deg.down(hr.double()).numpy() * 255, 0, 255)).astype(np.uint8)


def _case(seed: int, setting: int, contrast: float, n: int = 3):
    """An LR image made from a contrasty HR image and n unrelated noisy samples. The HR image is MNIST-like (a
    black border a quarter of the size wide, so many LR pixels are 0) or, for odd seeds, its negative (a light
    plate: many LR pixels at 255)."""
    (hw, scale, ch) = SETTINGS[setting]
    deg = get_degradation(hw, scale)
    gen = torch.Generator().manual_seed(seed)
    shape = (ch, *hw) if ch > 1 else hw
    hr = (contrast * (_smooth(gen, shape, binary=True) - 0.5) + 0.5).clamp(0, 1)
    border = torch.zeros(hw, dtype=torch.float64)
    border[hw[0] // 4 : hw[0] - hw[0] // 4, hw[1] // 4 : hw[1] - hw[1] // 4] = 1.0
    hr = hr * border
    hr = 1.0 - hr if seed % 2 else hr
    x0 = _smooth(gen, (n, *shape), coarse=2) * 1.4 - 0.2 + 0.05 * torch.randn((n, *shape), generator=gen,
                                                                                 dtype=torch.float64)
    return deg, hr, _lr_of(deg, hr), x0


# ------------------------------------------------------------------------------------------ exactness


@FAST
@given(seed=st.integers(0, 2**31 - 1), setting=st.integers(0, len(SETTINGS) - 1), contrast=st.floats(1.0, 6.0),
       weighted=st.booleans())
def test_every_strict_sample_rounds_back(seed, setting, contrast, weighted):
    deg, _hr, lr, x0 = _case(seed, setting, contrast)
    w = background_weights(x0) if weighted else None
    u8, info = strict_project(deg, x0, lr, weights=w)
    assert u8.dtype == np.uint8 and u8.shape == tuple(x0.shape)
    assert rounds_back(deg, u8, lr).all()
    assert info.converged.all()
    # the same check as LR-PSNR's arithmetic, written out: round(clip(255 D(x / 255))) == LR
    d = deg.down(torch.from_numpy(u8.astype(np.float64) / 255.0)).numpy() * 255
    assert (np.round(np.clip(d, 0, 255)) == lr[None]).all()


def test_the_lr_images_have_many_saturated_pixels():
    """The generator of the property tests reaches both clip ends (what the slab's open sides are for)."""
    lrs = np.concatenate([_case(s, i, 5.0)[2].ravel() for s in range(4) for i in range(len(SETTINGS))])
    assert (lrs == 0).mean() > 0.2 and (lrs == 255).mean() > 0.2


def test_a_first_margin_of_zero_is_rescued_by_the_wider_ones():
    deg, _hr, lr, x0 = _case(3, 0, 3.0, n=24)
    u8, info = strict_project(deg, x0, lr, margin=0.0)
    assert rounds_back(deg, u8, lr).all()
    assert set(np.unique(info.margin)) <= {0.0, 0.1, 0.2, 0.45} and not info.fallback.any()


def test_the_old_projection_is_the_fallback_when_the_slab_solver_stops_early():
    deg, _hr, lr, x0 = _case(5, 0, 3.0)
    u8, info = strict_project(deg, x0, lr, max_iter=1)  # one Newton step cannot converge from this far
    assert info.fallback.all() and np.isnan(info.margin).all()
    assert rounds_back(deg, u8, lr).all()


def test_an_unreachable_lr_image_raises_with_the_sample_indices():
    deg = get_degradation((16, 16), 4)
    lr = np.zeros((4, 4), np.uint8)
    lr[::2, ::2] = lr[1::2, 1::2] = 255  # a 0/255 checkerboard: the bicubic kernel cannot separate neighbours so far
    lo, hi = slab_bounds(lr, 0.0)
    x0 = torch.rand((2, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = project_slab(deg, x0, lo, hi, max_iter=200)
    assert not res.converged.any() and res.infeasible.all()
    assert res.iterations < 200  # the certificate ends it early
    with pytest.raises(StrictProjectionError) as err:
        strict_project(deg, x0, lr, max_iter=30)
    assert err.value.indices == [0, 1] and isinstance(err.value, ValueError)


def test_non_finite_samples_raise_with_their_index():
    deg, _hr, lr, x0 = _case(1, 0, 2.0)
    x0[1, 3, 3] = float("nan")
    with pytest.raises(StrictProjectionError) as err:
        strict_project(deg, x0, lr)
    assert err.value.indices == [1]


# ------------------------------------------------------------------------------------------ optimality


def _kkt(deg, x0, w, lo, hi, res, tol=1e-7):
    """Stationarity ``W (x - x0) = D^T lam + box multipliers`` with the box multipliers' signs, feasibility,
    the multipliers' signs and complementary slackness, each to ``tol`` (on [0, 1])."""
    x, lam = res.x, res.lam
    r = w * (x - x0) - deg.adjoint(lam)  # the box multiplier: 0 inside, >= 0 at x = 0, <= 0 at x = 1
    scale = 1.0 + float(w.max())
    inside = (x > 0) & (x < 1)
    assert r[inside].abs().max() <= tol * scale
    assert (r[x == 0] >= -tol * scale).all() and (r[x == 1] <= tol * scale).all()
    assert ((x >= 0) & (x <= 1)).all()
    s = deg.down(x)
    assert (s >= lo - tol).all() and (s <= hi + tol).all()
    assert (lam[torch.isinf(lo)] <= 0).all() and (lam[torch.isinf(hi)] >= 0).all()
    assert ((s - lo)[lam > 0].abs() <= tol).all(), "lam > 0 only where the lower bound binds"
    assert ((hi - s)[lam < 0].abs() <= tol).all(), "lam < 0 only where the upper bound binds"


@FAST
@given(seed=st.integers(0, 2**31 - 1), setting=st.integers(0, len(SETTINGS) - 1), contrast=st.floats(1.0, 6.0),
       floor=st.sampled_from([None, 0.001, 0.01, 0.1]), synthetic=st.booleans())
def test_kkt_conditions_hold(seed, setting, contrast, floor, synthetic):
    """On slabs known to be non-empty: the LR image's own (no margin: the HR image lies in it), or random one- and
    two-sided bounds around ``D(hr)`` (a margin can empty a slab; see the unreachable-image tests)."""
    deg, hr, lr, x0 = _case(seed, setting, contrast)
    w = torch.ones_like(x0) if floor is None else background_weights(x0, floor=floor)
    if synthetic:
        gen = torch.Generator().manual_seed(seed)
        d = deg.down(hr)
        def r() -> torch.Tensor:
            return torch.rand(d.shape, generator=gen, dtype=torch.float64)

        lo = torch.where(r() < 0.2, -math.inf, d - 0.01 * r())
        hi = torch.where(r() < 0.2, math.inf, d + 0.01 * r())
    else:
        lo, hi = slab_bounds(lr, 0.0)
    res = project_slab(deg, x0, lo, hi, weights=w)
    assert res.converged.all() and (res.max_violation <= 1e-9).all() and not res.infeasible.any()
    _kkt(deg, x0, w, lo.expand(res.lam.shape), hi.expand(res.lam.shape), res)


def test_dense_and_conjugate_gradient_solves_agree():
    deg, _hr, lr, x0 = _case(11, 0, 4.0)
    lo, hi = slab_bounds(lr, 0.3)
    w = background_weights(x0)
    a = project_slab(deg, x0, lo, hi, w, solver="dense")
    b = project_slab(deg, x0, lo, hi, w, solver="cg")
    assert a.converged.all() and b.converged.all()
    assert (a.x - b.x).abs().max() < 1e-6


def _dykstra(deg: Degradation, x0: np.ndarray, w: np.ndarray, lo: np.ndarray, hi: np.ndarray,
             cycles: int) -> np.ndarray:
    """Dykstra's alternating projections in the W-metric onto the box and each half-space ``d_j . x >= lo_j``,
    ``d_j . x <= hi_j`` (D written out as a dense matrix): slow, simple, independent of the dual solver."""
    dmat = np.kron(deg.a_h.numpy(), deg.a_w.numpy())  # (hw, HW): D on flattened images
    iw = 1.0 / w.ravel()
    sets = [("box", None, None)]
    for j in range(dmat.shape[0]):
        if np.isfinite(lo.ravel()[j]):
            sets.append(("ge", dmat[j], lo.ravel()[j]))
        if np.isfinite(hi.ravel()[j]):
            sets.append(("le", dmat[j], hi.ravel()[j]))
    x = x0.ravel().copy()
    incr = [np.zeros_like(x) for _ in sets]
    for _ in range(cycles):
        for k, (kind, d, b) in enumerate(sets):
            z = x + incr[k]
            if kind == "box":
                p = np.clip(z, 0, 1)
            else:
                gap = (b - d @ z) if kind == "ge" else (d @ z - b)
                step = max(0.0, gap) / (d @ (iw * d))
                p = z + (step if kind == "ge" else -step) * iw * d
            incr[k] = z - p
            x = p
    return x.reshape(x0.shape)


@pytest.mark.parametrize("hw,scale,weighted", [((8, 8), 4, False), ((8, 8), 4, True), ((8, 8), 2, True)])
def test_agrees_with_dykstra_on_tiny_images(hw, scale, weighted):
    deg = Degradation(hw, scale)
    gen = torch.Generator().manual_seed(7)
    hr = (4 * (torch.rand(hw, generator=gen, dtype=torch.float64) - 0.5) + 0.5).clamp(0, 1)
    lr = _lr_of(deg, hr)
    x0 = torch.rand((1, *hw), generator=gen, dtype=torch.float64) * 1.4 - 0.2
    w = background_weights(x0, floor=0.1) if weighted else torch.ones_like(x0)
    lo, hi = slab_bounds(lr, 0.2)
    res = project_slab(deg, x0, lo, hi, weights=w)
    ref = _dykstra(deg, x0[0].numpy(), w[0].numpy(), lo.numpy(), hi.numpy(), cycles=4000)
    assert res.converged.all()
    assert np.abs(res.x[0].numpy() - ref).max() < 1e-5
    # and the objective: the reference is no closer in the metric
    def obj(x: np.ndarray) -> float:
        return float((w[0].numpy() * (x - x0[0].numpy()) ** 2).sum())

    assert obj(res.x[0].numpy()) <= obj(ref) + 1e-9


# ------------------------------------------------------------------------------------------ invariants


@FAST
@given(seed=st.integers(0, 2**31 - 1), setting=st.integers(0, len(SETTINGS) - 1), contrast=st.floats(1.0, 6.0))
def test_a_point_of_the_set_is_returned_unchanged(seed, setting, contrast):
    deg, hr, lr, _ = _case(seed, setting, contrast)
    x0 = hr[None]
    lo, hi = slab_bounds(lr, 0.0)  # D(hr) rounds to lr, so hr lies in the slab without margin
    res = project_slab(deg, x0, lo, hi, weights=background_weights(x0))
    assert res.iterations == 0 and (res.x - x0).abs().max() <= 1e-9
    # and a projection, projected again, stays put (on this slab, which is not empty: hr lies in it)
    x1 = project_slab(deg, _case(seed + 1, setting, contrast)[3], lo, hi).x
    again = project_slab(deg, x1, lo, hi)
    assert (again.x - x1).abs().max() <= 1e-9


def test_background_weights_keep_the_dark_background_dark():
    """A dim stroke whose LR image asks for more light: uniform weights spread it into the black background,
    background weights put it on the stroke."""
    deg = get_degradation((28, 28), 4)
    stroke = torch.zeros((28, 28), dtype=torch.float64)
    stroke[6:22, 12:16] = 1.0
    lr = _lr_of(deg, stroke)
    x0 = 0.6 * stroke[None]
    lo, hi = slab_bounds(lr, 0.3)
    plain = project_slab(deg, x0, lo, hi)
    weighted = project_slab(deg, x0, lo, hi, weights=background_weights(x0))
    far = F.max_pool2d(stroke[None, None], 5, stride=1, padding=2)[0, 0] == 0  # more than 2 px from the stroke
    haze_plain = float(plain.x[0][far].mean()) * 255  # grey levels (0.49 and 0.03 when written)
    haze_weighted = float(weighted.x[0][far].mean()) * 255
    assert haze_plain > 0.25 and haze_weighted < 0.2 * haze_plain
    assert rounds_back(deg, np.round(weighted.x.numpy() * 255).astype(np.uint8), lr).all()


def test_background_weights_follow_the_ink():
    x = torch.zeros((1, 9, 9), dtype=torch.float64)
    x[0, 4, 4] = 1.0
    w = background_weights(x, floor=0.01)
    assert w[0, 4, 4] == pytest.approx(1 / 1.01) and w[0, 3, 3] == pytest.approx(1 / 1.01)
    assert w[0, 0, 0] == pytest.approx(100.0)
    wd = background_weights(1.0 - x, floor=0.01, dark_ink=True)  # dark text on a light plate: the same weights
    assert torch.allclose(wd, w)
    with pytest.raises(ValueError):
        background_weights(x, floor=0.0)


def test_slab_bounds_and_declip():
    lr = np.array([[0, 1, 128], [254, 255, 7]], dtype=np.uint8)
    lo, hi = slab_bounds(lr, 0.25)
    assert lo[0, 0] == -math.inf and hi[1, 1] == math.inf
    assert lo[0, 2] == pytest.approx(127.75 / 255) and hi[0, 2] == pytest.approx(128.25 / 255)
    y = declip_lr(lr, 4.0)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    assert y[0, 0] == pytest.approx(-4 / 255) and y[1, 1] == pytest.approx(1 + 4 / 255)
    assert y[0, 2] == pytest.approx(128 / 255)
    assert isinstance(declip_lr(torch.from_numpy(lr), 4.0), torch.Tensor)
    for bad in (0.5, -0.1):
        with pytest.raises(ValueError):
            slab_bounds(lr, bad)
    with pytest.raises(ValueError):
        slab_bounds(lr.astype(np.float32), 0.2)
    with pytest.raises(ValueError):
        declip_lr(lr, -1.0)


def test_rounding_shift_bounds_the_rounding_error():
    deg = get_degradation((28, 28), 4)
    shift = rounding_shift(deg)
    assert 0.5 < shift.worst < 0.7 and 0.05 < shift.std < 0.08
    assert default_margin(deg) == pytest.approx(min(0.45, 5 * shift.std))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((256, 28, 28), generator=gen, dtype=torch.float64)
    err = (deg.down(torch.round(x * 255) / 255) - deg.down(x)).abs() * 255
    assert float(err.max()) <= shift.worst
    assert float(err.std()) <= 1.1 * shift.std


def test_bad_arguments_are_refused():
    deg, _hr, lr, x0 = _case(2, 0, 2.0)
    lo, hi = slab_bounds(lr, 0.2)
    with pytest.raises(ValueError):
        project_slab(deg, x0, lo, hi, solver="pocs")
    with pytest.raises(ValueError):
        project_slab(deg, x0, hi + 1.0, hi)
    with pytest.raises(ValueError):
        project_slab(deg, x0, lo, hi, weights=torch.zeros_like(x0))
    with pytest.raises(ValueError):
        strict_project(deg, x0, lr[:3])


def test_an_exhausted_margin_bracket_is_bisected():
    """A flow sample of an MNIST training digit (tuning row 90 of mnist-x4, de-clip 0, floor 0.1), kept in
    tests/data: its slab is empty at the default margin (0.34 grey) and its rounded projection missed the LR image
    at 0.2 grey, and the old projection failed too; bisecting the bracket finds a margin that rounds back."""
    case = np.load(Path(__file__).parent / "data" / "strict_bracket_case.npz")
    deg = Degradation((28, 28), 4)
    x, lr, w = torch.from_numpy(case["x"]), case["lr"][None], torch.from_numpy(case["w"])  # (1, 1, 28, 28), (1, 7, 7)
    u8, info = strict_project(deg, x, lr, weights=w)
    assert rounds_back(deg, u8, lr).all() and not info.fallback.any()
    assert 0.2 < info.margin[0] < default_margin(deg)


# ---- the Haar shrinkage before the projection (StrictSettings.shrink_grey) --------------------------------------
@FAST
@given(seed=st.integers(0, 2**31 - 1), setting=st.sampled_from(SETTINGS))
def test_haar_shrink_keeps_strong_edges_and_flat_ground(seed, setting):
    """Blocks of 0 and 1 (edges far above the threshold) and constant images come back as they were; below a
    tiny threshold the transform is its own inverse; a threshold of 0 returns the very tensor."""
    size, scale, ch = setting
    gen = torch.Generator().manual_seed(seed)
    levels = shrink_levels(size, scale)
    k = 2**levels
    coarse = (torch.rand((2, ch, size[0] // k, size[1] // k), generator=gen) > 0.5).double()
    blocks = coarse.repeat_interleave(k, -2).repeat_interleave(k, -1)
    # every edge is far above the threshold; at 3 levels a few coarse details of shifted corners are not (a quarter
    # grey at most in 30 seeds), so the 8-bit image is the same
    out = haar_shrink(blocks, 8 / 255, levels)
    assert (out - blocks).abs().max() < 0.5 / 255
    if levels <= 2:
        assert torch.allclose(out, blocks, atol=1e-12)
    flat = torch.full((ch, *size), float(torch.rand((), generator=gen, dtype=torch.float64)))
    assert torch.allclose(haar_shrink(flat, 8 / 255, levels), flat, atol=1e-12)
    x = torch.rand((2, ch, *size), generator=gen, dtype=torch.float64)
    assert torch.allclose(haar_shrink(x, 1e-12, levels), x, atol=1e-12)
    assert haar_shrink(x, 0.0, levels) is x


def _orthonormal_haar_threshold(x: torch.Tensor, t: float, levels: int) -> torch.Tensor:
    """Reference: one shift's hard thresholding in the orthonormal Haar basis (block sums / 2 as the low-pass, so
    the threshold doubles with each level to act on the same detail sizes as the flow's mean low-pass)."""
    if levels == 0:
        return x
    a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    low = _orthonormal_haar_threshold((a + b + c + d) / 2, 2 * t, levels - 1)
    h, v, g = ((u * (u.abs() > t)) for u in ((a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2))
    out = torch.empty_like(x)
    out[..., 0::2, 0::2], out[..., 0::2, 1::2] = (low + h + v + g) / 2, (low - h + v - g) / 2
    out[..., 1::2, 0::2], out[..., 1::2, 1::2] = (low + h - v - g) / 2, (low - h - v + g) / 2
    return out


@FAST
@given(seed=st.integers(0, 2**31 - 1), setting=st.sampled_from(SETTINGS), grey=st.sampled_from([2.0, 8.0, 30.0]))
def test_haar_shrink_is_the_mean_over_every_shift(seed, setting, grey):
    """The recursion equals the brute force: the plain hard thresholding of every one of the 4 ** levels circular
    shifts, shifted back and averaged."""
    size, scale, ch = setting
    levels = shrink_levels(size, scale)
    x = _smooth(torch.Generator().manual_seed(seed), (2, ch, *size), coarse=2) + 0.05 * torch.rand(
        (2, ch, *size), generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    k = 2**levels
    brute = sum(torch.roll(_orthonormal_haar_threshold(torch.roll(x, (dy, dx), (-2, -1)), grey / 255, levels),
                           (-dy, -dx), (-2, -1)) for dy in range(k) for dx in range(k)) / (k * k)
    assert torch.allclose(haar_shrink(x, grey / 255, levels), brute, atol=1e-12)


def test_haar_shrink_removes_faint_texture_on_flat_ground_and_the_projection_stays_exact():
    """Faint noise (+-2 grey) on a light plate with dark ink: the ground's noise shrinks (its 4 x 4 block means
    stay), the ink's edges do not move, and the strict projection of the result still rounds back exactly."""
    gen = torch.Generator().manual_seed(3)
    size, scale = (32, 128), 4
    ink = torch.ones((1, *size), dtype=torch.float64) * 0.85
    ink[:, 8:24, 16:20] = 0.1
    ink[:, 8:24, 40:56] = 0.1
    noisy = ink + (torch.rand((4, *size), generator=gen, dtype=torch.float64) - 0.5) * 4 / 255
    out = haar_shrink(noisy, 8 / 255, shrink_levels(size, scale))
    ground = (ink[0] > 0.5) & (F.max_pool2d((ink < 0.5).double()[None], 9, 1, 4)[0, 0] == 0)
    assert (out - ink)[:, ground].std() < 0.5 * (noisy - ink)[:, ground].std()
    assert (out - ink)[:, ~ground].abs().max() < 3 / 255  # the ink stays where it was
    deg = get_degradation(size, scale)
    lr = _lr_of(deg, ink[0])
    u8, info = strict_project(deg, out, lr, weights=background_weights(out, 0.003, dark_ink=True))
    assert rounds_back(deg, u8, lr).all() and not info.fallback.any()


def test_haar_shrink_levels_and_bad_arguments():
    assert [shrink_levels(s, k) for s, k in [((28, 28), 4), ((32, 32), 8), ((32, 128), 4), ((30, 30), 4),
                                            ((24, 24), 3), ((28, 28), 1)]] == [2, 3, 2, 1, 1, 0]
    x = torch.rand(2, 28, 28, dtype=torch.float64)
    with pytest.raises(ValueError, match="multiples of 8"):
        haar_shrink(x, 0.1, 3)
    with pytest.raises(ValueError, match="threshold"):
        haar_shrink(x, -0.1, 2)
