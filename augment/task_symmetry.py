"""When two augmentations of a task give the same augmented task (REFERENCE §2b).

The reference keeps an augmented version only if its puzzle hash is new. That hash is a sha256
over the sorted per-example hashes of (input, output), each grid's hash covering its shape and its
cells, so two versions hash alike exactly when they hold the same multiset of (input, output)
pairs. Hashing every draw is what made the reference builder slow. Here the same decision is
reached without hashing:

Augmentations g = (dihedral t, colour map p) form a group acting on tasks, and g1, g2 give the
same version exactly when g2 = g1 h for some h in the task's symmetry group H (the augmentations
that leave the task's pair multiset unchanged). Only the colours the task uses matter, so a draw's
key is (t, p restricted to the used colours), and a version's key is the smallest key over its
coset g H. `TaskSymmetry` finds H once per task by a small search; `exact_keys` is the direct
computation (the pair multiset itself), used where the search gives up and by the tests as the
oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grids import NUM_COLOURS
from .transforms import NUM_DIHEDRAL, TRANSPOSING, dihedral

Pairs = tuple[tuple[np.ndarray, np.ndarray], ...]
_SEARCH_BUDGET = 20_000  # search nodes per task before falling back to exact keys


def _compose_table() -> np.ndarray:
    """COMPOSE[a, b] = c where dihedral(dihedral(x, b), a) == dihedral(x, c)."""
    probe = np.arange(6).reshape(2, 3)
    table = np.zeros((NUM_DIHEDRAL, NUM_DIHEDRAL), dtype=np.int64)
    for a in range(NUM_DIHEDRAL):
        for b in range(NUM_DIHEDRAL):
            both = dihedral(dihedral(probe, b), a)
            table[a, b] = next(c for c in range(NUM_DIHEDRAL)
                               if dihedral(probe, c).shape == both.shape and np.array_equal(dihedral(probe, c), both))
    return table


COMPOSE = _compose_table()


@dataclass(frozen=True)
class _Transformed:
    """A task's pairs under one dihedral map, flattened: one header and one cell run per pair."""

    headers: tuple[bytes, ...]  # 4 bytes per pair: input and output shape
    cells: np.ndarray  # all pairs' input then output cells, concatenated (uint8)
    bounds: tuple[int, ...]  # pair i is cells[bounds[i]:bounds[i + 1]]

    @classmethod
    def of(cls, pairs: Pairs, t: int) -> "_Transformed":
        headers, runs, bounds = [], [], [0]
        for inp, out in pairs:
            a, b = dihedral(inp, t), dihedral(out, t)
            headers.append(bytes((*a.shape, *b.shape)))
            runs += [a.ravel(), b.ravel()]
            bounds.append(bounds[-1] + a.size + b.size)
        return cls(tuple(headers), np.concatenate(runs).astype(np.uint8), tuple(bounds))

    def pair(self, i: int) -> np.ndarray:
        return self.cells[self.bounds[i]:self.bounds[i + 1]]

    def multiset(self, lut: np.ndarray) -> tuple[bytes, ...]:
        """The sorted pairs after recolouring by `lut`: equal exactly when the reference's puzzle
        hashes are equal (a header fixes how the cells split into input and output)."""
        mapped = lut[self.cells]
        return tuple(sorted(h + mapped[self.bounds[i]:self.bounds[i + 1]].tobytes()
                            for i, h in enumerate(self.headers)))


def _shapes_fit(pairs: Pairs, t: int) -> bool:
    """Whether dihedral map t can be a symmetry as far as the pairs' shapes go."""
    if not TRANSPOSING[t]:
        return True
    shapes = sorted((a.shape, b.shape) for a, b in pairs)
    return shapes == sorted((a.shape[::-1], b.shape[::-1]) for a, b in pairs)


class _BudgetSpent(Exception):
    """The symmetry search took too long; the caller uses exact keys instead."""


def _extend(fwd: dict[int, int], inv: dict[int, int], src: np.ndarray, dst: np.ndarray):
    """fwd/inv extended by the cell-wise colour correspondence src -> dst, or None if that
    correspondence is not a bijection consistent with them."""
    fwd, inv = dict(fwd), dict(inv)
    for code in np.unique(src.astype(np.int16) * 16 + dst).tolist():
        a, b = code >> 4, code & 15
        if fwd.setdefault(a, b) != b or inv.setdefault(b, a) != a:
            return None
    return fwd, inv


@dataclass(frozen=True)
class TaskSymmetry:
    """A task's used colours and its symmetry group H as (dihedral id, image of each used colour)."""

    colours: np.ndarray  # used colours 1-9, ascending
    group: tuple[tuple[int, np.ndarray], ...]

    @classmethod
    def find(cls, pairs: Pairs) -> "TaskSymmetry | None":
        """H for `pairs`, or None when the search exceeds its budget."""
        used = sorted(set(np.unique(np.concatenate([g.ravel() for p in pairs for g in p])).tolist()) - {0})
        colours = np.asarray(used, dtype=np.int64)
        base = _Transformed.of(pairs, 0)
        target = base.multiset(np.arange(NUM_COLOURS, dtype=np.uint8))
        by_header: dict[bytes, list[int]] = {}
        for i, h in enumerate(base.headers):
            by_header.setdefault(h, []).append(i)
        found: dict[tuple, tuple[int, np.ndarray]] = {}
        nodes = [0]

        def search(moved: _Transformed, t: int, i: int, fwd: dict, inv: dict, free: list[bool]) -> None:
            nodes[0] += 1
            if nodes[0] > _SEARCH_BUDGET:
                raise _BudgetSpent
            if all(c in fwd for c in used):
                lut = np.arange(NUM_COLOURS, dtype=np.uint8)
                for a, b in fwd.items():
                    lut[a] = b
                if moved.multiset(lut) == target:
                    image = lut[colours].astype(np.int64)
                    found.setdefault((t, tuple(image.tolist())), (t, image))
                return
            for j in by_header.get(moved.headers[i], []):
                if free[j]:
                    grown = _extend(fwd, inv, moved.pair(i), base.pair(j))
                    if grown is not None:
                        free[j] = False
                        search(moved, t, i + 1, *grown, free)
                        free[j] = True

        try:
            for t in range(NUM_DIHEDRAL):
                if t == 0 or _shapes_fit(pairs, t):
                    search(_Transformed.of(pairs, t), t, 0, {0: 0}, {0: 0}, [True] * len(pairs))
        except _BudgetSpent:
            return None
        return cls(colours, tuple(found.values()))

    def keys(self, dihedral_ids: np.ndarray, mapping: np.ndarray) -> np.ndarray:
        """(n,) int64 version keys of n draws (dihedral id, (n, 10) colour map): equal keys, same version."""
        best = None
        shifts = 3 + 4 * np.arange(len(self.colours), dtype=np.int64)
        for d, image in self.group:
            t = COMPOSE[dihedral_ids, d]
            key = t + (mapping[:, image].astype(np.int64) << shifts).sum(axis=1)
            best = key if best is None else np.minimum(best, key)
        assert best is not None, "the identity is always a symmetry"
        return best


def exact_keys(pairs: Pairs, dihedral_ids: np.ndarray, mapping: np.ndarray,
               interned: dict[tuple, int]) -> np.ndarray:
    """Version keys from the augmented pair multisets themselves (ids into `interned`)."""
    moved = {t: _Transformed.of(pairs, t) for t in set(dihedral_ids.tolist())}
    out = np.empty(len(dihedral_ids), dtype=np.int64)
    for n, (t, lut) in enumerate(zip(dihedral_ids.tolist(), mapping)):
        out[n] = interned.setdefault(moved[t].multiset(lut), len(interned))
    return out
