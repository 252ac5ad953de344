"""ARC task files to augmented training sets, with numpy alone (no torch).

    import augment
    tasks = augment.load_tasks("arc-agi-1:training")
    built = augment.ensure_built("arc-agi-1", "data/built/agi1", augment.BuildOptions(augmentations=100))
"""

from .buckets import bucket_sides
from .build import build_set, ensure_built
from .options import BuildOptions
from .encoding import CANVAS, VOCAB_SIZE, decode_grid, encode_grid
from .store import BuiltSet
from .errors import InputError
from .tasks import Pair, Task, load_tasks, task_from_json
from .transforms import Augmentation

__all__ = ["Augmentation", "BuildOptions", "BuiltSet", "CANVAS", "InputError", "Pair", "Task", "VOCAB_SIZE", "bucket_sides",
           "build_set", "decode_grid", "encode_grid", "ensure_built", "load_tasks", "task_from_json"]
