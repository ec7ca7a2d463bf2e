"""Training stages at a tiny config: they run, checkpoint, resume where they stopped, and export an engine that
loads through the public API and samples consistent banks."""

from __future__ import annotations

import numpy as np
import torch

from sr_engine import load_engine
from sr_engine.train import TrainConfig, train_ddpm, train_flow

TINY_FLOW = {"hidden": 8, "blocks_per_level": 2}
TINY_DDPM = {"block_out_channels": (8, 16), "layers_per_block": 1, "norm_num_groups": 4}


def _cfg(tmp_path, stage: str, steps: int) -> TrainConfig:
    return TrainConfig(model="mnist-x4", stage=stage, steps=steps, batch_size=8, warmup=2, ckpt_every=2,
                       work_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "ckpt"), flow=TINY_FLOW,
                       ddpm=TINY_DDPM)


def test_flow_and_ddpm_stages_resume_and_export(tmp_path):
    train_flow(_cfg(tmp_path, "flow", 2))
    st = torch.load(tmp_path / "runs" / "mnist-x4" / "flow.pt", weights_only=True)
    assert st["step"] == 2 and st["flow_config"]["hidden"] == 8
    first = {k: v.clone() for k, v in st["flow_state"].items()}
    train_flow(_cfg(tmp_path, "flow", 4))  # resumes at 2, runs to 4
    st = torch.load(tmp_path / "runs" / "mnist-x4" / "flow.pt", weights_only=True)
    assert st["step"] == 4
    assert any(not torch.equal(first[k], st["flow_state"][k]) for k in first)

    train_ddpm(_cfg(tmp_path, "ddpm", 2))
    path = tmp_path / "ckpt" / "mnist-x4.pt"
    assert path.is_file()
    info = torch.load(path, weights_only=True)["train_info"]
    assert info["flow_steps"] == 4 and info["ddpm_steps"] == 2

    eng = load_engine(str(path))
    assert eng.scale == 4
    lr = (np.arange(49).reshape(7, 7) * 5).astype(np.uint8)
    bank = eng.sample_bank(lr, n=4, steps=2, seed=0)
    assert bank.images.shape == (4, 28, 28)
    assert bank.lr_psnr.min() >= 45


def test_ddpm_continues_from_an_engine_checkpoint(tmp_path):
    """--init-from: the flow and the UNet's EMA weights of an engine checkpoint are where a second run starts; the
    flow is kept as it was, the UNet moves, and the export records the start (its hash and training record) and
    the total steps. A checkpoint of another model is refused."""
    from dataclasses import replace

    import pytest

    from sr_engine.engines.base import sha256_file

    train_flow(_cfg(tmp_path, "flow", 2))
    train_ddpm(_cfg(tmp_path, "ddpm", 2))
    first = tmp_path / "first.pt"
    (tmp_path / "ckpt" / "mnist-x4.pt").rename(first)
    before = torch.load(first, weights_only=True)

    cfg = replace(_cfg(tmp_path, "ddpm", 2), work_dir=str(tmp_path / "runs2"), export_dir=str(tmp_path / "ckpt2"),
                  init_from=str(first), seed=1)
    torch.manual_seed(123)  # the start must not depend on a fresh initialisation
    train_ddpm(cfg)
    after = torch.load(tmp_path / "ckpt2" / "mnist-x4.pt", weights_only=True)
    for k, v in before["flow_state"].items():
        assert torch.equal(v, after["flow_state"][k])
    assert any(not torch.equal(v, after["unet_state"][k]) for k, v in before["unet_state"].items())
    info = after["train_info"]
    assert info["ddpm_steps"] == 2 and info["ddpm_steps_total"] == 4
    assert info["continued_from"]["sha256"] == sha256_file(first)
    assert info["continued_from"]["train_info"]["ddpm_steps"] == 2
    assert info["flow_steps"] == before["train_info"]["flow_steps"]

    # after 0 steps of training the UNet would be the start's EMA weights: check the start itself, one step, lr 0
    zero = replace(cfg, steps=1, lr=0.0, work_dir=str(tmp_path / "runs3"), export_dir=str(tmp_path / "ckpt3"))
    train_ddpm(zero)
    same = torch.load(tmp_path / "ckpt3" / "mnist-x4.pt", weights_only=True)
    for k, v in before["unet_state"].items():
        assert torch.allclose(v, same["unet_state"][k], atol=1e-6), k

    with pytest.raises(ValueError, match="not a flow engine checkpoint of mnist-x8"):
        train_ddpm(replace(cfg, model="mnist-x8", work_dir=str(tmp_path / "runs4")))


def test_ddpm_with_the_pixel_term(tmp_path):
    """--pixel-loss: the kernel DDPM also trained on its error measured in pixels through the frozen flow. The run
    logs both terms, records the weight in its training config, moves the UNet differently from the same run
    without it (same seed, same draws), and leaves the flow as it was."""
    from dataclasses import replace

    train_flow(_cfg(tmp_path, "flow", 2))
    flow_before = torch.load(tmp_path / "runs" / "mnist-x4" / "flow.pt", weights_only=True)["flow_state"]
    train_ddpm(_cfg(tmp_path, "ddpm", 2))
    plain = torch.load(tmp_path / "ckpt" / "mnist-x4.pt", weights_only=True)
    cfg = replace(_cfg(tmp_path, "ddpm", 2), pixel_loss=40.0, work_dir=str(tmp_path / "runs"),
                  export_dir=str(tmp_path / "ckpt-px"))
    (tmp_path / "runs" / "mnist-x4" / "ddpm.pt").unlink()  # the same start as the plain run, not its end
    train_ddpm(cfg)
    px = torch.load(tmp_path / "ckpt-px" / "mnist-x4.pt", weights_only=True)
    assert px["train_info"]["ddpm_train_config"]["pixel_loss"] == 40.0
    assert plain["train_info"]["ddpm_train_config"]["pixel_loss"] == 0.0
    assert any(not torch.equal(v, px["unet_state"][k]) for k, v in plain["unet_state"].items())
    for k, v in flow_before.items():
        assert torch.equal(v, px["flow_state"][k])


def test_average_stage_takes_the_mean_of_two_continuations(tmp_path):
    """--stage average: two continuations of one engine checkpoint give one whose UNet is their parameter-wise
    mean, with the flow kept bit for bit and both inputs recorded; it loads, samples exact strict banks and can be
    continued. Checkpoints of different flows, a single input, and writing over an input are refused."""
    from dataclasses import replace

    import pytest

    from sr_engine.cli import train_main
    from sr_engine.engines.base import sha256_file
    from sr_engine.train import average_engines

    train_flow(_cfg(tmp_path, "flow", 2))
    train_ddpm(_cfg(tmp_path, "ddpm", 2))
    start = tmp_path / "start.pt"
    (tmp_path / "ckpt" / "mnist-x4.pt").rename(start)
    runs = []
    for seed in (1, 2):
        cfg = replace(_cfg(tmp_path, "ddpm", 2), work_dir=str(tmp_path / f"runs{seed}"),
                      export_dir=str(tmp_path / f"ckpt{seed}"), init_from=str(start), seed=seed)
        train_ddpm(cfg)
        runs.append(tmp_path / f"ckpt{seed}" / "mnist-x4.pt")
    a, b = (torch.load(p, weights_only=True) for p in runs)
    assert any(not torch.equal(v, b["unet_state"][k]) for k, v in a["unet_state"].items())

    train_main(["--model", "mnist-x4", "--stage", "average", "--average", ",".join(map(str, runs)),
                "--export-dir", str(tmp_path / "soup")])
    out = tmp_path / "soup" / "mnist-x4.pt"
    soup = torch.load(out, weights_only=True)
    for k, v in a["unet_state"].items():
        assert torch.allclose(soup["unet_state"][k], (v + b["unet_state"][k]) / 2, atol=1e-7), k
    for k, v in a["flow_state"].items():
        assert torch.equal(v, soup["flow_state"][k])
    info = soup["train_info"]
    assert [s["sha256"] for s in info["averaged_from"]] == [sha256_file(p) for p in runs]
    assert info["ddpm_steps_total"] == 4
    assert info["ddpm_seconds_total"] == pytest.approx(
        a["train_info"]["ddpm_seconds_total"] + b["train_info"]["ddpm_seconds"], abs=0.2)

    eng = load_engine(str(out))
    lr = (np.arange(49).reshape(7, 7) * 5).astype(np.uint8)
    bank = eng.sample_bank(lr, n=4, steps=2, seed=0)
    assert bank.lr_psnr.min() >= 45  # strict (the default mode): every sample rounds back to the LR image

    more = replace(_cfg(tmp_path, "ddpm", 1), work_dir=str(tmp_path / "runs-more"),
                   export_dir=str(tmp_path / "ckpt-more"), init_from=str(out), seed=3)
    train_ddpm(more)
    assert torch.load(tmp_path / "ckpt-more" / "mnist-x4.pt", weights_only=True)["train_info"]["ddpm_steps_total"] == 5

    other = tmp_path / "other.pt"  # same UNet, another flow
    torch.save({**a, "flow_state": {k: v + 1 for k, v in a["flow_state"].items()}}, other)
    with pytest.raises(ValueError, match="differ in 'flow_state'"):
        average_engines([runs[0], other], tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="at least two"):
        average_engines([runs[0]], tmp_path / "bad.pt")
    with pytest.raises(SystemExit):
        train_main(["--model", "mnist-x4", "--stage", "average", "--average", f"{runs[0]},{runs[1]}",
                    "--export-dir", str(tmp_path / "ckpt1")])
