"""A calibrated consensus over raters' readings: Dawid-Skene with gold anchors and the bank's evidence.

Pure numpy, no database, no engine: the annotation services and the benchmark's simulated-rater study both call it.

Model (Dawid & Skene 1979, fitted by EM). Image ``i`` has a true reading ``k`` among ``K`` labels (the ten digits,
or the 36 plate characters per position). Rater ``r`` reads ``l`` with probability ``C_r[k, l]`` (a confusion
matrix per rater, rows = truth). The prior over image ``i``'s true reading is

    p_i(k) ∝ pi_k * (e_ik + eps) ** beta

where ``pi`` is the class prior (fitted, or uniform) and ``e_i`` the **bank's evidence**: the share of the bank's
samples that the domain's reader (the digit classifier, the plate reader) reads as ``k``. ``beta = 0`` is the plain
Dawid-Skene; ``eps`` keeps a reading the bank never shows possible. Optionally (``follow``) a vote copies what the
bank *shows* instead of reading the truth: ``p(l | k) = (1 - f) C_r[k, l] + f s_il`` with ``s_i`` the reading shares
of the displayed samples and ``f`` one rate shared by all raters (fixed, or fitted by EM as a mixture indicator),
so that a crowd typing what a wrong bank shows is not mistaken for independent evidence. Priors (MAP-style
pseudo-counts added to the expected counts): a confusion row gets ``diagonal_pseudocount`` on its diagonal and
``off_diagonal_pseudocount`` spread evenly over the other ``K - 1`` cells; the class prior gets
``class_pseudocount`` per class; a fitted follow rate gets a Beta pseudo-count pair. ``confusion="one-coin"``
keeps one accuracy per rater with errors spread evenly (the plates' default: 36 x 36 rows are too sparse), and
``shrinkage`` pulls a full row toward the rater's one-coin row. **Gold items** (known true
reading) have their posterior fixed to the truth during EM, so they anchor every rater who rated them (a rater who
systematically types ``k + 1`` for ``k`` is mapped back). Images with no votes keep their prior.

Readings: ``None``, blank and ``?`` (:data:`UNREADABLE`) are no vote; readings are compared after ``strip()`` (the
caller normalises, e.g. ``annotation.positions.normalise`` for plates). A reading outside the label set is refused
with a ``ValueError`` (``unknown="refuse"``, the default: a typo should not silently become a class) or counted in
one extra :data:`OTHER` bucket (``unknown="other"``), which then also exists in every posterior.

Calibration: ``ConsensusConfig.temperature`` is applied to the final posteriors; fitting it, and measuring
calibration (ECE, reliability diagram, risk-coverage), is :mod:`sr_engine.reliability`'s job.

Plates (:func:`fit_plate_consensus`): readings of an image are kept when they have the image's length (the gold
string's length; else the most common length among its readings; ties: the length the bank's evidence favours,
then the longer) and dropped otherwise (counted in ``dropped``); per-position alignment with gaps is
``annotation.positions``' job for display, while this model needs one frame of positions per image. Every
(image, position) is one item of the same EM, so a rater's confusion matrix over characters is shared by all
positions. The string's probability is the product of its positions' probabilities, which assumes that, given the
truth, a rater's errors at different positions are independent and that the length is right: it is the probability
of the string *given its length*.

Why not crowd-kit: it implements Dawid-Skene (gold labels included), GLAD, MACE and ROVER, but installing it
brings transformers, nltk and scikit-learn into a project whose engine layer needs none of them, and none of its
models takes a per-image prior from the bank's evidence or a term for raters who type what the bank shows. This
module is a few hundred lines of numpy with its own tests, so the model that is calibrated and reported is exactly
the one the tests exercise.

Fitting the follow rate needs the evidence prior (``beta > 0``): without it nothing ties the truth to what is shown,
and EM can explain every vote as copying (a warning is logged). The defaults (``beta``, ``eps``, the pseudo-counts)
are starting points, not tuned; the benchmark's study fits them, and the temperature, on calibration projects made
from training rows.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from typing import Any, Literal

import numpy as np

from .reliability import apply_temperature, resolved, softmax_rows

logger = logging.getLogger(__name__)

UNREADABLE = "?"  # typed by a rater who cannot read it: no vote
OTHER = "<other>"  # the bucket for readings outside the label set (unknown="other")
DIGITS: tuple[str, ...] = tuple("0123456789")
_TINY = 1e-300


@dataclass(frozen=True)
class Rating:
    """One rater's reading of one image (``None``, blank or ``?``: no reading); one per (image, rater): a revised
    reading replaces the earlier one before it gets here."""

    image: Hashable
    rater: Hashable
    reading: str | None


@dataclass(frozen=True)
class ConsensusConfig:
    beta: float = 1.0  # exponent on the bank's evidence in the prior (0: the evidence has no effect)
    eps: float = 0.02  # added to every evidence share before tempering (a reading the bank never shows stays possible)
    diagonal_pseudocount: float = 1.0  # Dirichlet pseudo-count on a confusion row's diagonal (reading right)
    off_diagonal_pseudocount: float = 0.5  # total pseudo-count spread over a row's K - 1 other cells
    class_pseudocount: float = 1.0  # Dirichlet pseudo-count per class of the class prior
    class_prior: Literal["fit", "uniform"] = "fit"
    confusion: Literal["full", "one-coin"] = "full"  # one-coin: one accuracy per rater, errors spread evenly
    shrinkage: float = 0.0  # full: pseudo-counts per row pulling it toward the rater's one-coin row (sparse rows)
    follow: Literal["off", "fixed", "fit"] = "off"  # model votes that copy what the bank shows
    follow_rate: float = 0.1  # f: the fixed value, or where "fit" starts
    follow_pseudocounts: tuple[float, float] = (1.0, 1.0)  # Beta prior (copied, read) of a fitted f
    unknown: Literal["refuse", "other"] = "refuse"  # readings outside the label set
    temperature: float = 1.0  # applied to the final (non-gold) posteriors; fit_temperature on calibration rows
    max_iter: int = 500  # EM iterations at most
    tol: float = 1e-7  # stop when no posterior entry moves by more than this

    def __post_init__(self):
        if self.beta < 0 or self.eps <= 0:
            raise ValueError(f"need beta >= 0 and eps > 0, got beta={self.beta}, eps={self.eps}")
        if min(self.diagonal_pseudocount, self.off_diagonal_pseudocount, self.class_pseudocount) < 0:
            raise ValueError("pseudo-counts must be >= 0")
        if self.off_diagonal_pseudocount + self.diagonal_pseudocount <= 0:
            raise ValueError("a confusion row needs a positive pseudo-count (diagonal or off-diagonal)")
        if self.shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0, got {self.shrinkage}")
        for name, value, allowed in (("class_prior", self.class_prior, ("fit", "uniform")),
                                     ("confusion", self.confusion, ("full", "one-coin")),
                                     ("follow", self.follow, ("off", "fixed", "fit")),
                                     ("unknown", self.unknown, ("refuse", "other"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not 0 <= self.follow_rate < 1:
            raise ValueError(f"follow_rate must be in [0, 1), got {self.follow_rate}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready), e.g. to store a project's consensus settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConsensusConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        names = {f.name for f in fields(cls)}
        if extra := set(d) - names:
            raise ValueError(f"unknown consensus settings: {sorted(extra)}")
        d = dict(d)
        if "follow_pseudocounts" in d:
            d["follow_pseudocounts"] = tuple(d["follow_pseudocounts"])
        return cls(**d)


# ---- the EM on integer codes ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DawidSkeneFit:
    """What the EM estimates (integer codes; :func:`fit_consensus` maps them back to images, raters, labels)."""

    posteriors: np.ndarray  # float64 (n_items, K), rows sum to 1; gold rows one-hot; no temperature applied
    confusion: np.ndarray  # float64 (n_raters, K, K): rows = true reading, columns = the rater's reading
    class_prior: np.ndarray  # float64 (K,)
    follow_rate: float  # f (0 with follow="off")
    iterations: int
    converged: bool

    def accuracy(self) -> np.ndarray:
        """float64 (n_raters,): each rater's probability of reading right, weighted by the class prior."""
        return np.einsum("rkk,k->r", self.confusion, self.class_prior)


def _normalise_rows(a: np.ndarray) -> np.ndarray:
    return a / a.sum(-1, keepdims=True)


def dawid_skene(items: np.ndarray, raters: np.ndarray, votes: np.ndarray, n_items: int, n_raters: int,
                n_classes: int, *, gold: np.ndarray | None = None, log_prior: np.ndarray | None = None,
                shown: np.ndarray | None = None, config: ConsensusConfig = ConsensusConfig()) -> DawidSkeneFit:
    """EM for Dawid-Skene over integer codes.

    items, raters, votes: int arrays (V,) (one vote each: item index, rater index, class index); gold: int (n_items,),
    -1 where unknown; log_prior: float (n_items, K), an image-specific log prior added to log(pi) (the tempered
    evidence), zeros if None; shown: float (n_items, K), the reading shares of what raters were shown (rows sum to
    1), needed when ``config.follow`` is not "off".
    """
    items, raters, votes = (np.asarray(a, dtype=np.int64) for a in (items, raters, votes))
    K = n_classes
    if not (items.shape == raters.shape == votes.shape and items.ndim == 1):
        raise ValueError("items, raters and votes must be 1-D arrays of one length")
    if len(items) and (items.min() < 0 or items.max() >= n_items or raters.min() < 0 or raters.max() >= n_raters
                       or votes.min() < 0 or votes.max() >= K):
        raise ValueError("a vote's item, rater or class index is out of range")
    gold = np.full(n_items, -1, dtype=np.int64) if gold is None else np.asarray(gold, dtype=np.int64)
    if gold.shape != (n_items,) or gold.max(initial=-1) >= K:
        raise ValueError(f"gold must be (n_items,) class indices or -1, got shape {gold.shape}")
    log_prior = np.zeros((n_items, K)) if log_prior is None else np.asarray(log_prior, dtype=np.float64)
    if log_prior.shape != (n_items, K):
        raise ValueError(f"log_prior must be (n_items, K) = {(n_items, K)}, got {log_prior.shape}")
    follow = config.follow != "off"
    if follow:
        shown = np.asarray(shown, dtype=np.float64) if shown is not None else None
        if shown is None or shown.shape != (n_items, K):
            raise ValueError(f"follow={config.follow!r} needs shown of shape {(n_items, K)}")
        shown_v = shown[items, votes][:, None]  # (V, 1): the share of what was shown that this vote names
    is_gold = gold >= 0
    gold_onehot = np.eye(K)[gold[is_gold]]

    # pseudo-counts of a confusion row: diagonal, and the off-diagonal total spread over K - 1 cells
    off = config.off_diagonal_pseudocount / max(K - 1, 1)
    conf_prior = np.full((K, K), off)
    np.fill_diagonal(conf_prior, config.diagonal_pseudocount)
    a_copy, a_read = config.follow_pseudocounts

    # initialise with the vote shares (majority vote), times the image prior
    counts = np.zeros((n_items, K))
    np.add.at(counts, (items, votes), 1.0)
    post = _normalise_rows((counts + 1e-2) * softmax_rows(log_prior))
    post[is_gold] = gold_onehot
    f = config.follow_rate if follow else 0.0
    read = np.ones((len(items), 1))  # P(the vote read the truth | class), first M-step: every vote read

    def m_step(post: np.ndarray, read: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = post[items] * read  # (V, K): expected count of (true class k, this vote read)
        acc = np.zeros((n_raters * K, K))  # [rater * K + reading, true class]
        np.add.at(acc, raters * K + votes, w)
        counts = acc.reshape(n_raters, K, K).transpose(0, 2, 1)  # [rater, true class, reading]
        if config.confusion == "one-coin" or config.shrinkage > 0:
            right = np.einsum("rkk->r", counts) + config.diagonal_pseudocount
            total = counts.sum((1, 2)) + config.diagonal_pseudocount + config.off_diagonal_pseudocount
            p = right / total  # (R,): each rater's one-coin accuracy
            coin = np.broadcast_to(((1 - p) / max(K - 1, 1))[:, None, None], counts.shape).copy()
            coin[:, np.arange(K), np.arange(K)] = p[:, None]
            if config.confusion == "one-coin":
                return coin, class_prior(post)
            counts = counts + config.shrinkage * coin
        conf = _normalise_rows(counts + conf_prior)
        return conf, class_prior(post)

    def class_prior(post: np.ndarray) -> np.ndarray:
        if config.class_prior == "uniform":
            return np.full(K, 1.0 / K)
        pi = post.sum(0) + config.class_pseudocount
        return pi / pi.sum()

    conf, pi = m_step(post, read)
    converged, it = False, 0
    for it in range(1, config.max_iter + 1):  # noqa: B007 (the count is returned after the loop)
        # E-step
        lik = conf[raters, :, votes]  # (V, K): P(this reading | true class k), had the rater read
        if follow:
            mixed = (1.0 - f) * lik + f * shown_v
            read = (1.0 - f) * lik / np.maximum(mixed, _TINY)
            lik = mixed
        log_post = np.log(pi)[None, :] + log_prior
        np.add.at(log_post, items, np.log(np.maximum(lik, _TINY)))
        new = softmax_rows(log_post)
        new[is_gold] = gold_onehot
        delta = np.abs(new - post).max(initial=0.0)
        post = new
        # M-step
        conf, pi = m_step(post, read)
        if config.follow == "fit" and len(items):
            copied = float((post[items] * (1.0 - read)).sum())
            f = min((copied + a_copy) / (len(items) + a_copy + a_read), 0.999)  # pseudo-counts, as above
        if delta < config.tol:
            converged = True
            break
    if not converged:
        logger.warning("Dawid-Skene EM stopped after %d iterations without converging (tol %g)", it, config.tol)
    return DawidSkeneFit(posteriors=post, confusion=conf, class_prior=pi, follow_rate=float(f), iterations=it,
                         converged=converged)


# ---- evidence -----------------------------------------------------------------------------------------------
def evidence_log_prior(evidence: np.ndarray, beta: float, eps: float) -> np.ndarray:
    """float (n, K) evidence shares (rows sum to 1, or all zero: no evidence) -> beta * log(e + eps), zero rows
    where there is no evidence."""
    evidence = np.asarray(evidence, dtype=np.float64)
    out = beta * np.log(evidence + eps)
    out[evidence.sum(-1) <= 0] = 0.0
    return out


# ---- categorical consensus (digits, any label set) ------------------------------------------------------------
@dataclass(frozen=True)
class ImageConsensus:
    image: Hashable
    reading: str  # the consensus reading: the posterior's most probable label (ties: the first label)
    probability: float  # its posterior probability, after the temperature
    posterior: tuple[float, ...]  # over Consensus.labels
    n_votes: int  # readings counted (no-votes excluded)
    gold: bool  # a gold item: the posterior is the known truth
    evidence: tuple[float, ...] | None  # the bank's reading shares over Consensus.labels (None: not available)

    def is_resolved(self, threshold: float) -> bool:
        return bool(resolved(self.probability, threshold))


@dataclass(frozen=True, eq=False)
class RaterReliability:
    rater: Hashable
    n_votes: int
    accuracy: float  # estimated probability of reading right (class-prior weighted diagonal of the confusion)
    confusion: np.ndarray  # float64 (K, K), rows = true reading, columns = this rater's reading
    gold_votes: int  # readings of gold items
    gold_accuracy: float | None  # observed share right on gold items (None: no gold rated)


@dataclass(frozen=True, eq=False)
class Consensus:
    labels: tuple[str, ...]  # the label set, plus OTHER last with unknown="other"
    images: tuple[ImageConsensus, ...]
    raters: tuple[RaterReliability, ...]
    posteriors: np.ndarray  # float64 (n_images, K), the images' posteriors in order, after the temperature
    class_prior: np.ndarray  # float64 (K,)
    follow_rate: float
    temperature: float
    iterations: int
    converged: bool

    @cached_property
    def _by_image(self) -> dict[Hashable, ImageConsensus]:
        return {c.image: c for c in self.images}

    @cached_property
    def _by_rater(self) -> dict[Hashable, RaterReliability]:
        return {r.rater: r for r in self.raters}

    def image(self, image: Hashable) -> ImageConsensus:
        return self._by_image[image]

    def rater(self, rater: Hashable) -> RaterReliability:
        return self._by_rater[rater]

    def label_index(self, reading: str) -> int:
        return self.labels.index(reading)


class _Codes:
    """Maps labels to class indices under the unknown-reading policy."""

    def __init__(self, labels: Sequence[str], unknown: str):
        labels = tuple(str(lab).strip() for lab in labels)
        if len(set(labels)) != len(labels) or not labels:
            raise ValueError(f"labels must be distinct and not empty, got {labels}")
        if UNREADABLE in labels or OTHER in labels or "" in labels:
            raise ValueError(f"labels may not contain {UNREADABLE!r}, {OTHER!r} or blanks")
        self.unknown = unknown
        self.labels = labels + ((OTHER,) if unknown == "other" else ())
        self.index = {lab: i for i, lab in enumerate(self.labels)}

    def code(self, reading: str | None) -> int | None:
        """Class index, None for no vote; unknown readings refused or OTHER."""
        if reading is None:
            return None
        text = reading.strip()
        if not text or text == UNREADABLE:
            return None
        if text in self.index and text != OTHER:
            return self.index[text]
        if self.unknown == "other":
            return self.index[OTHER]
        raise ValueError(f"reading {reading!r} is not in the label set (unknown='refuse')")

    def shares(self, dist: Mapping[str, float]) -> np.ndarray:
        """Counts or shares per reading -> float (K,) summing to 1 (zeros if empty)."""
        out = np.zeros(len(self.labels))
        for reading, weight in dist.items():
            if weight < 0:
                raise ValueError(f"evidence weights must be >= 0, got {reading!r}: {weight}")
            k = self.code(reading)
            if k is not None:
                out[k] += weight
        total = out.sum()
        return out / total if total > 0 else out


def _warn_unidentified(config: ConsensusConfig, evidence: Mapping) -> None:
    if config.follow == "fit" and (config.beta == 0 or not evidence):
        logger.warning("follow='fit' without the evidence prior (beta=%g, %d images with evidence): the follow rate "
                       "is not identified and may absorb every vote", config.beta, len(evidence))


def _check_unique(ratings: Sequence[Rating]) -> None:
    seen = Counter((r.image, r.rater) for r in ratings)
    if dup := [key for key, c in seen.items() if c > 1]:
        raise ValueError(f"more than one reading per (image, rater), e.g. {dup[0]!r}: pass the current one only")


def _index(keys: Iterable[Hashable]) -> dict[Hashable, int]:
    out: dict[Hashable, int] = {}
    for k in keys:
        out.setdefault(k, len(out))
    return out


def _rater_summaries(fit: DawidSkeneFit, rater_ids: Sequence[Hashable], raters: np.ndarray, votes: np.ndarray,
                     items: np.ndarray, gold: np.ndarray) -> tuple[RaterReliability, ...]:
    acc = fit.accuracy()
    n = np.bincount(raters, minlength=len(rater_ids))
    on_gold = gold[items] >= 0
    g_n = np.bincount(raters[on_gold], minlength=len(rater_ids))
    g_right = np.bincount(raters[on_gold], weights=(votes[on_gold] == gold[items[on_gold]]).astype(float),
                          minlength=len(rater_ids))
    return tuple(RaterReliability(rater=r, n_votes=int(n[j]), accuracy=float(acc[j]), confusion=fit.confusion[j],
                                  gold_votes=int(g_n[j]),
                                  gold_accuracy=float(g_right[j] / g_n[j]) if g_n[j] else None)
                 for j, r in enumerate(rater_ids))


def fit_consensus(ratings: Iterable[Rating], labels: Sequence[str] = DIGITS, *,
                  gold: Mapping[Hashable, str] | None = None,
                  evidence: Mapping[Hashable, Mapping[str, float]] | None = None,
                  shown: Mapping[Hashable, Mapping[str, float]] | None = None,
                  images: Sequence[Hashable] | None = None,
                  config: ConsensusConfig = ConsensusConfig()) -> Consensus:
    """The calibrated consensus of categorical readings (one label per image, e.g. a digit).

    gold: image -> true reading; evidence: image -> the bank's reading counts or shares (the prior); shown: image ->
    the reading shares of the samples raters saw (defaults to ``evidence``; used by ``config.follow``); images: the
    images to report, in order (default: as they first appear in ratings, gold, evidence).
    """
    codes = _Codes(labels, config.unknown)
    K = len(codes.labels)
    gold, evidence = dict(gold or {}), dict(evidence or {})
    _warn_unidentified(config, evidence)
    shown = evidence if shown is None else dict(shown)
    ratings = list(ratings)
    _check_unique(ratings)
    triples = [(r.image, r.rater, codes.code(r.reading)) for r in ratings]
    img_index = _index(images) if images is not None else _index(
        [t[0] for t in triples] + list(gold) + list(evidence))  # images rated without a readable vote included
    triples = [t for t in triples if t[2] is not None]
    if images is not None and (missing := {t[0] for t in triples} - set(img_index)):
        raise ValueError(f"ratings of images not in `images`: {sorted(map(str, missing))[:5]}")
    rater_index = _index(t[1] for t in triples)
    n = len(img_index)
    items = np.array([img_index[t[0]] for t in triples], dtype=np.int64)
    raters = np.array([rater_index[t[1]] for t in triples], dtype=np.int64)
    votes = np.array([t[2] for t in triples], dtype=np.int64)
    gold_arr = np.full(n, -1, dtype=np.int64)
    for image, truth in gold.items():
        if image in img_index:
            k = codes.code(truth)
            if k is None:
                raise ValueError(f"gold reading of image {image!r} is empty")
            gold_arr[img_index[image]] = k
    ev = np.zeros((n, K))
    sh = np.full((n, K), 1.0 / K)
    for image, j in img_index.items():
        if image in evidence:
            ev[j] = codes.shares(evidence[image])
        if image in shown and (s := codes.shares(shown[image])).sum() > 0:
            sh[j] = s
    fit = dawid_skene(items, raters, votes, n, len(rater_index), K, gold=gold_arr,
                      log_prior=evidence_log_prior(ev, config.beta, config.eps), shown=sh, config=config)
    post = fit.posteriors.copy()
    if config.temperature != 1.0:
        free = gold_arr < 0
        post[free] = apply_temperature(post[free], config.temperature)
    n_votes = np.bincount(items, minlength=n)
    out = []
    for image, j in img_index.items():
        k = int(np.argmax(post[j]))
        out.append(ImageConsensus(image=image, reading=codes.labels[k], probability=float(post[j, k]),
                                  posterior=tuple(float(p) for p in post[j]), n_votes=int(n_votes[j]),
                                  gold=bool(gold_arr[j] >= 0),
                                  evidence=tuple(float(e) for e in ev[j]) if image in evidence else None))
    return Consensus(labels=codes.labels, images=tuple(out),
                     raters=_rater_summaries(fit, list(rater_index), raters, votes, items, gold_arr),
                     posteriors=post, class_prior=fit.class_prior, follow_rate=fit.follow_rate,
                     temperature=config.temperature, iterations=fit.iterations, converged=fit.converged)


# ---- plates: per aligned position -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PositionConsensus:
    character: str  # the consensus character at this position
    probability: float  # its posterior probability (after the temperature)
    posterior: tuple[float, ...]  # over PlateConsensusResult.alphabet
    n_votes: int  # readings with a character (not '?') here


@dataclass(frozen=True)
class PlateConsensus:
    image: Hashable
    reading: str | None  # the consensus string (None: no reading and no evidence to give it a length)
    probability: float  # product of the positions' probabilities (independence; given the length), 0 when None
    length: int
    positions: tuple[PositionConsensus, ...]
    n_readings: int  # readings of this image (blank ones excluded)
    dropped: int  # readings of another length, not used
    gold: bool

    def is_resolved(self, threshold: float) -> bool:
        return bool(resolved(self.probability, threshold))


@dataclass(frozen=True, eq=False)
class PlateConsensusResult:
    alphabet: tuple[str, ...]  # the characters (plus OTHER last with unknown="other")
    images: tuple[PlateConsensus, ...]
    raters: tuple[RaterReliability, ...]  # confusion over characters, shared by all positions
    follow_rate: float
    temperature: float
    iterations: int
    converged: bool

    @cached_property
    def _by_image(self) -> dict[Hashable, PlateConsensus]:
        return {c.image: c for c in self.images}

    @cached_property
    def _by_rater(self) -> dict[Hashable, RaterReliability]:
        return {r.rater: r for r in self.raters}

    def image(self, image: Hashable) -> PlateConsensus:
        return self._by_image[image]

    def rater(self, rater: Hashable) -> RaterReliability:
        return self._by_rater[rater]


PLATE_CONFIG = ConsensusConfig(confusion="one-coin")  # see fit_plate_consensus


def _plate_length(readings: Sequence[str], gold: str | None, bank: Mapping[str, float]) -> int | None:
    if gold is not None:
        return len(gold)
    if readings:
        counts = Counter(len(r) for r in readings)
        best = max(counts.values())
        tied = [length for length, c in counts.items() if c == best]
        mass = Counter()
        for text, w in bank.items():
            mass[len(text.strip())] += w
        return max(tied, key=lambda length: (mass[length], length))
    if bank:
        mass = Counter()
        for text, w in bank.items():
            mass[len(text.strip())] += w
        return max(mass, key=lambda length: (mass[length], length)) if mass else None
    return None


def fit_plate_consensus(ratings: Iterable[Rating], alphabet: Sequence[str], *,
                        gold: Mapping[Hashable, str] | None = None,
                        evidence: Mapping[Hashable, Mapping[str, float]] | None = None,
                        shown: Mapping[Hashable, Mapping[str, float]] | None = None,
                        images: Sequence[Hashable] | None = None,
                        config: ConsensusConfig = PLATE_CONFIG) -> PlateConsensusResult:
    """The consensus of string readings per position (see the module docstring for lengths and independence).

    alphabet: the characters (e.g. ``sr_engine.plates.ALPHABET``); readings are normalised by the caller and
    compared after ``strip()``, ``?`` marks an unreadable character (no vote at that position); gold: image -> true
    string; evidence / shown: image -> the reader's string counts or shares over the bank / the displayed samples
    (per position, the character shares among the strings of the image's length). The default config is one-coin
    (:data:`PLATE_CONFIG`): a full 36 x 36 confusion per rater is too sparse to estimate from a few hundred
    characters, and its noise (a spammer's chance hits) then decides 1-1-1 splits; ``confusion="full"`` with
    ``shrinkage`` is the choice once raters have read enough.
    """
    codes = _Codes(list(alphabet), config.unknown)
    if any(len(c) != 1 for c in codes.labels[: len(alphabet)]):
        raise ValueError("the alphabet must be single characters")
    K = len(codes.labels)
    gold, evidence = dict(gold or {}), dict(evidence or {})
    _warn_unidentified(config, evidence)
    shown = evidence if shown is None else dict(shown)
    per_image: dict[Hashable, list[tuple[Hashable, str]]] = {}
    ratings = list(ratings)
    _check_unique(ratings)
    for r in ratings:
        text = (r.reading or "").strip()
        got = per_image.setdefault(r.image, [])
        if text and set(text) != {UNREADABLE}:
            got.append((r.rater, text))
    if images is None:
        img_ids = list(_index(list(per_image) + list(gold) + list(evidence)))
    else:
        img_ids = list(_index(images))
        if missing := set(per_image) - set(img_ids):
            raise ValueError(f"ratings of images not in `images`: {sorted(map(str, missing))[:5]}")

    def char_code(c: str) -> int | None:
        return None if c == UNREADABLE else codes.code(c)

    def position_shares(dist: Mapping[str, float], length: int) -> np.ndarray:
        out = np.zeros((length, K))
        for text, w in dist.items():
            text = text.strip()
            if len(text) == length:
                for p, c in enumerate(text):
                    k = char_code(c)
                    if k is not None:
                        out[p, k] += w
        tot = out.sum(-1, keepdims=True)
        return np.divide(out, tot, out=np.zeros_like(out), where=tot > 0)

    rater_index: dict[Hashable, int] = {}
    item_of: list[tuple[int, int]] = []  # (image number, position) per item
    items, raters, votes, gold_codes, ev_rows, sh_rows = [], [], [], [], [], []
    layout = []  # per image: (length, first item, n_readings, dropped, has_evidence)
    for m, image in enumerate(img_ids):
        readings = per_image.get(image, [])
        length = _plate_length([t for _, t in readings], gold.get(image), evidence.get(image, {}))
        if length is None or length == 0:
            layout.append((0, len(item_of), len(readings), len(readings), False))
            continue
        first = len(item_of)
        kept = [(r, t) for r, t in readings if len(t) == length]
        for p in range(length):
            item_of.append((m, p))
        g = gold.get(image)
        for p in range(length):
            k = char_code(g[p]) if g is not None else None
            if g is not None and k is None:
                raise ValueError(f"gold string of image {image!r} has an unreadable character")
            gold_codes.append(-1 if k is None else k)
        for rater, text in kept:
            j = rater_index.setdefault(rater, len(rater_index))
            for p, c in enumerate(text):
                k = char_code(c)
                if k is not None:
                    items.append(first + p)
                    raters.append(j)
                    votes.append(k)
        ev_rows.append(position_shares(evidence.get(image, {}), length))
        s = position_shares(shown.get(image, {}), length)
        s[s.sum(-1) <= 0] = 1.0 / K
        sh_rows.append(s)
        layout.append((length, first, len(readings), len(readings) - len(kept), image in evidence))
    n_items = len(item_of)
    ev = np.concatenate(ev_rows) if ev_rows else np.zeros((0, K))
    sh = np.concatenate(sh_rows) if sh_rows else np.zeros((0, K))
    gold_arr = np.array(gold_codes, dtype=np.int64)
    items_a, raters_a, votes_a = (np.array(a, dtype=np.int64) for a in (items, raters, votes))
    fit = dawid_skene(items_a, raters_a, votes_a, n_items, len(rater_index), K, gold=gold_arr,
                      log_prior=evidence_log_prior(ev, config.beta, config.eps), shown=sh, config=config)
    post = fit.posteriors.copy()
    if config.temperature != 1.0 and n_items:
        free = gold_arr < 0
        post[free] = apply_temperature(post[free], config.temperature)
    n_votes = np.bincount(items_a, minlength=n_items)
    out = []
    for image, (length, first, n_read, dropped, _) in zip(img_ids, layout):
        if length == 0:
            out.append(PlateConsensus(image, None, 0.0, 0, (), n_read, dropped, image in gold))
            continue
        positions = []
        for q in range(first, first + length):
            k = int(np.argmax(post[q]))
            positions.append(PositionConsensus(character=codes.labels[k], probability=float(post[q, k]),
                                               posterior=tuple(float(x) for x in post[q]), n_votes=int(n_votes[q])))
        prob = math.prod(p.probability for p in positions)
        out.append(PlateConsensus(image=image, reading="".join(p.character for p in positions), probability=prob,
                                  length=length, positions=tuple(positions), n_readings=n_read, dropped=dropped,
                                  gold=image in gold))
    return PlateConsensusResult(alphabet=codes.labels, images=tuple(out),
                                raters=_rater_summaries(fit, list(rater_index), raters_a, votes_a, items_a, gold_arr),
                                follow_rate=fit.follow_rate, temperature=config.temperature,
                                iterations=fit.iterations, converged=fit.converged)
