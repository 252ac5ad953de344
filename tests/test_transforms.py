"""Augmentations (REFERENCE §2; augment/transforms.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from augment.encoding import decode_grid, encode_grid
from augment.transforms import (DIHEDRAL_GATHER, INVERSE_DIHEDRAL, Augmentation, dihedral, dihedral_shape,
                                inverse_dihedral)

G = np.arange(6, dtype=np.uint8).reshape(2, 3)  # [[0 1 2] [3 4 5]]


def test_dihedral_ids_match_spec():
    expected = [G, np.rot90(G, 1), np.rot90(G, 2), np.rot90(G, 3), np.fliplr(G), np.flipud(G), G.T,
                np.fliplr(np.rot90(G, 1))]
    for t, e in enumerate(expected):
        assert np.array_equal(dihedral(G, t), e), t
    assert dihedral(G, 1).tolist() == [[2, 5], [1, 4], [0, 3]]
    assert dihedral(G, 7).tolist() == [[5, 2], [4, 1], [3, 0]]
    # The 8 maps are distinct on an asymmetric grid.
    assert len({dihedral(G, t).tobytes() + bytes(dihedral(G, t).shape) for t in range(8)}) == 8


def test_inverse_ids():
    assert INVERSE_DIHEDRAL == (0, 3, 2, 1, 4, 5, 6, 7)
    for t in range(8):
        assert np.array_equal(inverse_dihedral(dihedral(G, t), t), G)
        assert np.array_equal(dihedral(inverse_dihedral(G, t), t), G)
        assert dihedral_shape(G.shape, t) == dihedral(G, t).shape
    with pytest.raises(ValueError):
        dihedral(G, 8)


def test_gather_table_matches_dihedral():
    g = np.arange(12).reshape(3, 4)
    h, w = g.shape
    for t, (swap, fr, fc) in enumerate(DIHEDRAL_GATHER):
        d = dihedral(g, t)
        for a in range(d.shape[0]):
            for c in range(d.shape[1]):
                u, v = (c, a) if swap else (a, c)
                assert d[a, c] == g[h - 1 - u if fr else u, w - 1 - v if fc else v], (t, a, c)


def test_augmentation_record():
    a = Augmentation(3, (0, 9, 8, 7, 6, 5, 4, 3, 2, 1))
    assert a.to_str() == "t3p0987654321"
    assert Augmentation.from_str(a.to_str()) == a
    assert Augmentation.from_array(a.to_array()) == a
    assert Augmentation.identity().to_str() == "t0p0123456789" and Augmentation.identity().is_identity
    x = np.array([[0, 1], [2, 9]], np.uint8)
    assert a.apply(x).tolist() == np.rot90(np.array([[0, 9], [8, 1]]), 3).tolist()
    for bad in ["t8p0123456789", "t1p1023456789", "t1p0123456788", "t1p012345678", "x1p0123456789"]:
        with pytest.raises(ValueError):
            Augmentation.from_str(bad)
    with pytest.raises(ValueError):
        Augmentation(0, (1, 0, 2, 3, 4, 5, 6, 7, 8, 9))  # 0 must stay 0
    hash(a)  # frozen, usable as a key


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), t=st.integers(0, 7), seed=st.integers(0, 2**32 - 1),
       canvas=st.sampled_from([30, 31, 40]))
def test_property_invert_apply(h, w, t, seed, canvas):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 10, size=(h, w), dtype=np.uint8)
    aug = Augmentation(t, (0, *(int(x) for x in rng.permutation(np.arange(1, 10)))))
    assert Augmentation.from_str(aug.to_str()) == aug
    a = aug.apply(g)
    assert a.shape == dihedral_shape(g.shape, t)
    assert (a == 0).sum() == (g == 0).sum()  # black stays black
    assert np.array_equal(aug.invert(a), g)
    # With a translation: place the augmented grid at a random shared offset, read it back, undo.
    other = aug.apply(rng.integers(0, 10, size=(rng.integers(1, 31), rng.integers(1, 31)), dtype=np.uint8))
    r0, c0 = (int(rng.integers(0, canvas - max(x, y) + 1)) for x, y in zip(a.shape, other.shape))
    assert r0 + max(a.shape[0], other.shape[0]) <= canvas and c0 + max(a.shape[1], other.shape[1]) <= canvas
    board = encode_grid(a, canvas=canvas, offset=(r0, c0)).reshape(canvas, canvas)
    shifted = np.zeros_like(board)
    shifted[:canvas - r0, :canvas - c0] = board[r0:, c0:]
    back = decode_grid(shifted.reshape(-1), canvas=canvas)
    assert np.array_equal(aug.invert(back), g)
