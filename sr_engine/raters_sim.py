"""Simulated rater panels for the consensus model (pure numpy): who reads how well, and who types what is shown.

A simulated rater reads an image's true label through a confusion matrix (rows = truth), or, with probability
``follow``, types a label drawn from what the bank shows (the reading shares of the displayed samples), as a
human does when every shown sample is the wrong digit. The kinds of the mixed panel the study uses:

- careful: right with probability ``accuracy`` (0.95), errors spread evenly;
- careless: the same at a lower accuracy (0.7);
- biased: like careful, but an error lands on one favourite label ``toward`` with probability ``strength``;
- spammer: a uniformly random label, whatever the image;
- permuted: types ``(k + shift) % K`` for ``k`` (systematically wrong; only gold items reveal it);
- confuser (plates): like careful, but reads one character ``src`` as another ``dst`` (8 as B) at a ``rate``.

    rng = np.random.default_rng(0)
    panel = mixed_panel(10)
    ratings = simulate_ratings(truth, panel, rng, coverage=0.8)   # list[consensus.Rating]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .consensus import DIGITS, Rating


@dataclass(frozen=True, eq=False)
class SimRater:
    name: str
    confusion: np.ndarray  # float (K, K), rows = true label, columns = the typed label, rows sum to 1
    follow: float = 0.0  # probability of typing what the bank shows instead of reading the truth


def careful(K: int, accuracy: float = 0.95, name: str = "careful", follow: float = 0.0) -> SimRater:
    off = (1.0 - accuracy) / (K - 1)
    conf = np.full((K, K), off)
    np.fill_diagonal(conf, accuracy)
    return SimRater(name, conf, follow)


def careless(K: int, accuracy: float = 0.7, name: str = "careless", follow: float = 0.0) -> SimRater:
    return careful(K, accuracy, name, follow)


def biased(K: int, toward: int, accuracy: float = 0.9, strength: float = 0.8, name: str = "biased",
           follow: float = 0.0) -> SimRater:
    """Right with probability ``accuracy``; an error is ``toward`` with probability ``strength`` (when the truth is
    not ``toward`` itself), otherwise spread evenly."""
    conf = careful(K, accuracy).confusion
    for k in range(K):
        if k == toward:
            continue
        err = 1.0 - accuracy
        conf[k] = err * (1.0 - strength) / (K - 1)
        conf[k, toward] += err * strength
        conf[k, k] = accuracy
    return SimRater(name, conf / conf.sum(1, keepdims=True), follow)


def spammer(K: int, name: str = "spammer") -> SimRater:
    return SimRater(name, np.full((K, K), 1.0 / K))


def permuted(K: int, shift: int = 1, accuracy: float = 0.95, name: str = "permuted") -> SimRater:
    conf = careful(K, accuracy).confusion
    return SimRater(name, np.roll(conf, shift, axis=1))


def confuser(K: int, src: int, dst: int, rate: float = 0.5, accuracy: float = 0.95, name: str = "biased",
             follow: float = 0.0) -> SimRater:
    """Careful at ``accuracy``, except that a true ``src`` is typed as ``dst`` with probability ``rate`` (the rest of
    that row right, or spread evenly in the careful proportions)."""
    if src == dst or not 0 <= rate < 1:
        raise ValueError(f"need src != dst and 0 <= rate < 1, got {src}, {dst}, {rate}")
    conf = careful(K, accuracy).confusion
    conf[src] *= 1.0 - rate
    conf[src, dst] += rate
    return SimRater(name, conf, follow)


def mixed_panel(K: int = 10, toward: int = 0, follow: float = 0.0) -> list[SimRater]:
    """The mixed panel of seven: 3 careful, 2 careless, 1 biased toward ``toward``, 1 spammer."""
    return ([careful(K, name=f"careful-{i}", follow=follow) for i in range(3)]
            + [careless(K, name=f"careless-{i}", follow=follow) for i in range(2)]
            + [biased(K, toward, follow=follow), spammer(K)])


def simulate_ratings(truth: np.ndarray, panel: Sequence[SimRater], rng: np.random.Generator, *,
                     labels: Sequence[str] = DIGITS, coverage: float = 1.0,
                     shown: np.ndarray | None = None) -> list[Rating]:
    """truth: int (n,) label indices; shown: float (n, K) reading shares of the displayed samples (needed when a
    rater follows). Each rater rates each image with probability ``coverage`` (image ids are 0..n-1, rater ids the
    panel's names)."""
    truth = np.asarray(truth, dtype=np.int64)
    K = len(labels)
    out = []
    for r in panel:
        if r.confusion.shape != (K, K):
            raise ValueError(f"rater {r.name}: confusion {r.confusion.shape} does not fit {K} labels")
        if r.follow > 0 and shown is None:
            raise ValueError(f"rater {r.name} follows what is shown: pass shown")
        rated = rng.random(len(truth)) < coverage
        follows = rng.random(len(truth)) < r.follow
        u = rng.random(len(truth))
        for i in np.flatnonzero(rated):
            dist = shown[i] if follows[i] else r.confusion[truth[i]]
            k = min(int(np.searchsorted(np.cumsum(dist), u[i] * dist.sum(), side="right")), K - 1)
            out.append(Rating(image=int(i), rater=r.name, reading=labels[k]))
    return out


def simulate_strings(truth: Sequence[str], panel: Sequence[SimRater], rng: np.random.Generator, *,
                     alphabet: str, coverage: float = 1.0,
                     shown: Sequence[Mapping[str, float]] | None = None) -> list[Rating]:
    """Plates: each rater reads every character of a true string through its confusion matrix over ``alphabet``
    (errors independent per position: the assumption of the per-position consensus), or, with probability
    ``r.follow``, types a whole string drawn from ``shown[i]`` (the bank's reading counts or shares of plate i;
    needed when a rater follows)."""
    K = len(alphabet)
    out = []
    for r in panel:
        if r.confusion.shape != (K, K):
            raise ValueError(f"rater {r.name}: confusion {r.confusion.shape} does not fit {K} characters")
        if r.follow > 0 and shown is None:
            raise ValueError(f"rater {r.name} follows what is shown: pass shown")
        cdf = np.cumsum(r.confusion, axis=1)
        for i, text in enumerate(truth):
            if rng.random() >= coverage:
                continue
            if r.follow > 0 and rng.random() < r.follow and sum(shown[i].values()) > 0:
                texts = sorted(shown[i])
                w = np.array([shown[i][t] for t in texts], dtype=np.float64)
                out.append(Rating(image=i, rater=r.name, reading=texts[int(rng.choice(len(texts), p=w / w.sum()))]))
                continue
            chars = []
            for c in text:
                row = cdf[alphabet.index(c)]
                chars.append(alphabet[min(int(np.searchsorted(row, rng.random() * row[-1], side="right")), K - 1)])
            out.append(Rating(image=i, rater=r.name, reading="".join(chars)))
    return out
