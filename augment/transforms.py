"""Task augmentations (REFERENCE §2): dihedral maps, colour permutations, translations.

An augmented grid is ``dihedral(perm[grid], t)``; its inverse is ``argsort(perm)[inverse_dihedral(g, t)]``.
An :class:`Augmentation` is the compact, serialisable record of one such map (``"t3p0123456789"``).

Every random draw takes an explicit ``np.random.Generator``; nothing here touches numpy's global
random state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .grids import NUM_COLOURS
from .json_kind import is_digits

NUM_DIHEDRAL = 8
# Distinct maps of a task, the identity included: a dihedral id and a permutation of colours 1-9 (0 stays).
NUM_MAPS = NUM_DIHEDRAL * math.factorial(NUM_COLOURS - 1)
# Dihedral ids (REFERENCE §2): 0 identity, 1 rot90 (k=1), 2 rot180, 3 rot270, 4 fliplr, 5 flipud, 6 transpose,
# 7 fliplr(rot90).
INVERSE_DIHEDRAL = (0, 3, 2, 1, 4, 5, 6, 7)
# Ids whose result has the source's height and width swapped.
TRANSPOSING = (False, True, False, True, False, False, True, True)

# For each id, how a cell (a, c) of the transformed grid reads the source grid of shape (h, w):
# (u, v) = (c, a) if swap else (a, c); source row = h-1-u if flip_r else u; column = w-1-v if flip_c
# else v. A reference table of the maps, which tests check against `dihedral`; no code path reads it.
DIHEDRAL_GATHER = (
    # swap, flip_r, flip_c
    (0, 0, 0),  # identity
    (1, 0, 1),  # rot90:       out[a, c] = g[c, w-1-a]
    (0, 1, 1),  # rot180:      out[a, c] = g[h-1-a, w-1-c]
    (1, 1, 0),  # rot270:      out[a, c] = g[h-1-c, a]
    (0, 0, 1),  # fliplr:      out[a, c] = g[a, w-1-c]
    (0, 1, 0),  # flipud:      out[a, c] = g[h-1-a, c]
    (1, 0, 0),  # transpose:   out[a, c] = g[c, a]
    (1, 1, 1),  # fliplr(rot90): out[a, c] = g[h-1-c, w-1-a]
)


def _check_id(t: int) -> int:
    t = int(t)
    if not 0 <= t < NUM_DIHEDRAL:
        raise ValueError(f"dihedral id {t} is not in 0..7")
    return t


def dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """Apply dihedral map ``t`` (REFERENCE §2 ids). Returns a view where numpy allows it."""
    t = _check_id(t)
    if t == 0:
        return grid
    if t == 1:
        return np.rot90(grid, k=1)
    if t == 2:
        return np.rot90(grid, k=2)
    if t == 3:
        return np.rot90(grid, k=3)
    if t == 4:
        return np.fliplr(grid)
    if t == 5:
        return np.flipud(grid)
    if t == 6:
        return grid.T
    return np.fliplr(np.rot90(grid, k=1))


def inverse_dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    """Undo dihedral map ``t``."""
    return dihedral(grid, INVERSE_DIHEDRAL[_check_id(t)])


def dihedral_shape(shape: tuple[int, int], t: int) -> tuple[int, int]:
    """Shape of ``dihedral(g, t)`` for a grid ``g`` of ``shape``."""
    h, w = shape
    return (w, h) if TRANSPOSING[_check_id(t)] else (h, w)


@dataclass(frozen=True)
class Augmentation:
    """One dihedral map plus one colour permutation (colour 0 fixed)."""

    dihedral: int
    perm: tuple[int, ...]

    def __post_init__(self) -> None:
        perm = tuple(int(x) for x in self.perm)
        object.__setattr__(self, "perm", perm)
        object.__setattr__(self, "dihedral", _check_id(self.dihedral))
        if len(perm) != NUM_COLOURS or sorted(perm) != list(range(NUM_COLOURS)) or perm[0] != 0:
            raise ValueError(f"colour permutation {perm} must permute 0..9 and keep 0 fixed")

    @classmethod
    def identity(cls) -> "Augmentation":
        return cls(0, tuple(range(NUM_COLOURS)))

    @property
    def is_identity(self) -> bool:
        return self.dihedral == 0 and self.perm == tuple(range(NUM_COLOURS))

    @property
    def lut(self) -> np.ndarray:
        return np.asarray(self.perm, dtype=np.uint8)

    @property
    def inverse_lut(self) -> np.ndarray:
        return np.argsort(self.lut).astype(np.uint8)

    def apply(self, grid: np.ndarray) -> np.ndarray:
        """dihedral(perm[grid], t), as a new contiguous uint8 array."""
        return np.ascontiguousarray(dihedral(self.lut[np.asarray(grid)], self.dihedral))

    def invert(self, grid: np.ndarray) -> np.ndarray:
        """argsort(perm)[inverse_dihedral(grid, t)]: undoes :meth:`apply`."""
        return np.ascontiguousarray(self.inverse_lut[inverse_dihedral(np.asarray(grid), self.dihedral)])

    def to_str(self) -> str:
        return f"t{self.dihedral}p" + "".join(str(x) for x in self.perm)

    @classmethod
    def from_str(cls, text: str) -> "Augmentation":
        if len(text) != 13 or text[0] != "t" or text[2] != "p" or not is_digits(text[1:2] + text[3:]):
            raise ValueError(f"bad augmentation record {text!r}; expected e.g. 't3p0123456789'")
        return cls(int(text[1]), tuple(int(ch) for ch in text[3:]))

    def to_array(self) -> np.ndarray:
        """(11,) uint8: [t, perm...] (the row format of a build's augmentation table)."""
        return np.asarray((self.dihedral,) + self.perm, dtype=np.uint8)

    @classmethod
    def from_array(cls, row: Sequence[int]) -> "Augmentation":
        return cls(int(row[0]), tuple(int(x) for x in row[1:11]))

    def __str__(self) -> str:
        return self.to_str()
