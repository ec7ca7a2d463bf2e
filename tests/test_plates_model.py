"""The shipped plates-x4 model and its reader: load, a small strict bank meets the bound, other widths, bad input
is refused with the model's input size, the reader reads HR evaluation plates, the demo's plate choice."""

from __future__ import annotations

import numpy as np
import pytest

from sr_engine import list_models, load_engine
from sr_engine.data import data_dir
from sr_engine.degradation import make_lr
from sr_engine.plates import eval_plates

pytestmark = pytest.mark.skipif("plates-x4" not in list_models(), reason="plates-x4 is not installed")

READER = data_dir() / "readers" / "plates-reader.pt"


@pytest.fixture(scope="module")
def plates_engine():
    return load_engine("plates-x4")


@pytest.fixture(scope="module")
def plate_lr():
    return make_lr(eval_plates().images[0], 4)


def test_loads_as_a_plates_model(plates_engine):
    assert plates_engine.scale == 4 and plates_engine.domain == "plates"
    assert plates_engine.lr_shape == (8, None)
    assert plates_engine.config["lr_shape"] == [8, None]


def test_small_strict_bank_meets_the_bound(plates_engine, plate_lr):
    bank = plates_engine.sample_bank(plate_lr, n=4, steps=2, seed=0)
    assert bank.images.shape == (4, 32, 128) and bank.images.dtype == np.uint8
    assert bank.lr_psnr.min() >= 45 and np.median(bank.lr_psnr) >= 60
    again = plates_engine.sample_bank(plate_lr, n=1, steps=2, seed=int(bank.seeds[2]))
    assert np.abs(again.images[0].astype(int) - bank.images[2]).max() <= 1


@pytest.mark.parametrize("width", [16, 24, 40])
def test_other_plate_widths(plates_engine, width):
    hr = np.tile(eval_plates().images[1], (1, 2))[:, : 4 * width]
    bank = plates_engine.sample_bank(make_lr(hr, 4), n=2, steps=1, seed=1)
    assert bank.images.shape == (2, 32, 4 * width) and bank.lr_psnr.min() >= 45


def test_a_digit_is_refused_by_the_plates_model_and_a_plate_by_the_digit_model(plates_engine, plate_lr):
    with pytest.raises(ValueError, match=r"plates-x4.*8 pixels high.*got a 7x7"):
        plates_engine.sample_bank(np.zeros((7, 7), np.uint8), n=1, steps=1)
    if "mnist-x4" in list_models():
        with pytest.raises(ValueError, match=r"mnist-x4.*7x7 LR images \(28x28 HR\).*got a 8x32"):
            load_engine("mnist-x4").sample_bank(plate_lr, n=1, steps=1)
    with pytest.raises(ValueError, match="8 pixels high"):
        plates_engine.ensemble(np.zeros((2, 28, 28), np.uint8), np.zeros((7, 7), np.uint8))


def test_widths_the_scale_does_not_divide_are_refused_not_resized():
    with pytest.raises(ValueError, match="not a multiple of the scale 4"):
        make_lr(np.zeros((32, 130), np.uint8), 4)


@pytest.mark.skipif(not READER.is_file(), reason="the plate reader is not installed")
def test_reader_reads_hr_evaluation_plates():
    from sr_engine.eval.reader import char_accuracy, load_reader, read_plates

    ev = eval_plates()
    texts, _ = read_plates(load_reader(READER), ev.images[:40])
    assert char_accuracy(texts, ev.texts[:40]) > 0.9  # held-out fonts and strings


def test_a_plate_is_split_at_one_position_even_when_every_string_differs():
    from annotation.demo import AmbiguousPlate, position_second_share

    texts = ["AB8CD1", "AXBCD2", "AB8CD3", "AXBCD4", "AB8C", "ABBCD5", "AB8CD6", "AB8CD7"]  # third place: 8 or B
    assert position_second_share(texts) == pytest.approx(3 / 8)  # B at the third place in 3 of the 8 readings
    assert position_second_share(["AB8CD1"] * 4) == 0.0 and position_second_share([]) == 0.0
    plate = AmbiguousPlate(0, "AB8CD1", distinct_readings=8, modal_share=2 / 8, second_share=1 / 8,
                           position_second_share=position_second_share(texts))
    assert plate.ambiguous  # no string holds a fair share twice, one position does


@pytest.mark.skipif(not READER.is_file(), reason="the plate reader is not installed")
def test_demo_picks_plates_where_the_reader_disagrees(plates_engine):
    from annotation.demo import ambiguous_plates
    from sr_engine.eval.reader import load_reader

    chosen = ambiguous_plates(plates_engine, load_reader(READER), candidates=5, count=2, probe_n=3, probe_steps=1)
    assert len(chosen) == 3
    amb, gold = chosen[:2], chosen[2]
    key = lambda p: (not p.ambiguous, -p.position_second_share, -p.distinct_readings, p.modal_share,  # noqa: E731
                     p.index)
    assert key(amb[0]) <= key(amb[1]) <= key(gold)
    assert all(0 <= p.index < 5 and p.text == eval_plates().texts[p.index] for p in chosen)


@pytest.mark.slow
@pytest.mark.skipif(not READER.is_file(), reason="the plate reader is not installed")
def test_evaluate_plates_rows(tmp_path):
    from sr_engine.eval.plates import evaluate_plates, plates_figure, to_markdown

    rows = evaluate_plates("plates-x4", plates=2, n=3, steps=1, modes=("strict",), k=1, m=2)
    by = {r.method.split(" (")[0]: r for r in rows}
    assert set(by) == {"HR", "bicubic upsampling", "strict"}
    strict = by["strict"]
    assert strict.samples == 6 and strict.lr_psnr_worst >= 45 and strict.share_consistent == 1.0
    assert 0 <= strict.char_acc_picked <= 1 and 0 <= strict.char_acc_single <= 1
    assert by["HR"].char_acc_picked != by["HR"].char_acc_picked  # NaN: one image is not a bank
    assert by["bicubic upsampling"].share_consistent == 0.0
    assert "| strict (n=3, 1 steps) |" in to_markdown(rows)
    from PIL import Image

    img = Image.open(plates_figure("plates-x4", tmp_path / "f.png", count=2, n=2, steps=1, zoom=1))
    assert img.size == (6 * 130, 2 * 34)  # HR, LR, bicubic, 2 samples, mean; 1-pixel frames
