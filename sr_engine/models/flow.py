"""The flow f: x <-> (y, z), a generalized pseudoinverse of the downscaling operator D.

log2(scale) levels; each is a Haar step (the low-pass channel becomes the next level's input, the three
detail channels stay) followed by affine coupling blocks over all four channel groups. After the last level the
low-pass channels are ``y``, exactly the LR shape; everything split off on the way is ``z``. Training
(Algorithm 1 of the pseudoinverse paper) pulls ``y`` onto ``D(x)`` and ``z`` onto N(0, I), so that
``x = f^-1(y, z)`` satisfies ``D(x) ~= y`` for any ``z`` (asymptotic consistency).

Layer contract (FrEIA's): ``forward(x, rev=False) -> (out, log_jac_det)``; ``log_jac_det`` is
``log |det d out / d in|`` of the direction that was run, per sample ``(B,)``, so forward and reverse cancel.
No layer modifies its input in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigMixin
from ..degradation import get_degradation


@dataclass
class FlowConfig(ConfigMixin):
    scale: int = 4  # power of two; log2(scale) Haar levels
    channels: int = 1  # 1 grey, 3 RGB
    hr_size: tuple[int, int] = (28, 28)  # training size (the flow itself is fully convolutional)
    blocks_per_level: int = 4  # affine coupling blocks after each Haar step
    hidden: int = 48  # width of the coupling subnets
    clamp: float = 2.0  # soft clamp of the log-scales: |s| < clamp
    sigma: float = 0.002  # std of the y likelihood N(y; D(x), sigma^2), on [0, 1] (half a grey level)
    kernel: str = "bicubic"  # the D that y is trained to match

    @property
    def levels(self) -> int:
        lv = int(round(math.log2(self.scale)))
        if 2**lv != self.scale or lv < 1:
            raise ValueError(f"flow scale must be a power of two >= 2, got {self.scale}")
        return lv


# Haar step with a mean low-pass (so y is on the image's own [0, 1] scale) and orthonormal-size details:
# per 2x2 block [a, b; c, d] -> (a+b+c+d)/4, (a-b+c-d)/2, (a+b-c-d)/2, (a-b-c+d)/2.  |det| = 1/2.
_HADAMARD = torch.tensor(
    [[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0], [1.0, -1.0, -1.0, 1.0]]
)
_ROW_SCALE = torch.tensor([0.25, 0.5, 0.5, 0.5])


def _haar_apply(x: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): [low-pass of all C channels, then 3C detail channels]."""
    b, c, h, w = x.shape
    blocks = nn.functional.pixel_unshuffle(x, 2).reshape(b, c, 4, h // 2, w // 2)  # a, b, c, d per channel
    coeffs = torch.einsum("ij,bcjhw->bichw", mat.to(x), blocks)  # (B, 4, C, h, w)
    return coeffs.reshape(b, 4 * c, h // 2, w // 2)


def _haar_unapply(t: torch.Tensor, mat_inv: torch.Tensor) -> torch.Tensor:
    b, c4, h, w = t.shape
    c = c4 // 4
    coeffs = t.reshape(b, 4, c, h, w)
    blocks = torch.einsum("ij,bjchw->bcihw", mat_inv.to(t), coeffs).reshape(b, 4 * c, h, w)
    return nn.functional.pixel_shuffle(blocks, 2)


class HaarDownsampling(nn.Module):
    """Invertible Haar step; ``orthonormal=True`` scales all four rows by 1/2 (|det| = 1)."""

    def __init__(self, orthonormal: bool = False):
        super().__init__()
        row = torch.full((4,), 0.5) if orthonormal else _ROW_SCALE
        mat = row[:, None] * _HADAMARD
        self.register_buffer("mat", mat, persistent=False)
        self.register_buffer("mat_inv", torch.linalg.inv(mat), persistent=False)
        self.log_det_block = float(torch.log(torch.abs(torch.linalg.det(mat.double()))))

    def forward(self, x: torch.Tensor, rev: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if not rev:
            if x.shape[-1] % 2 or x.shape[-2] % 2:
                raise ValueError(f"Haar step needs even sizes, got {tuple(x.shape[-2:])}")
            out = _haar_apply(x, self.mat)
            n_blocks = x.shape[1] * x.shape[2] * x.shape[3] / 4
            ljd = torch.full((x.shape[0],), self.log_det_block * n_blocks, dtype=x.dtype, device=x.device)
        else:
            out = _haar_unapply(x, self.mat_inv)
            n_blocks = x.shape[1] / 4 * x.shape[2] * x.shape[3]
            ljd = torch.full((x.shape[0],), -self.log_det_block * n_blocks, dtype=x.dtype, device=x.device)
        return out, ljd


def soft_clamp(s: torch.Tensor, clamp: float) -> torch.Tensor:
    """Smoothly bound log-scales to (-clamp, clamp) (FrEIA's atan clamp)."""
    return clamp * 0.636 * torch.atan(s / clamp)


class AffineCoupling(nn.Module):
    """``b <- b * exp(s(a)) + t(a)`` where (a, b) is the (low-pass, detail) split of the channels, or the
    reverse split when ``detail_conditions`` is true. The subnet's last layer starts at zero, so a new block is
    the identity."""

    def __init__(self, low: int, high: int, hidden: int, clamp: float, detail_conditions: bool):
        super().__init__()
        self.low, self.high, self.clamp = low, high, clamp
        self.detail_conditions = detail_conditions
        n_in, n_out = (high, low) if detail_conditions else (low, high)
        last = nn.Conv2d(hidden, 2 * n_out, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.subnet = nn.Sequential(
            nn.Conv2d(n_in, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.SiLU(),
            last,
        )

    def forward(self, x: torch.Tensor, rev: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = x[:, : self.low], x[:, self.low :]
        cond, moved = (hi, lo) if self.detail_conditions else (lo, hi)
        s_raw, t = self.subnet(cond).chunk(2, dim=1)
        s = soft_clamp(s_raw, self.clamp)
        if not rev:
            moved = moved * torch.exp(s) + t
            ljd = s.flatten(1).sum(1)
        else:
            moved = (moved - t) * torch.exp(-s)
            ljd = -s.flatten(1).sum(1)
        out = torch.cat([lo, moved] if not self.detail_conditions else [moved, hi], dim=1)
        return out, ljd


@dataclass
class FlowOutput:
    """y: (B, C, h, w) the LR part; zs: per level the detail part (B, 3C, H/2^l, W/2^l); log_det: (B,)."""

    y: torch.Tensor
    zs: list[torch.Tensor]
    log_det: torch.Tensor


class PseudoInverseFlow(nn.Module):
    """The bijection ``f: x (B, C, H, W) <-> (y (B, C, H/s, W/s), z)`` with ``dim z = dim x - dim y``."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = config
        c = config.channels
        self.haar = HaarDownsampling()
        self.levels = nn.ModuleList()
        for _ in range(config.levels):
            self.levels.append(
                nn.ModuleList(
                    AffineCoupling(c, 3 * c, config.hidden, config.clamp, detail_conditions=bool(k % 2))
                    for k in range(config.blocks_per_level)
                )
            )

    def forward(self, x: torch.Tensor) -> FlowOutput:
        """x (B, C, H, W) on [0, 1] -> y, [z_1 .. z_L], log|det df/dx|."""
        c = self.config.channels
        log_det = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        zs = []
        h = x
        for blocks in self.levels:
            h, ljd = self.haar(h)
            log_det = log_det + ljd
            for block in blocks:
                h, ljd = block(h)
                log_det = log_det + ljd
            h, z = h[:, :c], h[:, c:]
            zs.append(z)
        return FlowOutput(y=h, zs=zs, log_det=log_det)

    def inverse(self, y: torch.Tensor, zs: list[torch.Tensor]) -> torch.Tensor:
        """(y, [z_1 .. z_L]) -> x (B, C, H, W)."""
        h = y
        for blocks, z in zip(reversed(self.levels), reversed(zs)):
            h = torch.cat([h, z], dim=1)
            for block in reversed(blocks):
                h, _ = block(h, rev=True)
            h, _ = self.haar(h, rev=True)
        return h

    def z_shapes(self, lr_size: tuple[int, int]) -> list[tuple[int, int, int]]:
        """Per level, the (3C, H/2^l, W/2^l) shape of z for an LR image of ``lr_size``."""
        c, s = self.config.channels, self.config.scale
        hh, ww = lr_size[0] * s, lr_size[1] * s
        return [(3 * c, hh >> lv, ww >> lv) for lv in range(1, self.config.levels + 1)]

    def nll(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Algorithm 1's loss per dimension of x: -[log N(y; D x, sigma^2) + log N(z; 0, I) + log|det|] / dim x.

        Constants are dropped. Returns (loss, parts) with the consistency MSE and the z energy for logging.
        """
        cfg = self.config
        out = self.forward(x)
        deg = get_degradation(tuple(x.shape[-2:]), cfg.scale, cfg.kernel)
        d_x = deg.down(x)
        dim = x[0].numel()
        y_err = (out.y - d_x).flatten(1).pow(2)
        y_term = 0.5 * y_err.sum(1) / cfg.sigma**2
        z_term = 0.5 * sum(z.flatten(1).pow(2).sum(1) for z in out.zs)
        loss = (y_term + z_term - out.log_det).mean() / dim
        parts = {
            "y_mse": y_err.mean().detach(),
            "z_energy": (z_term.mean() / (dim - out.y[0].numel())).detach(),
            "log_det": (out.log_det.mean() / dim).detach(),
        }
        return loss, parts


# ---- the compact z grid: (B, 4C, H/2, W/2) --------------------------------------------------------------
_ORTHO_HAAR = HaarDownsampling(orthonormal=True)


def zs_to_grid(zs: list[torch.Tensor], channels: int) -> torch.Tensor:
    """Lay [z_1 .. z_L] out on one grid at half the HR resolution: z_1's 3C channels, then C channels that
    hold the deeper levels embedded by orthonormal inverse Haar steps (their low-pass slot, where y would be,
    is zero). Orthonormal, so N(0, I) stays N(0, I) on the occupied subspace."""
    deep = torch.zeros_like(zs[-1][:, :channels])
    for z in reversed(zs[1:]):
        deep, _ = _ORTHO_HAAR(torch.cat([deep, z], dim=1), rev=True)
    return torch.cat([zs[0], deep], dim=1)


def grid_to_zs(grid: torch.Tensor, channels: int, levels: int) -> list[torch.Tensor]:
    """Inverse of :func:`zs_to_grid`; whatever sits in the deepest low-pass slot is dropped."""
    zs = [grid[:, : 3 * channels]]
    deep = grid[:, 3 * channels :]
    for _ in range(levels - 1):
        t, _ = _ORTHO_HAAR(deep)
        deep, z = t[:, :channels], t[:, channels:]
        zs.append(z)
    return zs
