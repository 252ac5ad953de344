"""Grid <-> token encoding (REFERENCE §1; augment/encoding.py)."""

from __future__ import annotations

import numpy as np
import pytest

from augment.encoding import EOS, IGNORE_LABEL, PAD, decode_grid, encode_grid, labels_from_tokens


def board(tokens, canvas):
    return tokens.reshape(canvas, canvas)


def test_tokens_and_eos_at_offset():
    g = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8)
    b = board(encode_grid(g, canvas=8, offset=(2, 3)), 8)
    assert b.dtype == np.uint8 and b.shape == (8, 8)
    assert (b[2:4, 3:6] == g + 2).all()
    assert (b[4, 3:6] == EOS).all()  # row just below
    assert (b[2:4, 6] == EOS).all()  # column just right
    assert b[4, 6] == PAD  # corner stays PAD
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:7] = True
    mask[4, 6] = False
    assert (b[~mask] == PAD).all()
    assert (b == EOS).sum() == 3 + 2


def test_default_canvas_is_30_top_left():
    g = np.full((3, 4), 7, dtype=np.uint8)
    t = encode_grid(g)
    assert t.shape == (900,)
    b = board(t, 30)
    assert (b[:3, :4] == 9).all() and (b[3, :4] == EOS).all() and (b[:3, 4] == EOS).all() and b[3, 4] == PAD


def test_no_eos_outside_canvas():
    c = 6
    full = encode_grid(np.ones((6, 6), np.uint8), canvas=c)
    assert (full == 3).all()  # no room for EOS anywhere
    b = board(encode_grid(np.ones((2, 3), np.uint8), canvas=c, offset=(4, 3)), c)  # touches both edges
    assert (b[4:6, 3:6] == 3).all() and (b == EOS).sum() == 0
    b = board(encode_grid(np.ones((2, 3), np.uint8), canvas=c, offset=(4, 0)), c)  # bottom edge only
    assert (b[4:6, 3] == EOS).all() and (b == EOS).sum() == 2
    b = board(encode_grid(np.ones((2, 3), np.uint8), canvas=c, offset=(0, 3)), c)  # right edge only
    assert (b[2, 3:6] == EOS).all() and (b == EOS).sum() == 3


def test_encode_rejects_grid_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        encode_grid(np.zeros((3, 3), np.uint8), canvas=5, offset=(3, 0))


def test_labels_ignore_pad_supervise_eos():
    t = encode_grid(np.array([[5]], np.uint8), canvas=3)
    lab = labels_from_tokens(t)
    assert lab.dtype == np.int64
    assert lab.reshape(3, 3).tolist() == [[7, EOS, IGNORE_LABEL], [EOS, IGNORE_LABEL, IGNORE_LABEL],
                                          [IGNORE_LABEL] * 3]


@pytest.mark.parametrize("canvas", [30, 12])
def test_round_trip_all_shapes(canvas):
    rng = np.random.default_rng(0)
    for h in range(1, canvas + 1):
        for w in range(1, canvas + 1):
            g = rng.integers(0, 10, size=(h, w), dtype=np.uint8)
            out = decode_grid(encode_grid(g, canvas=canvas), canvas=canvas)
            assert out is not None and out.shape == (h, w) and (out == g).all(), (h, w)


def test_decode_takes_the_max_area_rectangle():
    # Hand-made prediction: widths per row 5, 5, 2, 2, 2, 2 -> candidates 1x5, 2x5 (10), 3x2 ... 6x2 (12).
    c = 6
    b = np.full((c, c), 3, dtype=np.uint8)  # colour 1 everywhere
    b[0:2, 5] = EOS
    b[2:, 2] = EOS
    b[2:, 3:] = PAD
    b[2, 4] = 5  # colour after the first non-colour token does not extend the row
    out = decode_grid(b.reshape(-1), canvas=c)
    assert out.shape == (6, 2) and (out == 1).all()

    # A wide first row beats a narrow tall rectangle: 1x6 (6) vs 2x1 (2).
    b = np.full((c, c), PAD, dtype=np.uint8)
    b[0, :] = 2 + np.arange(6)
    b[1, 0] = 4
    out = decode_grid(b.reshape(-1), canvas=c)
    assert out.tolist() == [[0, 1, 2, 3, 4, 5]]

    # A tie keeps the first (shorter) rectangle: 2x3 (6) then 3x2 (6).
    b = np.full((c, c), PAD, dtype=np.uint8)
    b[0:2, 0:3] = 2
    b[2, 0:2] = 2
    b[:3, 0:2] = 2
    assert decode_grid(b.reshape(-1), canvas=c).shape == (2, 3)


def test_decode_stops_at_first_non_colour_row():
    c = 5
    b = np.full((c, c), PAD, dtype=np.uint8)
    b[0:2, 0:2] = 4
    b[3:5, 0:2] = 4  # below a PAD row: not part of the answer
    assert decode_grid(b.reshape(-1), canvas=c).shape == (2, 2)


@pytest.mark.parametrize("corner", [PAD, EOS])
def test_decode_none_without_top_left_colour(corner):
    c = 4
    b = np.full((c, c), 5, dtype=np.uint8)
    b[0, 0] = corner
    assert decode_grid(b.reshape(-1), canvas=c) is None


def test_decode_treats_out_of_vocab_as_non_colour():
    c = 4
    b = np.full((c, c), 2, dtype=np.uint8)
    b[0, 2] = 12  # not a token
    assert decode_grid(b.reshape(-1), canvas=c).shape == (4, 2)
