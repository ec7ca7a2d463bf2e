"""Aggregation: pure functions over plain records (no database, no engine).

Votes on one image's bank of ``n`` samples come as :class:`Vote` records (a rater's top-k picks, rank 1 best).

- approval count: how many raters picked a sample (any rank);
- Borda score: a pick at rank r of k earns ``k - r + 1`` points;
- Plackett-Luce worth: the maximum a-posteriori worths of the top-k partial rankings (each a sequence of choices,
  the first from all n samples, the next from the rest, ...), fitted by Hunter's MM algorithm with a small Gamma
  prior so that never-picked samples keep a finite, small worth; normalised to sum to 1;
- ranking ("most-voted", docs/design.md): approval count, ties broken by Borda score, then by the lower sample index;
- the consensus reading: the most frequent reading (after trimming surrounding whitespace) and its share, e.g.
  22 of 30 raters read "5": share 0.733; a tie is reported as such and resolved by the lexically first reading;
- the readings per position (:mod:`annotation.positions`): the readings aligned to positions, the consensus
  string, each position's distribution and Krippendorff's alpha over positions (plates; trivial for one digit).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sr_engine.ensemble import most_voted, vote_ranking

from .positions import PositionalReading, positional_reading


@dataclass(frozen=True)
class Vote:
    """One rater's submission on one image: ``picks`` are bank sample indices, best first."""

    rater: int
    image: int
    picks: tuple[int, ...]
    reading: str | None = None
    seconds: float | None = None  # time on task (served -> submitted)


@dataclass(frozen=True)
class ConsensusReading:
    text: str | None  # None: nobody gave a reading
    count: int  # raters who gave exactly this reading
    total: int  # raters who gave any reading
    share: float  # count / total (0 when total is 0)
    tied: bool  # another reading has the same count
    counts: dict[str, int]


@dataclass(frozen=True)
class ImageAggregate:
    image: int
    n_votes: int
    approval: list[int]  # per sample index
    borda: list[int]
    plackett_luce: list[float]
    order: list[int]  # sample indices, most-voted first
    top: list[int]  # the first ensemble_size of order (only samples with at least one vote)
    consensus: ConsensusReading
    positions: PositionalReading  # the readings aligned per position (empty without readings)


def _check(votes: Sequence[Vote], n: int, k: int | None = None) -> None:
    for v in votes:
        if len(set(v.picks)) != len(v.picks) or any(not 0 <= p < n for p in v.picks):
            raise ValueError(f"rater {v.rater}: picks {v.picks} are not distinct indices in [0, {n})")
        if k is not None and len(v.picks) != k:
            raise ValueError(f"rater {v.rater}: {len(v.picks)} picks, expected {k}")


def approval_counts(votes: Sequence[Vote], n: int) -> np.ndarray:
    """int64 (n,): raters who picked each sample."""
    _check(votes, n)
    out = np.zeros(n, dtype=np.int64)
    for v in votes:
        out[list(v.picks)] += 1
    return out


def borda_scores(votes: Sequence[Vote], n: int, k: int) -> np.ndarray:
    """int64 (n,): sum over picks of ``k - rank + 1`` (rank 1 = best earns k points)."""
    _check(votes, n, k)
    out = np.zeros(n, dtype=np.int64)
    for v in votes:
        for r, p in enumerate(v.picks, start=1):
            out[p] += k - r + 1
    return out


def plackett_luce(votes: Sequence[Vote], n: int, *, prior: float = 0.1, iters: int = 500,
                  tol: float = 1e-10) -> np.ndarray:
    """float64 (n,) worths summing to 1 (MAP under independent Gamma(1 + prior, prior) priors; prior=0 gives the
    maximum-likelihood estimate, which needs every sample to be picked at least once and beaten at least once).

    MM update (Hunter 2004, Caron & Doucet 2012): ``w_i = (W_i + prior) / (sum_j sum_{stages s of ranking j where
    i is still available} 1 / sum_{l available at s} w_l + prior)`` with W_i the number of stages i was chosen.
    """
    _check(votes, n)
    if n == 1:
        return np.ones(1)
    wins = np.zeros(n)
    for v in votes:
        wins[list(v.picks)] += 1
    w = np.full(n, 1.0 / n)
    for _ in range(iters):
        denom = np.full(n, prior, dtype=np.float64)
        for v in votes:
            avail = np.ones(n, dtype=bool)
            for p in v.picks:
                denom[avail] += 1.0 / w[avail].sum()
                avail[p] = False
        new = (wins + prior) / denom  # no renormalising inside: the prior fixes the scale of the MAP
        done = np.abs(new / new.sum() - w / w.sum()).max() < tol
        w = new
        if done:
            break
    return w / w.sum()


def ranking(approval: Sequence[int], borda: Sequence[int]) -> list[int]:
    """Sample indices, most-voted first: approval desc, then Borda desc, then index asc (``sr_engine.ensemble``)."""
    return vote_ranking(approval, borda)


def top_m(votes: Sequence[Vote], n: int, k: int, m: int) -> list[int]:
    """The m most-voted sample indices (fewer if fewer samples were ever picked): ``sr_engine.ensemble.most_voted``."""
    _check(votes, n, k)
    return most_voted([v.picks for v in votes], n, m)


def normalise_reading(text: str) -> str:
    """Readings are compared after trimming surrounding whitespace (stored verbatim)."""
    return text.strip()


def consensus_reading(readings: Iterable[str | None]) -> ConsensusReading:
    counts = Counter(normalise_reading(r) for r in readings if r is not None and r.strip())
    total = sum(counts.values())
    if not total:
        return ConsensusReading(None, 0, 0, 0.0, False, {})
    best = max(counts.values())
    leaders = sorted(t for t, c in counts.items() if c == best)
    return ConsensusReading(leaders[0], best, total, best / total, len(leaders) > 1, dict(counts))


def aggregate_image(votes: Sequence[Vote], image: int, n: int, k: int, m: int) -> ImageAggregate:
    """Everything aggregation says about one image (``votes`` of that image only)."""
    votes = [v for v in votes if v.image == image]
    a = approval_counts(votes, n)
    b = borda_scores(votes, n, k)
    order = ranking(a, b)
    return ImageAggregate(image=image, n_votes=len(votes), approval=a.tolist(), borda=b.tolist(),
                          plackett_luce=plackett_luce(votes, n).tolist(), order=order,
                          top=[i for i in order if a[i] > 0][:m],
                          consensus=consensus_reading(v.reading for v in votes),
                          positions=positional_reading(v.reading for v in votes))
