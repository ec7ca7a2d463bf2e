"""Strict consistency with the 8-bit LR image: the weighted closest point of the slab set, verified after rounding.

The LR image is ``Y = round(clip(255 D(HR)))``, so the images consistent with it are
``{x in [0, 1] : round(clip(255 D x)) = Y}``: per LR pixel j, ``lo_j <= (D x)_j <= hi_j`` with
``lo = (Y - 0.5 + m) / 255`` (no bound where ``Y = 0``) and ``hi = (Y + 0.5 - m) / 255`` (no bound where ``Y = 255``),
a margin ``m`` grey inside so that the sample still rounds back once it is itself rounded to 8 bits
(docs/design.md, "The maths"). :func:`project_slab` returns the closest point of that set to ``x0`` in the
weighted norm ``sum_p w_p (x_p - x0_p)^2``; :func:`strict_project` rounds it to uint8 and verifies every sample.

The solver works on the dual over LR pixels. For multipliers ``lam`` (one per LR pixel; ``lam_j >= 0`` where the
lower bound binds, ``<= 0`` where the upper one does) the primal point is ``x(lam) = clip(x0 + W^-1 D^T lam, 0, 1)``
and the dual ``g(lam) = min_{0<=x<=1} 1/2 |x - x0|_W^2 - lam . D x + sum_j min(lo_j lam_j, hi_j lam_j)`` is concave.
Optimality is the fixed point ``s = Pi_[lo, hi](s - c lam)`` with ``s = D x(lam)`` (``c_j`` the j-th diagonal of
``D W^-1 D^T``, so that the residual is in the units of ``D x``). A semismooth Newton step on it is a primal-dual
active-set step: LR pixels with ``s - c lam`` outside the slab are held at their bound, the others get
``lam_j = 0``, and the held ones solve ``(H_AA) d_A = bound_A - s_A - (H d_I)_A`` (increment form) with the
generalized Jacobian ``H = D diag(W^-1 * [0 < u < 1]) D^T``, ``u = x0 + W^-1 D^T lam``. Globalisation, so that every
step raises the concave dual: an Armijo line search on ``g``; where the active-set direction does not ascend, a
sign-consistent (projected) Newton direction; after a line search that had to cut the step below 2^-8 (pixels at
the box's edge make the masked curvature too small), one step with the full curvature ``D W^-1 D^T``, never too
long; a proximal gradient step as the last resort. Systems are built and solved directly at MNIST sizes (the
separable pair products of ``Degradation._dense_solve``, with the weights folded into the mask) and by
Jacobi-preconditioned conjugate gradients, matrix-free and inexact (forcing term 0.1 x residual), on larger images
(plates). Iteration stops on the tolerance; ``converged`` says whether it was met, and ``infeasible`` whether the
dual rose above what any image in the box can cost (weak duality: the slab is then empty).

Margin. Rounding x to 1/255 moves ``(D x)_j`` by at most ``0.5 * sum_p |D_jp|`` grey: 0.687 grey for the bicubic
kernel at x4 (0.682 at x8, 0.5 for the box), at least the slab's half-width, so no margin can guarantee it.
The rounding errors are bounded and nearly independent, though, with standard deviation
``sqrt(sum_p D_jp^2 / 12)`` grey (0.068 at x4, 0.034 at x8; fewer where pixels sit at 0 or 1 and do not round):
the default margin is 5 of those, capped at ``MAX_MARGIN`` (0.34 grey at x4, 0.17 at x8). Figures from
:func:`rounding_shift`: ``python -c "from sr_engine.projection import *; from sr_engine.degradation import
Degradation as D; print(rounding_shift(D((28, 28), 4)), rounding_shift(D((32, 32), 8)))"``.
:func:`strict_project` verifies every sample; one whose 8-bit image misses is retried with a wider margin, one whose
slab could not be met (a margin can empty it) with a narrower one, then with the old projection onto
``D x = Y / 255`` (:meth:`Degradation.project`); samples that still fail raise :class:`StrictProjectionError`
naming their indices (also the fate of an LR image that no image in [0, 1] produces).

Before the projection a model may shrink its samples' faint texture (:func:`haar_shrink`,
``StrictSettings.shrink_grey``: hard thresholding of Haar details with cycle spinning, chosen per model on training
rows); the projection then makes the result exact as it does any other start.

Timings (one thread, 64-sample banks, float64): ``python -m sr_engine.bench.projection_timing --repeats 5`` prints
them; the figures of one run are in that module's docstring. Everything runs on the CPU: inputs on another device are
copied to it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .degradation import Degradation
from .metrics import downscale_255
from .models.flow import HaarDownsampling

log = logging.getLogger(__name__)

Solver = Literal["auto", "dense", "cg"]
K_SIGMA = 5.0  # default margin: this many standard deviations of the rounding shift of D x
MAX_MARGIN = 0.45  # grey; a margin must stay below the slab's half-width, 0.5 grey
WIDE_MARGINS: tuple[float, ...] = (0.45,)  # grey; retries of samples whose rounded image misses the LR
NARROW_MARGINS: tuple[float, ...] = (0.2, 0.1, 0.0)  # grey; retries where a wide slab cannot be met (may be empty)
# grey; a bracket the grid has exhausted (rounding missed at its floor, the slab was empty at its cap) is bisected
# down to this width: a training digit's slab was empty at 0.34 grey and its sample missed after rounding at 0.2
MIN_BRACKET = 0.01
_ARMIJO = 1e-4
_MAX_HALVINGS = 60
# An accepted step this short sends the next step to the full-curvature model: a zero-curvature LR pixel (every HR
# pixel under it clipped) can ask for a huge first step.
_STALL_STEP = 2.0**-8


# ----------------------------------------------------------------------------------------------- the slab set


@dataclass(frozen=True)
class RoundingShift:
    """How far rounding an HR image to 8 bits can move ``D x``, in grey levels (worst LR pixel).

    worst: ``0.5 * max_j sum_p |D_jp|``, the bound over every rounding; std: ``max_j sqrt(sum_p D_jp^2 / 12)``,
    the spread when each pixel's rounding error is uniform on [-0.5, 0.5] grey and independent.
    """

    worst: float
    std: float


def rounding_shift(deg: Degradation) -> RoundingShift:
    """The rounding shift of ``D x`` computed from the operator's 1-D matrices (D is separable)."""
    a_h, a_w = deg.a_h.double(), deg.a_w.double()
    worst = 0.5 * float(a_h.abs().sum(1).max() * a_w.abs().sum(1).max())
    std = math.sqrt(float((a_h**2).sum(1).max() * (a_w**2).sum(1).max()) / 12.0)
    return RoundingShift(worst=worst, std=std)


def default_margin(deg: Degradation) -> float:
    """``min(MAX_MARGIN, K_SIGMA * rounding_shift(deg).std)`` grey: 0.34 at x4, 0.17 at x8 (bicubic)."""
    return min(MAX_MARGIN, K_SIGMA * rounding_shift(deg).std)


def _as_tensor_u8(lr: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(lr)) if not isinstance(lr, torch.Tensor) else lr
    if t.dtype != torch.uint8:
        raise ValueError(f"the LR image must be uint8 (0..255), got {t.dtype}")
    return t


def slab_bounds(lr_uint8: np.ndarray | torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-LR-pixel bounds on ``D x`` (on [0, 1]) of the images that round back to ``lr_uint8``.

    ``lo = (Y - 0.5 + margin) / 255`` (``-inf`` where ``Y = 0``), ``hi = (Y + 0.5 - margin) / 255`` (``+inf`` where
    ``Y = 255``), float64 tensors of the LR image's shape (any layout, e.g. ``(h, w)`` or ``(C, h, w)``).

    Args:
        lr_uint8: the LR image, uint8.
        margin: grey levels kept inside the rounding interval, ``0 <= margin < 0.5``.
    """
    if not 0.0 <= margin < 0.5:
        raise ValueError(f"margin must be in [0, 0.5) grey, got {margin}")
    y = _as_tensor_u8(lr_uint8).to(torch.float64)
    lo = torch.where(y == 0, -math.inf, (y - 0.5 + margin) / 255.0)
    hi = torch.where(y == 255, math.inf, (y + 0.5 - margin) / 255.0)
    return lo, hi


def declip_lr(lr_uint8: np.ndarray | torch.Tensor, amount_grey: float,
              estimate: np.ndarray | torch.Tensor | None = None) -> np.ndarray | torch.Tensor:
    """The flow's input: ``Y / 255``, with LR pixels at 0 pushed to ``-amount / 255`` and at 255 to
    ``1 + amount / 255``, since the flow was trained on the unclipped ``y ~= D x``. With an ``estimate`` of that
    unclipped y (same shape, on the [0, 1] scale: :class:`sr_engine.models.declip.DeclipNet`), the push starts from
    the estimate instead, kept on the clipped side (``min(estimate, 0)`` at 0, ``max(estimate, 1)`` at 255); the
    other pixels keep ``Y / 255``. The amount is chosen on training rows by the caller
    (:mod:`sr_engine.eval.strict_tuning`; the shipped models use 2 to 8 grey). float64, numpy in -> numpy out."""
    if not amount_grey >= 0:
        raise ValueError(f"amount_grey must be >= 0, got {amount_grey}")
    y = _as_tensor_u8(lr_uint8)
    out = y.to(torch.float64) / 255.0
    low, high = torch.zeros_like(out), torch.ones_like(out)
    if estimate is not None:
        est = torch.as_tensor(estimate, dtype=torch.float64)
        if est.shape != out.shape:
            raise ValueError(f"estimate has shape {tuple(est.shape)}, the LR image {tuple(out.shape)}")
        if not torch.isfinite(est).all():
            raise ValueError("estimate has non-finite values")
        low, high = est.clamp(max=0.0), est.clamp(min=1.0)
    a = amount_grey / 255.0
    out = torch.where(y == 0, low - a, torch.where(y == 255, high + a, out))
    return out if isinstance(lr_uint8, torch.Tensor) else out.numpy()


def background_weights(x0: torch.Tensor, floor: float = 0.01, dark_ink: bool = False) -> torch.Tensor:
    """Weights ``w`` of the projection's metric that make background pixels expensive to change.

    ``1 / w = floor + maxpool3x3(clip(x0, 0, 1))`` for light strokes on a dark background (digits): a pixel more
    than one pixel away from any stroke costs ``1 / floor`` times as much to move as a stroke pixel. With
    ``dark_ink=True`` (dark text on a light plate) ``1 / w = floor + maxpool3x3(1 - clip(x0, 0, 1))``: the weights
    follow the ink, not the intensity. Each ``(H, W)`` plane (each colour channel) is pooled on its own.
    ``floor`` is to be chosen per domain on training rows.

    Args:
        x0: ``(..., H, W)`` images on [0, 1] (values outside are clipped first).
    Returns:
        float64 weights of ``x0``'s shape, in ``[1 / (floor + 1), 1 / floor]``.
    """
    if not floor > 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    x = x0.to(torch.float64).clamp(0, 1)
    ink = 1.0 - x if dark_ink else x
    pooled = F.max_pool2d(ink.reshape(-1, 1, *x.shape[-2:]), 3, stride=1, padding=1).reshape(x.shape)
    return 1.0 / (floor + pooled)


_HAAR = HaarDownsampling()  # the flow's own Haar step: block means and details of orthonormal size


def _spun_threshold(x: torch.Tensor, t: float, levels: int) -> torch.Tensor:
    """Hard thresholding at ``t`` of ``levels`` Haar steps of ``x`` (B, H, W), averaged over all ``4 ** levels``
    circular shifts. A shift by ``s + 2 s'`` is the shift ``s`` in {0, 1}^2 here and ``s'`` one level down (a shift
    by 2 moves the block means by 1), and the inverse step is linear, so the average over all shifts is the
    average over the four ``s`` of this level with the next level's own average inside: the work of about four
    full-size Haar steps per level instead of ``4 ** levels`` full transforms."""
    if levels == 0:
        return x
    acc = torch.zeros_like(x)
    for dy in (0, 1):
        for dx in (0, 1):
            coeffs, _ = _HAAR(torch.roll(x, (dy, dx), (-2, -1))[:, None])  # (B, 4, H/2, W/2): means, 3 details
            det = coeffs[:, 1:]
            kept = torch.cat([_spun_threshold(coeffs[:, 0], t, levels - 1)[:, None], det * (det.abs() > t)], 1)
            acc += torch.roll(_HAAR(kept, rev=True)[0][:, 0], (-dy, -dx), (-2, -1))
    return acc / 4


def shrink_levels(size: tuple[int, int], scale: int) -> int:
    """Haar levels of :func:`haar_shrink` for HR images of ``size`` at ``scale``: the most levels ``l`` with
    ``2**l <= scale`` that divide both sides (x4: 2, x8: 3)."""
    levels = 0
    while 2 ** (levels + 1) <= scale and all(s % 2 ** (levels + 1) == 0 for s in size):
        levels += 1
    return levels


def haar_shrink(x: torch.Tensor, threshold: float, levels: int) -> torch.Tensor:
    """Translation-invariant hard thresholding of Haar details (wavelet shrinkage with cycle spinning, after
    Coifman and Donoho, 1995): every detail coefficient of ``levels`` Haar steps (the flow's own: block means, and
    details of orthonormal size, so a step edge of height s gives a coefficient of about s) whose magnitude is at
    most ``threshold`` is set to 0, and the result is averaged over all ``4 ** levels`` circular shifts of the
    image. Flat ground loses the faint texture that the kernel DDPM's z decodes into; edges above the threshold
    stay. Block means are kept, so ``D x`` barely moves, and the strict projection that follows restores it
    exactly.

    Args:
        x: ``(..., H, W)`` float images on about [0, 1]; H and W multiples of ``2 ** levels``.
        threshold: on [0, 1] (grey / 255); 0 returns ``x`` unchanged.
        levels: Haar steps (:func:`shrink_levels`).
    Returns:
        a tensor of ``x``'s shape and dtype.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if threshold == 0 or levels == 0:
        return x
    k = 2**levels
    if x.shape[-2] % k or x.shape[-1] % k:
        raise ValueError(f"{levels} Haar levels need sides that are multiples of {k}, got {tuple(x.shape[-2:])}")
    return _spun_threshold(x.reshape(-1, *x.shape[-2:]), float(threshold), levels).reshape(x.shape)


# ------------------------------------------------------------------------------------------- the operator


class _Ops:
    """D, D^T and the Newton systems of one Degradation, float64."""

    def __init__(self, deg: Degradation):
        self.a_h, self.a_w = deg.a_h.double(), deg.a_w.double()
        self.sq_h, self.sq_w = self.a_h**2, self.a_w**2
        self.lr_size, self.hr_size = deg.lr_size, deg.hr_size
        h, w = self.lr_size
        # the criterion of Degradation._dense: build and factorise where the systems are small (MNIST)
        self.dense_ok = (h * w) ** 2 * max(self.hr_size) <= 2e6
        self.pairs = (self.a_h[:, None, :] * self.a_h[None], self.a_w[:, None, :] * self.a_w[None])
        self.lip = float(torch.linalg.matrix_norm(self.a_h, 2) * torch.linalg.matrix_norm(self.a_w, 2)) ** 2

    def down(self, x: torch.Tensor) -> torch.Tensor:
        return self.a_h @ x @ self.a_w.T

    def up(self, v: torch.Tensor) -> torch.Tensor:
        return self.a_h.T @ v @ self.a_w

    def diag(self, mw: torch.Tensor) -> torch.Tensor:
        """The diagonal of ``D diag(mw) D^T``: ``sum_p D_jp^2 mw_p``, (n, h, w)."""
        return self.sq_h @ mw @ self.sq_w.T

    def hess(self, mw: torch.Tensor) -> torch.Tensor:
        """``D diag(mw) D^T`` per image, (n, hw, hw); by separability
        ``J[(i,j), (i',j')] = sum_pq A_h[i,p] A_h[i',p] mw[p,q] A_w[j,q] A_w[j',q]``."""
        p_h, p_w = self.pairs
        n, (h, w) = mw.shape[0], self.lr_size
        t = torch.einsum("abp,npq->nabq", p_h, mw)
        return torch.einsum("nabq,cdq->nacbd", t, p_w).reshape(n, h * w, h * w)


@lru_cache(maxsize=16)
def _ops(deg: Degradation) -> _Ops:
    return _Ops(deg)


# ---------------------------------------------------------------------------------------------- the solver


@dataclass
class SlabProjection:
    """Outcome of :func:`project_slab`.

    x: the projected images, x0's shape, in [0, 1], float64.
    lam: the LR multipliers, ``(..., h, w)`` float64 (``>= 0`` at active lower bounds, ``<= 0`` at upper ones).
    iterations: Newton steps run (the most any image needed).
    max_violation: per image of the leading dims, max over LR pixels of ``max(lo - D x, D x - hi, 0)`` on [0, 1].
    residual: per image, the optimality residual ``max |s - Pi(s - c lam)|`` (units of ``D x``) that ``tol`` bounds.
    converged: per image, ``residual <= tol``.
    infeasible: per image, the dual rose above ``1/2 sum_p w_p max(x0_p, 1 - x0_p)^2``, more than any point of the
        box can cost: by weak duality the slab holds no image in [0, 1] (a certificate; a slab that misses by a
        hair may end unconverged without it).
    """

    x: torch.Tensor
    lam: torch.Tensor
    iterations: int
    max_violation: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor
    infeasible: torch.Tensor


class _Problem:
    """The flattened batch (B, H, W) of one projection and its dual."""

    def __init__(self, ops: _Ops, x0: torch.Tensor, iw: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
        self.ops, self.x0, self.iw, self.half_w = ops, x0, iw, 0.5 / iw
        self.lo, self.hi = lo, hi
        self.lo_f = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
        self.hi_f = torch.where(torch.isfinite(hi), hi, torch.zeros_like(hi))
        self.no_lo, self.no_hi = torch.isinf(lo), torch.isinf(hi)  # there lam <= 0 (resp. >= 0)
        self.c = ops.diag(iw)  # unmasked diagonal of D W^-1 D^T: the residual's scaling
        self.lip = ops.lip * iw.flatten(1).amax(1)  # Lipschitz constant of the dual gradient, per image

    def sub(self, idx: torch.Tensor) -> _Problem:
        p = _Problem.__new__(_Problem)
        for k in ("x0", "iw", "half_w", "lo", "hi", "lo_f", "hi_f", "no_lo", "no_hi", "c", "lip"):
            setattr(p, k, getattr(self, k)[idx])
        p.ops = self.ops
        return p

    def signs(self, lam: torch.Tensor) -> torch.Tensor:
        """Project multipliers onto their sign constraints (none where both bounds are finite)."""
        lam = torch.where(self.no_lo, lam.clamp(max=0), lam)
        return torch.where(self.no_hi, lam.clamp(min=0), lam)

    def dual(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u, x, g): ``u = x0 + W^-1 D^T lam``, ``x = clip(u, 0, 1)`` and the dual value per image."""
        at = self.ops.up(lam)
        u = torch.addcmul(self.x0, self.iw, at)
        x = u.clamp(0, 1)
        # 1/2 w (x - x0)^2 - at x, in place on temporaries: few passes over the (large, for plates) HR arrays
        g = (x - self.x0).square_().mul_(self.half_w).sub_(at.mul_(x)).sum((-2, -1))
        phi = torch.where(lam > 0, self.lo_f * lam, torch.where(lam < 0, self.hi_f * lam, torch.zeros_like(lam)))
        return u, x, g + phi.sum((-2, -1))

    def residual(self, lam: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``max_j |s_j - Pi_[lo_j, hi_j](s_j - c_j lam_j)|`` per image; zero exactly at the optimum."""
        z = s - self.c * lam
        return (s - torch.maximum(torch.minimum(z, self.hi), self.lo)).abs().flatten(1).amax(1)

    def slope(self, lam: torch.Tensor, d: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """The dual's directional derivative ``g'(lam; d)`` per image."""
        up = torch.where(lam > 0, self.lo_f, torch.where(lam < 0, self.hi_f, torch.where(d > 0, self.lo_f, self.hi_f)))
        return ((up - s) * d).sum((-2, -1))

    def prox_step(self, lam: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """A proximal gradient ascent step with step ``1 / L``: it raises the dual whenever lam is not optimal."""
        t = (1.0 / self.lip)[:, None, None]
        up = lam + t * (self.lo_f - s)
        down = lam + t * (self.hi_f - s)
        zero = torch.zeros_like(lam)
        return torch.where(~self.no_lo & (up > 0), up, torch.where(~self.no_hi & (down < 0), down, zero))

    def newton(self, lam: torch.Tensor, u: torch.Tensor, s: torch.Tensor, act_lo: torch.Tensor,
               act_hi: torch.Tensor, solver: str, cg_tol: torch.Tensor, full: bool = False) -> torch.Tensor:
        """The Newton direction ``d`` for the active sets ``act_lo`` / ``act_hi`` (LR pixels held at their bound).

        In increment form, so that the regularisation cannot bias the fixed point: ``d_I = -lam_I`` and
        ``(H_AA + reg) d_A = bound_A - s_A - (H d_I)_A``; at the solution ``d = 0`` and ``s_A = bound_A`` exactly.
        ``cg_tol`` (n,): how well conjugate gradients solve it (an inexact Newton step; unused by dense solves).
        ``full``: take the curvature of every pixel, clipped or not (``H = D W^-1 D^T``): a model that never
        underestimates the curvature, so its step is never too long (a scaled gradient step, for stalls).
        """
        a = (act_lo | act_hi).to(s.dtype)
        bound = torch.where(act_lo, self.lo_f, self.hi_f)
        mw = self.iw if full else self.iw * ((u > 0) & (u < 1)).to(u.dtype)
        d_off = -(1.0 - a) * lam
        rhs = a * (bound - s - self.ops.down(mw * self.ops.up(d_off)))
        reg = 1e-9 * self.c  # keeps H_AA invertible where every HR pixel under an LR pixel is clipped
        if solver == "dense":
            n, m = s.shape[0], s.shape[-2] * s.shape[-1]
            af = a.reshape(n, m)
            jac = self.ops.hess(mw) * af[:, :, None] * af[:, None, :]
            jac = jac + torch.diag_embed(1.0 - af + af * reg.reshape(n, m))
            d_on = torch.linalg.solve(jac, rhs.reshape(n, m)).reshape(s.shape)
        else:
            d_on = self._cg(mw, a, reg, rhs, cg_tol)
        return d_off + a * d_on

    def pdas(self, lam: torch.Tensor, u: torch.Tensor, s: torch.Tensor, solver: str,
             tol: torch.Tensor) -> torch.Tensor:
        """The primal-dual active-set (semismooth Newton) step: hold the LR pixels whose ``s - c lam`` leaves the
        slab at that bound, free the others (``lam_j -> 0``)."""
        z = s - self.c * lam
        return self.newton(lam, u, s, z < self.lo, z > self.hi, solver, tol)

    def sign_consistent(self, lam: torch.Tensor, u: torch.Tensor, s: torch.Tensor, solver: str,
                        tol: torch.Tensor, full: bool = False) -> torch.Tensor:
        """A Newton direction that ascends: multipliers keep the bound of their sign, zero ones join only at a
        violated bound and only if they then move the right way (a projected Newton step, one more solve)."""
        zero = lam == 0
        act_lo = (lam > 0) | (zero & (s < self.lo))
        act_hi = (lam < 0) | (zero & (s > self.hi))
        d = self.newton(lam, u, s, act_lo, act_hi, solver, tol, full)
        wrong = zero & ((act_lo & (d < 0)) | (act_hi & (d > 0)))
        if bool(wrong.any()):
            d = self.newton(lam, u, s, act_lo & ~wrong, act_hi & ~wrong, solver, tol, full)
        return d

    def _cg(self, mw: torch.Tensor, a: torch.Tensor, reg: torch.Tensor, b: torch.Tensor, tol: torch.Tensor,
            max_iter: int = 500) -> torch.Tensor:
        """Solve ``(H_AA + reg) v_A = b_A`` (v = 0 off A) by Jacobi-preconditioned CG, matrix-free, until
        ``max |residual| <= tol`` per image (tol: (n,), in the units of ``D x``)."""
        ops = self.ops

        def op(v: torch.Tensor) -> torch.Tensor:
            return a * ops.down(mw * ops.up(a * v)) + reg * v

        def dot(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
            return (p * q).sum((-2, -1), keepdim=True)

        pre = torch.where(a > 0, 1.0 / (ops.diag(mw) + reg), torch.zeros_like(b))
        v = torch.zeros_like(b)
        r = b.clone()
        zz = pre * r
        p = zz.clone()
        rz = dot(r, zz)
        for _ in range(max_iter):
            if bool((r.abs().amax((-2, -1)) <= tol).all()):
                break
            ap = op(p)
            alpha = rz / dot(p, ap).clamp_min(1e-300)
            v = v + alpha * p
            r = r - alpha * ap
            zz = pre * r
            rz_new = dot(r, zz)
            p = zz + (rz_new / rz.clamp_min(1e-300)) * p
            rz = rz_new
        return v


@torch.no_grad()
def project_slab(deg: Degradation, x0: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                 weights: torch.Tensor | None = None, tol: float = 1e-9, max_iter: int = 200,
                 solver: Solver = "auto") -> SlabProjection:
    """The closest point ``argmin 1/2 sum_p w_p (x_p - x0_p)^2`` subject to ``lo <= D x <= hi``, ``0 <= x <= 1``.

    Args:
        deg: the degradation (it acts on the last two dims, per channel).
        x0: ``(..., H, W)`` images, e.g. ``(N, H, W)`` or ``(N, C, H, W)``; any range.
        lo, hi: ``(..., h, w)`` bounds on ``D x`` on [0, 1], broadcastable to ``D x0``; ``-inf`` / ``+inf`` allowed.
        weights: positive ``w``, broadcastable to ``x0`` (e.g. :func:`background_weights`); None is Euclidean.
        tol: the optimality residual (in the units of ``D x`` on [0, 1]) that stops the iteration.
        max_iter: Newton steps at most; images that did not meet ``tol`` by then have ``converged = False``
            (an infeasible slab ends that way).
        solver: "dense" (direct solves), "cg" (matrix-free conjugate gradients) or "auto" (dense at MNIST sizes).
    Returns:
        :class:`SlabProjection`, computed and returned in float64 on the CPU.
    """
    if solver not in ("auto", "dense", "cg"):
        raise ValueError(f"unknown solver {solver!r}; expected 'auto', 'dense' or 'cg'")
    if tuple(x0.shape[-2:]) != deg.hr_size:
        raise ValueError(f"expected HR size {deg.hr_size}, got {tuple(x0.shape[-2:])}")
    if tuple(lo.shape[-2:]) != deg.lr_size or tuple(hi.shape[-2:]) != deg.lr_size:
        got = f"{tuple(lo.shape[-2:])}, {tuple(hi.shape[-2:])}"
        raise ValueError(f"expected bounds of LR size {deg.lr_size}, got {got}")
    ops = _ops(deg)
    solver = ("dense" if ops.dense_ok else "cg") if solver == "auto" else solver
    lead = x0.shape[:-2]
    xx = x0.detach().to("cpu", torch.float64).reshape(-1, *deg.hr_size)
    lo, hi = lo.cpu(), hi.cpu()
    lo_b = lo.to(torch.float64).expand(*lead, *deg.lr_size).reshape(-1, *deg.lr_size)
    hi_b = hi.to(torch.float64).expand(*lead, *deg.lr_size).reshape(-1, *deg.lr_size)
    if bool((lo_b > hi_b).any()) or bool(torch.isnan(lo_b).any() | torch.isnan(hi_b).any()):
        raise ValueError("every lower bound must be at most its upper bound (and neither NaN)")
    if weights is None:
        iw = torch.ones_like(xx)
    else:
        w = weights.detach().to("cpu", torch.float64).expand(x0.shape).reshape(xx.shape)
        if not bool(((w > 0) & torch.isfinite(w)).all()):
            raise ValueError("weights must be positive and finite")
        iw = 1.0 / w
    prob = _Problem(ops, xx, iw, lo_b, hi_b)
    n = xx.shape[0]
    lam = torch.zeros_like(lo_b)
    u, x, g = prob.dual(lam)
    s = ops.down(x)
    res = prob.residual(lam, s)
    it = 0
    stalled = torch.zeros(n, dtype=torch.bool)
    # no point of the box is farther than its farthest corner: a dual value above that proves the slab empty
    primal_max = (0.5 / iw * torch.maximum(xx.abs(), (1 - xx).abs()) ** 2).sum((-2, -1))
    act = torch.nonzero(res > tol).flatten()
    while act.numel() and it < max_iter:
        it += 1
        p = prob.sub(act)
        lam_a, u_a, s_a, g_a = lam[act], u[act], s[act], g[act]
        # inexact Newton: conjugate gradients solve to a fraction of the current residual (superlinear forcing)
        r_a = res[act]
        cg_tol = torch.clamp(0.1 * torch.clamp(r_a, max=1.0) * r_a, min=0.01 * tol)
        d = p.pdas(lam_a, u_a, s_a, solver, cg_tol)
        slope = p.slope(lam_a, d, s_a)
        # where the active-set step does not ascend (active sets changing), take the sign-consistent Newton one;
        # where the last line search had to cut the step far back (the masked curvature misled it: pixels at the
        # box's edge), the sign-consistent step with the full curvature, which is never too long
        stall = stalled[act]
        for redo, full in ((~(slope > 0) & ~stall, False), (stall, True)):
            if bool(redo.any()):
                sub = p.sub(torch.nonzero(redo).flatten())
                d_sc = sub.sign_consistent(lam_a[redo], u_a[redo], s_a[redo], solver, cg_tol[redo], full)
                d[redo] = d_sc
                slope[redo] = sub.slope(lam_a[redo], d_sc, s_a[redo])
        # and where even that does not ascend, the proximal gradient one
        use_pg = ~(slope > 0)
        if bool(use_pg.any()):
            d_pg = p.prox_step(lam_a, s_a) - lam_a
            d = torch.where(use_pg[:, None, None], d_pg, d)
            slope = torch.where(use_pg, p.slope(lam_a, d_pg, s_a), slope)
        step = torch.ones_like(g_a)
        ok = torch.zeros_like(use_pg)
        new_lam, new_u, new_x, new_g = lam_a.clone(), u_a.clone(), x[act].clone(), g_a.clone()
        slack = 1e-13 * (g_a.abs() + 1.0)
        for _ in range(_MAX_HALVINGS):
            cand = p.signs(lam_a + step[:, None, None] * d)
            u_c, x_c, g_c = p.dual(cand)
            good = ~ok & (g_c >= g_a + _ARMIJO * step * slope - slack)
            sel = good[:, None, None]
            new_lam = torch.where(sel, cand, new_lam)
            new_u, new_x = torch.where(sel, u_c, new_u), torch.where(sel, x_c, new_x)
            new_g = torch.where(good, g_c, new_g)
            ok = ok | good
            if bool(ok.all()):
                break
            step = torch.where(ok, step, 0.5 * step)
        if not bool(ok.all()):  # rounding-level stagnation: the proximal step cannot lower the dual
            bad = ~ok
            cand = p.prox_step(lam_a, s_a)
            u_c, x_c, g_c = p.dual(cand)
            sel = bad[:, None, None]
            new_lam = torch.where(sel, cand, new_lam)
            new_u, new_x = torch.where(sel, u_c, new_u), torch.where(sel, x_c, new_x)
            new_g = torch.where(bad, g_c, new_g)
        stalled[act] = ~ok | (step < _STALL_STEP)
        lam[act], u[act], x[act], g[act] = new_lam, new_u, new_x, new_g
        s[act] = ops.down(new_x)
        res[act] = p.residual(new_lam, s[act])
        act = act[(res[act] > tol) & (g[act] <= primal_max[act])]
    viol = torch.maximum(lo_b - s, s - hi_b).clamp_min(0).flatten(1).amax(1)
    infeasible = g > primal_max
    if bool((res > tol).any()):
        log.warning("slab projection: %d of %d images above tol %.1e after %d steps (worst residual %.2e; %d with "
                    "an empty slab)", int((res > tol).sum()), n, tol, it, float(res.max()), int(infeasible.sum()))
    shape_lr = (*lead, *deg.lr_size)
    return SlabProjection(x=x.reshape(x0.shape), lam=lam.reshape(shape_lr), iterations=it,
                          max_violation=viol.reshape(lead), residual=res.reshape(lead),
                          converged=(res <= tol).reshape(lead), infeasible=infeasible.reshape(lead))


# --------------------------------------------------------------------------------------- strict, verified


class StrictProjectionError(ValueError):
    """Some samples could not be made to round back to the LR image; ``indices`` are their batch positions and
    ``seeds`` (where an engine knows them) their per-sample seeds."""

    def __init__(self, message: str, indices: list[int], seeds: list[int] | None = None):
        super().__init__(message)
        self.indices = indices
        self.seeds = seeds


@dataclass(frozen=True)
class StrictSettings:
    """How an engine's strict mode treats one model's samples (chosen per model on training rows; the model card
    says how).

    declip_grey: grey levels by which LR pixels at 0 (255) are pushed below 0 (above 255) in the flow's input
        (:func:`declip_lr`), or beyond the estimate of a model that carries a de-clip estimator; 0 feeds the LR
        image (or the estimate) as it is.
    floor: the floor of :func:`background_weights`; None projects in the Euclidean norm (uniform weights).
    dark_ink: dark ink on a light background (plates) rather than light strokes on a dark one (digits).
    shrink_grey: the threshold (grey) of :func:`haar_shrink`, applied to the flow's output before the
        projection; 0 leaves it as decoded.
    """

    declip_grey: float = 0.0
    floor: float | None = None
    dark_ink: bool = False
    shrink_grey: float = 0.0

    def __post_init__(self):
        if not self.declip_grey >= 0:
            raise ValueError(f"declip_grey must be >= 0, got {self.declip_grey}")
        if self.floor is not None and not self.floor > 0:
            raise ValueError(f"floor must be > 0 or None, got {self.floor}")
        if not self.shrink_grey >= 0:
            raise ValueError(f"shrink_grey must be >= 0, got {self.shrink_grey}")

    def shrink(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """The samples the projection starts from: ``x`` (``(..., H, W)`` at ``scale``) after :func:`haar_shrink`
        at ``shrink_grey`` (unchanged at 0)."""
        if self.shrink_grey == 0:
            return x
        return haar_shrink(x, self.shrink_grey / 255.0, shrink_levels(tuple(x.shape[-2:]), scale))

    def weights(self, x0: torch.Tensor) -> torch.Tensor | None:
        """The projection's weights for samples ``x0`` (``(..., H, W)`` on [0, 1]); None: Euclidean."""
        return None if self.floor is None else background_weights(x0, self.floor, self.dark_ink)

    def to_dict(self) -> dict:
        return {"declip_grey": self.declip_grey, "floor": self.floor, "dark_ink": self.dark_ink,
                "shrink_grey": self.shrink_grey}


@dataclass
class StrictInfo:
    """Per-sample record of :func:`strict_project` (arrays of length N).

    margin: grey margin of the slab whose projection gave the sample; NaN where the old projection did.
    fallback: the sample came from the old projection onto ``D x = Y / 255``.
    converged: the projection that gave the sample met its tolerance.
    max_violation: how far the float projection that gave the sample lay outside its slab (or, for the old
        projection, from ``D x = Y / 255``), on [0, 1], worst channel.
    iterations: Newton steps over every pass (the most any sample of a pass needed, summed over passes).
    """

    margin: np.ndarray
    fallback: np.ndarray
    converged: np.ndarray
    max_violation: np.ndarray
    iterations: int


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Images on [0, 1] -> uint8 of the same shape, ``round(clip(x) * 255)`` as the engines store them."""
    return np.round(x.detach().clamp(0, 1).double().cpu().numpy() * 255).astype(np.uint8)


def rounds_back(deg: Degradation, images: np.ndarray, lr_uint8: np.ndarray) -> np.ndarray:
    """Per sample, whether ``round(clip(255 D(image / 255))) == lr`` at every LR pixel (LR-PSNR's arithmetic).

    Args:
        images: uint8 ``(N, H, W)`` or ``(N, C, H, W)``.
        lr_uint8: uint8 of one sample's LR layout (``(h, w)`` or ``(C, h, w)``) or with the batch dim.
    Returns:
        bool ``(N,)``.
    """
    images = np.asarray(images)
    lr = np.broadcast_to(np.asarray(lr_uint8), (images.shape[0], *images.shape[1:-2], *deg.lr_size))
    if images.ndim == 4 and images.shape[1] == 3:  # channel-last, exactly as lr_psnr_batch sees a bank
        d = np.moveaxis(downscale_255(np.moveaxis(images, 1, -1), deg.scale, deg.kernel), -1, 1)
    else:
        d = downscale_255(images, deg.scale, deg.kernel)
    return (np.round(np.clip(d, 0, 255)) == lr).reshape(images.shape[0], -1).all(1)


def _bisect(floor_m: float, cap: float) -> float | None:
    """The next margin inside a bracket that the grid has exhausted: its midpoint, while the bracket is wider than
    ``MIN_BRACKET`` grey (a margin that empties the slab above, one whose rounding missed below), else None."""
    if math.isfinite(floor_m) and math.isfinite(cap) and cap - floor_m > MIN_BRACKET:
        return 0.5 * (floor_m + cap)
    return None


def strict_project(deg: Degradation, x0: torch.Tensor, lr_uint8: np.ndarray | torch.Tensor,
                   weights: torch.Tensor | None = None, margin: float | None = None, *,
                   wide_margins: tuple[float, ...] = WIDE_MARGINS, narrow_margins: tuple[float, ...] = NARROW_MARGINS,
                   tol: float = 1e-9, max_iter: int = 200,
                   solver: Solver = "auto") -> tuple[np.ndarray, StrictInfo]:
    """Project each sample onto the 8-bit-consistent slab, round to uint8 and verify that it rounds back.

    A sample whose 8-bit image misses the LR image is projected again with a wider margin (``wide_margins``); one
    whose slab projection did not converge (a margin can empty the slab: the true image may have ``D x`` within
    0.1 grey of a rounding edge) with a narrower one (``narrow_margins``), never re-trying a margin outside the
    bracket the earlier passes left; a bracket the grid has exhausted is bisected (:data:`MIN_BRACKET`). Samples
    left over go to the old projection onto ``D x = Y / 255`` (:meth:`Degradation.project`) and verified again;
    any still failing raise :class:`StrictProjectionError` naming their indices
    (an LR image that no ``x`` in [0, 1] produces ends there).

    Args:
        deg: the degradation.
        x0: ``(N, H, W)`` or ``(N, C, H, W)`` float samples (e.g. the flow's output), any range.
        lr_uint8: the LR image, uint8, ``(h, w)`` / ``(C, h, w)``, or one per sample ``(N, ...)``.
        weights: the metric's weights, broadcastable to ``x0`` (:func:`background_weights`); None: Euclidean.
        margin: grey levels inside the rounding interval of the first pass; None: :func:`default_margin`.
        wide_margins, narrow_margins: the retries' margins (grey).
        tol, max_iter, solver: :func:`project_slab`'s options.
    Returns:
        (uint8 images of ``x0``'s shape, :class:`StrictInfo`).
    """
    if x0.dim() not in (3, 4):
        raise ValueError(f"x0 must be (N, H, W) or (N, C, H, W), got shape {tuple(x0.shape)}")
    lr = _as_tensor_u8(lr_uint8).cpu()
    per_sample = x0.shape[1:-2]
    if tuple(lr.shape[-2:]) != deg.lr_size or tuple(lr.shape) not in ((*per_sample, *deg.lr_size),
                                                                       (x0.shape[0], *per_sample, *deg.lr_size)):
        raise ValueError(f"LR image of shape {tuple(lr.shape)} does not fit samples {tuple(x0.shape)} at {deg}")
    n = x0.shape[0]
    xx = x0.detach().to(torch.float64).cpu()
    lr_b = lr.expand(n, *per_sample, *deg.lr_size)
    bad_input = ~torch.isfinite(xx).reshape(n, -1).all(1)
    if bool(bad_input.any()):
        idx = torch.nonzero(bad_input).flatten().tolist()
        raise StrictProjectionError(f"samples {idx} are not finite", idx)
    w_b = None if weights is None else weights.detach().to(torch.float64).cpu().expand(xx.shape)
    first = default_margin(deg) if margin is None else float(margin)
    grid = sorted({first, *wide_margins, *narrow_margins})
    out = np.zeros(tuple(xx.shape), dtype=np.uint8)
    info = StrictInfo(margin=np.full(n, np.nan), fallback=np.zeros(n, bool), converged=np.zeros(n, bool),
                      max_violation=np.full(n, np.nan), iterations=0)
    # per sample: the next margin to try, and the bracket left by earlier passes: a margin whose slab the solver
    # could not meet (maybe empty) caps the margin, one whose 8-bit image missed the LR raises the floor
    nxt: dict[int, float | None] = {i: first for i in range(n)}
    cap, floor_m = np.full(n, np.inf), np.full(n, -np.inf)
    tried: list[set[float]] = [set() for _ in range(n)]
    while any(m is not None for m in nxt.values()):
        m = min(v for v in nxt.values() if v is not None)
        todo = torch.tensor([i for i, v in nxt.items() if v == m])
        lo, hi = slab_bounds(lr_b[todo], m)
        res = project_slab(deg, xx[todo], lo, hi, None if w_b is None else w_b[todo], tol=tol,
                           max_iter=max_iter, solver=solver)
        info.iterations += res.iterations
        u8 = to_uint8(res.x)
        conv = res.converged.reshape(len(todo), -1).all(1).numpy()
        exact = rounds_back(deg, u8, lr_b[todo].numpy())
        viol = res.max_violation.reshape(len(todo), -1).amax(1).numpy()
        for k, i in enumerate(todo.tolist()):
            tried[i].add(m)
            if conv[k] and exact[k]:
                out[i], info.margin[i], info.converged[i], info.max_violation[i] = u8[k], m, True, viol[k]
                del nxt[i]
                continue
            if conv[k]:
                floor_m[i] = max(floor_m[i], m)
                wider = [c for c in grid if floor_m[i] < c < cap[i] and c not in tried[i]]
                nxt[i] = wider[0] if wider else _bisect(floor_m[i], cap[i])
            else:
                cap[i] = min(cap[i], m)
                narrower = [c for c in grid if floor_m[i] < c < cap[i] and c not in tried[i]]
                nxt[i] = narrower[-1] if narrower else _bisect(floor_m[i], cap[i])
            log.info("strict projection: sample %d %s at margin %.3f grey; next margin %s", i,
                     "missed the LR after rounding" if conv[k] else "did not converge", m, nxt[i])
    todo = torch.tensor(sorted(nxt), dtype=torch.long)
    if not len(todo):
        return out, info
    # the old projection onto D x = Y / 255 (exact where the slab is met only at its centre, or not at all)
    y = lr_b[todo].to(torch.float64) / 255.0
    old = deg.project(xx[todo], y, tol=1e-7)
    u8 = to_uint8(old.x)
    ok = rounds_back(deg, u8, lr_b[todo].numpy())
    keep = todo[torch.from_numpy(ok)].numpy()
    out[keep] = u8[ok]
    info.fallback[keep] = True
    info.converged[keep] = (old.residual.reshape(len(todo), -1).amax(1) <= 1e-7).numpy()[ok]
    info.max_violation[keep] = old.residual.reshape(len(todo), -1).amax(1).numpy()[ok]
    failed = todo[torch.from_numpy(~ok)].tolist()
    if failed:
        raise StrictProjectionError(
            f"samples {failed} do not round back to the LR image after the slab projection at margins {grid} "
            f"and the projection onto D x = Y/255 (is the LR image reachable from any image in [0, 1]?)", failed)
    log.info("strict projection: %d samples from the old projection onto D x = Y/255", len(keep))
    return out, info
