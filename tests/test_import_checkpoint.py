"""`arc-trm import-checkpoint`: a reference checkpoint becomes a run folder that infer loads and
that reproduces the reference model's outputs (fixture produced by the reference code)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from arc_trm.published import BLANK, ImportedNames, _parse_name, map_reference_identifiers
from arc_trm.infer import load_model
from arc_trm.model import Batch
from augment.transforms import Augmentation
from conftest import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "trm_reference_attn_rope.pt"
REF_NAMES = ["<blank>", "taskA", "taskA|||t3|||0987654321", "taskB", "taskB|||t5|||0213456789"]
OUR_IDS = ["<blank>", "taskA#0", "taskA#1", "taskB#0", "taskB#1"]
PREFIX = "_orig_mod.model."


@pytest.fixture(scope="module")
def fix() -> dict[str, Any]:
    return torch.load(FIXTURE, weights_only=True)


def write_inputs(tmp: Path, fix: dict[str, Any], state_dict: dict | None = None, names: list | None = None,
                 arch: dict | None = None) -> dict[str, Path]:
    """A reference-style checkpoint file (wrapper prefixes), identifiers.json and config JSON."""
    sd = {PREFIX + k: v for k, v in fix["state_dict"].items()} if state_dict is None else state_dict
    paths = {"ckpt": tmp / "step_1234", "ids": tmp / "identifiers.json", "config": tmp / "all_config.json"}
    torch.save(sd, paths["ckpt"])
    paths["ids"].write_text(json.dumps(REF_NAMES if names is None else names))
    # Like the reference's all_config: an arch section without the data-dependent sizes.
    ref_arch = {k: v for k, v in fix["config"].items() if k not in ("seq_len", "num_puzzle_identifiers",
                                                                     "vocab_size", "batch_size")}
    ref_arch.update(name="recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
                    loss={"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"})
    paths["config"].write_text(json.dumps({"arch": ref_arch if arch is None else arch, "lr": 1e-4}))
    return paths


def import_cli(paths: dict[str, Path], out: Path, *extra: str):
    return run_cli("import-checkpoint", paths["ckpt"], "--identifiers", paths["ids"], "--out", out,
                   "--config", paths["config"], "--canvas", "6", *extra, timeout=120)


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.detach().double(), ref.detach().double()
    assert ours.shape == ref.shape
    return ((ours - ref).norm() / ref.norm().clamp_min(1e-12)).item()


def test_import_matches_reference(tmp_path: Path, fix: dict[str, Any]) -> None:
    paths = write_inputs(tmp_path, fix)
    out = tmp_path / "run"
    res = import_cli(paths, out)
    assert res.returncode == 0, res.stderr
    assert "hidden 64" in res.stdout and "seq_len 36" in res.stdout, res.stdout

    loaded = load_model(out, torch.device("cpu"))
    assert loaded.checkpoint.name == "step_0001234", "the step is read from the file name"
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_0001234"
    cfg = loaded.cfg
    assert (cfg.model.hidden_size, cfg.model.seq_len, cfg.model.puzzle_emb_len) == (64, 36, 4)
    assert (cfg.model.H_cycles, cfg.model.L_cycles, cfg.model.halt_max_steps) == (2, 3, 4)
    assert cfg.model.forward_dtype == "float32" and cfg.model.num_puzzle_ids == 5
    assert (cfg.data.canvas, cfg.data.augmentations, cfg.data.tasks) == (6, 2, "")

    ref_table = fix["state_dict"]["inner.puzzle_emb.weights"]
    assert torch.equal(loaded.model.puzzle_table, ref_table.float()), "table rows copied in reference order"
    assert loaded.id_map.identifiers == OUR_IDS
    augs = [Augmentation.from_str(a) for a in loaded.id_map.augmentations[1:]]
    assert loaded.id_map.augmentations[0] == ""
    assert [(a.dihedral, a.perm) for a in augs] == [
        (0, tuple(range(10))), (3, (0, 9, 8, 7, 6, 5, 4, 3, 2, 1)),
        (0, tuple(range(10))), (5, (0, 2, 1, 3, 4, 5, 6, 7, 8, 9))]

    state = torch.load(loaded.checkpoint / "state.pt", weights_only=True)
    assert state["identifiers"] == OUR_IDS and state["step"] == 1234
    assert state["optim"]["state"] == {} and state["optim"]["param_groups"]
    assert set(state["ema"]) == {n for n, _ in loaded.model.named_parameters()}

    model, batch = loaded.model, Batch(**fix["batch"])
    carry = model.initial_carry(batch)
    with torch.no_grad():
        for i, ref in enumerate(fix["eval_steps"]):
            out_step = model(carry, batch, use_q_halt=False)
            carry = out_step.carry
            err = rel_err(out_step.logits, ref["logits"])
            assert err < 1e-4, f"step {i}: logits relative error {err:.2e}"
            assert rel_err(out_step.q_halt_logits, ref["q_halt_logits"]) < 1e-4


def test_import_without_config_infers_shapes(tmp_path: Path, fix: dict[str, Any]) -> None:
    paths = write_inputs(tmp_path, fix)
    out = tmp_path / "run"
    res = run_cli("import-checkpoint", paths["ckpt"], "--identifiers", paths["ids"], "--out", out, "--canvas", "6",
                  "--set", "model.num_heads=4", "--set", "model.puzzle_emb_len=4", timeout=120)
    assert res.returncode == 0, res.stderr
    assert "no --config" in res.stdout
    cfg = load_model(out, torch.device("cpu")).cfg.model
    assert (cfg.hidden_size, cfg.L_layers, cfg.num_puzzle_ids, cfg.seq_len, cfg.num_heads) == (64, 2, 5, 36, 4)
    assert cfg.H_cycles == 3, "what the weights cannot show comes from the paper preset"


def test_identifier_mapping_rules() -> None:
    mapped = map_reference_identifiers(
        ["<blank>", "b|||t1|||0123456789", "a", "b", "a|||t2|||0123456798", "b|||t0|||0213456789"])
    ids, augs, versions = mapped.identifiers, mapped.augmentations, mapped.versions
    assert ids == ["<blank>", "b#1", "a#0", "b#0", "a#1", "b#2"], "k counts augmented names by puzzle id"
    assert augs[:3] == ["", "t1p0123456789", "t0p0123456789"] and versions == 3
    for bad in (["<blank>", "a", "a"], ["x", "a"], ["<blank>", "a|||t8|||0123456789"],
                ["<blank>", "a|||t1|||1023456789"], ["<blank>", "a|||t1"], ["<blank>", "|||t1|||0123456789"]):
        with pytest.raises(ValueError):
            map_reference_identifiers(bad)


@pytest.mark.parametrize("name", [
    "a|||t7|||0987654321", "a", " a |||t0|||0123456789", "a|b|||t1|||0123456789", "a||||t1|||0123456789",
    "a|||t1|||0123456788", "a|||t1|||1234567890", "a|||t1|||012345678", "a|||t1|||012345678\n", "a|||t9|||0123456789",
    "a|||T1|||0123456789", "|||t1|||0123456789", " |||t1|||0123456789", "<blank>|||t1|||0123456789", " ",
    "a|||t1|||0123456789|||t1", "a|||t1|||01234567٨9", "a#1|||t1|||0123456789", "a#1", "a#b|||t1|||0123456789"])
def test_identifier_mapping_fast_path_follows_the_rules(name: str) -> None:
    """The inline check of common names gives what the rule-by-rule parse gives, or its error."""
    try:
        task_id, k, record = _parse_name(name, 1, {})
        expected: object = ImportedNames([BLANK, f"{task_id}#{k}"], ["", record], 1)
    except ValueError as e:
        expected = str(e)
    try:
        got: object = map_reference_identifiers([BLANK, name])
    except ValueError as e:
        got = str(e)
    assert got == expected


def test_identifier_mapping_reports_the_first_bad_id() -> None:
    with pytest.raises(ValueError, match=r"malformed puzzle name 'a\|\|\|t9.*\(id 2\)"):
        map_reference_identifiers([BLANK, "a", "a|||t9|||0123456789", "a"])
    with pytest.raises(ValueError, match=r"'a' appears twice \(ids 1 and 2\)"):
        map_reference_identifiers([BLANK, "a", "a", "a|||t9|||0123456789"])


def _expect_error(res, *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_key_is_rejected(tmp_path: Path, fix: dict[str, Any]) -> None:
    sd = {PREFIX + k: v for k, v in fix["state_dict"].items()}
    sd[PREFIX + "inner.extra_head.weight"] = torch.zeros(3)
    paths = write_inputs(tmp_path, fix, state_dict=sd)
    _expect_error(import_cli(paths, tmp_path / "run"), "inner.extra_head.weight", "step_1234")
    assert not (tmp_path / "run" / "checkpoints").exists(), "nothing is written on error"


def test_wrong_shape_is_rejected(tmp_path: Path, fix: dict[str, Any]) -> None:
    sd = {PREFIX + k: v for k, v in fix["state_dict"].items()}
    key = PREFIX + "inner.L_level.layers.1.mlp.down_proj.weight"
    sd[key] = torch.zeros(64, 200)
    paths = write_inputs(tmp_path, fix, state_dict=sd)
    _expect_error(import_cli(paths, tmp_path / "run"), "net.blocks.1.mlp.down.weight", "shape")


def test_wrong_number_of_names_is_rejected(tmp_path: Path, fix: dict[str, Any]) -> None:
    paths = write_inputs(tmp_path, fix, names=REF_NAMES[:-1])
    _expect_error(import_cli(paths, tmp_path / "run"), "identifiers.json", "4 puzzle names", "5 rows")


def test_malformed_name_is_rejected(tmp_path: Path, fix: dict[str, Any]) -> None:
    names = REF_NAMES[:2] + ["taskA|||t3|||09876"] + REF_NAMES[3:]
    paths = write_inputs(tmp_path, fix, names=names)
    _expect_error(import_cli(paths, tmp_path / "run"), "identifiers.json", "taskA|||t3|||09876")


def test_missing_checkpoint_is_rejected(tmp_path: Path, fix: dict[str, Any]) -> None:
    paths = write_inputs(tmp_path, fix)
    paths["ckpt"] = tmp_path / "nope.pt"
    _expect_error(import_cli(paths, tmp_path / "run"), "nope.pt", "missing")


def test_canvas_must_fit_seq_len(tmp_path: Path, fix: dict[str, Any]) -> None:
    paths = write_inputs(tmp_path, fix)
    res = run_cli("import-checkpoint", paths["ckpt"], "--identifiers", paths["ids"], "--out", tmp_path / "run",
                  "--config", paths["config"], "--canvas", "5", "--set", "model.seq_len=36", timeout=120)
    _expect_error(res, "seq_len 36", "canvas 5")


ALL_CONFIG_YAML = """arch:
  H_cycles: 2
  H_layers: 0
  L_cycles: 3
  L_layers: 2
  expansion: 4
  forward_dtype: float32
  halt_exploration_prob: 0.0
  halt_max_steps: 4
  hidden_size: 64
  loss:
    loss_type: stablemax_cross_entropy
    name: losses@ACTLossHead
  mlp_t: false
  name: recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1
  no_ACT_continue: true
  num_heads: 4
  pos_encodings: rope
  puzzle_emb_len: 4
  puzzle_emb_ndim: 64
data_paths:
- data/arc2concept-aug-1000
evaluators: []
lr: 0.0001
"""


def test_reference_yaml_config(tmp_path: Path) -> None:
    from arc_trm.import_reference import read_config_file, reference_sections

    path = tmp_path / "all_config.yaml"
    path.write_text(ALL_CONFIG_YAML)
    arch, train = reference_sections(read_config_file(path), path)
    assert train is None
    assert (arch["H_cycles"], arch["L_cycles"], arch["num_heads"], arch["mlp_t"]) == (2, 3, 4, False)
    assert arch["forward_dtype"] == "float32" and arch["loss"]["name"] == "losses@ACTLossHead"


@pytest.mark.parametrize("variant", ["mlp_t", "attn_learned"])
def test_seq_len_read_from_weights(variant: str) -> None:
    from arc_trm.import_reference import resolve_model_config

    fix = torch.load(FIXTURE.with_name(f"trm_reference_{variant}.pt"), weights_only=True)
    cfg, _ = resolve_model_config(fix["state_dict"], None, ["model.puzzle_emb_len=4"], canvas=30)
    assert cfg.seq_len == 36, "positions fixed by the weights (40) minus the puzzle prefix"
    assert cfg.mlp_t == (variant == "mlp_t")
    assert cfg.pos_encodings == {"mlp_t": "none", "attn_learned": "learned"}[variant]


def test_out_of_other_files_is_refused_and_a_run_folder_takes_force(tmp_path: Path, fix: dict[str, Any]) -> None:
    # A folder of the user's own files got import.json and checkpoints/ mixed in, its config.json overwritten.
    paths = write_inputs(tmp_path, fix)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("notes")
    _expect_error(import_cli(paths, mine), f"--out {mine}", "not a run folder")
    _expect_error(import_cli(paths, mine, "--force"), f"--out {mine}", "not a run folder")
    (mine / "config.json").write_text("my own config")  # a run's file: a run, as for train; never overwritten
    _expect_error(import_cli(paths, mine), f"{mine} already holds a run (config.json)")
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "notes.txt"]
    assert (mine / "config.json").read_text() == "my own config"
    run = tmp_path / "run"
    assert import_cli(paths, run).returncode == 0
    _expect_error(import_cli(paths, run), "already holds a run")
    assert import_cli(paths, run, "--force").returncode == 0
    # A train run killed before its first checkpoint (config.json and metrics.jsonl, no checkpoints/)
    # was "other files, not a run folder" even with --force, which train's --force moves aside.
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "config.json").write_text("{}")
    (killed / "metrics.jsonl").write_text("")
    proc = import_cli(paths, killed, "--force")
    assert proc.returncode == 0 and "moved the previous run" in proc.stdout, proc.stderr
    assert sorted(p.name for p in killed.parent.glob("killed.old-*/*")) != []


def test_an_imported_run_whose_rows_match_the_build_trains_on_with_a_fresh_sampler(tmp_path: Path,
                                                                                   small_build: Path) -> None:
    """An imported run holds no sampler state ("sampler": None, as the reference saves none): a
    `train --resume` whose build meant the same rows ended in a TypeError traceback on loading it."""
    from arc_trm import checkpoint as ckpt
    from arc_trm.import_reference import imported_state
    from arc_trm.model import TRM
    from augment.store import BuiltSet
    from conftest import cli_in_process, tiny_config

    id_map = BuiltSet.open(small_build).identifier_map()
    cfg = tiny_config("train.max_steps=3")
    cfg.model.num_puzzle_ids, cfg.model.seq_len = len(id_map.identifiers), cfg.data.canvas ** 2
    run = tmp_path / "run"
    tmp = ckpt.begin_checkpoint(run, 1)
    ckpt.torch_save_atomic(imported_state(TRM(cfg.model), cfg, id_map.identifiers, 1), tmp / "state.pt")
    (tmp / "config.json").write_text(json.dumps(cfg.to_dict()))
    (tmp / "identifiers.json").write_text(json.dumps(id_map.to_json()))
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    ckpt.commit_checkpoint(run, 1)
    proc = cli_in_process("train", "--out", run, "--resume", "--build", small_build, "--no-progress")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "resumed from step 1" in proc.stdout and "trained to step 3" in proc.stdout, proc.stdout
