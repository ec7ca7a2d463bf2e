"""PNG plots of the benchmark (matplotlib, Agg backend: no display needed).

- ``steps_tradeoff.png``: steps against PSNR (single samples) and LR-PSNR (mean) per sampler and scale, with
  the one-step methods (bicubic, regression, prior) as horizontal lines.
- ``time_vs_samples.png``: wall time of one bank against its number of samples (log-log).
- ``ambiguous_x<s>.png``: a few ambiguous LR digits with samples from each method.
- ``plates_steps_tradeoff.png``, ``ambiguous_plates.png``: the same for the plates section (one method per row).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..metrics import CONSISTENT_DB  # noqa: E402
from .methods import SAMPLERS  # noqa: E402

COLORS = {"pixel-ddpm": "tab:orange", "pixel-ddnm": "tab:red", "kernel-flow": "tab:cyan",
          "kernel-strict": "tab:blue", "bicubic": "grey", "regression": "black", "prior": "tab:green"}


def steps_tradeoff(df, path: Path, prefix: str = "") -> Path:
    """df: the metrics table (pandas) with columns scale, family, steps, tau, psnr_single, lr_psnr_mean;
    ``prefix`` starts each panel's title (e.g. "plates ")."""
    scales = sorted(df.scale.unique())
    fig, axes = plt.subplots(2, len(scales), figsize=(5.5 * len(scales), 7), squeeze=False)
    for j, s in enumerate(scales):
        d = df[df.scale == s]
        for i, (col, name) in enumerate([("psnr_single", "PSNR vs HR, single samples (dB)"),
                                         ("lr_psnr_mean", "LR-PSNR mean (dB, exact = 100)")]):
            ax = axes[i, j]
            for fam in SAMPLERS:
                f = d[d.family == fam].sort_values("steps")
                if len(f):
                    ax.plot(f.steps, f[col], "o-", color=COLORS[fam], label=fam)
            for _, r in d[~d.family.isin(SAMPLERS)].iterrows():
                label = r.family if r.family != "prior" else f"prior tau={r.tau:g}"
                ax.axhline(r[col], color=COLORS[r.family], ls="--" if r.family != "prior" else ":", lw=1,
                           label=label, alpha=0.4 + 0.6 * (r.tau if r.family == "prior" else 1))
            if col == "lr_psnr_mean":
                ax.axhline(CONSISTENT_DB, color="k", lw=0.5)
            ax.set_xscale("log", base=2)
            ticks = sorted(int(v) for v in d[d.family.isin(SAMPLERS)].steps.unique())
            ax.set_xticks(ticks, [str(v) for v in ticks])
            ax.set_xlabel("sampling steps")
            ax.set_title(f"{prefix}x{s}: {name}", fontsize=10)
            ax.grid(alpha=0.3)
        axes[0, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def time_vs_samples(df, path: Path) -> Path:
    """df: columns scale, family, n, seconds."""
    scales = sorted(df.scale.unique())
    fig, axes = plt.subplots(1, len(scales), figsize=(5.5 * len(scales), 4), squeeze=False)
    for j, s in enumerate(scales):
        ax = axes[0, j]
        d = df[df.scale == s]
        for fam in d.family.unique():
            f = d[d.family == fam].sort_values("n")
            ax.plot(f.n, f.seconds, "o-", color=COLORS.get(fam, None), label=fam)
        ax.set_xscale("log", base=2)
        ticks = sorted(int(v) for v in d.n.unique())
        ax.set_xticks(ticks, [str(v) for v in ticks])
        ax.set_yscale("log")
        ax.set_xlabel("samples per bank")
        ax.set_ylabel("seconds per bank (this CPU)")
        ax.set_title(f"x{s}: wall time against bank size", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _image_grid(grid: list[list[np.ndarray]], top: list[str], left: list[str], path: Path, figsize,
                left_kw: dict | None = None) -> Path:
    """grid[r][c] uint8 images (nearest-neighbour, grey 0..255), ``top`` titles over the first row, ``left``
    labels beside the first column."""
    fig, axes = plt.subplots(len(grid), len(grid[0]), figsize=figsize, squeeze=False)
    for r, row in enumerate(grid):
        for c, img in enumerate(row):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(top[c], fontsize=6.5 if left_kw is None else 7)
            if c == 0:
                ax.set_ylabel(left[r], **(left_kw or {"fontsize": 7}))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def ambiguous_figure(columns: list[tuple[str, np.ndarray]], titles: list[str], path: Path) -> Path:
    """columns: (name, uint8 (N_rows, H, W)) per column (an LR column is drawn with nearest-neighbour);
    titles: one per row (e.g. the true digit and the judge's reading of bicubic)."""
    rows = len(titles)
    grid = [[imgs[r] for _, imgs in columns] for r in range(rows)]
    return _image_grid(grid, [name for name, _ in columns], titles, path,
                       (1.25 * len(columns), 1.35 * rows + 0.4))


def plates_figure(panels: list[tuple[str, np.ndarray]], titles: list[str], path: Path) -> Path:
    """Wide images: one row per method (``panels``: (name, uint8 (N, H, W))), one column per plate (``titles``:
    one per plate, e.g. the true string and the judge's reading of bicubic)."""
    cols, rows = len(titles), len(panels)
    h, w = panels[0][1].shape[1:]
    grid = [[imgs[c] for c in range(cols)] for _, imgs in panels]
    return _image_grid(grid, titles, [name for name, _ in panels], path,
                       (cols * 2.6, rows * (2.6 * h / w + 0.28) + 0.5),
                       {"fontsize": 5.5, "rotation": 0, "ha": "right", "va": "center"})


def reliability_plot(diagrams: dict, path: Path) -> Path:
    """The simulated-rater study's reliability diagram: per bin, the accuracy against the mean confidence, one
    line per method (``diagrams``: name -> sr_engine.consensus.ReliabilityDiagram), bin counts below."""
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    width = 0.8 / (len(diagrams) * 10)
    for j, (name, d) in enumerate(diagrams.items()):
        full = d.count > 0
        ax.plot(d.confidence[full], d.accuracy[full], "o-", label=f"{name} (ECE {d.ece:.3f})")
        centres = (d.edges[:-1] + d.edges[1:]) / 2 + (j - (len(diagrams) - 1) / 2) * width
        ax2.bar(centres, d.count, width=width, label=name)
    ax.set_ylabel("accuracy in the bin")
    ax.set_title("reliability (10 bins)")
    ax.legend(loc="upper left", fontsize=8)
    ax2.set_xlabel("stated probability of the reading")
    ax2.set_ylabel("images")
    ax2.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def risk_coverage_plot(curves: dict, path: Path, threshold: float | None = None) -> Path:
    """Risk (error rate among the answered) against coverage (share answered), answering the most confident first
    (``curves``: name -> sr_engine.consensus.RiskCoverage); the threshold's point marked on each."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, c in curves.items():
        line, = ax.step(c.coverage, c.risk, where="post", label=f"{name} (AURC {c.aurc:.4f})")
        if threshold is not None:
            cov, acc = c.accuracy_at(threshold)
            if cov > 0:
                ax.plot([cov], [1 - acc], "o", color=line.get_color())
    ax.set_xlabel("coverage (share of images answered)")
    ax.set_ylabel("risk (share answered wrong)")
    ax.set_title("risk-coverage" + (f" (dots: probability >= {threshold:g})" if threshold else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
