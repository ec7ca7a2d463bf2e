"""Pictures of banks: a bank as one enlarged grid (:func:`bank_grid`) and rows of tiles (:func:`save_tile_rows`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def bank_grid(images: np.ndarray, cols: int = 8, zoom: int = 4, pad: int = 2) -> Image.Image:
    """uint8 (n, H, W[, 3]) -> one PIL image of the bank, nearest-neighbour enlarged."""
    n, h, w = images.shape[:3]
    rows = -(-n // cols)
    rgb = images.ndim == 4
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad) + ((3,) if rgb else ()), 128, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    img = Image.fromarray(canvas)
    return img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)


def save_tile_rows(rows: list[list[np.ndarray]], path: str | Path, zoom: int) -> Path:
    """A PNG of uint8 tiles, one list per row, each tile framed in grey, enlarged ``zoom`` times (nearest)."""
    img = Image.fromarray(np.concatenate(
        [np.concatenate([np.pad(t, 1, constant_values=128) for t in tiles], axis=1) for tiles in rows], axis=0))
    img = img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def enlarge_nearest(lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (h, w) -> uint8 (H, W) = ``size``, nearest-neighbour (how an LR image is shown beside HR tiles)."""
    return np.asarray(Image.fromarray(lr).resize((size[1], size[0]), Image.NEAREST))
