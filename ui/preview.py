"""A bank preview page: pick a model and an LR digit, see the bank and its consistency figures.

A standalone engine page, not part of the rating app (``app.py``): it calls ``sr_engine`` directly and stores
nothing. Serve it with ``python -c "from ui.preview import build; build().launch()"``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

import gradio as gr
from sr_engine import FlowEngine, list_models, load_engine
from sr_engine.data import mnist_canvas
from sr_engine.degradation import make_lr
from sr_engine.eval.digits import eval_subset
from sr_engine.eval.figures import bank_grid

from .context import refuse

_ENGINES: dict = {}  # read-only shared models, loaded once per process (not per-user state)


def _engine(name: str):
    if name not in _ENGINES:
        _ENGINES[name] = load_engine(name)
    return _ENGINES[name]


def _eval_lr(eng, index: int) -> np.ndarray:
    hr, _, _ = eval_subset(10, mnist_canvas(eng.scale))
    return make_lr(hr[int(index) % len(hr)], eng.scale)


def generate(model: str, upload, index: float, n: float, steps: float, mode: str, seed: float):
    if not model:
        raise refuse("no model is installed under data/checkpoints")
    eng = _engine(model)
    try:
        lr = np.asarray(Image.fromarray(upload).convert("L")) if upload is not None else _eval_lr(eng, int(index))
        bank = eng.sample_bank(lr, n=int(n), steps=int(steps), seed=int(seed), mode=mode)
    except ValueError as err:  # an LR image the engine cannot take: one log line, not a traceback
        raise refuse(str(err)) from None
    big_lr = Image.fromarray(lr).resize((lr.shape[1] * 32, lr.shape[0] * 32), Image.NEAREST)
    worst = float(bank.lr_psnr.min())
    exact = float((bank.lr_psnr >= 100).mean())
    summary = (f"{len(bank)} samples in {bank.seconds:.2f} s. LR-PSNR: worst {worst:.2f} dB, median "
               f"{np.median(bank.lr_psnr):.2f} dB, exact {100 * exact:.0f}% (100 dB = downsamples exactly to the LR).")
    return big_lr, bank_grid(bank.images, cols=8, zoom=3), summary


def build() -> gr.Blocks:
    models = list_models()
    with gr.Blocks(title="Trustworthy super-resolution") as demo:
        gr.Markdown("## Trustworthy super-resolution: bank preview\nEvery sample downsamples back to the LR "
                    "image (strict mode).")
        with gr.Row():
            model = gr.Dropdown(models, value=models[0] if models else None, label="model")
            mode = gr.Dropdown(list(FlowEngine.modes), value="strict", label="mode")
            n = gr.Slider(1, 128, value=64, step=1, label="samples")
            steps = gr.Slider(1, 50, value=8, step=1, label="steps")
            seed = gr.Number(value=0, precision=0, label="seed")
        with gr.Row():
            index = gr.Number(value=0, precision=0, label="evaluation digit #")
            upload = gr.Image(type="numpy", image_mode="L", label="or upload an LR image", format="png")
        go = gr.Button("Generate bank", variant="primary")
        with gr.Row():
            lr_view = gr.Image(label="LR (enlarged)", format="png", interactive=False)
            grid = gr.Image(label="bank", format="png", interactive=False)
        summary = gr.Markdown()
        go.click(generate, [model, upload, index, n, steps, mode, seed], [lr_view, grid, summary])
    return demo
