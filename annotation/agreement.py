"""Agreement between raters: pure functions over :class:`~annotation.aggregate.Vote` records.

- Krippendorff's alpha (nominal, the ``krippendorff`` package) per image on picks: units = the bank's samples,
  each rater's value for a sample = the rank they gave it, 0 if not picked;
- alpha across the project on readings: units = images, values = the (trimmed) reading text; per image only the
  consensus reading's share is reported (docs/design.md), not an alpha;
- pairwise Jaccard of the raters' pick sets on an image (mean over pairs);
- each rater against the consensus, leave-one-out (the consensus of the *other* raters, so nobody agrees with
  themselves): Jaccard of the rater's picks with the others' top-k, and whether the rater's reading is the
  others' consensus reading;
- accuracy on gold items (readings against the known label); median time per task.

Alpha is None where it is undefined: fewer than two raters, or a single value in the whole table.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import krippendorff
import numpy as np

from .aggregate import Vote, consensus_reading, normalise_reading, top_m


@dataclass(frozen=True)
class ImageAgreement:
    image: int
    n_raters: int
    alpha_picks: float | None
    jaccard_mean: float | None  # mean over rater pairs (None: fewer than two raters)
    reading_share: float  # the consensus reading's share (0: no readings)


@dataclass(frozen=True)
class RaterAgreement:
    rater: int
    n_tasks: int
    jaccard_vs_consensus: float | None  # mean over images that had other raters
    reading_agreement: float | None  # share of the rater's readings equal to the others' consensus
    gold_total: int
    gold_correct: int
    gold_accuracy: float | None
    median_seconds: float | None


@dataclass(frozen=True)
class ProjectAgreement:
    alpha_readings: float | None
    images: list[ImageAgreement]
    raters: list[RaterAgreement]
    median_seconds: float | None


def _alpha(data: np.ndarray) -> float | None:
    """Nominal alpha of a (raters, units) table with NaN for missing values."""
    if data.shape[0] < 2 or data.shape[1] < 1:
        return None
    pairable = (~np.isnan(data)).sum(0) >= 2
    if not pairable.any():
        return None
    values = np.unique(data[:, pairable][~np.isnan(data[:, pairable])])
    if len(values) < 2:
        return None  # a single value everywhere: no variation to agree on, alpha is undefined
    try:
        a = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    except (ValueError, ZeroDivisionError):
        return None
    return a if math.isfinite(a) else None


def picks_table(votes: Sequence[Vote], n: int) -> np.ndarray:
    """float (raters, n): each rater's rank for each sample, 0 where not picked (raters sorted by id)."""
    raters = sorted({v.rater for v in votes})
    row = {r: i for i, r in enumerate(raters)}
    data = np.zeros((len(raters), n))
    for v in votes:
        for rank, p in enumerate(v.picks, start=1):
            data[row[v.rater], p] = rank
    return data


def alpha_on_picks(votes: Sequence[Vote], n: int) -> float | None:
    """Alpha on one image's picks (``votes`` of that image; units = its n samples, values = rank or 0)."""
    return _alpha(picks_table(votes, n))


def readings_table(votes: Sequence[Vote]) -> np.ndarray:
    """float (raters, images): a code per distinct trimmed reading, NaN where a rater gave none."""
    raters = sorted({v.rater for v in votes})
    images = sorted({v.image for v in votes})
    codes: dict[str, int] = {}
    data = np.full((len(raters), len(images)), np.nan)
    ri, ii = {r: i for i, r in enumerate(raters)}, {m: i for i, m in enumerate(images)}
    for v in votes:
        if v.reading is not None and v.reading.strip():
            data[ri[v.rater], ii[v.image]] = codes.setdefault(normalise_reading(v.reading), len(codes))
    return data


def alpha_on_readings(votes: Sequence[Vote]) -> float | None:
    """Alpha on readings across the project (units = images)."""
    return _alpha(readings_table(votes))


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def pairwise_jaccard(votes: Sequence[Vote]) -> float | None:
    """Mean Jaccard index of pick sets over all pairs of raters of one image."""
    sets = [set(v.picks) for v in votes]
    pairs = [jaccard(a, b) for a, b in combinations(sets, 2)]
    return float(np.mean(pairs)) if pairs else None


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def agreement_report(votes: Sequence[Vote], n_by_image: Mapping[int, int], k: int,
                     labels: Mapping[int, str] | None = None) -> ProjectAgreement:
    """Everything above for a project. ``n_by_image``: bank size per image; ``labels``: known readings of the
    gold items (image -> label)."""
    labels = labels or {}
    by_image: dict[int, list[Vote]] = defaultdict(list)
    for v in votes:
        by_image[v.image].append(v)
    images = []
    for img in sorted(by_image):
        vs = by_image[img]
        images.append(ImageAgreement(img, len(vs), alpha_on_picks(vs, n_by_image[img]), pairwise_jaccard(vs),
                                     consensus_reading(v.reading for v in vs).share))
    per_rater: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for img, vs in by_image.items():
        for v in vs:
            acc = per_rater[v.rater]
            acc["tasks"].append(img)
            if v.seconds is not None:
                acc["seconds"].append(float(v.seconds))
            others = [o for o in vs if o.rater != v.rater]
            if others:
                ref = top_m(others, n_by_image[img], k, k)
                acc["jaccard"].append(jaccard(set(v.picks), set(ref)))
                cons = consensus_reading(o.reading for o in others)
                if v.reading is not None and v.reading.strip() and cons.text is not None:
                    acc["reading"].append(normalise_reading(v.reading) == cons.text)
            if img in labels:
                acc["gold"].append(v.reading is not None and normalise_reading(v.reading) == labels[img].strip())
    raters = []
    for r in sorted(per_rater):
        acc = per_rater[r]
        gold = acc["gold"]
        raters.append(RaterAgreement(
            rater=r, n_tasks=len(acc["tasks"]),
            jaccard_vs_consensus=float(np.mean(acc["jaccard"])) if acc["jaccard"] else None,
            reading_agreement=float(np.mean(acc["reading"])) if acc["reading"] else None,
            gold_total=len(gold), gold_correct=int(sum(gold)),
            gold_accuracy=float(np.mean(gold)) if gold else None, median_seconds=_median(acc["seconds"])))
    seconds = [float(v.seconds) for v in votes if v.seconds is not None]
    return ProjectAgreement(alpha_on_readings(votes), images, raters, _median(seconds))
