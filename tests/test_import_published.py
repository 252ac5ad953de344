"""`arc-trm import-checkpoint` on checkpoints laid out as published: a folder of step_N files with
all_config.yaml and no identifiers.json, or an hf:// folder read from a Hugging Face cache.

The weights are the small reference fixture with a puzzle table sized for the arc1concept recipe
at 0 augmentations (961 rows: the blank and 960 tasks), so the identifiers are rebuilt for real.
No test touches the network: the Hub tests run with HF_HUB_OFFLINE=1 on a cache laid out as
huggingface_hub lays it out (refs/main, snapshots/<commit>/..., blobs/)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from arc_trm.published import map_reference_identifiers
from arc_trm.published import Recipe, recipe_from_config
from augment.reference_ids import reference_identifiers
from conftest import CONCEPTARC, cli_in_process, run_cli, write_tiny_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "trm_reference_attn_rope.pt"
PREFIX = "_orig_mod.model."
ROWS = 961  # arc1concept at 0 augmentations
REPO = "arcprize/trm_arc_prize_verification"
pytestmark = pytest.mark.skipif(not CONCEPTARC.exists(), reason="ConceptARC is read from ../shared/data")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def fix() -> dict[str, Any]:
    return torch.load(FIXTURE, weights_only=True)


def weights(fix: dict[str, Any], rows: int = ROWS, seed: int = 0) -> dict[str, torch.Tensor]:
    sd = {PREFIX + k: v.clone() for k, v in fix["state_dict"].items()}
    sd[PREFIX + "inner.puzzle_emb.weights"] = torch.randn(rows, fix["config"]["hidden_size"],
                                                          generator=torch.Generator().manual_seed(seed))
    return sd


def config_yaml(fix: dict[str, Any], data_path: str | None) -> str:
    arch = {k: v for k, v in fix["config"].items() if k not in ("seq_len", "num_puzzle_identifiers", "vocab_size",
                                                                 "batch_size")}
    arch["name"] = "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"
    data = {"arch": arch, "lr": 1e-4}
    if data_path:
        data["data_paths"] = [data_path]
    return yaml.safe_dump(data)


def published_folder(folder: Path, fix: dict[str, Any], steps=(10, 20),
                     data_path: str | None = "data/arc1concept-aug-0") -> Path:
    folder.mkdir(parents=True)
    for n, step in enumerate(steps):
        torch.save(weights(fix, seed=n), folder / f"step_{step}")
    (folder / "all_config.yaml").write_text(config_yaml(fix, data_path))
    return folder


@functools.lru_cache(maxsize=1)
def expected_identifiers() -> list[str]:
    return map_reference_identifiers(reference_identifiers("arc1concept", CONCEPTARC, 0).names).identifiers


def one_line_error(res, *needles: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    line, = res.stderr.strip().splitlines()
    for needle in needles:
        assert needle in line, line
    return line


def saved(out: Path) -> dict:
    latest = (out / "checkpoints" / "latest").read_text().strip()
    return torch.load(out / "checkpoints" / latest / "state.pt", weights_only=True)


def test_folder_imports_latest_step_with_rebuilt_identifiers(tmp_path: Path, fix: dict[str, Any]) -> None:
    folder = published_folder(tmp_path / "arc_v1_public", fix)
    out = tmp_path / "run"
    res = cli_in_process("import-checkpoint", folder, "--conceptarc", CONCEPTARC, "--out", out, "--canvas", "6")
    assert res.returncode == 0, res.stderr
    assert "arc1concept, 0 augmentations" in res.stdout and "data/arc1concept-aug-0" in res.stdout
    state = saved(out)
    assert state["step"] == 20, "the latest step of the folder"
    assert state["identifiers"] == expected_identifiers()
    source = torch.load(folder / "step_20", weights_only=True)[PREFIX + "inner.puzzle_emb.weights"]
    assert torch.equal(state["model"]["puzzle_table"], source), "table rows copied unchanged"
    record = json.loads((out / "import.json").read_text())
    assert record["identifiers"].startswith("recipe arc1concept at 0 augmentations")
    assert "licence" not in record, "a local file of unknown origin: no licence is claimed"

    res = cli_in_process("import-checkpoint", folder, "--step", "10", "--conceptarc", CONCEPTARC, "--out",
                         tmp_path / "run10", "--canvas", "6")
    assert res.returncode == 0, res.stderr
    state = saved(tmp_path / "run10")
    assert state["step"] == 10
    source = torch.load(folder / "step_10", weights_only=True)[PREFIX + "inner.puzzle_emb.weights"]
    assert torch.equal(state["model"]["puzzle_table"], source)


def test_flags_name_the_recipe_when_the_config_does_not(tmp_path: Path, fix: dict[str, Any]) -> None:
    folder = published_folder(tmp_path / "ckpt", fix, steps=(7,), data_path=None)
    res = cli_in_process("import-checkpoint", folder / "step_7", "--conceptarc", CONCEPTARC, "--out",
                         tmp_path / "a", "--canvas", "6")
    one_line_error(res, "--identifiers", "--recipe", "all_config.yaml")
    res = cli_in_process("import-checkpoint", folder / "step_7", "--recipe", "arc1concept", "--augmentations", "0",
                         "--conceptarc", CONCEPTARC, "--out", tmp_path / "b", "--canvas", "6")
    assert res.returncode == 0, res.stderr
    assert saved(tmp_path / "b")["identifiers"] == expected_identifiers()


def test_row_count_mismatch_names_both_numbers(tmp_path: Path, fix: dict[str, Any]) -> None:
    folder = published_folder(tmp_path / "ckpt", fix, steps=(3,), data_path="data/arc1concept-aug-1")
    out = tmp_path / "run"
    res = cli_in_process("import-checkpoint", folder, "--conceptarc", CONCEPTARC, "--out", out, "--canvas", "6")
    expected = len(reference_identifiers("arc1concept", CONCEPTARC, 1).names)
    one_line_error(res, f"{expected} puzzle names", f"{ROWS} rows", "recipe arc1concept at 1 augmentations")
    assert not out.exists() or not any(out.iterdir()), "nothing is written"


def test_missing_conceptarc_and_missing_step_are_one_line(tmp_path: Path, fix: dict[str, Any]) -> None:
    folder = published_folder(tmp_path / "ckpt", fix, steps=(3,))
    one_line_error(cli_in_process("import-checkpoint", folder, "--out", tmp_path / "r", "--canvas", "6"),
                   "kaggle/combined", "victorvikram/ConceptARC")
    one_line_error(cli_in_process("import-checkpoint", folder, "--step", "4", "--conceptarc", CONCEPTARC,
                                  "--out", tmp_path / "r", "--canvas", "6"), "no step_4", "3")


def hub_cache(home: Path, fix: dict[str, Any], steps=(5,)) -> Path:
    """HF_HOME/hub as huggingface_hub leaves it after downloading REPO's arc_v1_public folder."""
    repo = home / "hub" / f"models--{REPO.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    files = {"arc_v1_public/all_config.yaml": config_yaml(fix, "data/arc1concept-aug-0").encode()}
    home.mkdir(parents=True, exist_ok=True)
    for step in steps:
        tmp = home / f"step_{step}.tmp"
        torch.save(weights(fix), tmp)
        files[f"arc_v1_public/step_{step}"] = tmp.read_bytes()
        tmp.unlink()
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    for name, blob in files.items():
        digest = hashlib.sha256(blob).hexdigest()
        (repo / "blobs" / digest).write_bytes(blob)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(repo / "blobs" / digest, link.parent))
    return repo


def test_hub_reference_from_an_offline_cache(tmp_path: Path, fix: dict[str, Any]) -> None:
    pytest.importorskip("huggingface_hub")
    hub_cache(tmp_path / "hf", fix, steps=(5, 12))
    out = tmp_path / "run"
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    res = run_cli("import-checkpoint", f"hf://{REPO}/arc_v1_public", "--conceptarc", CONCEPTARC, "--out", out,
                  "--canvas", "6", env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    state = saved(out)
    assert state["step"] == 12 and state["identifiers"] == expected_identifiers()
    record = json.loads((out / "import.json").read_text())
    assert record["source"] == f"hf://{REPO}/arc_v1_public" and "/blobs/" in record["reference_checkpoint"]
    assert record["licence"] == "MIT" and record["licence_stated_at"] == f"https://huggingface.co/{REPO}"

    res = run_cli("import-checkpoint", f"hf://{REPO}/arc_v2_public", "--conceptarc", CONCEPTARC, "--out",
                  tmp_path / "v2", "--canvas", "6", env=env, timeout=300)
    assert one_line_error(res, "arc_v2_public", "no step_N").count("hf://") == 1, "the source named once"

    # One file of the folder, as the hub's page links it, is that step (a local step_N file is too).
    res = run_cli("import-checkpoint", f"hf://{REPO}/arc_v1_public/step_5", "--conceptarc", CONCEPTARC, "--out",
                  tmp_path / "five", "--canvas", "6", env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert saved(tmp_path / "five")["step"] == 5


def test_an_unreachable_hub_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online with the hub out of reach, huggingface_hub 1.0 and later raise their HTTP client's
    errors (httpx's ConnectError), which are no OSError: that came out as a traceback. The hub's
    listing call is replaced by one that fails so (no retries, nothing leaves the machine)."""
    pytest.importorskip("huggingface_hub")
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import HTTPError

    def unreachable(*_: object, **__: object) -> list[str]:
        raise HTTPError("[Errno 111] Connection refused")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # nothing cached to fall back on
    monkeypatch.setattr(huggingface_hub, "list_repo_files", unreachable)
    res = cli_in_process("import-checkpoint", f"hf://{REPO}/arc_v2_public", "--conceptarc", CONCEPTARC, "--out",
                         tmp_path / "run")
    one_line_error(res, f"hf://{REPO}/arc_v2_public", "Connection refused")
    assert not (tmp_path / "run").exists()


def test_an_unreachable_hub_falls_back_to_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    fix: dict[str, Any]) -> None:
    """Weights downloaded once, then imported again on a machine without network (HF_HUB_OFFLINE
    unset): the hub's listing failed (after huggingface_hub's retries, 25 s) and the import
    stopped with "Name or service not known", though every file was in the cache. huggingface_hub's
    own downloads fall back to the cache; the import now does too, with one warning line."""
    pytest.importorskip("huggingface_hub")
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import HTTPError

    def unreachable(*_: object, **__: object) -> list[str]:
        raise HTTPError("[Errno -2] Name or service not known")

    hub_cache(tmp_path / "hf", fix, steps=(5, 12))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(huggingface_hub, "list_repo_files", unreachable)
    out = tmp_path / "run"
    res = cli_in_process("import-checkpoint", f"hf://{REPO}/arc_v1_public", "--conceptarc", CONCEPTARC, "--out", out,
                         "--canvas", "6")
    assert res.returncode == 0, res.stderr
    warning, = res.stderr.strip().splitlines()
    assert "Name or service not known" in warning and "Hugging Face cache" in warning, warning
    assert saved(out)["step"] == 12, "the latest step the cache holds"
    assert "/blobs/" in json.loads((out / "import.json").read_text())["reference_checkpoint"]


def test_legacy_format_file_without_mmap_still_imports(tmp_path: Path, fix: dict[str, Any]) -> None:
    """torch's pre-zip format cannot be memory-mapped: the ordinary load takes over."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save(weights(fix), folder / "step_9", _use_new_zipfile_serialization=False)
    (folder / "all_config.yaml").write_text(config_yaml(fix, "data/arc1concept-aug-0"))
    res = cli_in_process("import-checkpoint", folder, "--conceptarc", CONCEPTARC, "--out", tmp_path / "run",
                         "--canvas", "6")
    assert res.returncode == 0, res.stderr
    assert saved(tmp_path / "run")["step"] == 9


def test_recipe_read_from_the_data_path() -> None:
    assert recipe_from_config({"data_paths": ["data/arc2concept-aug-300/"]}, "cfg") == \
        Recipe("arc2concept", 300, "cfg: data path data/arc2concept-aug-300/")
    assert recipe_from_config({"data_paths": ["data/arc-aug-1000"]}, "cfg") is None, "not a known recipe"
    assert recipe_from_config({"data_paths": ["data/arc1concept-aug-9", "data/arc2concept-aug-9"]}, "cfg") is None
    assert recipe_from_config({"lr": 1e-4}, "cfg") is None


def test_inputs_and_out_are_checked_before_the_weights_are_located(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An hf:// folder is downloaded (gigabytes) when located: a missing --conceptarc, ConceptARC
    solutions or --identifiers file, or an --out that cannot take the run, is one line before that.
    An --out that is a file was a traceback after the import; one that is a checkpoint or an export
    took the run silently, and `--checkpoint OUT` kept loading the old weights."""
    from arc_trm import import_reference

    def located(*_: object) -> None:
        raise AssertionError("the weights were located before the inputs were checked")

    monkeypatch.setattr(import_reference, "locate", located)
    hub = f"hf://{REPO}/arc_v2_public"
    out = tmp_path / "run"
    lonely = tmp_path / "x_challenges.json"
    lonely.write_text("{}")
    one_line_error(cli_in_process("import-checkpoint", hub, "--out", out), "--conceptarc", "kaggle/combined")
    one_line_error(cli_in_process("import-checkpoint", hub, "--conceptarc", lonely, "--out", out), "x_solutions.json")
    one_line_error(cli_in_process("import-checkpoint", hub, "--identifiers", tmp_path / "ids.json", "--out", out),
                   "identifiers file not found", "ids.json")
    (tmp_path / "a-file").write_text("x")
    one_line_error(cli_in_process("import-checkpoint", hub, "--conceptarc", CONCEPTARC, "--out", tmp_path / "a-file"),
                   "a-file", "not a folder")
    for weights in ("state.pt", "model.safetensors"):
        folder = tmp_path / weights.split(".")[0]
        folder.mkdir()
        (folder / weights).write_bytes(b"weights")
        for force in ((), ("--force",)):
            one_line_error(cli_in_process("import-checkpoint", hub, "--conceptarc", CONCEPTARC, "--out", folder,
                                          *force), str(folder), "checkpoint or an inference export")
        assert sorted(p.name for p in folder.iterdir()) == [weights], "nothing is written"
    # A folder under a file, and --force on the folder you are in, were refused only after the
    # download, the names and the weights (when the run was written).
    one_line_error(cli_in_process("import-checkpoint", hub, "--conceptarc", CONCEPTARC, "--out",
                                  tmp_path / "a-file" / "run"), "a-file", "not a folder")
    (out / "checkpoints").mkdir(parents=True)
    monkeypatch.chdir(out)
    one_line_error(cli_in_process("import-checkpoint", hub, "--conceptarc", CONCEPTARC, "--out", ".", "--force"),
                   "holds the folder you are in")
    monkeypatch.chdir(tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints"]


def test_without_huggingface_hub_the_line_names_an_install_that_works(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """arc-trm is not on PyPI: the line said `pip install 'arc-trm[hub]'`, which fails."""
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", None)  # import fails as if absent
    line = one_line_error(cli_in_process("import-checkpoint", f"hf://{REPO}/arc_v1_public", "--conceptarc",
                                         CONCEPTARC, "--out", tmp_path / "r"), "huggingface_hub")
    assert "pip install huggingface_hub" in line and "pip install -e '.[hub]'" in line, line
    assert "pip install 'arc-trm[hub]'" not in line, line


def test_force_moves_the_run_in_out_aside(tmp_path: Path, fix: dict[str, Any]) -> None:
    """`--force` into a folder holding a run added the import to it: config.json was replaced,
    `latest` pointed at the imported step (a later `train --resume` cut metrics.jsonl back to it),
    and a checkpoint of the same step was deleted. As for train and ttt, the run there now moves
    aside to OUT.old-<time>, whole, and OUT holds the import alone."""
    folder = published_folder(tmp_path / "arc_v1_public", fix)
    out = tmp_path / "run"
    args = ("import-checkpoint", folder, "--conceptarc", CONCEPTARC, "--out", out, "--canvas", "6")
    assert cli_in_process(*args).returncode == 0
    (out / "metrics.jsonl").write_text('{"step": 25}\n')  # trained on from the import
    config = (out / "config.json").read_text().replace('"lr": 0.0001', '"lr": 0.5')
    (out / "config.json").write_text(config)
    res = cli_in_process(*args, "--step", "10", "--force")
    assert res.returncode == 0, res.stderr
    aside, = tmp_path.glob("run.old-*")
    assert f"aside to {aside}" in res.stdout, res.stdout
    assert (aside / "metrics.jsonl").is_file() and (aside / "config.json").read_text() == config
    assert (aside / "checkpoints" / "latest").read_text().strip() == "step_0000020"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_0000010"]
    assert not (out / "metrics.jsonl").exists() and saved(out)["step"] == 10


def test_an_export_of_an_imported_run_carries_its_licence_into_the_bundle(tmp_path: Path, fix: dict[str, Any]) -> None:
    """`arc-trm export` left the import record behind, so `kaggle bundle` of the (lean) export the
    notebook uses shipped the published weights with no notice, labelled apache-2.0. The export
    now carries import.json (in its manifest), and the bundle finds it there."""
    pytest.importorskip("huggingface_hub")
    from submission.bundle import ship_checkpoint
    from submission.notice import weights_source
    from submission.runfolder import is_export

    hub_cache(tmp_path / "hf", fix)
    run, lean = tmp_path / "run", tmp_path / "lean"
    res = run_cli("import-checkpoint", f"hf://{REPO}/arc_v1_public", "--conceptarc", CONCEPTARC, "--out", run,
                  "--canvas", "6", env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert res.returncode == 0, res.stderr
    assert cli_in_process("export", "--checkpoint", run, "--out", lean, "--lean").returncode == 0
    assert (lean / "import.json").read_text() == (run / "import.json").read_text()
    assert is_export(lean) and "import.json" in json.loads((lean / "manifest.json").read_text())["files"]
    env = {"ARC_TRM_WHEEL_CACHE": str(tmp_path / "empty-cache")}  # offline: exit 1, bundle written
    res = run_cli("kaggle", "bundle", "--checkpoint", lean, "--out", tmp_path / "dist", "--no-download", env=env)
    assert res.returncode == 1 and "missing wheels" in res.stderr, res.stderr
    dataset = tmp_path / "dist" / "dataset"
    notice = (dataset / "LICENSE-weights.txt").read_text()
    assert f"hf://{REPO}/arc_v1_public" in notice and "licence: MIT" in notice, notice
    assert json.loads((dataset / "dataset-metadata.json").read_text())["licenses"] == [{"name": "other"}]
    assert (dataset / "checkpoint" / "import.json").is_file() and is_export(dataset / "checkpoint")
    # An export with the whole table is copied as it is (--full-table): its record goes along.
    assert cli_in_process("export", "--checkpoint", run, "--out", tmp_path / "full").returncode == 0
    ship_checkpoint(tmp_path / "full", tmp_path / "shipped", full_table=True)
    assert is_export(tmp_path / "shipped") and weights_source(tmp_path / "shipped").licence == "MIT"

    trained = write_tiny_checkpoint(tmp_path / "trained")
    assert cli_in_process("export", "--checkpoint", trained, "--out", tmp_path / "mine").returncode == 0
    assert not (tmp_path / "mine" / "import.json").exists() and weights_source(tmp_path / "mine") is None


def test_a_ttt_run_from_imported_weights_keeps_their_licence_in_its_bundle(tmp_path: Path,
                                                                          fix: dict[str, Any]) -> None:
    """ttt from an imported run wrote no import record, so `kaggle bundle` of the ttt run's own
    checkpoints shipped the published weights with no notice, labelled apache-2.0; and --full-state
    of the import put the notice in the dataset but not in the copied checkpoint/. A ttt run (each
    task's run, with --per-task) now copies the record of the checkpoint it starts from, and the
    bundle copies it beside state.pt."""
    pytest.importorskip("huggingface_hub")
    from arc_trm.ttt import ttt
    from arc_trm.ttt_plan import TTTOptions
    from submission.bundle import ship_checkpoint
    from submission.notice import weights_source
    from submission.runfolder import resolve_checkpoint

    hub_cache(tmp_path / "hf", fix)
    run = tmp_path / "run"
    res = run_cli("import-checkpoint", f"hf://{REPO}/arc_v1_public", "--conceptarc", CONCEPTARC, "--out", run,
                  "--canvas", "6", env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert res.returncode == 0, res.stderr
    tiny, one_task = ("train.max_steps=2", "data.augmentations=2"), "arc-agi-1:training/3c9b0459@test"
    for name, per_task in (("ttt", False), ("each", True)):
        assert ttt(TTTOptions(tasks=one_task, out=tmp_path / name, checkpoint=str(run), budget="60s",
                              preset="cpu-quick", progress=False, per_task=per_task, overrides=tiny)) == 0
    task_runs = sorted((tmp_path / "each" / "tasks").iterdir())
    for folder in [tmp_path / "ttt", *task_runs]:
        assert (folder / "import.json").read_text() == (run / "import.json").read_text(), folder
        assert weights_source(resolve_checkpoint(folder)).licence == "MIT", folder

    env = {"ARC_TRM_WHEEL_CACHE": str(tmp_path / "empty-cache")}  # offline: exit 1, bundle written
    res = run_cli("kaggle", "bundle", "--checkpoint", tmp_path / "ttt", "--out", tmp_path / "dist", "--no-download",
                  env=env)
    assert res.returncode == 1 and "missing wheels" in res.stderr, res.stderr
    notice = (tmp_path / "dist" / "dataset" / "LICENSE-weights.txt").read_text()
    assert f"hf://{REPO}/arc_v1_public" in notice and "licence: MIT" in notice, notice
    assert weights_source(tmp_path / "dist" / "dataset" / "checkpoint").licence == "MIT"

    # --full-state copies state.pt and its files; the run's record now goes along (the checks still pass).
    ship_checkpoint(resolve_checkpoint(task_runs[0]), tmp_path / "state", full_state=True)
    assert (tmp_path / "state" / "state.pt").is_file() and weights_source(tmp_path / "state").licence == "MIT"


@pytest.mark.slow  # huggingface_hub's own five retries: about 25 s of waiting
def test_an_unreachable_hub_costs_one_line_not_its_retries(tmp_path: Path) -> None:
    """Without network, huggingface_hub logged each retry of its listing ("... thrown while
    requesting GET ...", "Retrying in 8s [Retry 5/5]"): twelve lines before the one line. A real
    process against a closed local port (nothing leaves the machine)."""
    pytest.importorskip("huggingface_hub")
    res = run_cli("import-checkpoint", f"hf://{REPO}/arc_v2_public", "--conceptarc", CONCEPTARC, "--out",
                  tmp_path / "run", env={"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9",
                                         "HF_HUB_OFFLINE": "0"}, timeout=200)
    one_line_error(res, f"hf://{REPO}/arc_v2_public")
    assert not (tmp_path / "run").exists()
