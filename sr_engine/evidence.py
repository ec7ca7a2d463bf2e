"""The bank's evidence: the domain's reader reads every sample of a bank, and the share of samples per reading is
what the LR image allows under the model.

    reader = reader_for(engine.domain)              # None: no reader for this domain ("not available")
    ev = read_bank(reader, bank.images)             # BankEvidence: a reading and a confidence per sample
    ev.text()                                       # "5: 41 of 64, 6: 23 of 64"

Readers: ``mnist`` -> the digit classifier (:mod:`sr_engine.eval.judge`, ``data/classifiers/mnist-cnn.pt``),
confidence = its softmax probability of the reading; ``plates`` -> the plate reader (:mod:`sr_engine.eval.reader`,
``data/readers/plates-reader.pt``), confidence = the probability of its best CTC path. Any other domain (a
diffusers pipeline's ``""``) has none. Both readers were trained on training rows only.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .data import data_dir
from .eval.judge import DigitCNN, load_classifier, predict_digits
from .eval.reader import PlateReader, load_reader, read_plates

logger = logging.getLogger(__name__)

NOT_AVAILABLE = "not available"  # what an analyst sees for a model without a reader
DIGIT_SIDE = 28  # the classifier's input side


class BankReader(Protocol):
    """Reads a bank's samples: uint8 (N, H, W) or (N, H, W, 3) -> (N readings, float (N,) confidences on [0, 1])."""

    name: str

    def read(self, images: np.ndarray) -> tuple[list[str], np.ndarray]: ...


def _grey(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 4:  # RGB: the readers were trained on grey images
        images = images.astype(np.float32).mean(-1).round().astype(np.uint8)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"a bank to read must be uint8 (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}")
    return images


def _pad_to(images: np.ndarray, side: int) -> np.ndarray:
    """Centre smaller canvases on ``side`` x ``side`` (zero border, like MNIST's); larger ones are the classifier's
    own business (it centre-crops)."""
    _, h, w = images.shape
    ph, pw = max(side - h, 0), max(side - w, 0)
    if not ph and not pw:
        return images
    return np.pad(images, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))


@dataclass
class DigitReader:
    model: DigitCNN
    name: str = "digit-classifier"

    def read(self, images: np.ndarray) -> tuple[list[str], np.ndarray]:
        probs = predict_digits(self.model, _pad_to(_grey(images), DIGIT_SIDE))
        k = probs.argmax(1)
        return [str(int(d)) for d in k], probs[np.arange(len(k)), k].astype(np.float64)


@dataclass
class PlateTextReader:
    model: PlateReader
    name: str = "plate-reader"

    def read(self, images: np.ndarray) -> tuple[list[str], np.ndarray]:
        texts, logp = read_plates(self.model, _grey(images))
        return list(texts), np.exp(np.asarray(logp, dtype=np.float64)).clip(0.0, 1.0)


READER_FILES = {"mnist": ("classifiers", "mnist-cnn.pt"), "plates": ("readers", "plates-reader.pt")}


def reader_for(domain: str, root: str | Path | None = None) -> BankReader | None:
    """The reader of an engine's ``domain`` (``SREngine.domain``), loaded from ``root`` (default ``data/``);
    None when the domain has none or its weights are missing (logged)."""
    if domain not in READER_FILES:
        return None
    folder, name = READER_FILES[domain]
    path = Path(root or data_dir()) / folder / name
    if not path.is_file():
        logger.warning("no reader for domain %r: %s is missing; banks get no evidence", domain, path)
        return None
    return DigitReader(load_classifier(path)) if domain == "mnist" else PlateTextReader(load_reader(path))


@dataclass(frozen=True, eq=False)
class BankEvidence:
    reader: str  # the reader's name
    readings: tuple[str, ...]  # one per sample, in bank order
    confidence: np.ndarray  # float64 (N,) on [0, 1]

    @property
    def n(self) -> int:
        return len(self.readings)

    def counts(self) -> dict[str, int]:
        """reading -> number of samples, most frequent first (ties: the reading's text)."""
        c = Counter(self.readings)
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

    def shares(self) -> dict[str, float]:
        return {k: v / self.n for k, v in self.counts().items()} if self.n else {}

    def text(self) -> str:
        return distribution_text(self.counts())


def distribution_text(counts: dict[str, int]) -> str:
    """{"5": 41, "6": 23} -> "5: 41 of 64, 6: 23 of 64" (most frequent first); "not available" when empty."""
    total = sum(counts.values())
    if not total:
        return NOT_AVAILABLE
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k if k else '(blank)'}: {v} of {total}" for k, v in items)


def read_bank(reader: BankReader, images: np.ndarray) -> BankEvidence:
    readings, conf = reader.read(images)
    if len(readings) != len(images):
        raise ValueError(f"the reader returned {len(readings)} readings for {len(images)} samples")
    return BankEvidence(reader=reader.name, readings=tuple(readings), confidence=np.asarray(conf, dtype=np.float64))
