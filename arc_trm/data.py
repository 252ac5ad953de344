"""Batches for training: the group sampler of SPEC section 6 and the torch side of a built set.

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
from augment.encoding import IGNORE_LABEL, PAD
from augment.store import BuiltSet


@dataclass
class GroupSampler:
    """Epochs permute the task groups; each group draws one random augmented version whose
    examples (in random order) fill the batch. Batches run on across epoch boundaries."""

    group_starts: np.ndarray  # (G,) first puzzle row of each group
    group_ends: np.ndarray  # (G,) one past the last row
    num_examples: np.ndarray  # (R,) training examples per puzzle row
    rng: np.random.Generator
    epoch: int = 0
    position: int = 0
    order: np.ndarray | None = None

    @classmethod
    def for_built(cls, built: BuiltSet, seed: int) -> "GroupSampler":
        starts = np.array([g.start for g in built.groups], dtype=np.int64)
        ends = np.array([g.stop for g in built.groups], dtype=np.int64)
        counts = built.num_train_examples(np.arange(built.num_identifiers)).astype(np.int64)
        assert len(starts) > 0, "the built set has no training groups"
        return cls(starts, ends, counts, np.random.default_rng(seed))

    def next_batch(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows (puzzle ids) and example indices for one global batch."""
        rows: list[np.ndarray] = []
        examples: list[np.ndarray] = []
        filled = 0
        while filled < batch_size:
            if self.order is None or self.position >= len(self.order):
                self.order = self.rng.permutation(len(self.group_starts))
                self.position = 0
                self.epoch += 1
            g = self.order[self.position]
            self.position += 1
            row = int(self.rng.integers(self.group_starts[g], self.group_ends[g]))
            n = int(self.num_examples[row])
            take = min(n, batch_size - filled)
            examples.append(self.rng.choice(n, take, replace=False))
            rows.append(np.full(take, row, dtype=np.int64))
            filled += take
        return np.concatenate(rows), np.concatenate(examples)

    def state_dict(self) -> dict:
        return {"rng": json.dumps(self.rng.bit_generator.state), "epoch": self.epoch,
                "position": self.position, "order": None if self.order is None else self.order.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.order = None if state["order"] is None else np.asarray(state["order"], dtype=np.int64)


def host_batch(inputs: np.ndarray, label_tokens: np.ndarray, rows: np.ndarray, pin: bool = False) -> Batch:
    """uint8 token canvases -> the model's batch on the host (PAD labels ignored, EOS supervised).
    `pin`: page-locked memory, so that the copy to a GPU can be asynchronous."""
    labels = torch.from_numpy(label_tokens.astype(np.int64))
    labels[labels == PAD] = IGNORE_LABEL
    batch = Batch(torch.from_numpy(inputs.astype(np.int32)), labels, torch.from_numpy(rows.astype(np.int32)))
    return batch.map(lambda t: t.pin_memory()) if pin else batch


def to_model_batch(inputs: np.ndarray, label_tokens: np.ndarray, rows: np.ndarray, device: torch.device) -> Batch:
    return host_batch(inputs, label_tokens, rows).map(lambda t: t.to(device))


@dataclass
class Prefetched:
    batch: Batch  # this rank's slice, on the host (pinned for a GPU)
    sampler_state: dict  # the sampler just after drawing this batch: what a checkpoint saves


class Prefetcher:
    """Draws and assembles the next training batches on a background thread, so the loader's
    CPU work (tens of ms per paper-size batch) overlaps the device's step. The sampler is used by
    the thread alone; each batch carries the sampler state that follows it, so a checkpoint
    resumes exactly after the last batch consumed, whatever was prefetched beyond it."""

    def __init__(self, sampler: GroupSampler, built: BuiltSet, global_batch: int, rows: slice,
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
                rows, examples = sampler.next_batch(global_batch)
                rows, examples = rows[rows_slice], examples[rows_slice]
                inputs, labels = built.train_batch(rows, examples)
                item: Prefetched | BaseException = Prefetched(host_batch(inputs, labels, rows, pin),
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
