"""The benchmark end to end at the tiniest setting: a tiny untrained kernel-space engine (built here, not the
shipped models), baselines and raters trained for a handful of steps into tmp_path, three evaluation images,
2-sample banks, 1-2 steps, x4 only. Checks that the table, the CSVs and the plots are written with sane values,
and the parts that do not need a run: DDNM's projection, the raters' picks, the CLI's parts."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sr_engine.bench.baselines import BaselineConfig, build_pixel_unet, pixel_chain_config
from sr_engine.bench.config import tiny_config
from sr_engine.bench.methods import FAMILIES, Setting, pixel_sample
from sr_engine.bench.raters import rater_picks
from sr_engine.bench.run import run_benchmark
from sr_engine.cli import benchmark_main as bench_main
from sr_engine.degradation import get_degradation
from sr_engine.ensemble import most_voted
from sr_engine.metrics import CONSISTENT_DB
from sr_engine.models.flow import FlowConfig, PseudoInverseFlow
from sr_engine.models.kernel_diffusion import KernelDDPMConfig, build_unet

pytestmark = pytest.mark.slow


def _tiny_engine_checkpoint(path):
    """A real, untrained flow + kernel DDPM at a tiny width for 28x28 digits, in the shipped checkpoint format."""
    torch.manual_seed(0)
    fcfg = FlowConfig(scale=4, channels=1, hr_size=(28, 28), hidden=8, blocks_per_level=1)
    dcfg = KernelDDPMConfig(channels=1, scale=4, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)
    torch.save({"format": "sr_engine.flow-kernel-ddpm/1", "engine": "flow", "name": "tiny-x4",
                "flow_config": asdict(fcfg), "flow_state": PseudoInverseFlow(fcfg).state_dict(),
                "ddpm_config": dcfg.to_dict(), "unet_state": build_unet(dcfg).state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    cfg = tiny_config(str(tmp / "out"), {4: _tiny_engine_checkpoint(tmp / "tiny-x4.pt")})
    return cfg, run_benchmark(cfg)


def test_tiny_run_writes_sane_table_csv_and_plots(tiny_run):
    cfg, res = tiny_run
    out = cfg.out
    for name in ("benchmark.md", "metrics.csv", "ambiguity.csv", "timing.csv", "steps_tradeoff.png",
                 "time_vs_samples.png", "ambiguous_x4.png"):
        f = res.files[next(k for k, v in res.files.items() if v.name == name)]
        assert f.is_file() and f.stat().st_size > 100 and str(f).startswith(out), name
    for png in ("steps_tradeoff.png", "time_vs_samples.png", "ambiguous_x4.png"):
        assert (res.files["markdown"].parent / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    df = pd.read_csv(res.files["metrics_csv"])
    expected = 2 + len(cfg.taus) + 4 * len(cfg.steps)  # bicubic, regression, priors, 4 samplers x steps
    assert len(df) == expected and set(df.family) == set(FAMILIES)
    assert (df.images == 3).all()
    assert df.psnr_single.between(3, 100).all() and df.ssim_single.between(-1, 1).all()
    assert df.lr_psnr_mean.between(0, 100).all() and (df.consistency_mse_1e5 >= 0).all()
    assert (df.seconds_per_bank > 0).all() and df.digit_accuracy.between(0, 1).all()
    assert df[df.family.isin(["bicubic", "regression"])].samples.eq(3).all()
    assert df[df.family == "kernel-strict"].samples.eq(3 * cfg.sweep_n).all()
    nfe = dict(zip(zip(df.family, df.steps), df.nfe))
    assert nfe[("kernel-strict", 2)] == 3 and nfe[("pixel-ddpm", 2)] == 2 and nfe[("bicubic", 0)] == 0
    # strict mode projects exactly, untrained or not; DDNM ends with a range projection (clipping aside)
    strict = df[df.family == "kernel-strict"]
    assert (strict.lr_psnr_worst >= CONSISTENT_DB).all() and (strict.share_consistent == 1).all()
    ddnm, ddpm = df[df.family == "pixel-ddnm"], df[df.family == "pixel-ddpm"]
    assert ddnm.lr_psnr_mean.min() > ddpm.lr_psnr_mean.max()

    amb = pd.read_csv(res.files["ambiguity_csv"])
    assert len(amb) == 5 and (amb.images == 3).all() and amb.acc_ensemble.between(0, 1).all()
    timing = pd.read_csv(res.files["timing_csv"])
    assert set(timing.n) == set(cfg.timing_ns) and (timing.seconds > 0).all()

    md = res.files["markdown"].read_text()
    assert "not results" in md and "## x4" in md and "kernel-strict (2 steps)" in md
    assert "Ambiguity resolution" in md and "consistency: every kernel-strict sample" in md and "Partial" not in md


def test_outputs_written_while_units_pending_say_so(tiny_run, tmp_path):
    from dataclasses import replace

    from sr_engine.bench.report import write_outputs

    cfg, res = tiny_run
    part = replace(cfg, out=str(tmp_path), scales=(4, 8))  # x8 not done: no empty x8 table, a partial header
    write_outputs(part, res, 12.0, pending=[("mnist", 8), ("plates", 4)])
    md = (tmp_path / "benchmark.md").read_text()
    assert "**Partial: x8, plates still running" in md and "12 s so far. Baselines from `" in md and "{" not in md
    assert "## x4" in md and "## x8" not in md and "ambiguous_x8" not in md


def test_report_compares_strict_with_flow_and_pixel_ddpm(tiny_run):
    """The strict section holds one line per step count with SSIM, exact share, haze and the projection's ms."""
    cfg, res = tiny_run
    md = res.files["markdown"].read_text()
    section = md.split("## Strict against flow and the pixel DDPM", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| x4 |")]
    assert len(lines) == len(cfg.steps)
    strict = [r for r in res.rows if r.family == "kernel-strict"]
    assert all(r.haze == r.haze and r.haze >= 0 for r in strict)
    assert all("ms" not in ln and ln.count("/") == 8 and "(n=" in ln for ln in lines)
    assert "haze (grey)" in md.split("## x4", 1)[1]


def test_pixel_ddnm_step_makes_x0_consistent():
    """With the range projection the last DDIM step returns the projected x0: D x = y up to clipping."""
    cfg = pixel_chain_config(BaselineConfig(ddpm={"block_out_channels": (8, 16), "layers_per_block": 1,
                                                  "norm_num_groups": 4}), 4)
    torch.manual_seed(0)
    unet = build_pixel_unet(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    y = torch.rand((2, 1, 7, 7), generator=gen) * 0.5 + 0.25  # mid-grey LR: projections stay inside [0, 1]
    up = torch.nn.functional.interpolate(y, scale_factor=4, mode="bicubic", align_corners=False)
    noise = torch.randn((2, 1, 28, 28), generator=gen)
    x = pixel_sample(unet, cfg, up, noise, steps=3, y=y, scale=4)
    free = pixel_sample(unet, cfg, up, noise, steps=3, scale=4)
    deg = get_degradation((28, 28), 4, "bicubic")
    assert x.shape == (2, 1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1
    err = (deg.down(x.double()) - y.double()).abs().max().item()
    assert err < (deg.down(free.double()) - y.double()).abs().max().item()
    assert err < 0.05


def test_rater_picks_and_most_voted():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    np.testing.assert_array_equal(rater_picks(probs, 2), [0, 2])
    # approvals: 0 -> 2, 2 -> 1, 1 -> 1; Borda breaks the 1-1 tie (2 ranked first by the second rater)
    np.testing.assert_array_equal(most_voted([np.array([0, 1]), np.array([2, 0])], 4, 2), [0, 2])
    np.testing.assert_array_equal(most_voted([np.array([0, 1]), np.array([2, 0])], 4, 3), [0, 2, 1])


def test_setting_validates():
    with pytest.raises(ValueError, match="unknown method family"):
        Setting("srgan")
    with pytest.raises(ValueError, match="steps >= 1"):
        Setting("kernel-strict")
    assert Setting("prior", tau=0.6).label == "flow only (prior, tau=0.6)"


def test_cli_timing_part_still_parses(capsys):
    with pytest.raises(SystemExit):
        bench_main(["timing", "--help"])
    assert "--repeats" in capsys.readouterr().out


def test_memory_per_method_in_forked_children(tmp_path):
    """Peak RSS increments come back per family from one fresh process; the sampler adds more than bicubic."""
    from sr_engine.bench.memory import measure

    peaks, floor = measure(["bicubic", "kernel-strict"], 4, _tiny_engine_checkpoint(tmp_path / "e.pt"), "", n=2,
                           steps=1)
    assert set(peaks) == {"bicubic", "kernel-strict"} and floor > 50
    assert 0 <= peaks["bicubic"] < peaks["kernel-strict"] < 4096


def test_train_baselines_resumes_and_keeps_finished(tmp_path):
    from dataclasses import replace

    from sr_engine.bench.baselines import load_pixel_ddpm, load_raters, load_regression, train_baselines

    cfg = replace(tiny_config(str(tmp_path), {}).baselines, reg_steps=2, ddpm_steps=2, raters=1,
                  classifier_rows=32)
    paths = train_baselines(cfg)
    assert all(p.is_file() and str(p).startswith(str(tmp_path)) for p in paths) and len(paths) == 4
    judge_mtime = (tmp_path / "baselines" / "raters" / "judge.pt").stat().st_mtime_ns
    train_baselines(replace(cfg, reg_steps=3))  # regression resumes from step 2; the rest is kept
    st = torch.load(tmp_path / "baselines-work" / "x4" / "regression.pt", weights_only=True)
    assert st["step"] == 3
    assert torch.load(paths[0], weights_only=True)["train_info"]["steps"] == 3
    assert (tmp_path / "baselines" / "raters" / "judge.pt").stat().st_mtime_ns == judge_mtime
    assert load_regression(tmp_path / "baselines", 4) is not None and load_pixel_ddpm(tmp_path / "baselines", 4)
    raters, judge = load_raters(tmp_path / "baselines")
    assert len(raters) == 1 and judge is not None
    with pytest.raises(FileNotFoundError, match="train-baselines"):
        load_regression(tmp_path / "nowhere", 4)


def test_plates_section_and_parallel_units(tmp_path):
    """Digits (tiny engine) and the plates section (the shipped plates-x4 engine, tiny plates baselines trained
    here on 64 renders) in two worker processes: one benchmark.md with both, the plates files, strict exact."""
    from dataclasses import replace

    cfg = tiny_config(str(tmp_path / "out"), {4: _tiny_engine_checkpoint(tmp_path / "tiny-x4.pt")})
    cfg = replace(cfg, domains=("mnist", "plates"), plates=2, jobs=2)
    res = run_benchmark(cfg)
    md = res.files["markdown"].read_text()
    assert "## x4" in md and "## Plates (x4)" in md and "plates x4 consistency" in md
    assert "- plates regression: 3 steps" in md and "(`plates-pixel-ddpm.pt`)" in md  # its baselines are listed
    for name in ("plates.md", "plates_metrics.csv", "plates_ambiguity.csv", "plates_steps_tradeoff.png",
                 "ambiguous_plates.png"):
        assert (tmp_path / "out" / name).stat().st_size > 100, name
    df = pd.read_csv(tmp_path / "out" / "plates_metrics.csv")
    assert set(df.family) == set(FAMILIES) and (df.images == 2).all()
    strict = df[df.family == "kernel-strict"]
    assert (strict.share_exact == 1).all() and (strict.lr_psnr_worst == 100).all()
    assert df.char_acc_single.between(0, 1).all()
    amb = pd.read_csv(tmp_path / "out" / "plates_ambiguity.csv")
    assert len(amb) == 1 + 4 and amb.char_hr.gt(0.5).all()  # the judge reads the HR plates
    assert len(res.rows) > 0 and res.plates is not None and len(res.plates.rows) == len(df)


def test_plates_baselines_loaders_name_their_files(tmp_path):
    from sr_engine.bench.baselines import load_pixel_ddpm

    with pytest.raises(FileNotFoundError, match="--plates"):
        load_pixel_ddpm(tmp_path, 4, "plates")


def test_mode_timing_times_a_shipped_bank_in_both_modes():
    from sr_engine.bench.projection_timing import mode_timing

    flow, strict = mode_timing("mnist-x4", n=2, steps=1, repeats=1)
    assert 0 < flow < 60 and 0 < strict < 60


def test_shrink_timing_times_a_shipped_bank_with_and_without_its_shrinkage():
    from sr_engine.bench.projection_timing import shrink_timing

    t = shrink_timing("mnist-x4", n=2, steps=1, repeats=1)
    assert set(t) == {"plain", "shrunk", "alone"} and all(0 < v < 60 for v in t.values())


def test_engine_timing_times_two_engines_and_their_flow_input():
    """The shipped mnist-x4 (it carries a de-clip estimator) against itself: both sides time a whole strict bank
    and the flow's input, the estimator's forward pass included."""
    from sr_engine.bench.projection_timing import engine_timing

    res = engine_timing("mnist-x4", "mnist-x4", n=2, steps=1, repeats=1, images=2)
    assert set(res) == {"bank", "step", "input"}
    (a, b), (sa, sb), (fa, fb) = res["bank"], res["step"], res["input"]
    assert 0 < a < 60 and 0 < b < 60 and 0 < sa < 60 and 0 < sb < 60
    assert 0 < fa < 0.1 and 0 < fb < 0.1


def test_rerender_from_the_csvs_writes_the_same_report(tiny_run):
    from sr_engine.bench.report import rerender

    cfg, _ = tiny_run
    before = (Path(cfg.out) / "benchmark.md").read_text()  # (another test points res.files at its own copy)
    assert "x4 consistency: every kernel-strict sample at every step count rounds back to the LR image: yes" in before
    assert rerender(cfg.out, cfg).read_text() == before


def test_kernel_sweep_matches_the_engine_and_reads_the_full_run(tmp_path):
    """The sweep's kernel-strict row is the benchmark's metric code on the engine's own banks (same seeds: seed +
    evaluation row), and the comparison table puts it beside a full run's rows read from its CSV."""
    from sr_engine.bench.config import BenchConfig
    from sr_engine.bench.sweep import compare, sweep
    from sr_engine.data import mnist_canvas
    from sr_engine.degradation import make_lr
    from sr_engine.eval.digits import eval_subset
    from sr_engine.engines.registry import load_engine
    from sr_engine.eval.tables import bank_figures

    cfg = BenchConfig(per_digit=1, max_images=2, steps=(1,), sweep_n=2)
    df = sweep("mnist-x4", cfg, families=("kernel-strict",))
    assert list(df["family"]) == ["kernel-strict"] and list(df["steps"]) == [1]
    row = df.iloc[0]
    assert row["share_exact"] == 1.0

    eng = load_engine("mnist-x4")
    hr, _, idx = eval_subset(1, mnist_canvas(4))
    hr, idx = hr[:2], idx[:2]
    lr = make_lr(hr, 4)
    banks = np.stack([eng.sample_bank(im, n=2, steps=1, seed=int(r), mode="strict").images for im, r in zip(lr, idx)])
    want = bank_figures(banks, hr, lr, 4)
    assert row["ssim_single"] == pytest.approx(want["ssim_single"], abs=1e-9)
    assert row["psnr_single"] == pytest.approx(want["psnr_single"], abs=1e-9)

    ref = pd.DataFrame([{"scale": 4, "family": "kernel-strict", "steps": 1, "ssim_single": 0.5, "psnr_single": 20.0,
                         "haze": 1.0, "diversity": 0.01},
                        {"scale": 4, "family": "pixel-ddpm", "steps": 1, "ssim_single": 0.25, "psnr_single": 21.0,
                         "haze": 2.0, "diversity": 0.02}])
    ref.to_csv(tmp_path / "metrics.csv", index=False)
    md = compare(df, tmp_path, "mnist", 4, label="new")
    assert f"| 1 | {row['ssim_single']:.3f} / 0.500 / 0.250 |" in md
    assert "100.0% |" in md

    # with the like-for-like pixel DDPM (its output shrunk as the engine's strict mode shrinks): a fourth figure
    both = sweep("mnist-x4", cfg, families=("kernel-strict",), pixel_shrink=12.0)
    assert list(both["family"]) == ["kernel-strict", "pixel-ddpm"] and list(both["shrink"]) == [0.0, 12.0]
    assert both.iloc[0]["ssim_single"] == row["ssim_single"]
    md = compare(both, tmp_path, "mnist", 4, label="new")
    assert "pixel DDPM / pixel DDPM shrunk 12 |" in md
    assert f"| 1 | {row['ssim_single']:.3f} / 0.500 / 0.250 / {both.iloc[1]['ssim_single']:.3f} |" in md


def _strict_bank_figures(eng, steps: int, **bank_kw) -> np.ndarray:
    """Mean (SSIM, skill, spread) of the engine's 2-sample strict banks on the temperature study's MNIST x4
    training digits, bank i seeded 1000 + i: what the study's kernel-strict row must equal."""
    from sr_engine.degradation import make_lr
    from sr_engine.eval.strict_tuning import training_images
    from sr_engine.metrics import spread_skill, ssim

    hr = training_images("mnist", 4, 1)
    figs = []
    for i, (h, y8) in enumerate(zip(hr, make_lr(hr, 4))):
        bank = eng.sample_bank(y8, n=2, steps=steps, seed=1000 + i, mode="strict", **bank_kw).images
        figs.append([np.mean([ssim(s, h) for s in bank]), *spread_skill(bank, h)])
    return np.mean(figs, axis=0)


def test_temperature_study_rows_are_the_samplers_own_banks():
    """The study's kernel-strict row at tau 1 is the engine's strict banks (seeded 1000 + image) scored by
    spread_skill and SSIM; a colder start narrows both samplers' banks; the pixel DDPM's tau scales its noise."""
    from sr_engine.bench.temperature import temperature_study, to_markdown
    from sr_engine.engines.registry import load_engine

    df = temperature_study("mnist-x4", rows=1, n=2, steps=1, taus=(1.0, 0.25))
    assert len(df) == 4 and set(df["family"]) == {"kernel-strict", "pixel-ddpm"}
    eng = load_engine("mnist-x4")
    want = _strict_bank_figures(eng, steps=1, tau=1.0)
    got = df[(df["family"] == "kernel-strict") & (df["tau"] == 1.0)].iloc[0]
    assert [got["ssim_single"], got["skill"], got["spread"]] == pytest.approx(list(want), rel=1e-9)
    for fam in ("kernel-strict", "pixel-ddpm"):
        warm, cold = (df[(df["family"] == fam) & (df["tau"] == t)].iloc[0] for t in (1.0, 0.25))
        assert cold["spread"] < warm["spread"]
    assert "| pixel-ddpm | ddim | 0.25 |" in to_markdown(df)
    assert Setting("pixel-ddpm", steps=8, tau=0.8).label == "pixel-ddpm (8 steps, tau=0.8)"
    assert Setting("kernel-strict", steps=1).label == "kernel-strict (1 step)"


def test_temperature_study_schedulers_are_the_engines_own_and_seeded():
    """A scheduler row is the engine's own banks with that scheduler; the ancestral (ddpm) pixel DDPM draws its
    step noise from each sample's generator, so a bank is reproducible and differs from DDIM's."""
    from sr_engine.bench.config import BenchConfig
    from sr_engine.bench.methods import Methods
    from sr_engine.bench.temperature import temperature_study, to_markdown
    from sr_engine.degradation import make_lr
    from sr_engine.engines.registry import load_engine
    from sr_engine.eval.strict_tuning import training_images

    df = temperature_study("mnist-x4", rows=1, n=2, steps=2, taus=(1.0,), schedulers=("ddim", "ddpm"))
    assert len(df) == 4 and set(df["scheduler"]) == {"ddim", "ddpm"}
    eng = load_engine("mnist-x4")
    got = df[(df["family"] == "kernel-strict") & (df["scheduler"] == "ddpm")].iloc[0]
    assert [got["ssim_single"], got["skill"], got["spread"]] == pytest.approx(
        list(_strict_bank_figures(eng, steps=2, scheduler="ddpm")), rel=1e-9)
    h = training_images("mnist", 4, 1)[0]
    y8 = make_lr(h[None], 4)[0]
    assert "| kernel-strict | ddpm | 1 |" in to_markdown(df)

    methods = Methods(4, eng, BenchConfig().baselines.export_path(), families=("pixel-ddpm",))
    anc = Setting("pixel-ddpm", steps=2, scheduler="ddpm")
    a, b = methods.bank(anc, y8, 2, 7), methods.bank(anc, y8, 2, 7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, methods.bank(Setting("pixel-ddpm", steps=2), y8, 2, 7))
    assert anc.label == "pixel-ddpm (2 steps, ddpm)"
    with pytest.raises(ValueError, match="unknown scheduler"):
        Setting("pixel-ddpm", steps=2, scheduler="heun")
    with pytest.raises(ValueError, match="has no scheduler"):
        Setting("regression", scheduler="ddpm")
    # the like-for-like pixel DDPM: its output through the kernel models' Haar shrinkage
    from sr_engine.projection import haar_shrink

    shrunk = Setting("pixel-ddpm", steps=2, shrink=16.0)
    assert shrunk.label == "pixel-ddpm (2 steps, shrink 16)"
    plain = methods.bank(Setting("pixel-ddpm", steps=2), y8, 2, 7)
    got = methods.bank(shrunk, y8, 2, 7)
    assert not np.array_equal(got, plain)
    # shrinking the 8-bit samples lands close to it (the bank shrinks the float output, before clipping and
    # rounding), and the shrunk bank is smoother
    again = haar_shrink(torch.from_numpy(plain.astype(np.float64) / 255), 16 / 255, 2).numpy() * 255
    assert np.abs(again - got).mean() < 0.5

    def tv(b):
        return np.abs(np.diff(b.astype(float), axis=-1)).sum() + np.abs(np.diff(b.astype(float), axis=-2)).sum()

    assert tv(got) < tv(plain)
    with pytest.raises(ValueError, match="shrink must be >= 0"):
        Setting("pixel-ddpm", steps=2, shrink=-1.0)
    with pytest.raises(ValueError, match="only"):
        Setting("kernel-strict", steps=2, shrink=8.0)
    unet, cfg = methods.pixel
    with pytest.raises(ValueError, match="one generator per sample"):
        pixel_sample(unet, cfg, torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32), 2, scheduler="ddpm")
