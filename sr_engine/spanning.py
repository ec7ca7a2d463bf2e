"""A displayed bank that spans the hypotheses: draw a pool larger than what raters see (e.g. 4x), and
show a subset that covers it, so that every plausible reading is among the samples shown and near-duplicates are
not.

    idx, share = spanning_subset(pool.images, readings, n=16, min_share=0.05)
    shown = subset_bank(pool, idx)          # an sr_engine.Bank of the chosen samples (seeds kept: reproducible)

Rule: every reading holding at least ``min_share`` of the pool gets at least one of the ``n`` slots (most
frequent first when there are more such readings than slots); the remaining slots go to readings in proportion to
their pool share (largest remainder). Within a reading, samples are chosen by farthest-point sampling in pixel
space (L2), starting from the sample nearest the reading's mean, so near-duplicates are dropped first. Each shown
sample stands for the pool samples nearest to it (within its reading; a reading without a slot goes to the nearest
shown sample of any reading): ``share`` is that count over the pool size (the shares sum to 1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .engines.base import Bank


def _allocate(counts: dict[str, int], n: int, min_share: float, total: int) -> dict[str, int]:
    order = sorted(counts, key=lambda r: (-counts[r], r))
    slots = dict.fromkeys(order, 0)
    for r in order:  # every reading with enough of the pool is represented
        if counts[r] >= min_share * total and sum(slots.values()) < n:
            slots[r] = 1
    left = n - sum(slots.values())
    if left > 0:
        want = {r: counts[r] / total * n for r in order}
        for r in order:
            extra = min(int(want[r]) - slots[r], left, counts[r] - slots[r]) if want[r] > slots[r] else 0
            if extra > 0:
                slots[r] += extra
                left -= extra
        rema = sorted(order, key=lambda r: (-(want[r] - int(want[r])), -counts[r], r))
        while left > 0:  # largest remainder, then whoever still has samples
            progressed = False
            for r in rema:
                if left and slots[r] < counts[r]:
                    slots[r] += 1
                    left -= 1
                    progressed = True
            if not progressed:
                break
    return {r: s for r, s in slots.items() if s}


def _farthest_points(x: np.ndarray, k: int) -> list[int]:
    """k row indices of x (m, D): the row nearest the mean, then repeatedly the row farthest from those chosen."""
    chosen = [int(np.argmin(((x - x.mean(0)) ** 2).sum(1)))]
    dist = ((x - x[chosen[0]]) ** 2).sum(1)
    while len(chosen) < min(k, len(x)):
        j = int(np.argmax(dist))
        chosen.append(j)
        dist = np.minimum(dist, ((x - x[j]) ** 2).sum(1))
    return chosen


def spanning_subset(images: np.ndarray, readings: Sequence[str] | None, n: int,
                    min_share: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """images uint8 (P, ...) of a pool, readings (P,) (None: one reading for all) -> (indices (n,) into the pool,
    in pool order; shares (n,), summing to 1)."""
    P = len(images)
    if not 1 <= n <= P:
        raise ValueError(f"need 1 <= n <= pool size, got n={n}, pool {P}")
    readings = ["" for _ in range(P)] if readings is None else [str(r) for r in readings]
    if len(readings) != P:
        raise ValueError(f"{len(readings)} readings for a pool of {P}")
    x = np.asarray(images, dtype=np.float64).reshape(P, -1)
    by = {r: np.flatnonzero(np.array(readings) == r) for r in set(readings)}
    slots = _allocate(Counter(readings), n, min_share, P)
    chosen: list[int] = []
    owner = np.full(P, -1)
    for r, k in slots.items():
        members = by[r]
        picks = [int(members[j]) for j in _farthest_points(x[members], k)]
        d = ((x[members][:, None, :] - x[picks][None, :, :]) ** 2).sum(-1)
        owner[members] = np.array(picks)[d.argmin(1)]
        chosen += picks
    rest = np.flatnonzero(owner < 0)  # readings without a slot: the nearest shown sample of any reading
    if len(rest):
        d = ((x[rest][:, None, :] - x[chosen][None, :, :]) ** 2).sum(-1)
        owner[rest] = np.array(chosen)[d.argmin(1)]
    idx = np.array(sorted(chosen))
    share = np.array([(owner == i).sum() / P for i in idx])
    return idx, share


def subset_bank(bank: Bank, idx: np.ndarray) -> Bank:
    """The samples ``idx`` of a bank (seeds and figures kept, so each reproduces alone)."""
    pick = lambda a: None if a is None else np.asarray(a)[idx]  # noqa: E731
    return replace(bank, images=bank.images[idx], seeds=np.asarray(bank.seeds)[idx], lr_psnr=pick(bank.lr_psnr),
                   flow_consistency=pick(bank.flow_consistency), projection_residual=pick(bank.projection_residual))
