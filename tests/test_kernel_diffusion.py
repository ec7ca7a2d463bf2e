"""The kernel-space DDPM at a tiny UNet config: training loss, sampling with every scheduler, explicit
timesteps, intermediate starts, argument validation, and padding of odd grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sr_engine.models.kernel_diffusion import (
    SCHEDULERS,
    KernelDDPMConfig,
    build_unet,
    condition,
    make_scheduler,
    p_sample_loop,
    predict,
    predicted_z0,
    training_loss,
)


def _cfg(scale: int = 4, **kw) -> KernelDDPMConfig:
    return KernelDDPMConfig(scale=scale, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, **kw)


@pytest.fixture(scope="module")
def tiny():
    cfg = _cfg()
    torch.manual_seed(0)
    return cfg, build_unet(cfg).eval()


def _inputs(cfg: KernelDDPMConfig, b: int = 2, lr=(3, 4), seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    y = torch.rand(b, cfg.channels, *lr, generator=gen)
    f = cfg.scale // 2
    noise = torch.randn(b, 4 * cfg.channels, lr[0] * f, lr[1] * f, generator=gen)
    return y, noise


def test_training_loss_is_finite_and_backprops(tiny):
    cfg, _ = tiny
    torch.manual_seed(2)
    unet = build_unet(cfg).train()
    sched = make_scheduler(cfg, "ddpm")
    y, z0 = _inputs(cfg, b=3)
    loss = training_loss(unet, sched, z0, y, cfg, generator=torch.Generator().manual_seed(3))
    assert loss.dim() == 0 and torch.isfinite(loss) and float(loss.detach()) > 0
    loss.backward()
    grads = [p.grad for p in unet.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # seeded: the same generator gives the same loss
    again = training_loss(unet, sched, z0, y, cfg, generator=torch.Generator().manual_seed(3))
    assert float(again.detach()) == pytest.approx(float(loss.detach()), rel=1e-6)


def test_training_loss_epsilon_parameterisation():
    cfg = _cfg(prediction_type="epsilon")
    torch.manual_seed(4)
    unet = build_unet(cfg)
    y, z0 = _inputs(cfg)
    loss = training_loss(unet, make_scheduler(cfg, "ddpm"), z0, y, cfg, generator=torch.Generator().manual_seed(5))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_predicted_z0_inverts_the_target(prediction_type):
    """With the true target in the network's place, the estimate of z_0 is z_0 itself."""
    cfg = _cfg(prediction_type=prediction_type)
    sched = make_scheduler(cfg, "ddpm")
    _, z0 = _inputs(cfg, b=4)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(7))
    t = torch.tensor([0, 10, 500, 900])  # at t = 999 the epsilon form divides by sqrt(abar) ~ 0.006
    z_t = sched.add_noise(z0, noise, t)
    target = noise if prediction_type == "epsilon" else sched.get_velocity(z0, noise, t)
    assert torch.allclose(predicted_z0(sched, z_t, target, t, cfg), z0, atol=1e-4)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_pixel_term_is_the_weighted_decoded_error(prediction_type):
    """The pixel term: the decoded estimate of z_0 against x_ref, weighted per timestep as the target weights
    the error of z_0; with the identity as decoder and x_ref = z_0 it equals the z-space loss itself (the two are
    the same loss in two metrics). It adds to the z loss with its weight, back-propagates, draws no extra
    random numbers, and is refused without a decoder."""
    cfg = _cfg(prediction_type=prediction_type)
    torch.manual_seed(8)
    unet = build_unet(cfg).train()
    sched = make_scheduler(cfg, "ddpm")
    y, z0 = _inputs(cfg, b=3)
    parts: dict = {}
    plain = training_loss(unet, sched, z0, y, cfg, generator=torch.Generator().manual_seed(9), parts=parts)
    assert set(parts) == {"v"} and float(parts["v"]) == pytest.approx(float(plain.detach()))
    parts = {}
    both = training_loss(unet, sched, z0, y, cfg, generator=torch.Generator().manual_seed(9), parts=parts,
                         decode=lambda g: g, x_ref=z0, pixel_weight=0.5)
    assert float(parts["v"]) == pytest.approx(float(plain.detach()), rel=1e-6)  # the same draws
    assert float(parts["pixel"]) == pytest.approx(float(plain.detach()), rel=1e-4)
    assert float(both.detach()) == pytest.approx(1.5 * float(plain.detach()), rel=1e-4)
    both.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in unet.parameters())

    # a decoder that doubles: four times the pixel term
    parts = {}
    training_loss(unet, sched, z0, y, cfg, generator=torch.Generator().manual_seed(9), parts=parts,
                  decode=lambda g: 2 * g, x_ref=2 * z0, pixel_weight=1.0)
    assert float(parts["pixel"]) == pytest.approx(4 * float(plain.detach()), rel=1e-4)
    with pytest.raises(ValueError, match="needs decode"):
        training_loss(unet, sched, z0, y, cfg, pixel_weight=1.0)


def test_flat_weight_scales_the_pixel_term_on_flat_ground_only():
    """--flat-weight: the pixel term counts 1 + w where the reference image is flat ground (more than 2 px from
    ink) and 1 on and near strokes; dark ink flips which side is ink; the mask is the metrics' background mask;
    without a pixel term it is refused."""
    from sr_engine.metrics import background_mask
    from sr_engine.models.kernel_diffusion import flat_ground
    from sr_engine.plates import render_plates

    cfg = _cfg()
    torch.manual_seed(8)
    unet = build_unet(cfg).train()
    sched = make_scheduler(cfg, "ddpm")
    y, z0 = _inputs(cfg, b=3)

    def pixel(shift: float, flat: float, dark: bool = False) -> float:
        parts: dict = {}
        training_loss(unet, sched, z0, y, cfg, generator=torch.Generator().manual_seed(9), parts=parts,
                      decode=lambda g: g + shift, x_ref=z0 + shift, pixel_weight=1.0, flat_weight=flat,
                      dark_ink=dark)
        return float(parts["pixel"])

    base = pixel(-20.0, 0.0)
    assert pixel(-20.0, 3.0) == pytest.approx(4 * base, rel=1e-5)  # all below the ink level: all flat ground
    assert pixel(20.0, 3.0) == pytest.approx(pixel(20.0, 0.0), rel=1e-5)  # all ink: nothing flat
    assert pixel(20.0, 3.0, dark=True) == pytest.approx(4 * pixel(20.0, 0.0), rel=1e-5)  # light = plate ground
    plates = render_plates(2, seed=3, split="train").images
    x = torch.from_numpy(plates.astype(np.float32) / 255)[:, None]
    got = flat_ground(x, dark_ink=True)[:, 0].numpy().astype(bool)
    want = np.stack([background_mask(p, dark_ink=True) for p in plates])
    np.testing.assert_array_equal(got, want)
    assert 0 < got.mean() < 1
    with pytest.raises(ValueError, match="needs pixel_weight"):
        training_loss(unet, sched, z0, y, cfg, decode=lambda g: g, x_ref=z0, flat_weight=1.0)


def test_condition_enlarges_onto_grid():
    cfg = _cfg(scale=8)
    y = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    c = condition(y, cfg)
    assert c.shape == (1, 1, 8, 8)
    assert float(c[0, 0, 0, 0]) == -1.0 and float(c[0, 0, 0, 7]) == 1.0 and float(c[0, 0, 7, 0]) == 0.0
    assert float(c.min()) >= -1 and float(c.max()) <= 1


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("steps", [1, 3, 50])
def test_p_sample_loop_runs(tiny, scheduler, steps):
    cfg, unet = tiny
    y, noise = _inputs(cfg)
    noise0 = noise.clone()
    gens = [torch.Generator().manual_seed(10 + i) for i in range(2)]
    z = p_sample_loop(unet, cfg, y, noise, steps=steps, scheduler=scheduler, generators=gens)
    assert z.shape == noise.shape
    assert torch.isfinite(z).all()
    torch.testing.assert_close(noise, noise0, rtol=0, atol=0)  # the starting draw is not modified
    assert float((z - noise).abs().max()) > 1e-4  # the chain did something


@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver"])
def test_deterministic_schedulers_repeat(tiny, scheduler):
    cfg, unet = tiny
    y, noise = _inputs(cfg)
    a = p_sample_loop(unet, cfg, y, noise, steps=4, scheduler=scheduler)
    b = p_sample_loop(unet, cfg, y, noise, steps=4, scheduler=scheduler)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_ddpm_uses_the_per_sample_generators(tiny):
    cfg, unet = tiny
    y, noise = _inputs(cfg)

    def run(seeds):
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        return p_sample_loop(unet, cfg, y, noise, steps=4, scheduler="ddpm", generators=gens)

    a, b, c = run([1, 2]), run([1, 2]), run([1, 3])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a[0], c[0], rtol=0, atol=0)  # sample 0 only depends on its own generator
    assert float((a[1] - c[1]).abs().max()) > 1e-6


@pytest.mark.parametrize("scheduler", ["dpmsolver", "ddpm"])
def test_explicit_timesteps(tiny, scheduler):
    cfg, unet = tiny
    y, noise = _inputs(cfg)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    z = p_sample_loop(unet, cfg, y, noise, timesteps=[999, 700, 300, 50], scheduler=scheduler, generators=gens)
    assert z.shape == noise.shape and torch.isfinite(z).all()
    # the list is used: another list gives another result
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    z2 = p_sample_loop(unet, cfg, y, noise, timesteps=[999, 500, 10], scheduler=scheduler, generators=gens)
    assert float((z - z2).abs().max()) > 1e-6


def test_explicit_timesteps_with_ddim_raise(tiny):
    cfg, unet = tiny
    y, noise = _inputs(cfg)
    with pytest.raises(ValueError):
        p_sample_loop(unet, cfg, y, noise, timesteps=[999, 500, 0], scheduler="ddim")


@pytest.mark.parametrize("scheduler", ["dpmsolver", "ddpm"])
@pytest.mark.parametrize("bad", [[500, 500, 10], [10, 500], [1000, 500], [500, -1], []])
def test_bad_timesteps_raise(tiny, scheduler, bad):
    cfg, unet = tiny
    y, noise = _inputs(cfg)
    with pytest.raises(ValueError):
        p_sample_loop(unet, cfg, y, noise, timesteps=bad, scheduler=scheduler)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_start_step(tiny, scheduler):
    cfg, unet = tiny
    y, noise = _inputs(cfg)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    z = p_sample_loop(unet, cfg, y, noise, steps=8, start_step=5, scheduler=scheduler, generators=gens)
    assert z.shape == noise.shape and torch.isfinite(z).all()
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    full = p_sample_loop(unet, cfg, y, noise, steps=8, scheduler=scheduler, generators=gens)
    assert float((z - full).abs().max()) > 1e-6
    # the last valid index works too
    p_sample_loop(unet, cfg, y, noise, steps=8, start_step=7, scheduler=scheduler,
                  generators=[torch.Generator().manual_seed(i) for i in range(2)])


def test_start_step_with_explicit_timesteps(tiny):
    cfg, unet = tiny
    y, noise = _inputs(cfg)
    z = p_sample_loop(unet, cfg, y, noise, timesteps=[900, 600, 300, 100], start_step=2, scheduler="dpmsolver")
    assert torch.isfinite(z).all()
    with pytest.raises(ValueError):
        p_sample_loop(unet, cfg, y, noise, timesteps=[900, 600, 300, 100], start_step=4, scheduler="dpmsolver")


@pytest.mark.parametrize("start_step", [8, 100, -1])
def test_out_of_range_start_step_raises(tiny, start_step):
    cfg, unet = tiny
    y, noise = _inputs(cfg)
    with pytest.raises(ValueError):
        p_sample_loop(unet, cfg, y, noise, steps=8, start_step=start_step)


@pytest.mark.parametrize("steps", [0, -3, 1001])
def test_bad_steps_raise(tiny, steps):
    cfg, unet = tiny
    y, noise = _inputs(cfg)
    with pytest.raises(ValueError):
        p_sample_loop(unet, cfg, y, noise, steps=steps)


def test_unknown_scheduler_raises(tiny):
    cfg, unet = tiny
    y, noise = _inputs(cfg)
    with pytest.raises(ValueError):
        make_scheduler(cfg, "euler")
    with pytest.raises(ValueError):
        p_sample_loop(unet, cfg, y, noise, steps=2, scheduler="euler")


@pytest.mark.parametrize("lr", [(5, 7), (1, 3), (3, 1)])
def test_odd_grids_are_padded_and_cropped(lr):
    # scale 2: the grid has the LR size, so odd LR sizes give odd grids that the UNet cannot take as they are
    cfg = _cfg(scale=2)
    torch.manual_seed(6)
    unet = build_unet(cfg).eval()
    y, noise = _inputs(cfg, lr=lr)
    assert noise.shape[-2:] == lr
    z = p_sample_loop(unet, cfg, y, noise, steps=2, scheduler="dpmsolver")
    assert z.shape == noise.shape and torch.isfinite(z).all()
    with torch.no_grad():
        out = predict(unet, noise, condition(y, cfg), torch.tensor(500), cfg)
    assert out.shape == noise.shape


def test_deeper_unet_pads_to_its_multiple():
    cfg = KernelDDPMConfig(scale=4, block_out_channels=(8, 8, 16), layers_per_block=1, norm_num_groups=4)
    assert cfg.grid_multiple == 4
    torch.manual_seed(7)
    unet = build_unet(cfg).eval()
    y, noise = _inputs(cfg, lr=(3, 5))  # grid 6x10: not a multiple of 4
    z = p_sample_loop(unet, cfg, y, noise, steps=2)
    assert z.shape == noise.shape and torch.isfinite(z).all()


def test_config_dict_round_trip():
    cfg = _cfg()
    d = cfg.to_dict()
    assert d["block_out_channels"] == [8, 16]  # plain lists: what a checkpoint or JSON holds
    assert KernelDDPMConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="no field"):
        KernelDDPMConfig.from_dict({**d, "nonsense": 1})
