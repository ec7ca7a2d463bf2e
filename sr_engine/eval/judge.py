"""The digit judge: a small CNN digit classifier, trained by the project on training rows only; it reads
super-resolved digits in the evaluation (and stands in for raters in the benchmark)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


class DigitCNN(nn.Module):
    """(B, 1, 28, 28) on [0, 1] -> (B, 10) logits. Larger canvases are centre-cropped to 28x28."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                                  nn.Dropout(0.3), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 28:
            o = (x.shape[-1] - 28) // 2
            x = x[..., o : o + 28, o : o + 28]
        return self.head(self.features(x))


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random translations of up to 2 pixels and mild blur/sharpness changes, so that the classifier reads
    super-resolved digits (smoother or noisier than the originals) as digits."""
    dy, dx = rng.integers(-2, 3, size=2)
    x = torch.roll(x, shifts=(int(dy), int(dx)), dims=(2, 3))
    if rng.random() < 0.3:
        k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
        x = F.conv2d(x, k[None, None], padding=1)
    return x


def train_classifier(images: np.ndarray, labels: np.ndarray, seed: int = 0, epochs: int = 12,
                     batch_size: int = 128) -> DigitCNN:
    """Train on uint8 (N, 28, 28) digits; returns the model in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_all = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    model = DigitCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * -(-len(x_all) // batch_size))
    model.train()
    for _ in tqdm(range(epochs), desc="classifier", mininterval=5):
        perm = rng.permutation(len(x_all))
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(_augment(x_all[idx], rng)), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a ``{"state": state_dict, ...}`` checkpoint (the evaluation nets' format) into ``model``, on the CPU,
    in eval mode; a ValueError naming the file for anything else."""
    st = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(st, dict) or not isinstance(st.get("state"), dict):
        raise ValueError(f"{path} is not an evaluation network checkpoint: expected a dict with a 'state' state dict "
                         f"(the format of data/classifiers and data/readers)")
    model.load_state_dict(st["state"])
    return model.eval()


def load_classifier(path: str | Path) -> DigitCNN:
    return load_weights(DigitCNN(), path)


@torch.no_grad()
def predict_digits(model: DigitCNN, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """uint8 (N, H, W) -> softmax probabilities (N, 10)."""
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[i : i + batch_size], dtype=np.float32) / 255.0)[:, None]
        out.append(F.softmax(model(x), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 10))
