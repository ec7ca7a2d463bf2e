"""The de-clip estimator: the flow's unclipped input ``y ~= D x`` where the 8-bit LR image is clipped.

The LR image is ``round(clip(255 D x))``: where it reads 0, the true ``D x`` lies anywhere below half a grey level
(down to -20 grey and more beside a stroke, since the bicubic kernel has negative lobes), and where it reads 255
anywhere above. The flow was trained on the unclipped ``y``, and feeding it a y that is wrong there costs
fidelity that no kernel sample can win back (``python -m sr_engine tune-strict --budget`` measures it). A
constant push below 0 is one answer; this small CNN on the LR image is a better one: trained on training rows to
predict the frozen flow's own ``y = f(x).y`` at the clipped pixels (where it is not clipped, the LR image already
gives y to half a grey level), it estimates ``E[y | LR]`` pixel by pixel.

:func:`sr_engine.projection.declip_lr` turns the estimate into the flow's input (kept on the clipped side of 0
or 255, then pushed a tuned number of grey levels further); the network only reads the LR image, so a bank
pays one tiny forward pass for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigMixin


@dataclass
class DeclipConfig(ConfigMixin):
    channels: int = 1  # image channels C (input and output)
    width: int = 32  # feature channels of the hidden 3x3 convolutions
    layers: int = 4  # 3x3 convolutions in all (receptive field 2 * layers + 1 LR pixels)
    unit_grey: float = 10.0  # the output is in units of this many grey levels (keeps its targets near 1)


class DeclipNet(nn.Module):
    """LR image (B, C, h, w) on [0, 1] -> the estimated unclipped y (B, C, h, w) on the same scale: a plain
    stack of 3x3 convolutions with SiLU, added to the LR image (so it learns only the correction)."""

    def __init__(self, config: DeclipConfig | None = None):
        super().__init__()
        self.config = config = config or DeclipConfig()
        if config.layers < 2 or config.width < 1:
            raise ValueError(f"DeclipNet needs layers >= 2 and width >= 1, got {config}")
        chans = [config.channels] + [config.width] * (config.layers - 1) + [config.channels]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(chans, chans[1:])):
            mods.append(nn.Conv2d(a, b, 3, padding=1))
            if i < config.layers - 1:
                mods.append(nn.SiLU())
        self.net = nn.Sequential(*mods)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return lr + self.net(lr * 2 - 1) * (self.config.unit_grey / 255.0)


def clipped_mask(lr_u8: torch.Tensor) -> torch.Tensor:
    """Where the 8-bit LR image is clipped (0 or 255): the pixels whose y the estimator is trained for."""
    return (lr_u8 == 0) | (lr_u8 == 255)


def declip_loss(net: DeclipNet, lr: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error (in grey levels) of the estimate against the flow's ``y`` at the clipped LR pixels;
    ``lr`` (B, C, h, w) is the 8-bit LR image on [0, 1] (``round(255 lr)`` recovers it)."""
    mask = clipped_mask(torch.round(lr * 255))
    if not mask.any():
        return (net(lr) * 0).sum()  # a batch without clipped pixels: no signal, but a graph to step on
    return ((net(lr) - y) * 255).pow(2)[mask].mean()
