"""Building augmented task sets and loading batches (augment/build.py, its command in augment/build_cli.py,
augment/store.py)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import augment.store as store_mod
from augment.build import BuildOptions, build_set, ensure_built, hash_pairs
from augment.draw import augment_task
from augment.build import is_up_to_date, task_key
from augment.build_cli import run as build_run, add_arguments
from augment.encoding import decode_grid, encode_grid
from augment.console import size_text
from augment.files import folder_bytes
from augment.store import BuiltSet, TestView
from augment.errors import InputError
from augment.tasks import Pair, Task, load_tasks
from augment.transforms import Augmentation

CANVAS = 10


def make_task(tid, n_train=2, role="train", seed=0, shape=(3, 4), colours=10, test_outputs=True):
    rng = np.random.default_rng(seed)
    def grid():
        return rng.integers(0, colours, size=shape, dtype=np.uint8)
    train = tuple(Pair(grid(), grid()) for _ in range(n_train))
    test = (Pair(grid(), grid() if test_outputs else None),)
    return Task(tid, train, test, role)


@pytest.fixture(scope="module")
def real_tasks():
    tasks = load_tasks("arc-agi-1:training")
    small = [t for t in tasks if max(max(g.shape) for p in t.train + t.test for g in (p.input, p.output)) <= 12]
    return small[:4]


def files_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def source_pairs(bs: BuiltSet, row: int):
    tid, _ = bs.task_of_row(row)
    task = next(t for t in bs.tasks if t.id == tid)
    pairs = [(p.input, p.output) for p in task.train]
    if task.role == "train":
        pairs += [(p.input, p.output) for p in task.test]
    return task, pairs


def read_back(tokens: np.ndarray, canvas: int):
    """Find the top-left of the encoded grid on the board and decode it; returns (grid, (r0, c0))."""
    b = tokens.reshape(canvas, canvas)
    cells = np.argwhere(b >= 2)
    r0, c0 = cells.min(axis=0)
    shifted = np.zeros_like(b)
    shifted[:canvas - r0, :canvas - c0] = b[r0:, c0:]
    return decode_grid(shifted.reshape(-1), canvas=canvas), (int(r0), int(c0))


# ---------------------------------------------------------------------------------------------
def test_dedup_symmetric_single_colour():
    # All cells one colour, square grids: every dihedral map is the identity, so only the colour
    # permutation matters: 9 distinct versions (colour 5 -> any of 1..9).
    g = np.full((3, 3), 5, np.uint8)
    task = Task("sym", (Pair(g, g),), (Pair(g, g),), "train")
    table, offsets = augment_task(hash_pairs(task), np.array([[(3, 3), (3, 3)]] * 2), task_key(task),
                      BuildOptions(1000, 0, CANVAS, max_tries=5000))
    assert len(table) == 9
    assert sorted(table[:, 1:][:, 5].tolist()) == list(range(1, 10))
    # All-black: nothing can change it; only the identity survives.
    z = np.zeros((2, 2), np.uint8)
    task = Task("black", (Pair(z, z),), (Pair(z, z),), "train")
    table, _ = augment_task(hash_pairs(task), np.array([[(2, 2), (2, 2)]] * 2), task_key(task),
                      BuildOptions(1000, 0, CANVAS, max_tries=5000))
    assert len(table) == 1 and table[0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_augment_task_versions_distinct_and_capped():
    task = make_task("x", colours=3)  # colours 0..2: 8 maps x 72 ordered colour pairs at most
    shapes = np.array([[p.input.shape, p.output.shape] for p in task.train + task.test])
    table, offsets = augment_task(hash_pairs(task), shapes, task_key(task),
                      BuildOptions(50, 7, CANVAS, max_tries=5000))
    assert len(table) == 50 and offsets.shape == (50 * 3, 2)
    assert Augmentation.from_array(table[0]).is_identity
    keys = set()
    for row in table:
        aug = Augmentation.from_array(row)
        pairs = sorted((aug.apply(i).tobytes() + bytes(aug.apply(i).shape), aug.apply(o).tobytes()) for i, o in
                       hash_pairs(task))
        keys.add(tuple(pairs))
    assert len(keys) == 50
    # The tries cap limits the count; max_tries=0 leaves the identity only.
    table, _ = augment_task(hash_pairs(task), shapes, task_key(task),
                      BuildOptions(50, 7, CANVAS, max_tries=0))
    assert len(table) == 1
    table, _ = augment_task(hash_pairs(task), shapes, task_key(task),
                      BuildOptions(50, 7, CANVAS, max_tries=10))
    assert 1 < len(table) <= 11
    # Offsets fit the canvas, one example per version at the top-left.
    table, offsets = augment_task(hash_pairs(task), shapes, task_key(task),
                      BuildOptions(50, 7, CANVAS, max_tries=5000))
    off = offsets.reshape(50, 3, 2)
    assert (off.max(axis=(1, 2)) <= CANVAS - 3).all()
    assert ((off == 0).all(axis=2).any(axis=1)).all()
    assert len({tuple(o) for o in offsets}) > 20  # translations really vary


def test_build_layout_splits_and_batches(tmp_path):
    tasks = [make_task("a", n_train=2, seed=1), make_task("b", n_train=3, role="test", seed=2, shape=(2, 5)),
             make_task("c", n_train=1, seed=3, shape=(4, 4))]
    bs = build_set(tasks, tmp_path / "set", BuildOptions(augmentations=20, seed=3, canvas=CANVAS, workers=1, progress=False))
    assert bs.canvas == CANVAS and bs.meta["augmentations"] == 20 and bs.meta["seed"] == 3
    assert bs.num_identifiers == 61 and bs.identifiers[0] == "<blank>"
    assert bs.identifiers[1:4] == ["a#0", "a#1", "a#2"] and bs.identifiers[21] == "b#0"
    for row, ident in enumerate(bs.identifiers[1:], start=1):
        assert bs.row_of(ident) == row
    with pytest.raises(KeyError):
        bs.row_of("a#20")
    assert [range(1, 21), range(21, 41), range(41, 61)] == bs.groups
    # Splits: role train -> every pair trains; role test -> demonstrations train.
    assert bs.num_train_examples(5) == 3 and bs.num_train_examples(25) == 3 and bs.num_train_examples(45) == 2
    assert bs.num_train_examples(np.array([1, 21, 41])).tolist() == [3, 3, 2]
    assert bs.counts["train_examples"] == 20 * 3 + 20 * 3 + 20 * 2
    views = bs.test_views()
    assert views == [TestView(21 + k, "b", 0, k) for k in range(20)]
    # Training batches: every example decodes (after the stored offset) and inverts to its source pair.
    rows = np.repeat(np.arange(1, 61), 3)
    ex = np.tile(np.arange(3), 60)
    keep = ex < bs.num_train_examples(rows)
    rows, ex = rows[keep], ex[keep]
    x, y = bs.train_batch(rows, ex)
    assert x.shape == y.shape == (len(rows), CANVAS * CANVAS) and x.dtype == y.dtype == np.uint8
    top_left = {}
    for r, e, xi, yi in zip(rows, ex, x, y):
        task, pairs = source_pairs(bs, r)
        aug = bs.augmentation(r)
        gi, oi = read_back(xi, CANVAS)
        go, oo = read_back(yi, CANVAS)
        assert oi == oo  # shared offset
        assert np.array_equal(aug.invert(gi), pairs[e][0]) and np.array_equal(aug.invert(go), pairs[e][1])
        assert np.array_equal(xi, encode_grid(aug.apply(pairs[e][0]), CANVAS, oi))  # EOS and PAD exactly
        assert np.array_equal(yi, encode_grid(aug.apply(pairs[e][1]), CANVAS, oi))
        top_left.setdefault(r, []).append(oi == (0, 0))
        assert set(np.unique(xi)) <= set(range(12))
    assert all(any(v) for v in top_left.values())  # one example per augmented task at the top-left
    assert sum(not all(v) for v in top_left.values()) > 30  # the others are translated
    # Test inputs: top-left, augmented by the row's augmentation, same rows as training.
    t = bs.test_inputs(views)
    src = next(tk for tk in bs.tasks if tk.id == "b").test[0].input
    for v, ti in zip(views, t):
        g = decode_grid(ti, canvas=CANVAS)
        assert np.array_equal(bs.augmentation(v.row).invert(g), src)
        assert np.array_equal(ti, encode_grid(bs.augmentation(v.row).apply(src), CANVAS))
        assert bs.task_of_row(v.row) == ("b", v.aug_index)
    with pytest.raises(IndexError):
        bs.train_batch(np.array([45]), np.array([2]))
    with pytest.raises(IndexError):
        bs.train_batch(np.array([0]), np.array([0]))


def test_test_task_without_solutions_augments_the_same(tmp_path):
    with_sol = make_task("e", role="test", seed=9)
    without = Task("e", with_sol.train, (Pair(with_sol.test[0].input, None),), "test")
    a = build_set([with_sol], tmp_path / "a", BuildOptions(augmentations=30, canvas=CANVAS, workers=1, progress=False))
    b = build_set([without], tmp_path / "b", BuildOptions(augmentations=30, canvas=CANVAS, workers=1, progress=False))
    assert np.array_equal(a.array("row_aug"), b.array("row_aug"))
    assert np.array_equal(a.array("offsets"), b.array("offsets"))
    assert a.meta["sources_hash"] == b.meta["sources_hash"]


def test_stable_identifiers_and_examples(tmp_path, real_tasks):
    A, B, C = real_tasks[0], real_tasks[1], real_tasks[2]
    ab = build_set([B, A], tmp_path / "ab", BuildOptions(augmentations=40, seed=1, workers=1, progress=False))
    ac = build_set([A, C], tmp_path / "ac", BuildOptions(augmentations=40, seed=1, workers=1, progress=False))

    def rows_of(bs):
        return [r for r, i in enumerate(bs.identifiers) if i.startswith(A.id + "#")]
    ra, rc = rows_of(ab), rows_of(ac)
    assert [ab.identifiers[r] for r in ra] == [ac.identifiers[r] for r in rc] == [f"{A.id}#{k}" for k in range(40)]
    assert [ab.augmentation(r) for r in ra] == [ac.augmentation(r) for r in rc]
    n = ab.num_train_examples(np.array(ra))
    assert (n == ac.num_train_examples(np.array(rc))).all()
    rows_a = np.repeat(ra, n)
    rows_c = np.repeat(rc, n)
    ex = np.concatenate([np.arange(k) for k in n])
    xa, ya = ab.train_batch(rows_a, ex)
    xc, yc = ac.train_batch(rows_c, ex)
    assert np.array_equal(xa, xc) and np.array_equal(ya, yc)
    # A different seed changes the draw.
    other = build_set([A], tmp_path / "s2", BuildOptions(augmentations=40, seed=2, workers=1, progress=False))
    assert [other.augmentation(r) for r in range(1, 41)] != [ab.augmentation(r) for r in ra]


def test_byte_identical_rebuild_and_workers(tmp_path, real_tasks):
    kw = dict(augmentations=25, seed=0, canvas=30, progress=False)
    build_set(real_tasks, tmp_path / "w1", BuildOptions(workers=1, **kw))
    d1 = files_digest(tmp_path / "w1")
    build_set(real_tasks[::-1], tmp_path / "w2", BuildOptions(workers=2, **kw))
    assert files_digest(tmp_path / "w2") == d1
    build_set(real_tasks, tmp_path / "w1", BuildOptions(workers=1, **kw))  # rebuild in place
    assert files_digest(tmp_path / "w1") == d1
    assert set(d1) == {"metadata.json", "tasks.json"} | {f"{n}.npy" for n in store_mod.ARRAYS}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_failed_build_leaves_nothing_and_keeps_old_build(tmp_path):
    tasks = [make_task("a", seed=1)]
    out = tmp_path / "set"

    def boom(tmp):
        assert (tmp / "metadata.json").exists()
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        build_set(tasks, out, BuildOptions(augmentations=5, canvas=CANVAS, workers=1, progress=False), _before_rename=boom)
    assert list(tmp_path.iterdir()) == []
    build_set(tasks, out, BuildOptions(augmentations=5, canvas=CANVAS, workers=1, progress=False))
    before = files_digest(out)
    with pytest.raises(RuntimeError):
        build_set(tasks, out, BuildOptions(augmentations=7, canvas=CANVAS, workers=1, progress=False), _before_rename=boom)
    assert files_digest(out) == before and [p.name for p in tmp_path.iterdir()] == ["set"]


def test_killed_build_leaves_nothing_under_final_name(tmp_path):
    out = tmp_path / "set"
    code = textwrap.dedent(f"""
        import time
        from augment.build import BuildOptions, build_set
        from augment.tasks import load_tasks
        def hang(tmp):
            print("ready", flush=True)
            time.sleep(60)
        build_set(load_tasks("arc-agi-1:training")[:2], {str(out)!r}, BuildOptions(augmentations=5, workers=1, progress=False), _before_rename=hang)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert not out.exists()
    leftovers = [q for q in tmp_path.iterdir()]
    assert all(q.name.startswith(".set.tmp-") for q in leftovers)
    # The next build cleans up the dead build's temporary folder.
    build_set([make_task("a")], out, BuildOptions(augmentations=2, canvas=CANVAS, workers=1, progress=False))
    assert [q.name for q in tmp_path.iterdir()] == ["set"]


def test_open_maps_the_arrays_and_reads_none_of_their_data(tmp_path):
    build_set([make_task("a")], tmp_path / "s", BuildOptions(augmentations=3, canvas=CANVAS, workers=1, progress=False))
    bs = BuiltSet.open(tmp_path / "s")  # every array mapped (its header read: the build is whole)
    assert bs.meta["counts"]["augmented_tasks"] == 3 and bs.num_identifiers == 4
    assert bs.identifiers == ["<blank>", "a#0", "a#1", "a#2"]
    assert all(isinstance(bs.array(name), np.memmap) for name in bs.meta["arrays"])
    with pytest.raises(InputError, match="not a built task set"):
        BuiltSet.open(tmp_path)


def test_canvas_skips_large_tasks(tmp_path):
    big = make_task("big", shape=(11, 3))
    warnings = []
    bs = build_set([big, make_task("ok")], tmp_path / "s", BuildOptions(augmentations=2, canvas=CANVAS, workers=1, progress=False), warn=warnings.append)
    assert bs.task_ids == ["ok"] and bs.meta["skipped"] == ["big"] and "big" in warnings[0]
    with pytest.raises(InputError, match="no task fits"):
        build_set([big], tmp_path / "t", BuildOptions(augmentations=2, canvas=CANVAS, workers=1, progress=False), warn=warnings.append)


def test_ensure_built_reuses_and_rebuilds(tmp_path):
    src = tmp_path / "src_challenges.json"
    t = make_task("q", seed=4)
    src.write_text(json.dumps({"q": t.to_json(with_solutions=False)}))
    (tmp_path / "src_solutions.json").write_text(json.dumps({"q": [t.test[0].output.tolist()]}))
    out = tmp_path / "built"
    bs = ensure_built(str(src), out, BuildOptions(augmentations=4, canvas=CANVAS, workers=1, progress=False))
    stamp = (out / "metadata.json").stat().st_mtime_ns
    assert bs.meta["sources"] == [str(src)] and is_up_to_date(out, bs.tasks, BuildOptions(4, 0, CANVAS, max_tries=5000))
    time.sleep(0.01)
    ensure_built(str(src), out, BuildOptions(augmentations=4, canvas=CANVAS, workers=1, progress=False))
    assert (out / "metadata.json").stat().st_mtime_ns == stamp  # reused
    bs = ensure_built(str(src), out, BuildOptions(augmentations=6, canvas=CANVAS, workers=1, progress=False))
    assert bs.num_identifiers == 7  # parameters changed: rebuilt
    t2 = make_task("q", seed=5)
    src.write_text(json.dumps({"q": t2.to_json(with_solutions=False)}))
    (tmp_path / "src_solutions.json").write_text(json.dumps({"q": [t2.test[0].output.tolist()]}))
    bs = ensure_built(str(src), out, BuildOptions(augmentations=6, canvas=CANVAS, workers=1, progress=False))
    assert np.array_equal(bs.tasks[0].train[0].input, t2.train[0].input)  # content changed: rebuilt


@pytest.mark.parametrize("damage", ["truncate", "remove", "reshape"])
def test_a_damaged_build_is_made_again_not_reused_and_opening_it_is_one_line(tmp_path, damage):
    """A build whose grids.npy was cut short (a copy broken off) was reused as "up to date", and
    training from it ended in numpy's ValueError traceback."""
    src = tmp_path / "src_challenges.json"
    t = make_task("q", seed=4)
    src.write_text(json.dumps({"q": t.to_json(with_solutions=True)}))
    out = tmp_path / "built"
    options = BuildOptions(augmentations=4, canvas=CANVAS, workers=1, progress=False)
    bs = ensure_built(str(src), out, options)
    whole = bs.array("grids").copy()
    grids = out / "grids.npy"
    if damage == "truncate":
        os.truncate(grids, grids.stat().st_size - 7)
    elif damage == "remove":
        grids.unlink()
    else:
        np.save(grids, whole[:1])
    with pytest.raises(InputError, match=r"built: the build is damaged: grids.npy .*rebuild it"):
        store_mod.BuiltSet.open(out)
    assert not is_up_to_date(out, bs.tasks, options)
    again = ensure_built(str(src), out, options)
    assert np.array_equal(again.array("grids"), whole)


def build_cli(out: Path, tasks: str, *options: str, canvas: int = CANVAS) -> int:
    """`arc-trm build --tasks TASKS --out OUT OPTIONS`, one worker, no bar, in this process."""
    import argparse
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return build_run(parser.parse_args(["--tasks", tasks, "--out", str(out), "--workers", "1", "--canvas", str(canvas),
                                        "--no-progress", *options]))


def task_folder(tmp_path: Path, ids: tuple[str, ...]) -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir()
    for seed, tid in enumerate(ids, start=1):
        (folder / f"{tid}.json").write_text(json.dumps(make_task(tid, seed=seed).to_json()))
    return folder


def test_cli_build_summary(tmp_path, capsys):
    folder = task_folder(tmp_path, ("t1", "t2"))
    assert build_cli(tmp_path / "o", f"{folder}@test", "--augmentations", "3") == 0
    out = capsys.readouterr().out
    assert "2 tasks" in out and "6 augmented tasks" in out and "12 training examples" in out
    bs = BuiltSet.open(tmp_path / "o")
    assert f", {size_text(folder_bytes(bs.path))}, " in out, out
    assert len(bs.test_views()) == 6
    assert build_cli(tmp_path / "o", f"{folder}@test", "--augmentations", "3") == 0
    assert "reused" in capsys.readouterr().out
    # --max-tries below --augmentations: each task stops at 1 + 1 versions, and the summary says so.
    assert build_cli(tmp_path / "c", f"{folder}@test", "--augmentations", "5", "--max-tries", "1") == 0
    assert capsys.readouterr().out.rstrip().endswith(
        "; 2 tasks have fewer than 5 versions (fewest: t1, 2): few colours or symmetric grids allow no more, "
        "or --max-tries 1 ran out")
    with pytest.raises(InputError):
        build_cli(tmp_path / "o", str(folder), "--augmentations", "0")


def test_cli_build_summary_of_one_task_and_one_version_is_in_the_singular(tmp_path, capsys):
    """A one-task build said '1 tasks (...), 1 augmented tasks, ..., 1 test views'."""
    assert build_cli(tmp_path / "o", f"{task_folder(tmp_path, ('t1',))}@test", "--augmentations", "1") == 0
    out = capsys.readouterr().out
    assert ": built: 1 task kept (0 train, 1 test; 0 skipped), 1 augmented task, " in out, out
    assert " training examples, 1 test view, " in out, out


def test_an_interrupted_build_draws_no_bar_after_it_stops(monkeypatch, capsys):
    import gc

    import augment.build as build_module
    from augment import console

    def work(payload):
        if payload == 2:
            raise KeyboardInterrupt
        return payload

    monkeypatch.setattr(build_module, "_work", work)
    monkeypatch.setattr(console, "bar_shown", lambda enabled: enabled)  # as on a terminal
    try:
        build_module._augment_all([1, 2, 3], BuildOptions(workers=1, progress=True))
    except KeyboardInterrupt as e:
        drawn = capsys.readouterr().err  # as the CLI prints "interrupted", its traceback still holds the bar
        del e
    gc.collect()  # a bar still open draws its last state when it is collected: after "interrupted"
    assert "augmenting" in drawn and capsys.readouterr().err == ""


def test_a_bar_is_drawn_only_on_a_terminal(monkeypatch, capsys):
    from augment import console

    for tty in (False, True):
        monkeypatch.setattr(console.sys.stderr, "isatty", lambda: tty)
        bar = console.progress_bar(True, total=3, desc="augmenting", mininterval=0)
        bar.update(3)
        bar.close()
        assert ("augmenting" in capsys.readouterr().err) == tty
        assert console.bar_shown(True) == tty and not console.bar_shown(False)


def test_cli_build_summary_counts_skipped_tasks_apart_from_those_kept(tmp_path, capsys):
    """Of two tasks, one too large for the canvas, the summary said '1 task (0 train, 1 test, 1 skipped)':
    a breakdown of 2 under a count of 1."""
    assert build_cli(tmp_path / "o", "arc-agi-1:training/3c9b0459+007bbfb7@test", "--augmentations", "1", canvas=6) == 0
    assert ": built: 1 task kept (0 train, 1 test; 1 skipped), 1 augmented task, " in capsys.readouterr().out
