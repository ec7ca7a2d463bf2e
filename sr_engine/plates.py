"""Synthetic plates: 32x128 grayscale renders of 5-8 capital letters and digits, from fonts matplotlib ships.

    from sr_engine.plates import render_plates, eval_plates
    batch = render_plates(1000, seed=3)        # training renders (training fonts, training strings)
    ev = eval_plates()                          # the fixed evaluation set (held-out fonts and strings)

Each plate is dark text on a light plate: random font, size, position, stroke, slight rotation and shear,
an optional border and optional light noise, rendered at 4x and reduced with a box filter. Everything is a
function of the seed (numpy's ``default_rng``), so the same seed gives the same pixels.

Held out, never seen in training:
- **fonts**: :data:`EVAL_FONTS` (four faces of four families, one of them, Computer Modern Sans, absent from
  training entirely); training uses :data:`TRAIN_FONTS`.
- **strings**: a string is evaluation-only iff the first byte of its SHA-256 is below 26 (about 10% of all
  strings, :func:`is_eval_string`); the training generator redraws such strings, the evaluation set draws
  only them.

The LR image of a plate is the project's MATLAB bicubic D at x4 (8x32), as for the digits.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from functools import lru_cache, cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HR_SHAPE = (32, 128)  # height, width of a plate
ALPHABET = string.ascii_uppercase + string.digits  # the 36 characters a plate may hold
# groups that a low-resolution plate confuses; plates draw from them more often (see _char_weights)
CONFUSABLE_GROUPS: tuple[str, ...] = ("0ODQ", "1IL7T", "2Z", "5S", "6G", "8B3", "UVY", "MNHW")
CONFUSABLE_SHARE = 0.7  # probability that a character is drawn from the confusable groups
MIN_LEN, MAX_LEN = 5, 8

TRAIN_FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmtt10.ttf",
)
EVAL_FONTS: tuple[str, ...] = ("DejaVuSansMono-Bold.ttf", "DejaVuSerif-BoldItalic.ttf", "STIXGeneralBolIta.ttf",
                               "cmss10.ttf")
EVAL_SIZE = 300  # plates in the evaluation set
EVAL_SEED = 20261123  # the evaluation set's seed (fixed)
SUPERSAMPLE = 4  # render at 4x, then box-reduce

Split = Literal["train", "eval"]


def font_dir() -> Path:
    """The DejaVu fonts that matplotlib ships (a package file, no download)."""
    import matplotlib  # lazy: heavy to import (about 0.3 s), and only its data folder is needed here

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), size)


def is_eval_string(text: str) -> bool:
    """True iff ``text`` belongs to the evaluation strings (first SHA-256 byte < 26, about 10%)."""
    return hashlib.sha256(text.encode("ascii")).digest()[0] < 26


@lru_cache(maxsize=1)
def _char_weights() -> np.ndarray:
    conf = sorted(set("".join(CONFUSABLE_GROUPS)))
    w = np.array([(CONFUSABLE_SHARE / len(conf) if c in conf else 0.0)
                  + (1 - CONFUSABLE_SHARE) / len(ALPHABET) for c in ALPHABET])
    return w / w.sum()


def random_string(rng: np.random.Generator, split: Split) -> str:
    """5-8 characters weighted towards the confusable groups; redrawn until it belongs to ``split``."""
    while True:
        n = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        text = "".join(ALPHABET[i] for i in rng.choice(len(ALPHABET), size=n, p=_char_weights()))
        if is_eval_string(text) == (split == "eval"):
            return text


@dataclass
class PlateStyle:
    font: str
    height_frac: float  # glyph cap height / plate height
    stroke: int  # extra stroke width at the 4x render, pixels
    angle: float  # rotation, degrees
    shear: float  # horizontal shear (x += shear * y)
    border: bool
    noise: float  # std of additive Gaussian noise, grey levels (0 = none)
    fg: int  # text grey level
    bg: int  # plate grey level
    dx: float  # horizontal offset of the text centre, fraction of the free space (-1 .. 1)
    dy: float  # vertical offset, fraction of the free space


def random_style(rng: np.random.Generator, split: Split) -> PlateStyle:
    fonts = EVAL_FONTS if split == "eval" else TRAIN_FONTS
    return PlateStyle(
        font=fonts[int(rng.integers(len(fonts)))],
        height_frac=float(rng.uniform(0.5, 0.72)),
        stroke=int(rng.integers(0, 3)),
        angle=float(rng.uniform(-3, 3)),
        shear=float(rng.uniform(-0.15, 0.15)),
        border=bool(rng.random() < 0.5),
        noise=float(rng.uniform(1, 4)) if rng.random() < 0.5 else 0.0,
        fg=int(rng.integers(0, 60)),
        bg=int(rng.integers(190, 256)),
        dx=float(rng.uniform(-1, 1)),
        dy=float(rng.uniform(-1, 1)),
    )


def render_plate(text: str, style: PlateStyle, rng: np.random.Generator | None = None) -> np.ndarray:
    """One plate, uint8 (32, 128). ``rng`` draws the noise (needed only when ``style.noise > 0``)."""
    if not text or any(c not in ALPHABET for c in text):
        raise ValueError(f"a plate holds capital letters and digits only, got {text!r}")
    H, W = HR_SHAPE[0] * SUPERSAMPLE, HR_SHAPE[1] * SUPERSAMPLE
    # text mask: render large, measure the ink box, then fit it into the plate
    size = int(round(style.height_frac * H * 1.35))  # cap height is about 0.73 of the em size for these faces
    font = _font(style.font, size)
    left, top, right, bottom = font.getbbox(text, stroke_width=style.stroke)
    tw, th = right - left, bottom - top
    margin = 0.06 * W
    shrink = min(1.0, (W - 2 * margin) / max(tw, 1), (H * 0.86) / max(th, 1))
    if shrink < 1.0:
        font = _font(style.font, max(8, int(size * shrink)))
        left, top, right, bottom = font.getbbox(text, stroke_width=style.stroke)
        tw, th = right - left, bottom - top
    mask = Image.new("L", (W, H), 0)
    x0 = (W - tw) / 2 + style.dx * max(0.0, (W - 2 * margin - tw) / 2) - left
    y0 = (H - th) / 2 + style.dy * max(0.0, (H * 0.9 - th) / 2) - top
    ImageDraw.Draw(mask).text((x0, y0), text, fill=255, font=font, stroke_width=style.stroke, stroke_fill=255)
    # slight rotation and shear about the centre (inverse map, as PIL's affine transform takes it)
    a = np.deg2rad(style.angle)
    c, s, k = np.cos(a), np.sin(a), style.shear
    m = np.array([[c, -s], [s, c]]) @ np.array([[1.0, k], [0.0, 1.0]])
    inv = np.linalg.inv(m)
    cx, cy = W / 2, H / 2
    off = np.array([cx, cy]) - inv @ np.array([cx, cy])
    mask = mask.transform((W, H), Image.Transform.AFFINE,
                          (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]), Image.Resampling.BILINEAR)
    if style.border:
        d = ImageDraw.Draw(mask)
        w = SUPERSAMPLE * (1 + int(style.stroke > 1))
        d.rectangle((SUPERSAMPLE, SUPERSAMPLE, W - 1 - SUPERSAMPLE, H - 1 - SUPERSAMPLE), outline=255, width=w)
    m = np.asarray(mask, dtype=np.float64) / 255.0
    img = style.bg + (style.fg - style.bg) * m
    img = img.reshape(HR_SHAPE[0], SUPERSAMPLE, HR_SHAPE[1], SUPERSAMPLE).mean(axis=(1, 3))  # box reduce
    if style.noise > 0:
        if rng is None:
            raise ValueError("a noisy style needs an rng")
        img = img + rng.normal(0.0, style.noise, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@dataclass
class Plates:
    images: np.ndarray  # uint8 (N, 32, 128)
    texts: list[str]
    fonts: list[str]
    seed: int
    split: str


def render_plates(n: int, seed: int, split: Split = "train") -> Plates:
    """``n`` plates of ``split`` (fonts and strings of that split), deterministic in ``seed``."""
    if split not in ("train", "eval"):
        raise ValueError(f"unknown split {split!r}")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    images = np.empty((n, *HR_SHAPE), dtype=np.uint8)
    texts, fonts = [], []
    for i in range(n):
        text = random_string(rng, split)
        style = random_style(rng, split)
        images[i] = render_plate(text, style, rng)
        texts.append(text)
        fonts.append(style.font)
    return Plates(images=images, texts=texts, fonts=fonts, seed=seed, split=split)


@lru_cache(maxsize=1)
def eval_plates() -> Plates:
    """The fixed evaluation set: :data:`EVAL_SIZE` plates, held-out fonts and strings, seed :data:`EVAL_SEED`."""
    p = render_plates(EVAL_SIZE, EVAL_SEED, "eval")
    p.images.setflags(write=False)
    return p
