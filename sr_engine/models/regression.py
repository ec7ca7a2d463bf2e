"""The benchmark's one-answer baseline: a VDSR/EDSR-style residual CNN on the bicubic-upsampled LR image,
trained with L2 against HR (``sr_engine.bench.baselines`` trains and exports it; ``evaluate`` can add it)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

BASELINE_FORMAT = "sr_engine.bench-baseline/1"  # the "format" of an exported baseline network (bench.baselines)


class RegressionNet(nn.Module):
    """(B, 1, H, W) bicubic-upsampled LR on [0, 1] -> (B, 1, H, W) HR estimate: input + a residual from
    ``blocks`` conv-ReLU-conv blocks of ``width`` channels (last layer zero-initialised: starts at bicubic)."""

    def __init__(self, width: int = 64, blocks: int = 6):
        super().__init__()
        self.head = nn.Conv2d(1, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))
            for _ in range(blocks))
        self.tail = nn.Conv2d(width, 1, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, up: torch.Tensor) -> torch.Tensor:
        h = self.head(up)
        for b in self.blocks:
            h = h + b(h)
        return up + self.tail(h)


def load_baseline_file(path: str | Path, kind: str) -> dict:
    """An exported baseline checkpoint of ``kind`` ("regression", "pixel-ddpm"); a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        plates = " --plates" if path.name.startswith("plates-") else ""
        raise FileNotFoundError(f"baseline {path} not found; run `python -m sr_engine benchmark train-baselines"
                                f"{plates}` (or the benchmark with --quick, which trains tiny ones)")
    st = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(st, dict) or st.get("format") != BASELINE_FORMAT or st.get("kind") != kind:
        got = (st.get("format"), st.get("kind")) if isinstance(st, dict) else type(st).__name__
        raise ValueError(f"{path} is not a {kind} baseline: expected format {BASELINE_FORMAT!r} and kind {kind!r}, "
                         f"got {got}")
    return st


def load_regression_file(path: str | Path) -> RegressionNet:
    """The regression net of an exported baseline file, on the CPU, in eval mode, frozen."""
    st = load_baseline_file(path, "regression")
    net = RegressionNet(**st["config"])
    net.load_state_dict(st["state"])
    return net.eval().requires_grad_(False)
