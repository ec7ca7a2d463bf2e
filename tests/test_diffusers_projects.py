"""Projects on a local diffusers pipeline (issue 8 in the store, the CLI and the app): a tiny random
LDMSuperResolutionPipeline (and StableDiffusionUpscalePipeline, for its prompt) saved to a temporary folder, a
project created on ``diffusers:<folder>``, RGB LR images imported within the admin's size limit, banks generated
by ``annotation.banks.run_bank_jobs`` (strict samples >= 45 dB, RGB PNGs), an ensemble without a flow check, and
exports that leave the missing flow check empty. The engine's modes, schedulers, options and size limit are
checked when the project is created; a rater cannot create one through the app's API. No network."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network at any point
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from annotation.accounts import create_rater
from annotation.banks import complete_bank, run_bank_jobs
from annotation.ensembles import make_ensemble
from annotation.errors import InvalidInput
from annotation.exports import export, provenance, read_table
from annotation.images import decode_png, import_images
from annotation.projects import create_project, load_model, model_spec, settings_for_engine
from annotation.tasks import next_task, submit
from conftest import (make_store, smooth_hr, tiny_flow_engine, tiny_ldm_pipeline, tiny_sd_upscale_pipeline,
                      free_port, wait_for_banks)
from db.engine import session_scope
from db.models import LRImage, Project
from sr_engine.metrics import CONSISTENT_DB, EXACT_DB, downscale_255, lr_psnr

SCALE = 4
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
NOT_AVAILABLE = "flow check: not available for this model"


def rgb_lr(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 (h, w, 3) LR image: D of a smooth RGB HR image."""
    hr = np.stack([smooth_hr(h * SCALE, w * SCALE, seed=seed + c) for c in range(3)], -1)
    return np.round(np.clip(downscale_255(hr, SCALE), 0, 255)).astype(np.uint8)


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def ldm_folder(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("pipelines")
    tiny_ldm_pipeline().save_pretrained(root / "ldm", safe_serialization=True)
    return str(root / "ldm")


@pytest.fixture(scope="module")
def ldm(ldm_folder):
    return load_model("diffusers:" + ldm_folder)


@pytest.fixture
def factory(tmp_path):
    eng, factory = make_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    yield factory
    eng.dispose()


def _settings(engine, name: str, **kw):
    opts = dict(bank_size=6, k_picks=2, raters_per_image=1, ensemble_size=2, steps=2, max_lr_side=16)
    opts.update(kw)
    return settings_for_engine(engine, name, **opts)


# ---- the model's name -----------------------------------------------------------------------------------------
def test_a_diffusers_model_is_named_by_its_folder(ldm, ldm_folder):
    spec = "diffusers:" + str(Path(ldm_folder).resolve())
    assert ldm.name == spec and ldm.scale == SCALE and ldm.channels == 3
    assert model_spec("diffusers:" + ldm_folder + "/") == spec and model_spec(" mnist-x4 ") == "mnist-x4"
    with pytest.raises(InvalidInput, match="folder"):
        model_spec("diffusers:  ")
    with pytest.raises(ValueError, match="does not exist"):
        load_model("diffusers:" + ldm_folder + "-missing")


# ---- service level: create, import, generate, vote, ensemble, export ----------------------------------------------
def test_project_on_a_tiny_ldm_pipeline(factory, ldm, tmp_path):
    with session_scope(factory) as s:
        p = create_project(s, _settings(ldm, "rgb", mode="strict"), engine=ldm)
        pid = p.id
        assert (p.model_name, p.scale, p.channels, p.engine_options) == (ldm.name, SCALE, 3, {})
        lrs = [rgb_lr(8, 8, seed=1), rgb_lr(6, 10, seed=7)]
        for i, lr in enumerate(lrs):
            import_images(s, pid, png_bytes(lr), name=f"photo-{i}.png")
        with pytest.raises(InvalidInput, match="larger than this project(&#x27;|')s limit of 16"):
            import_images(s, pid, png_bytes(rgb_lr(4, 17, seed=3)), name="too-wide.png")
        rater = create_rater(s, "rita").id
    report = run_bank_jobs(factory, ldm, pid)
    assert len(report.completed) == 2 and not report.failed
    with session_scope(factory) as s:
        images = s.scalars(select(LRImage).where(LRImage.project_id == pid).order_by(LRImage.id)).all()
        for image, lr in zip(images, lrs):
            bank = complete_bank(s, image.id)
            assert bank.engine_config["pipeline_class"] == "LDMSuperResolutionPipeline"
            assert bank.engine_config["name"] == ldm.name and len(bank.checkpoint_sha256) == 64
            assert len(bank.samples) == 6
            for x in bank.samples:
                hr = decode_png(x.png)
                assert hr.dtype == np.uint8 and hr.shape == (lr.shape[0] * SCALE, lr.shape[1] * SCALE, 3)
                assert x.lr_psnr == EXACT_DB or x.lr_psnr >= CONSISTENT_DB  # strict: every sample consistent
                assert lr_psnr(hr, lr, SCALE) == x.lr_psnr  # the stored figure is the stored PNG's
                assert x.flow_consistency is None  # no flow in this engine
    # a rater votes; the ensemble of the most-voted samples is consistent and has no flow check
    for _ in range(2):
        with session_scope(factory) as s:
            t = next_task(s, rater, pid)
            by_index = {x.index: x.sample_id for x in t.samples}
            submit(s, rater, t.assignment_id, [by_index[2], by_index[0]], "a plate")
    with session_scope(factory) as s:
        ens = make_ensemble(s, ldm, images[0].id)
    assert ens.flow_consistency is None and ens.lr_psnr >= CONSISTENT_DB and ens.sample_indices == [2, 0]
    assert decode_png(ens.png).shape == (32, 32, 3)
    # exports: the missing flow check is an empty value, never the text "None"
    with session_scope(factory) as s:
        for fmt in ("csv", "json"):
            res = export(s, pid, "summary", fmt, tmp_path / f"summary.{fmt}")
            raw = res.path.read_text()
            assert "None" not in raw
            df = read_table(res.path, fmt)
            assert df["ensemble_flow_consistency"].isna().all() and df["ensemble_lr_psnr"].notna().any()
        records = json.loads((tmp_path / "summary.json").read_text())
        assert [r["ensemble_flow_consistency"] for r in records] == [None, None]  # JSON null
        assert (tmp_path / "summary.csv").read_text().splitlines()[1].count(",,") >= 1  # an empty CSV cell
        prov = provenance(s, pid)
        assert prov["project"]["engine_options"] == {} and prov["project"]["max_lr_side"] == 16
        assert prov["models"][0]["engine_config"]["engine"] == "diffusers"


def test_settings_are_checked_against_the_engine(factory, ldm):
    flow = tiny_flow_engine()
    bad = [(ldm, dict(mode="flow"), "strict, guided, free"), (ldm, dict(mode="prior"), "not available"),
           (ldm, dict(scheduler="ddpm"), "ddim, dpmsolver, euler"),
           (ldm, dict(engine_options={"prompt": "a red car"}), "takes no prompt"),
           (ldm, dict(max_lr_side=500), "above what model"),
           (flow, dict(mode="guided"), "strict, flow, prior"), (flow, dict(mode="free"), "not available"),
           (flow, dict(scheduler="euler"), "scheduler 'euler' is not available"),
           (flow, dict(engine_options={"prompt": "x"}), "takes no prompt")]
    with session_scope(factory) as s:
        for engine, kw, message in bad:
            with pytest.raises(InvalidInput, match=re.escape(message)):
                create_project(s, _settings(engine, "bad", **kw), engine=engine)
        assert s.scalars(select(Project)).all() == []
        for mode in ldm.modes:
            for scheduler in ("ddim", "dpmsolver", "euler"):
                create_project(s, _settings(ldm, f"ok-{mode}-{scheduler}", mode=mode, scheduler=scheduler),
                               engine=ldm)
        create_project(s, _settings(flow, "ok-flow", mode="flow", scheduler="ddpm"), engine=flow)
        # a project row that skipped the check (an older database, a script) is refused when banks are made
        pid = create_project(s, _settings(ldm, "prompted", engine_options={"prompt": "x"})).id
    with pytest.raises(InvalidInput, match="does not take"):
        run_bank_jobs(factory, ldm, pid)


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="StableDiffusionUpscalePipeline needs transformers")
def test_the_projects_prompt_reaches_the_pipeline(factory, tmp_path):
    root = tmp_path / "pipelines"
    tiny_sd_upscale_pipeline(root / "tok").save_pretrained(root / "sd", safe_serialization=True)
    sd = load_model(f"diffusers:{root / 'sd'}")
    assert sd.option_names == ("prompt", "guidance_scale", "noise_level")
    prompted = sd.with_options(prompt="a red car")
    assert prompted.adapter.pipe is sd.adapter.pipe and prompted.adapter.cfg and not sd.adapter.cfg
    with session_scope(factory) as s:
        pid = create_project(s, _settings(sd, "sd", mode="guided", bank_size=2, k_picks=1, ensemble_size=1,
                                          engine_options={"prompt": "a red car"}), engine=sd).id
        import_images(s, pid, png_bytes(rgb_lr(8, 8, seed=2)), name="car.png")
    report = run_bank_jobs(factory, sd, pid)
    assert len(report.completed) == 1 and not report.failed
    with session_scope(factory) as s:
        bank = complete_bank(s, s.scalar(select(LRImage.id).where(LRImage.project_id == pid)))
        assert bank.engine_config["options"]["prompt"] == "a red car"
        assert all(x.lr_psnr >= CONSISTENT_DB for x in bank.samples)
    # the stored samples are the prompted pipeline's own
    direct = prompted.sample_bank(rgb_lr(8, 8, seed=2), n=2, steps=2, seed=bank.seed, mode="guided")
    stored = np.stack([decode_png(x.png) for x in bank.samples])
    assert np.abs(stored.astype(int) - direct.images.astype(int)).max() <= 1


def test_cli_creates_and_fills_a_diffusers_project(ldm_folder, tmp_path, capsys):
    from annotation.__main__ import main

    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    folder = tmp_path / "lr"
    folder.mkdir()
    Image.fromarray(rgb_lr(8, 8, seed=4)).save(folder / "a.png")
    args = ["create-project", "--db-url", url, "--name", "cli-rgb", "--model", "diffusers:" + ldm_folder,
            "--bank-size", "4", "--k", "1", "--raters-per-image", "1", "--ensemble-size", "1", "--steps", "2"]
    assert main(args + ["--mode", "flow"]) == 2
    assert "not available" in capsys.readouterr().err
    assert main(args + ["--prompt", "a cat"]) == 2
    assert "takes no prompt" in capsys.readouterr().err
    assert main(args[:6] + ["diffusers:" + str(tmp_path / "missing")] + args[7:]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(args + ["--mode", "guided", "--scheduler", "euler", "--max-lr-side", "32"]) == 0
    assert main(["import", "--db-url", url, "--project", "cli-rgb", "--path", str(folder)]) == 0
    assert main(["generate", "--db-url", url, "--project", "cli-rgb"]) == 0
    eng, factory = make_store(url)
    with session_scope(factory) as s:
        p = s.scalars(select(Project)).one()
        assert p.model_name == "diffusers:" + str(Path(ldm_folder).resolve()) and p.max_lr_side == 32
        bank = complete_bank(s, s.scalar(select(LRImage.id)))
        assert bank.scheduler == "euler" and min(x.lr_psnr for x in bank.samples) >= CONSISTENT_DB
    eng.dispose()


# ---- the analyst's text ---------------------------------------------------------------------------------------
def test_the_flow_check_text():
    from ui.render import flow_check_text

    assert flow_check_text(None) == NOT_AVAILABLE
    assert flow_check_text(1.5e-3) == "flow check ‖ŷ−y‖²/dim y = 1.50e-03"


# ---- the app, through its HTTP API --------------------------------------------------------------------------------
def test_admin_creates_a_diffusers_project_in_the_app(ldm_folder, tmp_path):
    pytest.importorskip("gradio_client")
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    import app as app_module
    from ui import EngineRegistry

    flow = tiny_flow_engine()
    blocks, ctx, launch = app_module.create_app(None, tmp_path / "data", admin_password="admin-pw",
                                                engines=EngineRegistry({flow.name: flow}), demo=False,
                                                log=lambda _m: None)
    with session_scope(ctx.factory) as s:
        create_rater(s, "rita", "rater", "rita-pw")
        create_rater(s, "ana", "analyst", "ana-pw")
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch)
    url = f"http://127.0.0.1:{port}/"
    try:
        model = "diffusers:" + ldm_folder
        args = ("photos", model, "strict", "ddim", 4, 2, 1, 2, 2, 0, 0.0, "", 16)
        rater = Client(url, auth=("rita", "rita-pw"), verbose=False)
        with pytest.raises(AppError, match="Not allowed"):
            rater.predict(*args, api_name="/create_project")
        admin = Client(url, auth=("admin", "admin-pw"), verbose=False)
        refused = [admin.predict("photos", model, "flow", *args[3:], api_name="/create_project")[0],
                   admin.predict(*args[:11], "a red car", 16, api_name="/create_project")[0],
                   admin.predict("photos", model + "-missing", *args[2:], api_name="/create_project")[0]]
        for msg, said in zip(refused, ("strict, guided, free", "takes no prompt", "does not exist")):
            assert "sr-error" in msg and said in msg, msg  # a refusal is the message beside the button
        with session_scope(ctx.factory) as s:
            assert s.scalars(select(Project)).all() == []  # nothing was created by the refused calls
        msg, _, _ = admin.predict(*args, api_name="/create_project")
        pid = int(re.search(r"id (\d+)", msg).group(1))
        with session_scope(ctx.factory) as s:
            p = s.get(Project, pid)
            assert p.model_name == model_spec(model) and p.channels == 3 and p.max_lr_side == 16
        lr_path, big_path = tmp_path / "photo.png", tmp_path / "big.png"
        Image.fromarray(rgb_lr(8, 8, seed=9)).save(lr_path)
        Image.fromarray(rgb_lr(8, 20, seed=9)).save(big_path)
        msg, _ = admin.predict(pid, [handle_file(str(big_path))], api_name="/upload_images")
        assert "sr-error" in msg and re.search("larger than this project(&#x27;|')s limit of 16", msg), msg
        msg, _ = admin.predict(pid, [handle_file(str(lr_path))], api_name="/upload_images")
        assert "Imported 1 image(s)" in msg
        admin.predict(pid, api_name="/generate_banks")
        progress = wait_for_banks(admin, pid, 1, ctx.worker, timeout=120)
        assert "1 of 1 banks complete" in progress, progress
        out = rater.predict(pid, api_name="/next_task")
        sids = [int(x) for x in re.findall(r"data-sid='(\d+)'", out[1])]
        assert len(sids) == 4
        assert "Saved." in rater.predict(f"{sids[1]},{sids[3]}", "", api_name="/submit")[5]
        with session_scope(ctx.factory) as s:
            image_id = s.scalar(select(LRImage.id).where(LRImage.project_id == pid))
        analyst = Client(url, auth=("ana", "ana-pw"), verbose=False)
        ens_html = analyst.predict(image_id, api_name="/make_ensemble")[3]
        assert NOT_AVAILABLE in ens_html and "None" not in ens_html and "NOT consistent" not in ens_html
    finally:
        blocks.close()
        ctx.worker.stop()
