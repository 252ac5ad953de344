"""The augmentation draw of one task: N distinct (dihedral, colour permutation) versions and the
translation offsets of their examples (REFERENCE §2). Runs in the build's worker processes.

A task's draws depend only on the build seed and the task's own content key, so a task keeps its
versions whatever else is in the set. Versions are de-duplicated by a 64-bit key of their
multiset of (input, output) pairs (128-bit pair hashes, computed from per-colour tables without
building the grids, mixed into one word).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Sequence

import numpy as np

from .options import BuildOptions
from .transforms import NUM_DIHEDRAL, TRANSPOSING, dihedral, dihedral_shape

DRAW_CHUNK = 256  # random draws are made in fixed-size chunks (part of the draw definition)


def augment_task(pairs: Sequence[tuple[np.ndarray, np.ndarray | None]], train_shapes: np.ndarray, key: str,
                 options: BuildOptions) -> tuple[np.ndarray, np.ndarray]:
    """Draw the augmented versions of one task and the translation offsets of their examples.

    Returns (table (n, 11) uint8 rows [t, perm...], offsets (n * E, 2) uint8) where E is the number
    of training pairs (``train_shapes``: (E, 2, 2) input/output shapes). Version 0 is the identity.
    """
    n_aug, max_tries, canvas = options.augmentations, options.max_tries, options.canvas
    ss = np.random.SeedSequence([int(options.seed), int(key, 16)])
    aug_rng, off_rng, keep_rng = (np.random.default_rng(s) for s in ss.spawn(3))

    hashes, consts = _pair_hash_tables(pairs)

    mix = _hash_weights()[0, :2 * len(pairs), 0].reshape(len(pairs), 2) | np.uint64(1)  # odd multipliers

    def keys(ts: np.ndarray, luts: np.ndarray) -> list[int]:
        """One 64-bit key per version: its pair hashes, sorted (a multiset), mixed into one word."""
        h = (luts.astype(np.uint64)[:, None, :, None] * hashes[ts]).sum(axis=2, dtype=np.uint64)
        h += consts[ts]  # (m, P, 2), arithmetic mod 2^64
        order = np.lexsort((h[:, :, 1], h[:, :, 0]), axis=-1)
        h = np.take_along_axis(h, order[:, :, None], axis=1)
        return (h * mix).sum(axis=(1, 2), dtype=np.uint64).tolist()

    identity = np.arange(-1, 10, dtype=np.int16).clip(0).astype(np.uint8)  # [t=0, 0, 1, ..., 9]
    parts = [identity[None]]
    count = 1
    seen = set(keys(np.zeros(1, np.int64), identity[None, 1:]))
    tries = 0
    while count < n_aug and tries < max_tries:
        ts = aug_rng.integers(NUM_DIHEDRAL, size=DRAW_CHUNK)
        perms = aug_rng.permuted(np.tile(np.arange(1, 10, dtype=np.uint8), (DRAW_CHUNK, 1)), axis=1)
        luts = np.concatenate([np.zeros((DRAW_CHUNK, 1), np.uint8), perms], axis=1)
        chunk_keys = keys(ts, luts)
        accepted = []
        for j in range(min(DRAW_CHUNK, max_tries - tries)):
            tries += 1
            k = chunk_keys[j]
            if k not in seen:
                seen.add(k)
                accepted.append(j)
                count += 1
                if count >= n_aug:
                    break
        parts.append(np.concatenate([ts[accepted, None].astype(np.uint8), luts[accepted]], axis=1))
    table_arr = np.concatenate(parts).astype(np.uint8)

    # Translation: one shared offset per pair so both grids fit; one random example stays at (0, 0).
    n, e = len(table_arr), len(train_shapes)
    extent = np.asarray(train_shapes, dtype=np.int64).reshape(e, 2, 2).max(axis=1)  # (E, 2) h, w
    swap = np.asarray(TRANSPOSING)[table_arr[:, 0]]  # (n,)
    ext = np.where(swap[:, None, None], extent[None, :, ::-1], extent[None])  # (n, E, 2)
    offsets = off_rng.integers(0, canvas - ext + 1) if e else np.zeros((n, 0, 2), np.int64)
    if e:
        offsets[np.arange(n), keep_rng.integers(e, size=n)] = 0
    return table_arr, offsets.reshape(n * e, 2).astype(np.uint8)


@functools.cache
def _hash_weights() -> np.ndarray:
    """(2 sides, 900 cells, 2 words) fixed random uint64 weights of the position-weighted grid hash."""
    rng = np.random.default_rng(0x6172632D74726D)  # fixed: part of the dedup definition
    return rng.integers(0, 2**64 - 1, size=(2, 30 * 30, 2), dtype=np.uint64, endpoint=True)


def _pair_hash_tables(pairs: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray]:
    """Tables that give the 128-bit hash of every augmented pair without building the grids.

    The hash of an augmented (input, output) pair is sum_j W[j] * grid[j] over its cells (mod 2^64,
    two words, separate weights for input and output) plus a digest of both shapes. For a grid
    ``lut[dihedral(x, t)]`` that sum is ``sum_c lut[c] * S[t, c]`` with ``S[t, c]`` the summed weights
    of the cells of ``dihedral(x, t)`` holding colour c. Returns S as (8, P, 10, 2) and the shape
    digests as (8, P, 2), both uint64. The hash is a function of the augmented pair's content and
    shapes alone, so two draws that produce the same pair get the same hash.
    """
    w = _hash_weights()
    n = len(pairs)
    s = np.zeros((n, NUM_DIHEDRAL, 10, 2), np.uint64)
    k = np.zeros((NUM_DIHEDRAL, n, 2), np.uint64)
    colours = np.arange(10, dtype=np.uint8)[:, None]
    for p, (i, o) in enumerate(pairs):
        for side, g in enumerate((i, o)):
            if g is not None:
                onehot = (g.reshape(1, -1) == colours).astype(np.uint64)  # (10, cells)
                s[p] += onehot[None] @ w[side][_cell_maps(g.shape)]  # (8, 10, 2)
        for t in range(NUM_DIHEDRAL):
            head = b"".join(bytes(dihedral_shape(g.shape, t)) if g is not None else b"\0\0" for g in (i, o))
            k[t, p] = np.frombuffer(hashlib.blake2b(head, digest_size=16).digest(), dtype="<u8")
    return np.ascontiguousarray(s.transpose(1, 0, 2, 3)), k


@functools.lru_cache(maxsize=4096)
def _cell_maps(shape: tuple[int, int]) -> np.ndarray:
    """(8, h*w): for each dihedral id, the position in the transformed grid of each source cell."""
    h, w = shape
    src = np.arange(h * w).reshape(h, w)
    out = np.empty((NUM_DIHEDRAL, h * w), np.int64)
    for t in range(NUM_DIHEDRAL):
        out[t, dihedral(src, t).ravel()] = np.arange(h * w)
    return out
