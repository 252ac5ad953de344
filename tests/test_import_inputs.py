"""`arc-trm import-checkpoint` on inputs it must refuse in one line, before it writes or downloads:
arc-trm's own identifiers.json given as the reference's list, an --out holding an unfinished run,
config files and values that ended in tracebacks, and draw settings numpy refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arc_trm import runs
from augment.errors import InputError
from conftest import CONCEPTARC, cli_in_process
from test_import_checkpoint import write_inputs
from test_import_published import REPO, fix, published_folder  # noqa: F401 (fix: a fixture)

needs_conceptarc = pytest.mark.skipif(not CONCEPTARC.exists(), reason="ConceptARC is read from ../shared/data")


def imported(paths: dict[str, Path], out: Path, *extra: object, ids: Path | None = None):
    """import-checkpoint of write_inputs' files (`ids` for theirs), in this process (no torch start per case)."""
    return cli_in_process("import-checkpoint", paths["ckpt"], "--identifiers", ids or paths["ids"], "--out", out,
                          "--config", paths["config"], "--canvas", "6", *extra)


def one_line(res, *needles: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    line, = res.stderr.strip().splitlines()
    assert "Traceback" not in line
    for needle in needles:
        assert needle in line, line
    return line


def test_an_arc_trm_identifiers_json_is_not_taken_for_the_reference_list(tmp_path: Path, fix: dict[str, Any]) -> None:
    """A run's own checkpoints/step_N/identifiers.json ({"identifiers": ["task#0", ...], ...}) was
    read as the reference's list: its names became tasks `taskA#0` (ids 'taskA#0#0'), every row the
    identity, and predict then answered no task. The same names as a bare list are refused too."""
    paths = write_inputs(tmp_path, fix)
    run = tmp_path / "run"
    assert imported(paths, run).returncode == 0
    ours = run / "checkpoints" / "step_0001234" / "identifiers.json"
    one_line(imported(paths, tmp_path / "again", ids=ours), str(ours), "arc-trm identifier map",
             "JSON list of puzzle names", "--recipe")
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps(json.loads(ours.read_text())["identifiers"]))
    one_line(imported(paths, tmp_path / "again", ids=listed), str(listed), "'taskA#0' (id 1)",
             "arc-trm's own identifiers")
    assert not (tmp_path / "again").exists(), "nothing is written"


def test_an_out_holding_a_run_killed_mid_checkpoint_is_refused_as_train_refuses_it(tmp_path: Path,
                                                                                    fix: dict[str, Any]) -> None:
    """A train run killed while writing its first checkpoint (config.json, metrics.jsonl,
    checkpoints/.tmp_step_N, no `latest`) had its config.json replaced by the import; `train`
    refuses that folder. Without --force the import now does too; --force moves it aside whole."""
    paths = write_inputs(tmp_path, fix)
    out = tmp_path / "killed"
    (out / "checkpoints" / ".tmp_step_0000100").mkdir(parents=True)
    (out / "config.json").write_text("the killed run's config")
    (out / "metrics.jsonl").write_text('{"step": 50}\n')
    with pytest.raises(InputError, match="already holds a run"):
        runs.claim_run_folder(out, force=False)
    line = one_line(imported(paths, out), str(out), "already holds a run", "config.json", "--force")
    assert "--resume" not in line, "import has no --resume to offer"
    assert (out / "config.json").read_text() == "the killed run's config"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config.json", "metrics.jsonl"]
    res = imported(paths, out, "--force")
    assert res.returncode == 0, res.stderr
    aside, = tmp_path.glob("killed.old-*")
    assert (aside / "config.json").read_text() == "the killed run's config"
    assert (aside / "checkpoints" / ".tmp_step_0000100").is_dir() and (out / "checkpoints" / "latest").is_file()


def test_config_files_and_values_that_ended_in_tracebacks_are_one_line(tmp_path: Path, fix: dict[str, Any]) -> None:
    """A --config that is not UTF-8 raised UnicodeDecodeError, and `expansion: null` a TypeError
    from float(): tracebacks. Each is now one line naming the file (and the key)."""
    paths = write_inputs(tmp_path, fix)
    latin = tmp_path / "latin.json"
    latin.write_bytes(paths["config"].read_bytes().replace(b'"lr"', b'"l\xe9"'))
    one_line(imported(paths, tmp_path / "run", "--config", latin), str(latin), "not UTF-8")
    for key, value in (("expansion", None), ("hidden_size", [64]), ("puzzle_emb_len", "four")):
        config = json.loads(paths["config"].read_text())
        config["arch"][key] = value
        bad = tmp_path / f"{key}.json"
        bad.write_text(json.dumps(config))
        one_line(imported(paths, tmp_path / "run", "--config", bad), str(bad), f"{key} must be a number")
    assert not (tmp_path / "run").exists()


@needs_conceptarc
def test_a_data_path_that_is_no_path_is_one_line(tmp_path: Path, fix: dict[str, Any]) -> None:
    """all_config.yaml's `data_paths: 5` raised TypeError ('int' object is not iterable)."""
    folder = published_folder(tmp_path / "ckpt", fix, steps=(3,), data_path=None)
    config = folder / "all_config.yaml"
    config.write_text(config.read_text() + "data_paths: 5\n")
    one_line(cli_in_process("import-checkpoint", folder, "--conceptarc", CONCEPTARC, "--out", tmp_path / "run",
                            "--canvas", "6"), str(config), "data_paths must be a path or a list of paths, got 5")


@needs_conceptarc
def test_draw_settings_and_the_identifiers_are_checked_before_the_weights_are_located(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--seed -3 ended in numpy's "Seed must be between 0 and 2**32 - 1" traceback, and the seed,
    --augmentations and the identifiers file's names were checked only after an hf:// folder's
    weights (gigabytes) were downloaded. `reference-ids --seed -3` was the same traceback."""
    from arc_trm import import_reference

    def located(*_: object) -> None:
        raise AssertionError("the weights were located before the inputs were checked")

    monkeypatch.setattr(import_reference, "locate", located)
    hub, out = f"hf://{REPO}/arc_v1_public", tmp_path / "run"
    rebuild = ("--recipe", "arc1concept", "--conceptarc", CONCEPTARC, "--out", out)
    for seed in ("-3", str(2**32)):
        one_line(cli_in_process("import-checkpoint", hub, *rebuild, "--augmentations", "0", "--seed", seed),
                 "--seed must be from 0 to 4294967295", seed)
    one_line(cli_in_process("import-checkpoint", hub, *rebuild, "--augmentations", "-1"), "--augmentations", "-1")
    # a task has 8 x 9! versions, the identity included: more was taken and drawn until memory ran out
    one_line(cli_in_process("import-checkpoint", hub, *rebuild, "--augmentations", "2903040"),
             "--augmentations must be from 0 to 2903039", "2903040")
    ids = tmp_path / "identifiers.json"
    ids.write_text(json.dumps(["<blank>", "a", "a|||t9|||0123456789"]))
    one_line(cli_in_process("import-checkpoint", hub, "--identifiers", ids, "--out", out), str(ids), "(id 2)")
    assert not out.exists()
    one_line(cli_in_process("reference-ids", "--recipe", "arc1concept", "--conceptarc", CONCEPTARC, "--seed", "-3",
                            "--out", tmp_path / "ids.json"), "--seed", "-3")


def test_a_missing_checkpoint_path_is_named_before_conceptarc_is_asked_for(tmp_path: Path) -> None:
    """`import-checkpoint typo/step_100 --out X` answered "--conceptarc PATH is needed": the user
    added ConceptARC only to learn then that the checkpoint path was wrong."""
    one_line(cli_in_process("import-checkpoint", tmp_path / "typo" / "step_100", "--out", tmp_path / "run"),
             "typo/step_100: checkpoint file missing")
    assert not (tmp_path / "run").exists()


@needs_conceptarc
def test_a_config_s_augmentation_count_out_of_range_is_named_by_its_file(tmp_path: Path, fix: dict[str, Any]) -> None:
    """all_config.yaml's data path arc1concept-aug-99999999 was refused as "--augmentations must be
    from 0 to ...", a flag the user never gave."""
    from test_import_published import published_folder

    folder = published_folder(tmp_path / "pub", fix, steps=(5,), data_path="data/arc1concept-aug-99999999")
    line = one_line(cli_in_process("import-checkpoint", folder, "--conceptarc", CONCEPTARC, "--canvas", "6",
                                   "--out", tmp_path / "run"), "all_config.yaml", "arc1concept-aug-99999999")
    assert "--augmentations must" not in line and not (tmp_path / "run").exists()
