"""The reference builder's random draws, read from numpy's legacy global generator in bulk.

The reference seeds numpy's legacy RandomState and then, in a fixed order, shuffles task lists
and draws augmentations (REFERENCE §2b). Calling RandomState once per draw costs microseconds;
millions of draws are needed. Instead this module reads the generator's raw 32-bit outputs in
blocks and decodes them the way the legacy calls consume them:

- ``randint(0, 8)``: one output, its low 3 bits.
- ``random_interval(i)`` (what the legacy shuffle and permutation use for each swap): the smallest
  all-ones mask >= i, then outputs ``& mask`` until one is <= i (rejection).
- ``shuffle`` / ``permutation`` of n items: for i = n-1 down to 1, swap item i with item
  random_interval(i).

A trial of the reference's augmenter is ``randint(0, 8)`` then a permutation of colours 1-9. The
number of outputs a trial consumes varies (rejections), so the trials of a block are found with a
jump table computed for every start position at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_PERMUTED = 9  # colours 1-9 are permuted; 0 stays
_BLOCK = 1 << 16  # outputs read from the generator at a time


def interval_mask(high: int) -> int:
    """The smallest all-ones bit mask >= high (legacy random_interval)."""
    mask = high
    for shift in (1, 2, 4, 8, 16):
        mask |= mask >> shift
    return mask


# The swaps of a 9-item permutation: (i, mask) for i = 8..1.
_SWAPS = tuple((i, interval_mask(i)) for i in range(NUM_PERMUTED - 1, 0, -1))


@dataclass(frozen=True)
class Trials:
    """Decoded augmentation draws: dihedral id, colour map (0 first) and where each trial ends."""

    dihedral: np.ndarray  # (n,) int64 in 0..7
    mapping: np.ndarray  # (n, 10) uint8: mapping[c] is the new colour of c; mapping[0] = 0
    ends: np.ndarray  # (n,) int64: outputs consumed from the block start once trial i is drawn


class LegacyStream:
    """The raw outputs of ``numpy.random.RandomState(seed)``, with a read position."""

    def __init__(self, seed: int):
        bits = np.random.MT19937()
        bits.state = np.random.RandomState(seed).get_state(legacy=False)  # the legacy seeding
        self._bits = bits
        self._buf = np.empty(0, dtype=np.uint32)
        self._pos = 0

    def peek(self, count: int) -> np.ndarray:
        """The next `count` outputs, without consuming them."""
        have = len(self._buf) - self._pos
        if have < count:
            more = max(count - have, _BLOCK)
            fresh = self._bits.random_raw(more).astype(np.uint32)
            self._buf = np.concatenate([self._buf[self._pos:], fresh])
            self._pos = 0
        return self._buf[self._pos:self._pos + count]

    def skip(self, count: int) -> None:
        self.peek(count)
        self._pos += count

    def interval(self, high: int) -> int:
        """legacy random_interval(high): uniform in 0..high."""
        if high == 0:
            return 0
        mask = interval_mask(high)
        while True:
            value = int(self.peek(1)[0]) & mask
            self._pos += 1
            if value <= high:
                return value

    def shuffled(self, count: int) -> list[int]:
        """The order a legacy ``shuffle`` leaves a list of `count` items in (as indices)."""
        order = list(range(count))
        for i in range(count - 1, 0, -1):
            j = self.interval(i)
            order[i], order[j] = order[j], order[i]
        return order

    def trials(self, count: int) -> Trials:
        """The next `count` augmentation trials, without consuming them (see `skip`)."""
        size = count * 12 + 256  # a trial takes 11.2 outputs on average
        while True:
            decoded = decode_trials(self.peek(size), count)
            if decoded is not None:
                return decoded
            size *= 2  # an unlucky run of rejections: read further


_PAD = 16  # positions past the block end, so that jumps need no bounds checks


def _next_accepted(block: np.ndarray, high: int, mask: int) -> np.ndarray | None:
    """(L + _PAD,) for each position k, the first position >= k whose output random_interval(high)
    accepts; k itself from L on (L = len(block): past the end). None when every output is accepted."""
    n = len(block)
    if mask == high:
        return None
    out = np.arange(n + _PAD, dtype=np.int64)
    pos = np.where((block & mask) <= high, out[:n], n)
    out[:n] = np.minimum.accumulate(pos[::-1])[::-1]
    return out


def decode_trials(block: np.ndarray, count: int) -> Trials | None:
    """The first `count` trials drawn from `block`; None if the block runs out first."""
    n = len(block)
    nexts = [_next_accepted(block, i, mask) for i, mask in _SWAPS]
    # jump[k]: where the next trial starts when one starts at k (> n: the block ran out).
    jump = np.arange(1, n + 1, dtype=np.int64)  # after the dihedral draw
    for nxt in nexts:
        jump = (jump if nxt is None else nxt[jump]) + 1
    chain = jump.tolist()
    starts = [0] * count
    at = 0
    for t in range(count):
        if at >= n:
            return None
        starts[t] = at
        at = chain[at]
    if at > n:
        return None
    start = np.asarray(starts, dtype=np.int64)
    dihedral = (block[start] & 7).astype(np.int64)
    perm = np.tile(np.arange(1, NUM_PERMUTED + 1, dtype=np.uint8), (count, 1))
    rows = np.arange(count)
    pos = start + 1
    for (i, mask), nxt in zip(_SWAPS, nexts):
        if nxt is not None:
            pos = nxt[pos]
        j = (block[pos] & mask).astype(np.int64)
        held = perm[rows, i].copy()
        perm[rows, i] = perm[rows, j]
        perm[rows, j] = held
        pos = pos + 1
    mapping = np.concatenate([np.zeros((count, 1), dtype=np.uint8), perm], axis=1)
    return Trials(dihedral, mapping, pos)
