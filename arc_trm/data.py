"""Batches for training: the group sampler of REFERENCE §6 and the torch side of a built set.

Every rank runs the same sampler with the same seed and takes its slice of the global batch, so
one process with batch B and k processes with batch B/k see exactly the same examples.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass

import numpy as np
import torch

from arc_trm.model import Batch
from augment.encoding import labels_from_tokens
from augment.store import BuiltSet
from augment.errors import InputError


@dataclass
class Draw:
    """One global batch: puzzle rows and example indices, all on the canvas of side `side`."""

    side: int
    rows: np.ndarray  # (B,) puzzle ids
    examples: np.ndarray  # (B,) training example index within each row


@dataclass
class GroupSampler:
    """Epochs permute the task groups; each group draws one random augmented version whose
    examples (in random order) fill the batch. Batches run on across epoch boundaries.
    With `subsets`, a group contributes only those example indices (one length bucket)."""

    group_starts: np.ndarray  # (G,) first puzzle row of each group
    group_ends: np.ndarray  # (G,) one past the last row
    num_examples: np.ndarray  # (R,) training examples per puzzle row
    rng: np.random.Generator
    side: int  # canvas side of every batch
    subsets: list[np.ndarray] | None = None  # (G,) example indices each group may draw
    drop_last: bool = False  # the reference's epoch boundary: an epoch's last incomplete batch is dropped
    epoch: int = 0
    position: int = 0
    order: np.ndarray | None = None

    @classmethod
    def for_built(cls, built: BuiltSet, seed: int, side: int | None = None,
                  drop_last: bool = False) -> "GroupSampler":
        """Every example of the build, or (with `side`) those of one length bucket."""
        starts = np.array([g.start for g in built.groups], dtype=np.int64)
        ends = np.array([g.stop for g in built.groups], dtype=np.int64)
        counts = built.num_train_examples(np.arange(built.num_identifiers)).astype(np.int64)
        if len(starts) == 0:
            raise InputError(f"{built.path}: the build has no training examples")
        if side is None:
            return cls(starts, ends, counts, np.random.default_rng(seed), built.canvas, drop_last=drop_last)
        subsets = built.group_examples(side)
        keep = np.array([len(sub) > 0 for sub in subsets], dtype=bool)
        return cls(starts[keep], ends[keep], counts, np.random.default_rng(seed), side,
                   [sub for sub, k in zip(subsets, keep) if k], drop_last=drop_last)

    def __post_init__(self) -> None:
        self.sizes = (np.array([len(sub) for sub in self.subsets], dtype=np.int64) if self.subsets is not None
                      else self.num_examples[self.group_starts])  # (G,) examples per group

    def remaining(self) -> int:
        """Examples left in the current epoch; a finished (or unstarted) one counts as a whole new one."""
        if self.order is None or self.position >= len(self.order):
            return int(self.sizes.sum())
        return int(self.sizes[self.order[self.position:]].sum())

    def check_batch(self, batch_size: int) -> None:
        """With drop_last, an epoch smaller than one batch would never yield one: one line."""
        if self.drop_last and self.sizes.sum() < batch_size:
            raise InputError(f"train.drop_last: an epoch of the canvas-{self.side} examples holds "
                             f"{int(self.sizes.sum())} examples, fewer than one batch of {batch_size}")

    def next_batch(self, batch_size: int) -> Draw:
        """Rows (puzzle ids) and example indices for one global batch. Without drop_last a batch
        runs on across an epoch boundary; with it, the reference's rule: the epoch's draws that do
        not fill a whole batch are discarded and the batch starts afresh in the next epoch."""
        self.check_batch(batch_size)
        rows: list[np.ndarray] = []
        examples: list[np.ndarray] = []
        filled = 0
        while filled < batch_size:
            if self.order is None or self.position >= len(self.order):
                if self.drop_last and filled:
                    rows, examples, filled = [], [], 0
                self.order = self.rng.permutation(len(self.group_starts))
                self.position = 0
                self.epoch += 1
            g = self.order[self.position]
            self.position += 1
            row = int(self.rng.integers(self.group_starts[g], self.group_ends[g]))
            n = int(self.sizes[g])  # every augmented version of a task has its examples
            take = min(n, batch_size - filled)
            picked = self.rng.choice(n, take, replace=False)
            examples.append(self.subsets[g][picked] if self.subsets is not None else picked)
            rows.append(np.full(take, row, dtype=np.int64))
            filled += take
        return Draw(self.side, np.concatenate(rows), np.concatenate(examples))

    def state_dict(self) -> dict:
        return {"rng": json.dumps(self.rng.bit_generator.state), "epoch": self.epoch,
                "position": self.position, "order": None if self.order is None else self.order.tolist()}

    def load_state_dict(self, state: dict) -> None:
        if "buckets" in state:
            raise InputError("the checkpoint's sampler draws length buckets and this run does not: "
                             "data.bucketing was true when the run started; resume with data.bucketing=true")
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.order = None if state["order"] is None else np.asarray(state["order"], dtype=np.int64)


@dataclass
class BucketSampler:
    """Length bucketing: one GroupSampler per bucket canvas; each batch comes from one bucket,
    picked with probability proportional to the examples left in that bucket's epoch."""

    samplers: dict[int, GroupSampler]  # side -> sampler of that bucket's examples
    rng: np.random.Generator

    @classmethod
    def for_built(cls, built: BuiltSet, seed: int, drop_last: bool = False) -> "BucketSampler":
        sides = sorted(set(built.pair_sides().tolist()))
        samplers = {s: GroupSampler.for_built(built, seed + 1 + i, side=s, drop_last=drop_last)
                    for i, s in enumerate(sides)}
        return cls(samplers, np.random.default_rng(seed))

    @property
    def epoch(self) -> int:
        return min(s.epoch for s in self.samplers.values())

    def check_batch(self, batch_size: int) -> None:
        for sub in self.samplers.values():
            sub.check_batch(batch_size)

    def next_batch(self, batch_size: int) -> Draw:
        sides = sorted(self.samplers)
        work = np.array([self.samplers[s].remaining() for s in sides], dtype=np.float64)
        side = sides[int(self.rng.choice(len(sides), p=work / work.sum()))]
        return self.samplers[side].next_batch(batch_size)

    def state_dict(self) -> dict:
        return {"rng": json.dumps(self.rng.bit_generator.state), "epoch": self.epoch,
                "buckets": {str(s): sub.state_dict() for s, sub in self.samplers.items()}}

    def load_state_dict(self, state: dict) -> None:
        if sorted(state.get("buckets", {})) != sorted(str(s) for s in self.samplers):
            raise InputError("the checkpoint's sampler has other length buckets than this run "
                             "(data.bucketing or the build changed)")
        self.rng.bit_generator.state = json.loads(state["rng"])
        for s, sub in self.samplers.items():
            sub.load_state_dict(state["buckets"][str(s)])


Sampler = GroupSampler | BucketSampler


def make_sampler(built: BuiltSet, seed: int, bucketing: bool, drop_last: bool = False) -> Sampler:
    if bucketing:
        return BucketSampler.for_built(built, seed, drop_last=drop_last)
    return GroupSampler.for_built(built, seed, drop_last=drop_last)


def host_batch(inputs: np.ndarray, label_tokens: np.ndarray, rows: np.ndarray, pin: bool = False) -> Batch:
    """uint8 token canvases -> the model's batch on the host (PAD labels ignored, EOS supervised).
    `pin`: page-locked memory, so that the copy to a GPU can be asynchronous."""
    labels = torch.from_numpy(labels_from_tokens(label_tokens))
    batch = Batch(torch.from_numpy(inputs.astype(np.int32)), labels, torch.from_numpy(rows.astype(np.int32)))
    return batch.map(lambda t: t.pin_memory()) if pin else batch


def to_model_batch(inputs: np.ndarray, label_tokens: np.ndarray, rows: np.ndarray, device: torch.device) -> Batch:
    return host_batch(inputs, label_tokens, rows).map(lambda t: t.to(device))


@dataclass
class Prefetched:
    side: int  # canvas side of the batch (the length bucket)
    batch: Batch  # this rank's slice, on the host (pinned for a GPU)
    sampler_state: dict  # the sampler just after drawing this batch: what a checkpoint saves


class Prefetcher:
    """Draws and assembles the next training batches on a background thread, so the loader's
    CPU work (tens of ms per paper-size batch) overlaps the device's step. The sampler is used by
    the thread alone; each batch carries the sampler state that follows it, so a checkpoint
    resumes exactly after the last batch consumed, whatever was prefetched beyond it."""

    def __init__(self, sampler: Sampler, built: BuiltSet, global_batch: int, rows: slice,
                 pin: bool, depth: int = 3):
        self._args = (sampler, built, global_batch, rows, pin)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sampler, built, global_batch, rows_slice, pin = self._args
        try:
            while not self._stop.is_set():
                draw = sampler.next_batch(global_batch)
                rows, examples = draw.rows[rows_slice], draw.examples[rows_slice]
                inputs, labels = built.train_batch(rows, examples, draw.side)
                item: Prefetched | BaseException = Prefetched(draw.side, host_batch(inputs, labels, rows, pin),
                                                              sampler.state_dict())
                self._put(item)
        except Exception as e:  # handed to the training thread, which re-raises it
            self._put(e)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self) -> Prefetched:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
