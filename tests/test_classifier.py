"""The digit classifier at a tiny budget: shapes, centre crop of larger canvases, probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sr_engine.eval.judge import DigitCNN, load_classifier, predict_digits, train_classifier


def test_forward_shapes_and_centre_crop():
    torch.manual_seed(0)
    model = DigitCNN().eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
        padded = model(torch.nn.functional.pad(x, (2, 2, 2, 2), value=0.7))
    assert out.shape == (2, 10)
    torch.testing.assert_close(padded, out)  # the 32x32 canvas is cropped back to the 28x28 digit


def test_train_predict_save_load(tmp_path):
    rng = np.random.default_rng(0)
    # two trivially separable "digits": bright top half vs bright bottom half
    images = np.zeros((64, 28, 28), np.uint8)
    labels = np.arange(64) % 2
    images[labels == 0, :14] = 255
    images[labels == 1, 14:] = 255
    images = np.clip(images.astype(int) + rng.integers(-20, 21, images.shape), 0, 255).astype(np.uint8)
    model = train_classifier(images, labels, seed=0, epochs=3, batch_size=32)
    assert not model.training
    probs = predict_digits(model, images)
    assert probs.shape == (64, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert (probs.argmax(1) == labels).mean() >= 0.9
    path = tmp_path / "clf.pt"
    torch.save({"state": model.state_dict()}, path)
    again = predict_digits(load_classifier(path), images)
    np.testing.assert_allclose(again, probs, rtol=1e-5, atol=1e-6)


def test_predict_digits_empty():
    out = predict_digits(DigitCNN().eval(), np.zeros((0, 28, 28), np.uint8))
    assert out.shape == (0, 10)


@pytest.mark.parametrize("batch_size", [1, 3, 512])
def test_predict_digits_batching(batch_size):
    torch.manual_seed(2)
    model = DigitCNN().eval()
    images = np.random.default_rng(3).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    ref = predict_digits(model, images, batch_size=512)
    np.testing.assert_allclose(predict_digits(model, images, batch_size=batch_size), ref, rtol=1e-5, atol=1e-6)
