"""A built, augmented task set on disk, and the loader that assembles batches from it.

A build does not store augmented examples. It stores the SOURCE grids once, plus a compact record
per augmented task (dihedral id and colour permutation: 11 bytes) and a translation offset per
(augmented task, training example) (2 bytes), as memory-mappable ``.npy`` arrays. The loader applies
the augmentation and translation when it assembles a batch. Layout (see data/README.md):

    metadata.json     params, counts, sources hash, task table (the identifier map), array index
    tasks.json        the source tasks, Kaggle format (solutions included where known)
    grids.npy         (G, S, S) uint8 source grids at the top-left, zero padded (S = largest side)
    grid_shapes.npy   (G, 2) uint8 height, width
    task_index.npy    (T, 6) int64 first_row, num_rows, first_train_pair, num_train_pairs,
                      first_test_input, num_test_inputs
    train_pairs.npy   (NP, 2) int32 grid ids (input, output) of each task's training pairs
    test_inputs.npy   (NT,) int32 grid ids of the test inputs of role-"test" tasks
    row_task.npy      (P+1,) int32 source task of each puzzle row (-1 for the blank row 0)
    row_aug.npy       (P+1, 11) uint8 [dihedral id, perm[0..9]] of each puzzle row
    row_examples.npy  (P+2,) int64 start of each row's translation offsets in offsets.npy
    offsets.npy       (E, 2) uint8 (r0, c0) of each training example

Puzzle row 0 is the blank; rows 1.. are the augmented tasks in sorted (task id, k) order, and the
identifier of a row is ``f"{task_id}#{k}"`` (k = 0 is the un-augmented task).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .buckets import bucket_of, remap_offsets
from .encoding import COLOUR_OFFSET, place_tokens
from .errors import InputError
from .files import read_json
from .grids import BLANK_IDENTIFIER, make_identifier, split_identifier
from .identifier_map import IdentifierMap
from .task_hash import content_hash
from .tasks import Task, task_from_json
from .transforms import TRANSPOSING, Augmentation, dihedral

FORMAT = "arc-trm-build/1"
ARRAYS = ("grids", "grid_shapes", "task_index", "train_pairs", "test_inputs", "row_task", "row_aug",
          "row_examples", "offsets")
BUILD_FILES = frozenset({"metadata.json", "tasks.json", *(f"{name}.npy" for name in ARRAYS)})


def is_build(folder: str | Path) -> bool:
    """True when `folder` holds a build and nothing else: the only folder a build replaces (one
    that also holds a run, notes or a subfolder never is one, so none of those is deleted)."""
    try:
        entries = {p.name: p.is_file() and not p.is_symlink() for p in Path(folder).iterdir()}
    except OSError:
        return False
    return "metadata.json" in entries and set(entries) <= BUILD_FILES and all(entries.values())


@dataclass(frozen=True)
class TestView:
    """One augmented view of one test input: puzzle row, source task, test index, augmentation index."""

    __test__ = False  # not a pytest class

    row: int
    task_id: str
    test_index: int
    aug_index: int


def map_arrays(path: Path, meta: dict) -> dict[str, np.ndarray]:
    """Every array metadata.json lists, memory-mapped (headers read, no data); InputError naming the
    first file that is missing, cut short or not what the metadata says (a copy or sync broken off)."""
    arrays = meta.get("arrays")
    if not isinstance(arrays, dict):
        raise InputError(f"{path}: build metadata lists no arrays; rebuild it")
    out = {}
    for name, info in arrays.items():
        file = path / str(info.get("file") if isinstance(info, dict) else name)
        try:
            arr = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:  # missing, or shorter than its header or its shape needs
            raise InputError(f"{path}: the build is damaged: {file.name} cannot be read ({str(e).splitlines()[0]}); "
                             "rebuild it (`arc-trm build --force`)") from None
        if not isinstance(info, dict) or [str(arr.dtype), list(arr.shape)] != [info.get("dtype"), info.get("shape")]:
            raise InputError(f"{path}: the build is damaged: {file.name} holds {arr.dtype} {list(arr.shape)}, not what "
                             "its metadata lists; rebuild it (`arc-trm build --force`)")
        out[name] = arr
    return out


class BuiltSet:
    """An opened build. Opening reads metadata.json and maps every array (headers only, checking
    that the build is whole); array data is read on use."""

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.meta = meta
        self.canvas: int = int(meta["canvas"])
        self._arrays: dict[str, np.ndarray] = map_arrays(self.path, meta)

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> "BuiltSet":
        path = Path(path)
        if not (path / "metadata.json").is_file():
            raise InputError(f"{path}: not a built task set (no metadata.json); run `arc-trm build`")
        meta = read_json(path / "metadata.json", "build metadata")
        if not isinstance(meta, dict):
            raise InputError(f"{path}: build metadata is not a JSON object; rebuild it")
        if meta.get("format") != FORMAT:
            raise InputError(f"{path}: build format {meta.get('format')!r}, expected {FORMAT!r}; rebuild it")
        return cls(path, meta)

    def array(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def _ram(self, name: str) -> np.ndarray:
        """Small tables the loader indexes constantly, read into memory once."""
        key = "ram:" + name
        arr = self._arrays.get(key)
        if arr is None:
            arr = np.array(self.array(name))
            self._arrays[key] = arr
        return arr

    # -- identifiers -----------------------------------------------------------------------
    @property
    def task_ids(self) -> list[str]:
        return [t["id"] for t in self.meta["tasks"]]

    @property
    def num_identifiers(self) -> int:
        """Rows in the puzzle-embedding table: the blank plus one per augmented task."""
        return int(self.meta["counts"]["augmented_tasks"]) + 1

    @cached_property
    def identifiers(self) -> list[str]:
        """Row -> identifier; row 0 is the blank ("<blank>")."""
        out = [BLANK_IDENTIFIER]
        for t in self.meta["tasks"]:
            out.extend(make_identifier(t["id"], k) for k in range(t["num_rows"]))
        return out

    @cached_property
    def _task_pos(self) -> dict[str, int]:
        return {t["id"]: i for i, t in enumerate(self.meta["tasks"])}

    def row_of(self, ident: str) -> int:
        """Puzzle row of an identifier ``task_id#k`` (KeyError if absent)."""
        try:
            tid, k = split_identifier(ident)
        except ValueError:
            raise KeyError(ident) from None
        if tid not in self._task_pos:
            raise KeyError(ident)
        t = self.meta["tasks"][self._task_pos[tid]]
        if k >= t["num_rows"]:
            raise KeyError(ident)
        return int(t["first_row"]) + k

    def task_of_row(self, row: int) -> tuple[str, int]:
        """(task id, augmentation index k) of a puzzle row >= 1."""
        ti = int(self._ram("row_task")[row])
        if ti < 0:
            raise IndexError(f"row {row} is the blank")
        t = self.meta["tasks"][ti]
        return t["id"], int(row) - int(t["first_row"])

    def augmentation(self, row: int) -> Augmentation:
        return Augmentation.from_array(self._ram("row_aug")[row])

    def identifier_map(self) -> IdentifierMap:
        """What each row means, with the content hash of every task that has rows."""
        with_rows = {t["id"] for t in self.meta["tasks"] if int(t["num_rows"]) > 0}
        return IdentifierMap(list(self.identifiers), self.augmentation_records(),
                             {t.id: content_hash(t) for t in self.tasks if t.id in with_rows})

    def augmentation_records(self) -> list[str]:
        """`Augmentation.to_str()` of every row ("" for the blank row 0), vectorised: a paper-size
        build has 1.2 M rows."""
        aug = self._ram("row_aug")[1:]  # (P, 11): dihedral, perm[0..9]
        text = np.empty((len(aug), 13), dtype=np.uint8)
        text[:, 0], text[:, 2] = ord("t"), ord("p")
        text[:, 1] = aug[:, 0] + ord("0")
        text[:, 3:] = aug[:, 1:] + ord("0")
        return [""] + text.view("S13").ravel().astype(str).tolist()

    # -- tasks and groups --------------------------------------------------------------------
    @cached_property
    def tasks(self) -> list[Task]:
        """The source tasks (sorted by id), read from the build's tasks.json on first use."""
        data = read_json(self.path / "tasks.json", "build tasks")
        return [task_from_json(t["id"], data[t["id"]], role=t["role"], path=self.path / "tasks.json")
                for t in self.meta["tasks"]]

    @cached_property
    def group_bounds(self) -> np.ndarray:
        """(groups, 2) [first row, end row) of each source task that has training examples."""
        ti = self._ram("task_index")
        keep = ti[:, 3] > 0
        return np.stack([ti[keep, 0], ti[keep, 0] + ti[keep, 1]], axis=1).astype(np.int64)

    @property
    def groups(self) -> list[range]:
        return [range(int(a), int(b)) for a, b in self.group_bounds]

    def num_train_examples(self, row):
        """Training examples of a puzzle row (int, or an array for an array of rows)."""
        starts = self._ram("row_examples")
        rows = np.asarray(row)
        n = starts[rows + 1] - starts[rows]
        return int(n) if n.ndim == 0 else n

    # -- batches -----------------------------------------------------------------------------
    def train_batch(self, rows, example_idx, side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and labels (B, side*side) uint8 tokens for (puzzle row, example index) pairs.

        The augmentation of each row and the stored translation offset of each example are applied
        here. Labels are tokens; PAD positions are the ignored ones (encoding.labels_from_tokens).
        `side`: a bucket canvas (buckets.py) that holds every pair of the batch; the offsets drawn
        for the full canvas are moved onto it. Default: the full canvas.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        ex = np.asarray(example_idx, dtype=np.int64).reshape(-1)
        if rows.shape != ex.shape:
            raise ValueError("rows and example_idx must have the same length")
        starts = self._ram("row_examples")
        if rows.size and (rows.min() < 1 or rows.max() >= len(starts) - 1):
            raise IndexError("puzzle row out of range (row 0 is the blank)")
        n = starts[rows + 1] - starts[rows]
        if ((ex < 0) | (ex >= n)).any():
            bad = int(np.flatnonzero((ex < 0) | (ex >= n))[0])
            raise IndexError(f"example {ex[bad]} of row {rows[bad]}, which has {n[bad]} training examples")
        task = self._ram("row_task")[rows]
        aug = self._ram("row_aug")[rows]
        pair = self._ram("task_index")[task, 2] + ex
        gids = self._ram("train_pairs")[pair]  # (B, 2)
        offs = np.asarray(self.array("offsets")[starts[rows] + ex], dtype=np.int64)
        side = self.canvas if side is None else side
        if side != self.canvas:
            shapes = self._ram("grid_shapes")[gids].astype(np.int64)  # (B, 2 grids, 2)
            extent = shapes.max(axis=1)  # (B, 2) rows, columns before the dihedral
            swap = np.asarray(TRANSPOSING)[aug[:, 0]]
            extent = np.where(swap[:, None], extent[:, ::-1], extent)
            if (extent.max(axis=1) > side).any():
                raise ValueError(f"a grid pair of the batch does not fit the bucket canvas {side}")
            offs = remap_offsets(offs, extent, side, self.canvas)
        inputs = self._render(gids[:, 0], aug, offs, side)
        labels = self._render(gids[:, 1], aug, offs, side)
        return inputs, labels

    def pair_sides(self) -> np.ndarray:
        """(NP,) bucket side of every training pair (the same under every augmentation)."""
        shapes = self._ram("grid_shapes")[self._ram("train_pairs")]  # (NP, 2 grids, 2)
        return bucket_of(shapes.reshape(len(shapes), -1).max(axis=1).astype(np.int64), self.canvas)

    def group_examples(self, side: int) -> list[np.ndarray]:
        """Per group (see `groups`), the example indices whose pair falls in bucket `side`."""
        ti = self._ram("task_index")
        sides = self.pair_sides()
        return [np.flatnonzero(sides[ti[t, 2]:ti[t, 2] + ti[t, 3]] == side) for t in np.flatnonzero(ti[:, 3] > 0)]

    @cached_property
    def _test_table(self) -> list[tuple[int, int, int]]:
        ti = self._ram("task_index")
        return [(i, int(ti[i, 0]), int(ti[i, 1])) for i, t in enumerate(self.meta["tasks"])
                if t["role"] == "test"]

    def test_views(self) -> list[TestView]:
        """Every (augmented version, test input) of the role-"test" tasks, by task, row, test index."""
        ti = self._ram("task_index")
        out = []
        for i, first, num in self._test_table:
            tid = self.meta["tasks"][i]["id"]
            for k in range(num):
                for j in range(int(ti[i, 5])):
                    out.append(TestView(first + k, tid, j, k))
        return out

    def test_inputs(self, views, side: int | None = None) -> np.ndarray:
        """(B, side*side) uint8 tokens of augmented test inputs at the top-left (side: the full
        canvas by default)."""
        rows = np.asarray([v.row for v in views], dtype=np.int64)
        tix = np.asarray([v.test_index for v in views], dtype=np.int64)
        task = self._ram("row_task")[rows] if rows.size else np.zeros(0, np.int64)
        ti = self._ram("task_index")
        if ((tix < 0) | (tix >= ti[task, 5])).any():
            raise IndexError("test index out of range for its task (or the task is not a test task)")
        gids = self._ram("test_inputs")[ti[task, 4] + tix] if rows.size else np.zeros(0, np.int64)
        aug = self._ram("row_aug")[rows] if rows.size else np.zeros((0, 11), np.uint8)
        return self._render(gids, aug, np.zeros((len(rows), 2), np.int64), side or self.canvas)

    def _render(self, gids: np.ndarray, aug: np.ndarray, offs: np.ndarray, c: int) -> np.ndarray:
        """Encode source grids `gids` under augmentations `aug` ((B, 11) rows) at offsets `offs`
        on a canvas of side `c`.

        One small numpy step per grid: on ARC-sized grids this beats a whole-canvas vectorised
        gather (measured: about 2x), and 768 examples take a few tens of milliseconds on one core.
        """
        grids = self._ram("grids")
        shapes = self._ram("grid_shapes")
        out = np.zeros((len(gids), c, c), dtype=np.uint8)
        luts = aug[:, 1:].astype(np.uint8) + COLOUR_OFFSET  # colour -> token
        for b in range(len(gids)):
            g = int(gids[b])
            h, w = int(shapes[g, 0]), int(shapes[g, 1])
            x = dihedral(luts[b][grids[g, :h, :w]], int(aug[b, 0]))
            place_tokens(out[b], x, int(offs[b, 0]), int(offs[b, 1]))
        return out.reshape(len(gids), c * c)

    # -- misc --------------------------------------------------------------------------------
    @property
    def counts(self) -> dict:
        return dict(self.meta["counts"])

    def __repr__(self) -> str:
        c = self.meta["counts"]
        return (f"BuiltSet({str(self.path)!r}: {c['tasks']} tasks, {c['augmented_tasks']} augmented tasks, "
                f"{c['train_examples']} training examples, canvas {self.canvas})")
