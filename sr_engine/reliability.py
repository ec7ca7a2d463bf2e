"""Measures of a probability's calibration, and the one temperature that fixes it: pure numpy.

:func:`fit_temperature` fits one temperature on log-posteriors by minimising the negative log-likelihood on the
rows the caller passes (the caller guarantees they are calibration rows made from training data, never
evaluation rows); :func:`apply_temperature` applies it. :func:`expected_calibration_error` (10 equal-width bins
by default), :func:`reliability_diagram` and :func:`risk_coverage` give the numbers and the plot data (plotting
is elsewhere). An image is :func:`resolved` when its consensus probability reaches the project's threshold.
Used by :mod:`sr_engine.consensus` (the temperature) and by the benchmark's simulated-rater study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def softmax_rows(log_p: np.ndarray) -> np.ndarray:
    """Row-wise softmax of log-probabilities (..., K), shifted by the row maximum for stability."""
    log_p = log_p - log_p.max(-1, keepdims=True)
    p = np.exp(log_p)
    return p / p.sum(-1, keepdims=True)

def resolved(prob, threshold: float):
    """An image is resolved when its consensus probability reaches the threshold (``prob >= threshold``); works on
    scalars and arrays."""
    if not 0 < threshold <= 1:
        raise ValueError(f"the resolve threshold must be in (0, 1], got {threshold}")
    return np.asarray(prob) >= threshold


def apply_temperature(posteriors: np.ndarray, temperature: float) -> np.ndarray:
    """float (n, K) probabilities -> softmax(log(p) / T) (T > 1 softens, T < 1 sharpens; argmax unchanged)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_p = np.log(np.clip(np.asarray(posteriors, dtype=np.float64), 1e-12, None))
    return softmax_rows(log_p / temperature)


def _nll(log_p: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    z = log_p / temperature
    z = z - z.max(-1, keepdims=True)
    return float((np.log(np.exp(z).sum(-1)) - z[np.arange(len(truth)), truth]).mean())


def fit_temperature(posteriors: np.ndarray, truth: np.ndarray, *, bounds: tuple[float, float] = (0.05, 20.0),
                    iters: int = 100) -> float:
    """The temperature T minimising the negative log-likelihood of ``truth`` (int (n,) class indices) under
    softmax(log(posteriors) / T), posteriors float (n, K). Fit it on calibration rows only (made from training
    data); apply it with ``ConsensusConfig(temperature=T)`` or :func:`apply_temperature`. The NLL is convex in
    1/T, so a golden-section search over log T in ``bounds`` finds the minimum."""
    posteriors = np.asarray(posteriors, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    if posteriors.ndim != 2 or truth.shape != (len(posteriors),) or not len(truth):
        raise ValueError("posteriors must be (n, K) and truth (n,) with n > 0")
    log_p = np.log(np.clip(posteriors, 1e-12, None))
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = _nll(log_p, truth, math.exp(a)), _nll(log_p, truth, math.exp(b))
    for _ in range(iters):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = _nll(log_p, truth, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = _nll(log_p, truth, math.exp(b))
        if hi - lo < 1e-6:
            break
    return math.exp((lo + hi) / 2)


def _check_probs(probs, correct) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    if probs.shape != correct.shape:
        raise ValueError(f"probs and correct differ in length: {probs.shape} vs {correct.shape}")
    if len(probs) and (probs.min() < 0 or probs.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    return probs, correct


@dataclass(frozen=True, eq=False)
class ReliabilityDiagram:
    """Equal-width bins ``(lo, hi]`` over [0, 1] (0 falls in the first): per bin the mean confidence, the accuracy
    (NaN in an empty bin) and the count."""

    edges: np.ndarray  # (bins + 1,)
    confidence: np.ndarray  # (bins,)
    accuracy: np.ndarray  # (bins,)
    count: np.ndarray  # int (bins,)

    @property
    def ece(self) -> float:
        """Expected calibration error: sum over bins of count / n * |accuracy - confidence|."""
        n = self.count.sum()
        if not n:
            return float("nan")
        full = self.count > 0
        return float((self.count[full] / n * np.abs(self.accuracy[full] - self.confidence[full])).sum())


def reliability_diagram(probs, correct, bins: int = 10) -> ReliabilityDiagram:
    """probs: the consensus probability per image (n,) on [0, 1]; correct: whether its reading was right (n,)."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    probs, correct = _check_probs(probs, correct)
    idx = np.clip(np.ceil(probs * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=probs, minlength=bins) / count
        acc = np.bincount(idx, weights=correct.astype(float), minlength=bins) / count
    return ReliabilityDiagram(edges=np.linspace(0, 1, bins + 1), confidence=conf, accuracy=acc, count=count)


def expected_calibration_error(probs, correct, bins: int = 10) -> float:
    """ECE with ``bins`` equal-width bins (see :class:`ReliabilityDiagram`); NaN for no data."""
    return reliability_diagram(probs, correct, bins).ece


@dataclass(frozen=True, eq=False)
class RiskCoverage:
    """Answering only the images whose probability is >= threshold: the share answered and the share of those
    answered wrong, one point per distinct threshold, most confident first."""

    threshold: np.ndarray  # (m,), decreasing
    coverage: np.ndarray  # (m,), increasing to 1
    risk: np.ndarray  # (m,): error rate among the covered images

    @property
    def aurc(self) -> float:
        """Area under the risk-coverage curve (step-wise, from coverage 0): lower is better."""
        if not len(self.coverage):
            return float("nan")
        widths = np.diff(np.concatenate([[0.0], self.coverage]))
        return float((widths * self.risk).sum())

    def accuracy_at(self, threshold: float) -> tuple[float, float]:
        """(coverage, accuracy of the covered) when images with probability >= threshold are resolved."""
        keep = self.threshold >= threshold
        if not keep.any():
            return 0.0, float("nan")
        j = int(np.flatnonzero(keep)[-1])
        return float(self.coverage[j]), float(1.0 - self.risk[j])


def risk_coverage(probs, correct) -> RiskCoverage:
    probs, correct = _check_probs(probs, correct)
    order = np.argsort(-probs, kind="stable")
    p, wrong = probs[order], ~correct[order]
    errors = np.cumsum(wrong)
    n_cov = np.arange(1, len(p) + 1)
    last = np.r_[p[1:] != p[:-1], True] if len(p) else np.zeros(0, bool)  # the last of each run of equal probs
    return RiskCoverage(threshold=p[last], coverage=n_cov[last] / max(len(p), 1), risk=errors[last] / n_cov[last])
