"""Build an augmented task set: N dihedral + colour-permutation versions of every task, with
per-example translations, stored compactly and applied on the fly by the loader.

Each task gets its identity version (k = 0) plus random (dihedral, colour permutation) versions up
to --augmentations in total, drawing at most --max-tries times and dropping duplicates (a version
whose multiset of (input, output) grids equals an earlier one's). The draws of a task depend only
on --seed and the task's own content, so a task keeps its identifiers (`TASK#k`) and augmentations
whatever else is in the set. Rows of the puzzle-embedding table follow sorted (task id, k).

Training tasks train on every pair; for evaluation (role "test") tasks the demonstrations train and
the test inputs form the test split. An existing build at --out with the same sources and
parameters is reused unless --force is given. Writes go to a hidden temporary folder renamed into
place at the end; it replaces only an earlier build with nothing else in it (a run, notes or a
subfolder beside it are refused, never deleted).

examples:
  arc-trm build --tasks arc-agi-2 --augmentations 1000 --out data/built/arc-agi-2
  arc-trm build --tasks arc-agi-2,conceptarc_challenges.json@train --out data/built/agi2-concept
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from augment.build import build_set, is_up_to_date
from augment.console import add_progress_argument, counted, size_text, warn_once
from augment.files import Placed, finished_first, folder_bytes
from augment.options import BuildOptions
from augment.store import BuiltSet
from augment.tasks import Reading, load_tasks, source_specs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", required=True, action="append", metavar="SOURCE",
                        help="task sources (repeatable or comma-separated): arc-agi-1, arc-agi-2, kaggle2024, "
                             "kaggle2025 (optionally :training / :evaluation), a Kaggle challenges .json, or a "
                             "folder of task .json files; suffix @train or @test sets the role (default: test for the "
                             "evaluation split and for a file or folder named with the word test or evaluation, "
                             "train otherwise)")
    parser.add_argument("--out", required=True,
                        help="output folder of the build: new, empty or an earlier build with nothing else in it "
                             "(replaced); anything else is refused")
    default = BuildOptions()
    parser.add_argument("--augmentations", type=int, default=default.augmentations,
                        help="augmented versions per task, the identity included "
                             f"(default {default.augmentations}, the paper's)")
    parser.add_argument("--max-tries", type=int, default=default.max_tries,
                        help="random draws per task, at least 1, before giving up on reaching --augmentations "
                             f"(default {default.max_tries})")
    parser.add_argument("--seed", type=int, default=default.seed, help=f"build seed (default {default.seed})")
    parser.add_argument("--canvas", type=int, default=default.canvas,
                        help=f"canvas side, 1 to {default.canvas}; tasks with a larger grid are skipped with a warning "
                             f"(default {default.canvas})")
    parser.add_argument("--workers", type=int, default=None, help="worker processes, at least 1 (default: all cores)")
    parser.add_argument("--skip-bad-tasks", action="store_true",
                        help="skip invalid tasks with a warning instead of aborting the build (metadata.json lists "
                             "them, 'invalid'; train --build opens such a build of the same --tasks)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild even if --out already holds a build of the same tasks and parameters")
    add_progress_argument(parser)


def skipped_count(too_large: int, invalid: int) -> str:
    """'N skipped', with the reasons when tasks were skipped for more than one."""
    total = too_large + invalid
    if too_large and invalid:
        return f"{total} skipped: {invalid} invalid, {too_large} larger than the canvas"
    return f"{total} skipped" + (" as invalid" if invalid else "")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = Path(args.out)
    specs = source_specs(args.tasks)
    options = BuildOptions(args.augmentations, args.seed, args.canvas, args.workers, args.max_tries,
                           progress=not args.no_progress)
    options.check()
    bad: list[str] = []  # load_tasks warns once per task it skips, and only then

    def warn_bad(msg: str) -> None:
        bad.append(msg)
        warn_once(msg)

    reading = Reading(skip=args.skip_bad_tasks, warn=warn_bad)
    tasks = load_tasks(specs, reading)
    reused = not args.force and is_up_to_date(out, tasks, options, reading.skipped)

    def work(placed: Placed) -> int:
        built = (BuiltSet.open(out) if reused
                 else build_set(tasks, out, options, sources=specs, placed=placed, invalid=reading.skipped))
        print_summary(out, built, reused, len(bad), start)
        return 0

    # A signal before the new build is at --out: the CLI says it was interrupted (--out is as it was).
    return finished_first("build", work, lambda _: f"{out} is complete")


def short_of_augmentations(meta: dict) -> str:
    """'; K tasks have fewer than N versions (fewest: ID, n)', or '' when every task has N. A task
    in few colours has few distinct versions (two colours: 8 x 9 = 72), and --max-tries caps them."""
    want = int(meta["augmentations"])
    short = sorted((int(t["num_rows"]), t["id"]) for t in meta["tasks"] if int(t["num_rows"]) < want)
    if not short:
        return ""
    fewest, tid = short[0]
    return (f"; {len(short)} {'task has' if len(short) == 1 else 'tasks have'} fewer than {want} versions "
            f"(fewest: {tid}, {fewest}): few colours or symmetric grids allow no more, "
            f"or --max-tries {meta['max_tries']} ran out")


def print_summary(out: Path, built: BuiltSet, reused: bool, invalid: int, start: float) -> None:
    c = built.counts
    secs = time.perf_counter() - start
    what = "up to date (reused; --force rebuilds)" if reused else "built"
    print(f"{out}: {what}: {counted(c['tasks'], 'task')} kept ({c['train_tasks']} train, {c['test_tasks']} "
          f"test; {skipped_count(c['skipped_tasks'], invalid)}), {counted(c['augmented_tasks'], 'augmented task')}, "
          f"{counted(c['train_examples'], 'training example')}, {counted(c['test_views'], 'test view')}, "
          f"{size_text(folder_bytes(built.path))}, {secs:.1f} s"
          f"{short_of_augmentations(built.meta)}")
