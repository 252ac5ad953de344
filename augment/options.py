"""The options of a build: how many augmented versions, the seed, the canvas and the workers."""

from __future__ import annotations

from dataclasses import dataclass

from .encoding import CANVAS
from .errors import InputError
from .grids import MAX_SIDE
from .transforms import NUM_MAPS


@dataclass(frozen=True)
class BuildOptions:
    """What a build draws (augmentations, seed, canvas, max_tries) and how it runs (workers, progress).

    augmentations: versions per task, the identity included (the paper's 1000);
    max_tries: random draws per task before giving up on reaching `augmentations`;
    canvas: canvas side (a task with a larger grid is skipped); workers: processes (None: all cores).
    """

    augmentations: int = 1000
    seed: int = 0
    canvas: int = CANVAS
    workers: int | None = None
    max_tries: int = 5000
    progress: bool = True

    def check(self) -> None:
        """InputError (one line, naming the flag) for an option out of range."""
        if not 1 <= self.augmentations <= NUM_MAPS:  # beyond, draws that can never all be distinct
            raise InputError(f"--augmentations must be 1 (the identity version) to {NUM_MAPS} (8 dihedral maps x 9! "
                             f"colour permutations), got {self.augmentations}")
        if self.seed < 0:
            raise InputError(f"--seed must be non-negative, got {self.seed}")
        if not 1 <= self.canvas <= MAX_SIDE:  # a larger canvas builds a set no config can train on
            raise InputError(f"--canvas must be 1 to {MAX_SIDE}, got {self.canvas}")
        if self.max_tries < 1:  # 0 drew nothing but the identity, whatever --augmentations asked for
            raise InputError(f"--max-tries must be at least 1, got {self.max_tries}")
        if self.workers is not None and self.workers < 1:  # None (the flag left out) is all cores
            raise InputError(f"--workers must be at least 1 (leave it out for all cores), got {self.workers}")
