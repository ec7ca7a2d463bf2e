"""Degradation operators D as explicit separable matrices, their exact pseudoinverse, and the projection
onto the consistent set {x : D x = y, 0 <= x <= 1}.

``D(X) = A_h X A_w^T`` per channel. The bicubic kernel reproduces MATLAB's ``imresize`` (Keys cubic, a = -0.5,
antialiased: the kernel is widened by the scale; symmetric padding), the operator behind NTIRE's LR-PSNR.
Since ``(A_h (x) A_w)^+ = A_h^+ (x) A_w^+``, ``D^+`` is exact from the small 1-D pseudoinverses.

Images are float tensors ``(..., H, W)`` in [0, 1] (any leading batch / channel dims).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

Kernel = Literal["bicubic", "box"]
KERNELS: tuple[str, ...] = ("bicubic", "box")


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (MATLAB's ``cubic`` uses a = -0.5)."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return ((a + 2) * ax3 - (a + 3) * ax2 + 1) * (ax <= 1) + (a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=64)
def _matrix_np(n_in: int, scale: int, kernel: str) -> np.ndarray:
    """The (n_in // scale, n_in) float64 downscaling matrix of one axis."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
    if scale < 1 or n_in % scale:
        raise ValueError(f"size {n_in} is not a multiple of the scale {scale}")
    n_out = n_in // scale
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    if kernel == "box":
        for i in range(n_out):
            mat[i, i * scale : (i + 1) * scale] = 1.0 / scale
        return mat
    # MATLAB imresize `contributions` (1-based coordinates), antialiased since we shrink.
    s = 1.0 / scale
    width = 4.0 / s
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / s + 0.5 * (1 - 1 / s)
    left = np.floor(u - width / 2)
    p = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]  # 1-based source indices
    w = s * _cubic(s * (u[:, None] - idx))
    w = w / w.sum(axis=1, keepdims=True)
    # symmetric padding: MATLAB's aux = [1:n, n:-1:1]
    aux = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])
    src = aux[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    for i in range(n_out):
        np.add.at(mat[i], src[i], w[i])
    return mat


def downscale_matrix(n_in: int, scale: int, kernel: Kernel = "bicubic") -> np.ndarray:
    """A copy of the 1-D downscaling matrix ``(n_in // scale, n_in)``, float64."""
    return _matrix_np(n_in, scale, kernel).copy()


@dataclass
class ProjectionResult:
    """Outcome of :meth:`Degradation.project`.

    x: the projected images, same shape as the input, inside [0, 1].
    residual: per leading index (each image of a (B, ...) batch), max |D x - y| on [0, 1] after the last step.
    iterations: rounds of (range step, clip) that were run.
    """

    x: torch.Tensor
    residual: torch.Tensor
    iterations: int


class Degradation:
    """A linear separable downscaling operator for HR images of shape ``(..., H, W)``.

    Args:
        hr_size: (H, W) of the HR images; both multiples of ``scale``.
        scale: integer factor (2, 4, 8, ...).
        kernel: "bicubic" (MATLAB imresize) or "box" (area average).
    """

    def __init__(self, hr_size: tuple[int, int], scale: int, kernel: Kernel = "bicubic"):
        self.hr_size = (int(hr_size[0]), int(hr_size[1]))
        self.scale = int(scale)
        self.kernel = kernel
        self.lr_size = (self.hr_size[0] // scale, self.hr_size[1] // scale)
        a_h = _matrix_np(self.hr_size[0], scale, kernel)
        a_w = _matrix_np(self.hr_size[1], scale, kernel)
        # float64 so that a projected image is consistent to ~1e-12, far below one grey level.
        self.a_h = torch.from_numpy(a_h)
        self.a_w = torch.from_numpy(a_w)
        self.a_h_pinv = torch.from_numpy(np.linalg.pinv(a_h))
        self.a_w_pinv = torch.from_numpy(np.linalg.pinv(a_w))

    def __repr__(self) -> str:
        return f"Degradation(hr_size={self.hr_size}, scale={self.scale}, kernel={self.kernel!r})"

    def _mats(self, x: torch.Tensor, *mats: torch.Tensor) -> list[torch.Tensor]:
        return [m.to(device=x.device, dtype=x.dtype) for m in mats]

    def down(self, x: torch.Tensor) -> torch.Tensor:
        """D x: ``(..., H, W) -> (..., H/s, W/s)``."""
        if tuple(x.shape[-2:]) != self.hr_size:
            raise ValueError(f"expected HR size {self.hr_size}, got {tuple(x.shape[-2:])}")
        a_h, a_w = self._mats(x, self.a_h, self.a_w)
        return a_h @ x @ a_w.T

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """D^+ y: ``(..., h, w) -> (..., H, W)``; the minimum-norm solution of D x = y."""
        if tuple(y.shape[-2:]) != self.lr_size:
            raise ValueError(f"expected LR size {self.lr_size}, got {tuple(y.shape[-2:])}")
        p_h, p_w = self._mats(y, self.a_h_pinv, self.a_w_pinv)
        return p_h @ y @ p_w.T

    def range_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Orthogonal projection onto {x : D x = y}: ``x + D^+(y - D x)``."""
        return x + self.pinv(y - self.down(x))

    @torch.no_grad()
    def project(
        self, x: torch.Tensor, y: torch.Tensor, tol: float = 1e-6, max_iter: int = 2000
    ) -> ProjectionResult:
        """Alternate the range step with clipping to [0, 1] (POCS) until both hold to ``tol``.

        Every returned image lies in [0, 1]; ``residual`` says how far from D x = y it ended (max abs, on
        [0, 1]). Iteration stops on the tolerance, not a fixed count: at x8 a fixed 30 rounds is not enough
        for every sample. Computed in float64; returned in the input's dtype.

        Args:
            x: ``(..., H, W)`` images (any range).
            y: ``(..., h, w)`` LR targets in [0, 1], broadcastable to ``D x``.
        """
        if tuple(y.shape[-2:]) != self.lr_size:
            raise ValueError(f"expected LR size {self.lr_size}, got {tuple(y.shape[-2:])}")
        dtype = x.dtype
        xx = x.to(torch.float64)
        yy = y.to(torch.float64)
        it = 0
        xc = xx.clamp(0, 1)
        for it in range(1, max_iter + 1):
            xc = self.range_step(xc, yy).clamp(0, 1)
            if float((self.down(xc) - yy).abs().max()) <= tol:
                break
        res = (self.down(xc) - yy).abs()
        # one figure per leading index (per image of a batch), or one for a single image
        per_image = res.reshape(res.shape[0], -1).amax(1) if res.dim() > 2 else res.max()[None]
        return ProjectionResult(x=xc.to(dtype), residual=per_image.to(dtype), iterations=it)


@lru_cache(maxsize=32)
def get_degradation(hr_size: tuple[int, int], scale: int, kernel: Kernel = "bicubic") -> Degradation:
    """A shared :class:`Degradation` (its matrices are read-only; building one costs two pseudoinverses)."""
    return Degradation(hr_size, scale, kernel)
