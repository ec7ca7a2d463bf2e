"""Visible uncertainty (issue 16): the bank's per-pixel std and principal components as mean +/- 2 sigma images."""

from __future__ import annotations

import numpy as np
import pytest

from sr_engine.uncertainty import bank_uncertainty


def test_a_two_hypothesis_bank_has_one_component():
    a = np.zeros((6, 5), np.uint8)
    b = a.copy()
    b[2:4, 1:4] = 200
    bank = np.stack([a] * 4 + [b] * 4)
    u = bank_uncertainty(bank)
    assert len(u.explained) == 1 and u.explained[0] == pytest.approx(1.0)
    np.testing.assert_array_equal(u.mean, np.round(bank.astype(float).mean(0)).astype(np.uint8))
    assert u.std_max == pytest.approx(bank.astype(float).std(0).max())
    assert u.std.max() == 255 and (u.std[b == 0] == 0).all()
    lo, hi = np.minimum(u.minus[0], u.plus[0]), np.maximum(u.minus[0], u.plus[0])
    # 2 sigma per pixel: 2 * sqrt(8 * 6 * 100**2 / 7) / sqrt(6) = 214 around the mean 100: past both hypotheses
    assert (lo[b > 0] == 0).all() and (hi[b > 0] == 255).all() and (lo[b == 0] == 0).all() and (hi[b == 0] == 0).all()


def test_shares_are_ordered_and_sum_to_at_most_one():
    rng = np.random.default_rng(0)
    bank = rng.integers(0, 256, size=(16, 8, 8, 3), dtype=np.uint8)
    u = bank_uncertainty(bank, components=3)
    assert len(u.explained) == 3 and sum(u.explained) <= 1 + 1e-9
    assert list(u.explained) == sorted(u.explained, reverse=True)
    assert all(m.shape == (8, 8, 3) and m.dtype == np.uint8 for m in u.minus + u.plus)


def test_an_agreeing_bank_has_no_component():
    bank = np.full((4, 3, 3), 77, np.uint8)
    u = bank_uncertainty(bank)
    assert u.explained == () and u.std_max == 0 and (u.std == 0).all()
    with pytest.raises(ValueError):
        bank_uncertainty(bank.astype(np.float32))
