"""The plates domain: the generator, the held-out split, the reader's decoding and metrics, the crop batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sr_engine import plates as P
from sr_engine.eval.reader import (PlateReader, char_accuracy, edit_distance, encode, greedy_decode, plate_accuracy,
                              read_plates, train_reader)


def test_render_is_deterministic_and_plate_sized():
    a, b = P.render_plates(6, seed=3), P.render_plates(6, seed=3)
    assert a.images.shape == (6, 32, 128) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and a.texts == b.texts and a.fonts == b.fonts
    c = P.render_plates(6, seed=4)
    assert not np.array_equal(a.images, c.images)


def test_training_mode_never_renders_an_evaluation_font_or_string():
    tr = P.render_plates(300, seed=0, split="train")
    assert set(tr.fonts) <= set(P.TRAIN_FONTS) and not set(tr.fonts) & set(P.EVAL_FONTS)
    assert not any(P.is_eval_string(t) for t in tr.texts)
    ev = P.eval_plates()
    assert len(ev.texts) == P.EVAL_SIZE and set(ev.fonts) <= set(P.EVAL_FONTS)
    assert all(P.is_eval_string(t) for t in ev.texts)
    assert not set(tr.texts) & set(ev.texts)
    assert not set(P.TRAIN_FONTS) & set(P.EVAL_FONTS)


def test_strings_are_5_to_8_characters_weighted_towards_confusable_groups():
    rng = np.random.default_rng(0)
    texts = [P.random_string(rng, "train") for _ in range(2000)]
    assert {len(t) for t in texts} == set(range(P.MIN_LEN, P.MAX_LEN + 1))
    chars = "".join(texts)
    assert set(chars) <= set(P.ALPHABET)
    conf = set("".join(P.CONFUSABLE_GROUPS))
    share = np.mean([c in conf for c in chars])
    uniform = len(conf) / len(P.ALPHABET)
    assert share > uniform + 0.15  # confusable characters are drawn more often than uniformly


def test_every_font_renders_every_character_distinctly():
    for font in P.TRAIN_FONTS + P.EVAL_FONTS:
        style = P.PlateStyle(font, 0.6, 0, 0.0, 0.0, False, 0.0, 0, 255, 0.0, 0.0)
        imgs = [P.render_plate(c * 5, style).astype(int) for c in P.ALPHABET]
        assert all(im.min() < 128 for im in imgs), font  # ink on the plate
        for i in range(len(imgs)):
            for j in range(i):
                assert np.abs(imgs[i] - imgs[j]).sum() > 0, (font, P.ALPHABET[i], P.ALPHABET[j])


def test_render_refuses_characters_outside_the_alphabet():
    style = P.PlateStyle("DejaVuSans.ttf", 0.6, 0, 0.0, 0.0, False, 0.0, 0, 255, 0.0, 0.0)
    for bad in ("", "ab12", "A-B"):
        with pytest.raises(ValueError, match="capital letters and digits"):
            P.render_plate(bad, style)


def test_edit_distance_and_accuracies():
    assert edit_distance("8B0D12", "8B0D12") == 0
    assert edit_distance("8B0D12", "880D12") == 1
    assert edit_distance("8B0D12", "8B0D1") == 1
    assert edit_distance("", "ABC") == 3
    assert char_accuracy(["8B0D12", "88"], ["8B0D12", "8B"]) == pytest.approx(1 - 1 / 8)
    assert plate_accuracy(["AB", "CD"], ["AB", "CE"]) == 0.5


def test_greedy_decode_collapses_repeats_and_blanks():
    # frames: A A blank A B B blank -> "AAB"
    k = len(P.ALPHABET) + 1
    seq = [1, 1, 0, 1, 2, 2, 0]
    logp = torch.full((len(seq), 1, k), -10.0)
    for t, c in enumerate(seq):
        logp[t, 0, c] = 0.0
    texts, conf = greedy_decode(logp)
    assert texts == ["AAB"] and conf[0] == pytest.approx(0.0)
    targets, lengths = encode(["AB", "Z9"])
    assert lengths.tolist() == [2, 2] and targets.tolist()[:2] == [1, 2]


def test_reader_learns_a_few_rendered_plates():
    """A tiny real training run: the CTC loss falls and the reader output has the plate layout."""
    torch.manual_seed(0)
    p = P.render_plates(48, seed=7)
    model = PlateReader()
    x = torch.from_numpy(p.images[:8].astype(np.float32) / 255)[:, None]
    assert model(x).shape == (32, 8, len(P.ALPHABET) + 1)
    with pytest.raises(ValueError, match="32 pixels high"):
        model(torch.zeros(1, 1, 28, 28))
    trained = train_reader(p.images, p.texts, seed=0, epochs=3, batch_size=16)
    texts, conf = read_plates(trained, p.images[:4])
    assert len(texts) == 4 and conf.shape == (4,) and np.all(conf <= 0)


def test_plate_batches_crop_on_the_haar_grid(tmp_path):
    from sr_engine.train import PlateBatches

    b = PlateBatches(20, render_seed=5, crop=(32, 64), batch_size=8, seed=0, cache_dir=tmp_path)
    x = b.next()
    assert x.shape == (8, 1, 32, 64)
    assert (tmp_path / "plates-train-20-5.npy").exists()
    full = torch.from_numpy(P.render_plates(20, 5).images.astype(np.float32))[:, None]
    # every crop is a window of some training plate at an offset that is a multiple of 4
    for crop in x:
        assert any(torch.equal(crop, full[i, :, :, o:o + 64]) for i in range(20) for o in range(0, 65, 4))
    with pytest.raises(ValueError, match="crop"):
        PlateBatches(20, 5, (32, 66), 8, 0, cache_dir=tmp_path)
