"""MNIST splits: 4,000 training and 1,000 evaluation digits; row i is evaluation-only iff i % 500 >= 400."""

from __future__ import annotations

import numpy as np
import pytest

from sr_engine.data import is_eval_row, load_mnist, mnist_canvas


@pytest.fixture(scope="module")
def train():
    return load_mnist("train")


@pytest.fixture(scope="module")
def evaluation():
    return load_mnist("eval")


def test_split_sizes(train, evaluation):
    assert train.images.shape == (4000, 28, 28) and train.images.dtype == np.uint8
    assert evaluation.images.shape == (1000, 28, 28)
    assert train.labels.shape == (4000,) and train.rows.shape == (4000,)
    assert evaluation.labels.shape == (1000,) and evaluation.rows.shape == (1000,)
    assert load_mnist("all").images.shape == (5000, 28, 28)


def test_eval_rows_are_exactly_the_last_100_of_each_digit(train, evaluation):
    expected_eval = np.array([i for i in range(5000) if i % 500 >= 400])
    np.testing.assert_array_equal(evaluation.rows, expected_eval)
    np.testing.assert_array_equal(train.rows, np.array([i for i in range(5000) if i % 500 < 400]))
    assert not set(train.rows.tolist()) & set(evaluation.rows.tolist())
    assert is_eval_row(400) and is_eval_row(999) and not is_eval_row(399) and not is_eval_row(500)
    np.testing.assert_array_equal(is_eval_row(np.arange(5000)), np.arange(5000) % 500 >= 400)


def test_rows_index_the_full_file(train, evaluation):
    everything = load_mnist("all")
    np.testing.assert_array_equal(train.images, everything.images[train.rows])
    np.testing.assert_array_equal(evaluation.images, everything.images[evaluation.rows])
    np.testing.assert_array_equal(evaluation.labels, everything.labels[evaluation.rows])


def test_labels_sorted_by_class(train, evaluation):
    everything = load_mnist("all")
    np.testing.assert_array_equal(everything.labels, np.repeat(np.arange(10), 500))
    np.testing.assert_array_equal(train.labels, np.repeat(np.arange(10), 400))
    np.testing.assert_array_equal(evaluation.labels, np.repeat(np.arange(10), 100))


def test_images_look_like_digits(train):
    assert train.images.max() == 255 and train.images.min() == 0
    # MNIST digits are centred: the outer two-pixel frame is almost empty, the centre is not
    frame = np.ones((28, 28), bool)
    frame[2:26, 2:26] = False
    assert train.images[:, frame].mean() < 1.0
    assert train.images[:, 10:18, 10:18].mean() > 50


def test_pad_to_32_centres(train):
    padded = load_mnist("train", pad_to=32)
    assert padded.images.shape == (4000, 32, 32) and padded.images.dtype == np.uint8
    np.testing.assert_array_equal(padded.images[:, 2:30, 2:30], train.images)
    border = padded.images.copy()
    border[:, 2:30, 2:30] = 0
    assert border.max() == 0
    np.testing.assert_array_equal(padded.labels, train.labels)
    np.testing.assert_array_equal(padded.rows, train.rows)


@pytest.mark.parametrize("pad_to", [27, 29, 31, 0])
def test_bad_pad_raises(pad_to):
    with pytest.raises(ValueError):
        load_mnist("train", pad_to=pad_to)


def test_unknown_split_raises():
    with pytest.raises(ValueError):
        load_mnist("test")  # type: ignore[arg-type]


def test_returned_arrays_are_private_copies():
    a = load_mnist("train")
    a.images[0, 0, 0] = 123
    a.labels[0] = 9
    b = load_mnist("train")
    assert b.images[0, 0, 0] == 0 and b.labels[0] == 0


def test_mnist_canvas_per_scale():
    """One rule for the digits' HR canvas: the shipped settings (x4: 28, x8: 32), and a canvas for any scale."""
    assert mnist_canvas(4) == 28 and mnist_canvas(8) == 32 and mnist_canvas(2) == 28 and mnist_canvas(3) == 30
    for s in range(1, 33):
        c = mnist_canvas(s)
        assert c % s == 0 and c >= 28 and (c - 28) % 2 == 0
    with pytest.raises(ValueError):
        mnist_canvas(0)
