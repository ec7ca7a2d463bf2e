"""A small CRNN plate reader with CTC loss, trained by the project on HR training renders only (training fonts
and strings, :mod:`sr_engine.plates`). The evaluation uses one as the judge; the benchmark and ``evaluate``'s
picked ensemble use others, trained on other renders and seeds, as simulated raters.

    python -m sr_engine train --stage reader                  # data/readers/plates-reader.pt (the judge)
    python -m sr_engine train --stage reader --reader-role rater --seed 1   # data/readers/rater-1.pt
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..plates import ALPHABET, HR_SHAPE
from .judge import load_weights

BLANK = 0  # CTC blank; character c has class ALPHABET.index(c) + 1


class PlateReader(nn.Module):
    """(B, 1, 32, W) on [0, 1] -> (T=W/4, B, 37) log-probabilities (CTC's layout). Convolutions reduce the height
    to 1 and the width by 4; a bidirectional GRU reads the columns."""

    def __init__(self, width: int = 16, hidden: int = 64):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

        w = width
        self.features = nn.Sequential(
            block(1, w), nn.MaxPool2d(2),  # 16 x W/2
            block(w, 2 * w), nn.MaxPool2d(2),  # 8 x W/4
            block(2 * w, 4 * w), block(4 * w, 4 * w), nn.MaxPool2d((2, 1)),  # 4 x W/4
            block(4 * w, 4 * w), nn.MaxPool2d((4, 1)),  # 1 x W/4
        )
        self.rnn = nn.GRU(4 * w, hidden, bidirectional=True, batch_first=False)
        self.head = nn.Linear(2 * hidden, len(ALPHABET) + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] != HR_SHAPE[0]:
            raise ValueError(f"the reader takes plates {HR_SHAPE[0]} pixels high, got {tuple(x.shape[-2:])}")
        f = self.features(x - 0.5).squeeze(2).permute(2, 0, 1)  # (T, B, C)
        out, _ = self.rnn(f)
        return F.log_softmax(self.head(out), dim=-1)


def encode(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    targets = torch.tensor([ALPHABET.index(c) + 1 for t in texts for c in t], dtype=torch.long)
    return targets, torch.tensor([len(t) for t in texts], dtype=torch.long)


def greedy_decode(logp: torch.Tensor) -> tuple[list[str], np.ndarray]:
    """Best-path CTC decoding of (T, B, K) log-probabilities: the strings and each path's log-probability
    (the reader's confidence)."""
    best, idx = logp.max(dim=-1)  # (T, B)
    conf = best.sum(0).numpy()
    idx = idx.T.numpy()
    texts = []
    for row in idx:
        chars, prev = [], BLANK
        for k in row:
            if k != prev and k != BLANK:
                chars.append(ALPHABET[k - 1])
            prev = k
        texts.append("".join(chars))
    return texts, conf


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Mild blur or noise on some batches, so the reader reads smoother or noisier super-resolved plates."""
    r = rng.random()
    if r < 0.25:
        k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k[None, None])
    elif r < 0.5:
        x = (x + torch.randn(x.shape, generator=torch.Generator().manual_seed(int(rng.integers(2**31)))) * 0.03)
    return x.clamp(0, 1)


def train_reader(images: np.ndarray, texts: list[str], seed: int = 0, epochs: int = 6,
                 batch_size: int = 64) -> PlateReader:
    """Train on uint8 (N, 32, W) plates and their strings; returns the model in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_all = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    model = PlateReader()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    total = epochs * -(-len(x_all) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=total)
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    model.train()
    bar = tqdm(total=total, desc="reader", mininterval=5)
    for _ in range(epochs):
        perm = rng.permutation(len(x_all))
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            logp = model(_augment(x_all[idx], rng))
            targets, lengths = encode([texts[j] for j in idx])
            loss = ctc(logp, targets, torch.full((len(idx),), logp.shape[0], dtype=torch.long), lengths)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    return model.eval()


def save_reader(model: PlateReader, path: str | Path, **info) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), **info}, path)


def load_reader(path: str | Path) -> PlateReader:
    return load_weights(PlateReader(), path)


@torch.no_grad()
def read_plates(model: PlateReader, images: np.ndarray, batch_size: int = 256) -> tuple[list[str], np.ndarray]:
    """uint8 (N, 32, W) -> (strings, log-probability of each best path)."""
    texts, confs = [], []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[i : i + batch_size], dtype=np.float32) / 255.0)[:, None]
        t, c = greedy_decode(model(x))
        texts += t
        confs.append(c)
    return texts, (np.concatenate(confs) if confs else np.zeros(0))


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions and substitutions cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(pred: list[str], truth: list[str]) -> float:
    """1 - total edit distance / total true characters (the usual character accuracy; can be < 0 in theory,
    clipped at 0)."""
    errors = sum(edit_distance(p, t) for p, t in zip(pred, truth))
    return max(0.0, 1.0 - errors / max(1, sum(len(t) for t in truth)))


def plate_accuracy(pred: list[str], truth: list[str]) -> float:
    return float(np.mean([p == t for p, t in zip(pred, truth)])) if truth else 0.0
