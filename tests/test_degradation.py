"""The degradation operator D: MATLAB-compatible bicubic matrices, the box kernel, the exact pseudoinverse and
the projection onto {x : D x = y, 0 <= x <= 1}."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sr_engine.degradation import Degradation, downscale_matrix, get_degradation

# MATLAB imresize(..., 0.5, 'bicubic') (antialiased Keys cubic, a = -0.5): 0.5 * cubic(0.5 * d) for the
# eight source pixels at distances d = +-0.5, +-1.5, +-2.5, +-3.5 from the output pixel's centre.
X2_ROW = np.array([-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625,
                   -0.01171875])


def _keys(x: float) -> float:
    """Keys' cubic with a = -0.5, written out piece by piece (independent of the module's vectorised one)."""
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def _interior_row(scale: int) -> np.ndarray:
    """The 4*scale taps of an interior row (even scale): the cubic widened by ``scale``, at half-pixel offsets."""
    d = np.arange(-2 * scale, 2 * scale) + 0.5
    w = np.array([_keys(v / scale) for v in d])
    return w / w.sum()


def _row_by_hand(n: int, scale: int, i: int) -> np.ndarray:
    """Row i (0-based) of an interior output pixel, any integer scale: output pixel i is centred at the 0-based
    source coordinate c = scale * i + (scale - 1) / 2; every source pixel j gets cubic((j - c) / scale)."""
    c = scale * i + (scale - 1) / 2
    w = np.array([_keys((j - c) / scale) for j in range(n)])
    return w / w.sum()


def test_x2_interior_row_matches_matlab():
    mat = downscale_matrix(16, 2)
    assert mat.shape == (8, 16)
    # output pixel i (0-based) is centred between source pixels 2i and 2i+1: taps 2i-3 .. 2i+4
    for i in range(2, 6):
        np.testing.assert_allclose(mat[i, 2 * i - 3 : 2 * i + 5], X2_ROW, atol=1e-15)
        outside = np.delete(mat[i], np.arange(2 * i - 3, 2 * i + 5))
        assert np.all(outside == 0)
    np.testing.assert_allclose(_interior_row(2), X2_ROW, atol=1e-15)  # the hand formula agrees too


def test_x2_border_rows_use_symmetric_padding():
    """MATLAB pads with aux = [1:n, n:-1:1]. The first output row's taps (1-based) -2, -1, 0 fall outside and
    fold back onto pixels 3, 2, 1; with 0-based pixels:
        pixel 0: w(0) + w(1)  = 0.11328125 + 0.43359375
        pixel 1: w(-1) + w(2) = -0.03515625 + 0.43359375
        pixel 2: w(-2) + w(3) = -0.01171875 + 0.11328125
        pixel 3: w(4) = -0.03515625,  pixel 4: w(5) = -0.01171875."""
    mat = downscale_matrix(16, 2)
    expected = np.zeros(16)
    expected[:5] = [0.546875, 0.3984375, 0.1015625, -0.03515625, -0.01171875]
    np.testing.assert_allclose(mat[0], expected, atol=1e-15)
    # the last row mirrors the first
    np.testing.assert_allclose(mat[-1], expected[::-1], atol=1e-15)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_bicubic_rows_sum_to_one_and_matrix_is_symmetric(scale):
    n = 8 * scale
    mat = downscale_matrix(n, scale)
    assert mat.shape == (n // scale, n)
    np.testing.assert_allclose(mat.sum(axis=1), 1.0, atol=1e-12)
    # centrosymmetric: flipping the image flips its downscale
    np.testing.assert_allclose(mat[::-1, ::-1], mat, atol=1e-14)
    # interior rows are the widened cubic, symmetric about the output pixel's centre
    for i in range(2, n // scale - 2):
        np.testing.assert_allclose(mat[i], _row_by_hand(n, scale, i), atol=1e-14)
    i = n // scale // 2
    taps = mat[i][mat[i] != 0]
    np.testing.assert_allclose(taps, taps[::-1], atol=1e-15)
    if scale % 2 == 0:  # half-pixel offsets: all 4 * scale source pixels under the widened cubic count
        assert len(taps) == 4 * scale


def test_x4_interior_row_values():
    # MATLAB imresize(..., 0.25, 'bicubic'): 0.25 * cubic(0.25 * d) for d = 0.5 .. 7.5 (exact dyadic values)
    half = np.array([-0.001708984375, -0.010986328125, -0.018310546875, -0.011962890625, 0.022705078125,
                     0.097412109375, 0.181884765625, 0.240966796875])
    expected = np.concatenate([half, half[::-1]])
    np.testing.assert_allclose(_interior_row(4), expected, atol=1e-15)
    mat = downscale_matrix(32, 4)
    # output pixel 4 is centred between source pixels 17 and 18: taps 10 .. 25
    np.testing.assert_allclose(mat[4, 10:26], expected, atol=1e-15)
    assert np.count_nonzero(mat[4]) == 16


def test_box_kernel():
    mat = downscale_matrix(12, 3, "box")
    expected = np.kron(np.eye(4), np.full((1, 3), 1 / 3))
    np.testing.assert_allclose(mat, expected, atol=1e-15)
    deg = Degradation((6, 8), 2, "box")
    x = torch.rand(2, 6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(deg.down(x).numpy(), torch.nn.functional.avg_pool2d(x[:, None], 2)[:, 0].numpy(),
                               atol=1e-14)
    # the pseudoinverse of an area average is nearest-neighbour enlargement
    y = torch.rand(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(deg.pinv(y).numpy(), np.kron(y.numpy(), np.ones((2, 2))), atol=1e-13)


def test_unknown_kernel_raises():
    with pytest.raises(ValueError):
        downscale_matrix(16, 2, "lanczos")  # type: ignore[arg-type]


@pytest.mark.parametrize("kernel", ["bicubic", "box"])
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_d_dplus_is_identity(scale, kernel):
    a = downscale_matrix(4 * scale, scale, kernel)
    np.testing.assert_allclose(a @ np.linalg.pinv(a), np.eye(4), atol=1e-12)
    deg = Degradation((4 * scale, 6 * scale), scale, kernel)
    y = torch.rand(2, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(scale))
    np.testing.assert_allclose(deg.down(deg.pinv(y)).numpy(), y.numpy(), atol=1e-12)
    # D^+ D is a projection (idempotent) onto the row space
    x = torch.rand(4 * scale, 6 * scale, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    p = deg.pinv(deg.down(x))
    np.testing.assert_allclose(deg.pinv(deg.down(p)).numpy(), p.numpy(), atol=1e-12)


def test_downscale_matrix_returns_a_copy():
    a = downscale_matrix(16, 2)
    a[:] = 0
    assert downscale_matrix(16, 2)[0, 0] == pytest.approx(0.546875)


@pytest.mark.parametrize("scale,hr_size", [(2, (10, 14)), (4, (16, 28)), (8, (32, 24))])
def test_projection_is_exact_grey(scale, hr_size):
    gen = torch.Generator().manual_seed(scale)
    deg = Degradation(hr_size, scale)
    truth = torch.rand((2, 1, *hr_size), generator=gen, dtype=torch.float64)
    y = deg.down(truth)  # a consistent set that is not empty
    x0 = torch.randn((2, 1, *hr_size), generator=gen, dtype=torch.float64) * 2  # far outside [0, 1]
    before = x0.clone()
    res = deg.project(x0, y, tol=1e-7)
    torch.testing.assert_close(x0, before)  # input untouched
    assert res.x.shape == x0.shape and res.x.dtype == x0.dtype
    assert float((deg.down(res.x) - y).abs().max()) <= 1e-6
    assert float(res.x.min()) >= 0.0 and float(res.x.max()) <= 1.0
    assert res.residual.shape == (2,)
    assert float(res.residual.max()) <= 1e-6
    assert res.iterations >= 1


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_projection_is_exact_rgb_batch(scale):
    hr_size = (2 * scale, 3 * scale)  # non-square
    gen = torch.Generator().manual_seed(10 + scale)
    deg = get_degradation(hr_size, scale)
    truth = torch.rand((3, 3, *hr_size), generator=gen)  # (B, 3, H, W), float32
    y = deg.down(truth.double())
    x0 = truth + 0.5 * torch.randn(truth.shape, generator=gen)
    res = deg.project(x0, y)
    assert res.x.dtype == torch.float32 and res.x.shape == (3, 3, *hr_size)
    # float32 output: consistent to float32 precision of the values; in float64 to the tolerance
    assert float((deg.down(res.x.double()) - y).abs().max()) <= 1e-6
    assert float(res.x.min()) >= 0.0 and float(res.x.max()) <= 1.0
    assert res.residual.shape == (3,) and float(res.residual.max()) <= 1e-6


def test_projection_single_image():
    deg = Degradation((8, 12), 4)
    truth = torch.rand(8, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = deg.down(truth)
    res = deg.project(torch.zeros(8, 12, dtype=torch.float64), y)
    assert res.residual.shape == (1,)
    assert float((deg.down(res.x) - y).abs().max()) <= 1e-6
    assert float(res.x.min()) >= 0 and float(res.x.max()) <= 1


def test_projection_keeps_consistent_input():
    deg = Degradation((16, 16), 4)
    truth = torch.rand(1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    res = deg.project(truth, deg.down(truth))
    torch.testing.assert_close(res.x, truth, atol=1e-9, rtol=0)


@pytest.mark.parametrize("hr_size,scale", [((15, 16), 2), ((16, 18), 4), ((24, 20), 8), ((7, 7), 2)])
def test_size_not_multiple_of_scale_raises(hr_size, scale):
    with pytest.raises(ValueError):
        Degradation(hr_size, scale)


def test_wrong_input_sizes_raise():
    deg = Degradation((16, 16), 4)
    with pytest.raises(ValueError):
        deg.down(torch.zeros(1, 16, 12))
    with pytest.raises(ValueError):
        deg.pinv(torch.zeros(1, 3, 4))


@pytest.mark.parametrize("y_shape", [(1, 1), (4, 1), (1, 4), (2, 2)])
def test_projection_refuses_an_lr_target_of_another_size(y_shape):
    """y may broadcast over leading (batch / channel) dims, but its spatial size must be the LR size: a 1x1
    target silently broadcast over a 4x4 LR grid would 'project' onto the wrong image."""
    deg = Degradation((16, 16), 4)
    x = torch.rand(1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with pytest.raises(ValueError):
        deg.project(x, torch.full(y_shape, 0.5, dtype=torch.float64))
