"""The flow f: x <-> (y, z): invertibility, log-determinants, no in-place edits, the compact z grid, shapes."""

from __future__ import annotations

import pytest
import torch

from conftest import randomize_last_layers
from sr_engine.models.flow import (
    AffineCoupling,
    FlowConfig,
    HaarDownsampling,
    PseudoInverseFlow,
    grid_to_zs,
    soft_clamp,
    zs_to_grid,
)


def _flow(scale: int, hidden: int = 8, blocks: int = 2, channels: int = 1, seed: int = 0,
          dtype=torch.float32) -> PseudoInverseFlow:
    torch.manual_seed(seed)
    flow = PseudoInverseFlow(FlowConfig(scale=scale, channels=channels, hr_size=(16, 16), hidden=hidden,
                                        blocks_per_level=blocks))
    randomize_last_layers(flow, seed=seed + 1, std=0.05)
    return flow.to(dtype).eval()


def _coupling(detail_conditions: bool, c: int = 1, seed: int = 0, dtype=torch.float64) -> AffineCoupling:
    torch.manual_seed(seed)
    layer = AffineCoupling(c, 3 * c, hidden=8, clamp=2.0, detail_conditions=detail_conditions)
    randomize_last_layers(layer, seed=seed + 1, std=0.2)
    return layer.to(dtype)


def test_randomized_flow_is_not_plain_haar():
    """Guard for the tests below: after randomising, the couplings really change the output."""
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    plain = PseudoInverseFlow(FlowConfig(scale=4, hr_size=(16, 16), hidden=8, blocks_per_level=2))
    plain.load_state_dict(_flow(4).state_dict())
    for m in plain.modules():
        if isinstance(m, AffineCoupling):
            torch.nn.init.zeros_(m.subnet[-1].weight)
            torch.nn.init.zeros_(m.subnet[-1].bias)
    with torch.no_grad():
        a, b = _flow(4)(x), plain(x)
    assert float((a.y - b.y).abs().max()) > 1e-3
    assert float(a.log_det.abs().max()) > 1e-3 and float(b.log_det.abs().max()) > 0  # Haar's own |det| = 1/2


@pytest.mark.parametrize("scale,hr_size", [(2, (8, 12)), (4, (16, 12)), (8, (16, 24))])
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip(scale, hr_size, channels):
    flow = _flow(scale, channels=channels, seed=scale)
    x = torch.rand(3, channels, *hr_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = flow(x)
        x_rec = flow.inverse(out.y, out.zs)
    assert float((x_rec - x).abs().max()) < 1e-4
    # and the other way: any (y, z) -> x -> the same (y, z)
    gen = torch.Generator().manual_seed(2)
    y = torch.rand(out.y.shape, generator=gen)
    zs = [torch.randn(z.shape, generator=gen) for z in out.zs]
    with torch.no_grad():
        back = flow(flow.inverse(y, zs))
    assert float((back.y - y).abs().max()) < 1e-4
    for z, zb in zip(zs, back.zs):
        assert float((zb - z).abs().max()) < 1e-4


@pytest.mark.parametrize("scale,hr", [(2, 4), (4, 8)])
def test_log_det_matches_numeric_jacobian(scale, hr):
    flow = _flow(scale, hidden=8, blocks=2, seed=3, dtype=torch.float64)
    x = torch.rand(1, 1, hr, hr, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def f(v: torch.Tensor) -> torch.Tensor:
        o = flow(v.reshape(1, 1, hr, hr))
        return torch.cat([o.y.flatten()] + [z.flatten() for z in o.zs])

    jac = torch.autograd.functional.jacobian(f, x.flatten())
    assert jac.shape == (hr * hr, hr * hr)  # a bijection: as many outputs as inputs
    sign, logabs = torch.linalg.slogdet(jac)
    assert float(sign) != 0
    with torch.no_grad():
        log_det = flow(x).log_det
    assert log_det.shape == (1,)
    # 1e-6: the Haar constant log(1/2) is computed in float32 (about 2e-9 off per 2x2 block)
    assert float(log_det[0]) == pytest.approx(float(logabs), abs=1e-6)
    # the couplings contribute: the log-det is not just the Haar steps' constant
    haar_only = sum(hr * hr / 4 ** (lv + 1) * torch.log(torch.tensor(0.5, dtype=torch.float64))
                    for lv in range(flow.config.levels))
    assert abs(float(log_det[0]) - float(haar_only)) > 1e-3


@pytest.mark.parametrize("orthonormal", [False, True])
def test_haar_layer(orthonormal):
    layer = HaarDownsampling(orthonormal=orthonormal).double()
    x = torch.rand(2, 3, 4, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x0 = x.clone()
    out, ljd_f = layer(x)
    torch.testing.assert_close(x, x0, rtol=0, atol=0)  # not modified in place
    assert out.shape == (2, 12, 2, 3)
    out0 = out.clone()
    back, ljd_r = layer(out, rev=True)
    torch.testing.assert_close(out, out0, rtol=0, atol=0)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(ljd_f + ljd_r, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
    # log|det| per 2x2 block is log(1/2) for the mean low-pass, 0 for the orthonormal one; 3 * 2 * 3 blocks
    per_block = 0.0 if orthonormal else float(torch.log(torch.tensor(0.5)))
    torch.testing.assert_close(ljd_f, torch.full((2,), 18 * per_block, dtype=torch.float64), rtol=1e-7, atol=1e-7)
    # numeric Jacobian of one image (1e-7: the per-block constant is computed in float32)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v.reshape(1, 3, 4, 6))[0].flatten(), x[0].flatten())
    assert float(torch.linalg.slogdet(jac)[1]) == pytest.approx(float(ljd_f[0]), abs=1e-7)


def test_haar_low_pass_is_block_mean():
    x = torch.rand(1, 2, 4, 4, generator=torch.Generator().manual_seed(6))
    out, _ = HaarDownsampling()(x)
    torch.testing.assert_close(out[:, :2], torch.nn.functional.avg_pool2d(x, 2))


def test_haar_odd_size_raises():
    with pytest.raises(ValueError):
        HaarDownsampling()(torch.zeros(1, 1, 5, 4))


@pytest.mark.parametrize("detail_conditions", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
def test_affine_coupling_layer(detail_conditions, channels):
    layer = _coupling(detail_conditions, c=channels, seed=7)
    x = torch.randn(2, 4 * channels, 3, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    x0 = x.clone()
    with torch.no_grad():
        out, ljd_f = layer(x)
    torch.testing.assert_close(x, x0, rtol=0, atol=0)  # not modified in place
    assert out.shape == x.shape
    # the conditioning half passes through unchanged; the other half changes
    keep = slice(channels, None) if detail_conditions else slice(0, channels)
    moved = slice(0, channels) if detail_conditions else slice(channels, None)
    torch.testing.assert_close(out[:, keep], x[:, keep], rtol=0, atol=0)
    assert float((out[:, moved] - x[:, moved]).abs().max()) > 1e-3
    out0 = out.clone()
    with torch.no_grad():
        back, ljd_r = layer(out, rev=True)
    torch.testing.assert_close(out, out0, rtol=0, atol=0)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-12)
    assert float(ljd_f.abs().min()) > 1e-3
    torch.testing.assert_close(ljd_f + ljd_r, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v.reshape(1, *x.shape[1:]))[0].flatten(),
                                             x[0].flatten())
    assert float(torch.linalg.slogdet(jac)[1]) == pytest.approx(float(ljd_f[0]), abs=1e-10)


def test_new_coupling_is_identity():
    layer = AffineCoupling(1, 3, hidden=8, clamp=2.0, detail_conditions=False)
    x = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(9))
    out, ljd = layer(x)
    torch.testing.assert_close(out, x)
    torch.testing.assert_close(ljd, torch.zeros(2))


def test_soft_clamp_bounds():
    s = torch.tensor([-1e6, -3.0, 0.0, 0.5, 1e6])
    c = soft_clamp(s, 2.0)
    assert float(c.abs().max()) < 2.0
    assert float(c[2]) == 0.0
    assert float(c[3]) == pytest.approx(0.636 * 0.5, rel=0.05)  # FrEIA's atan clamp: slope 0.636 (~2/pi) at 0
    assert float(c[0]) == pytest.approx(-2.0, rel=2e-3) and float(c[4]) == pytest.approx(2.0, rel=2e-3)


def test_flow_does_not_modify_inputs():
    flow = _flow(4, seed=10)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(11))
    x0 = x.clone()
    with torch.no_grad():
        out = flow(x)
    torch.testing.assert_close(x, x0, rtol=0, atol=0)
    y0, zs0 = out.y.clone(), [z.clone() for z in out.zs]
    with torch.no_grad():
        flow.inverse(out.y, out.zs)
    torch.testing.assert_close(out.y, y0, rtol=0, atol=0)
    for z, z0 in zip(out.zs, zs0):
        torch.testing.assert_close(z, z0, rtol=0, atol=0)


@pytest.mark.parametrize("scale,hr_size,channels", [(2, (8, 12), 1), (4, (16, 12), 1), (8, (16, 24), 1),
                                                    (4, (12, 20), 3)])
def test_shapes(scale, hr_size, channels):
    flow = _flow(scale, channels=channels)
    x = torch.rand(2, channels, *hr_size, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        out = flow(x)
    lr_size = (hr_size[0] // scale, hr_size[1] // scale)
    assert out.y.shape == (2, channels, *lr_size)  # exactly the LR shape
    dim_z = sum(z[0].numel() for z in out.zs)
    assert dim_z == x[0].numel() - out.y[0].numel()
    assert len(out.zs) == flow.config.levels
    assert [tuple(z.shape[1:]) for z in out.zs] == flow.z_shapes(lr_size)
    assert out.log_det.shape == (2,)


def test_flow_levels_validation():
    assert FlowConfig(scale=8).levels == 3
    for bad in (1, 3, 6):
        with pytest.raises(ValueError):
            _ = FlowConfig(scale=bad).levels


@pytest.mark.parametrize("scale,hr_size,channels", [(2, (8, 12), 1), (4, (16, 12), 1), (8, (16, 24), 1),
                                                    (8, (16, 16), 3)])
def test_grid_round_trip(scale, hr_size, channels):
    flow = _flow(scale, channels=channels)
    lr_size = (hr_size[0] // scale, hr_size[1] // scale)
    gen = torch.Generator().manual_seed(13)
    zs = [torch.randn(2, *shape, generator=gen) for shape in flow.z_shapes(lr_size)]
    zs0 = [z.clone() for z in zs]
    grid = zs_to_grid(zs, channels)
    assert grid.shape == (2, 4 * channels, hr_size[0] // 2, hr_size[1] // 2)
    for z, z0 in zip(zs, zs0):
        torch.testing.assert_close(z, z0, rtol=0, atol=0)
    back = grid_to_zs(grid, channels, flow.config.levels)
    assert len(back) == len(zs)
    for z, zb in zip(zs, back):
        assert zb.shape == z.shape
        torch.testing.assert_close(zb, z, rtol=0, atol=1e-5)
    # orthonormal: the grid carries exactly the energy of the zs
    energy = sum(float(z.pow(2).sum()) for z in zs)
    assert float(grid.pow(2).sum()) == pytest.approx(energy, rel=1e-5)


def test_grid_drops_the_deepest_low_pass_slot():
    channels, levels = 1, 3
    gen = torch.Generator().manual_seed(14)
    grid = torch.randn(1, 4, 8, 8, generator=gen)
    zs = grid_to_zs(grid, channels, levels)
    assert [tuple(z.shape[1:]) for z in zs] == [(3, 8, 8), (3, 4, 4), (3, 2, 2)]
    # the re-embedded grid equals the original minus its component in the deepest low-pass slot
    regrid = zs_to_grid(zs, channels)
    assert float((regrid - grid).abs().max()) > 1e-3  # something was dropped
    torch.testing.assert_close(grid_to_zs(regrid, channels, levels)[2], zs[2], rtol=0, atol=1e-5)
    torch.testing.assert_close(regrid[:, :3], grid[:, :3], rtol=0, atol=0)  # z_1 is stored as is


def test_nll_is_finite_and_backprops():
    flow = _flow(4, seed=15)
    flow.train()
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(16))
    loss, parts = flow.nll(x)
    assert torch.isfinite(loss) and loss.dim() == 0
    assert set(parts) == {"y_mse", "z_energy", "log_det"}
    loss.backward()
    grads = [p.grad for p in flow.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().max()) > 0 for g in grads)
