"""`arc-trm reference-ids` rebuilds the reference builder's identifier list name for name.

Checked three ways: against the lists the reference's own builder wrote (fixtures); against a
literal re-statement of the reference's procedure written here (numpy's RandomState called once
per draw, sha256 puzzle hashes) for other seeds, counts and deliberately symmetric tasks; and the
fast path (symmetry-group keys) against the exact path (pair multisets)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from augment import task_symmetry
from augment.legacy_draws import LegacyStream
from augment.reference_ids import SourceTask, identifiers_for_subsets, load_subset
from augment.task_symmetry import TaskSymmetry, exact_keys
from conftest import CONCEPTARC, cli_in_process

FIXTURES = Path(__file__).parent / "fixtures" / "reference_identifiers"
needs_conceptarc = pytest.mark.skipif(not CONCEPTARC.exists(), reason="ConceptARC is read from ../shared/data")


# --- the reference's procedure, stated literally (the oracle) ---------------------------------

def _dihedral(grid: np.ndarray, t: int) -> np.ndarray:
    return [grid, np.rot90(grid), np.rot90(grid, 2), np.rot90(grid, 3), np.fliplr(grid), np.flipud(grid), grid.T,
            np.fliplr(np.rot90(grid))][t]


def _grid_digest(grid: np.ndarray) -> str:
    return hashlib.sha256(bytes(grid.shape) + np.ascontiguousarray(grid).tobytes()).hexdigest()


def _task_digest(pairs) -> str:
    parts = sorted(f"{_grid_digest(a)}|{_grid_digest(b)}" for a, b in pairs)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def literal_reference(subsets: list[list[SourceTask]], augmentations: int, seed: int) -> list[str]:
    rs = np.random.RandomState(seed)
    names = {"<blank>": None}
    for subset in subsets:
        order = list(subset)
        rs.shuffle(order)
        for task in order:
            kept = [task.name]
            seen = {_task_digest(task.pairs)}
            for _ in range(5 * augmentations if augmentations > 0 else 0):
                t = rs.randint(0, 8)
                mapping = np.concatenate([[0], rs.permutation(np.arange(1, 10, dtype=np.uint8))]).astype(np.uint8)
                moved = [(_dihedral(mapping[a], t), _dihedral(mapping[b], t))
                         for a, b in task.pairs]
                digest = _task_digest(moved)
                if digest not in seen:
                    seen.add(digest)
                    kept.append(f"{task.name}|||t{t}|||{''.join(str(x) for x in mapping)}")
                if len(kept) >= augmentations + 1:
                    break
            names.update(dict.fromkeys(kept))
    return list(names)


# --- tasks built to be symmetric --------------------------------------------------------------

def _task(name: str, *pairs) -> SourceTask:
    return SourceTask(name, tuple((np.asarray(a, np.uint8), np.asarray(b, np.uint8)) for a, b in pairs))


SYMMETRIC = [
    _task("plus", ([[0, 1, 0], [1, 1, 1], [0, 1, 0]], [[1]])),  # every dihedral map; 9 versions at most
    _task("rot180swap", ([[1, 1], [2, 2]], [[1, 2]]), ([[3]], [[3]])),  # rot180 with 1<->2, beside a fixed pair
    _task("halfturn", ([[1, 1], [2, 2]], [[0]])),  # rot180 + swapping 1 and 2 is a symmetry
    _task("twins", ([[1, 0, 0], [0, 0, 0]], [[1]]), ([[2, 0, 0], [0, 0, 0]], [[2]])),  # swapping 1, 2 swaps the pairs
    _task("black", ([[0, 0], [0, 0]], [[0, 0], [0, 0]])),  # one version only
    _task("repeated", ([[1, 2, 3]], [[3]]), ([[1, 2, 3]], [[3]])),  # a pair listed twice
    _task("transposed", ([[1, 2], [2, 1]], [[1, 2], [2, 1]]), ([[4, 0, 5]], [[5, 0, 4]])),
]


def _some_real_tasks(count: int) -> list[SourceTask]:
    return load_subset(("arc-agi-1", "train"), CONCEPTARC)[:count]


@pytest.mark.parametrize("seed, augmentations", [(0, 3), (7, 40), (123, 1)])
def test_matches_the_literal_procedure(seed: int, augmentations: int) -> None:
    real = _some_real_tasks(6)
    subsets = [SYMMETRIC, real, [real[2], SYMMETRIC[3]]]  # a task listed again keeps its first ids
    ours = identifiers_for_subsets(subsets, augmentations, seed).names
    assert ours == literal_reference(subsets, augmentations, seed)


def test_exact_fallback_gives_the_same_list(monkeypatch: pytest.MonkeyPatch) -> None:
    subsets = [SYMMETRIC, _some_real_tasks(4)]
    fast = identifiers_for_subsets(subsets, 30, 5)
    monkeypatch.setattr(task_symmetry, "_SEARCH_BUDGET", 0)
    slow = identifiers_for_subsets(subsets, 30, 5)
    assert slow.exact == slow.tasks and fast.exact == 0
    assert slow.names == fast.names


def test_symmetry_group_found() -> None:
    groups = {t.name: TaskSymmetry.find(t.pairs) for t in SYMMETRIC}
    assert len(groups["plus"].group) == 8 and len(groups["black"].group) == 8
    # [[1, 1], [2, 2]]: a left-right flip fixes it; a half turn or an up-down flip swaps 1 and 2
    assert sorted((d, img.tolist()) for d, img in groups["halfturn"].group) == [
        (0, [1, 2]), (2, [2, 1]), (4, [1, 2]), (5, [2, 1])]
    assert [(d, img.tolist()) for d, img in groups["twins"].group] == [(0, [1, 2]), (0, [2, 1])]
    rng = np.random.default_rng(0)
    dihedral = rng.integers(0, 8, 400)
    mapping = np.stack([np.concatenate([[0], rng.permutation(np.arange(1, 10))]) for _ in range(400)]).astype(np.uint8)
    for task in SYMMETRIC:
        fast = groups[task.name].keys(dihedral, mapping)
        exact = exact_keys(task.pairs, dihedral, mapping, {})
        # the same partition of the draws into versions
        assert len(set(zip(fast.tolist(), exact.tolist()))) == len(set(fast.tolist())) == len(set(exact.tolist()))


def test_legacy_stream_replays_randomstate() -> None:
    for seed in (0, 42, 2**31 + 5):
        rs, stream = np.random.RandomState(seed), LegacyStream(seed)
        for count in (1, 2, 17, 1000):
            items = list(range(count))
            rs.shuffle(items)
            assert stream.shuffled(count) == items
            trials = stream.trials(300)
            for n in range(150):  # take half of them, as a task that fills up early does
                t, perm = rs.randint(0, 8), rs.permutation(np.arange(1, 10, dtype=np.uint8))
                assert (trials.dihedral[n], trials.mapping[n].tolist()) == (t, [0, *perm.tolist()])
            stream.skip(int(trials.ends[149]))


@needs_conceptarc
@pytest.mark.parametrize("recipe", ["arc1concept", "arc2concept"])
def test_eight_augmentations_match_the_reference(recipe: str, tmp_path: Path) -> None:
    out = tmp_path / "identifiers.json"
    res = cli_in_process("reference-ids", "--recipe", recipe, "--augmentations", "8", "--conceptarc", CONCEPTARC,
                         "--out", out)
    assert res.returncode == 0, res.stderr
    with gzip.open(FIXTURES / f"{recipe}_seed42_aug8.json.gz", "rt") as f:
        expected = json.load(f)
    assert json.loads(out.read_text()) == expected


@pytest.mark.slow
@needs_conceptarc
@pytest.mark.parametrize("recipe", ["arc1concept", "arc2concept"])
def test_published_recipes_match_the_reference(recipe: str) -> None:
    from augment.reference_ids import reference_identifiers

    summary = json.loads((FIXTURES / "seed42_aug1000_summary.json").read_text())[recipe]
    names = reference_identifiers(recipe, CONCEPTARC, 1000, 42).names
    assert len(names) == summary["count"]
    assert {int(k): names[int(k)] for k in summary["sample_every_997"]} == \
        {int(k): v for k, v in summary["sample_every_997"].items()}
    assert hashlib.sha256(json.dumps(names).encode()).hexdigest() == summary["sha256_of_json_dumps"]


def test_without_conceptarc_says_where_to_get_it(tmp_path: Path) -> None:
    res = cli_in_process("reference-ids", "--recipe", "arc1concept", "--out", tmp_path / "ids.json")
    assert res.returncode == 2
    line, = res.stderr.strip().splitlines()
    assert "kaggle/combined" in line and "victorvikram/ConceptARC" in line
    assert not (tmp_path / "ids.json").exists()


def test_conceptarc_without_solutions_is_refused(tmp_path: Path) -> None:
    challenges = tmp_path / "concept_challenges.json"
    challenges.write_text(json.dumps({"x": {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}]}}))
    res = cli_in_process("reference-ids", "--recipe", "arc1concept", "--conceptarc", challenges,
                         "--out", tmp_path / "ids.json")
    assert res.returncode == 2
    line, = res.stderr.strip().splitlines()
    assert "concept_solutions.json" in line and "missing" in line


def write_concept(folder: Path) -> Path:
    """A one-task ConceptARC pair (challenges, solutions) in `folder`: the challenges path."""
    challenges = folder / "cc_challenges.json"
    challenges.write_text(json.dumps({"x": {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}]}}))
    (folder / "cc_solutions.json").write_text(json.dumps({"x": [[[2]]]}))
    return challenges


@pytest.mark.parametrize("name", ["cc_challenges.json", "./cc_challenges.json", "cc_solutions.json"])
def test_an_out_that_is_an_input_is_refused_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     name: str) -> None:
    """`--conceptarc cc_challenges.json --out cc_challenges.json` replaced the challenges with the list."""
    write_concept(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = (tmp_path / Path(name).name).read_bytes()
    res = cli_in_process("reference-ids", "--recipe", "arc1concept", "--conceptarc", "cc_challenges.json",
                         "--out", name)
    assert res.returncode == 2
    line, = res.stderr.strip().splitlines()
    assert "is the input" in line and Path(name).name in line
    assert (tmp_path / Path(name).name).read_bytes() == before


@pytest.mark.parametrize("content", ['{"a": 1}', '["not blank"]', "notes, not JSON", "[]"])
def test_an_out_that_holds_other_data_is_refused_and_kept(tmp_path: Path, content: str) -> None:
    out = tmp_path / "ids.json"
    out.write_text(content)
    res = cli_in_process("reference-ids", "--recipe", "arc1concept", "--conceptarc", write_concept(tmp_path),
                         "--out", out)
    assert res.returncode == 2
    line, = res.stderr.strip().splitlines()
    assert str(out) in line and "not an identifier list" in line
    assert out.read_text() == content


def test_an_earlier_identifier_list_is_kept_without_force(tmp_path: Path) -> None:
    """A user's own list (say, the reference builder's) was replaced without a word."""
    out = tmp_path / "identifiers.json"
    out.write_text(json.dumps(["<blank>", "old"]))
    res = cli_in_process("reference-ids", "--recipe", "arc1concept", "--conceptarc", write_concept(tmp_path),
                         "--out", out)
    assert res.returncode == 2
    line, = res.stderr.strip().splitlines()
    assert str(out) in line and "--force" in line
    assert json.loads(out.read_text()) == ["<blank>", "old"]


@needs_conceptarc
def test_an_earlier_identifier_list_is_replaced_with_force(tmp_path: Path) -> None:
    out = tmp_path / "identifiers.json"
    out.write_text(json.dumps(["<blank>", "old"]))
    res = cli_in_process("reference-ids", "--recipe", "arc1concept", "--augmentations", "1", "--conceptarc",
                         CONCEPTARC, "--out", out, "--force")
    assert res.returncode == 0, res.stderr
    names = json.loads(out.read_text())
    assert names[0] == "<blank>" and "old" not in names and len(names) > 2
