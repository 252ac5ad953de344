"""`arc-trm import-checkpoint`: a reference TinyRecursiveModels checkpoint as an arc-trm run folder.

  arc-trm import-checkpoint hf://arcprize/trm_arc_prize_verification/arc_v1_public \\
      --conceptarc kaggle/combined/arc-agi_concept_challenges.json --out runs/arc1-published
  arc-trm import-checkpoint ref/step_155718 --identifiers ref_data/identifiers.json --out runs/imported
  arc-trm predict --checkpoint runs/imported --tasks arc-agi-1:evaluation

REF_CHECKPOINT is a file saved by the reference trainer with `torch.save(model.state_dict())`
(the EMA copy when EMA was on; `_orig_mod.` / `model.` key prefixes are accepted), a folder of
`step_N` files as published (the latest step unless --step), or
`hf://OWNER/REPO/FOLDER[/step_N]` on the Hugging Face Hub (needs `pip install huggingface_hub`;
HF_HOME and HF_HUB_OFFLINE are honoured; a hub that cannot be reached falls back to the cache).
The model config comes from --config, else the all_config.yaml beside the weights (its `arch:`
section, or a bare arch dict, or an arc-trm config.json); whatever it does not give is read from
the weights' shapes (hidden size, blocks, mlp_t, learned positions, vocabulary, puzzle ids,
sequence length) or, failing that, taken from the paper preset. `--set model.X=Y` overrides.

The puzzle table's rows mean something only through the reference builder's identifier list.
Without --identifiers it is rebuilt (augment.reference_ids) for the recipe and augmentation count
named by the config's data path (`data/arc1concept-aug-1000`) or by --recipe / --augmentations,
with ConceptARC from --conceptarc. Its length must equal the table's rows.
--identifiers is the reference data set's identifiers.json (puzzle id -> name, id 0 "<blank>").
A plain name `task` becomes our `task#0` (identity augmentation); augmented names
`task|||t<dihedral>|||<10-digit colour map>` become `task#1`, `task#2`, ... in order of puzzle
id, keeping the reference's row order, so the puzzle table is copied unchanged.

Writes OUT/config.json and OUT/checkpoints/step_N/ (N from a `step_N` file name, else 0) with
the weights as both raw and EMA weights, atomically, and OUT/import.json: the source and, for a
known published one, its licence (which `kaggle bundle` ships with the weights). Bad input
(unknown or missing keys, shapes that do not fit, names that do not match the table) stops with
a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch import Tensor

from arc_trm import checkpoint as ckpt
from arc_trm.config import ModelConfig, RunConfig, TrainConfig, preset
from arc_trm.overrides import apply_overrides, override_field
from arc_trm.convert import REF_BLOCK, load_reference_state_dict, strip_wrappers
from arc_trm.model import TRM
from arc_trm.optim import AdamATan2
from arc_trm.runs import claim_run_folder, refuse_held_run
from arc_trm.published import (HUB_PREFIX, ImportedNames, Located, NamesWanted, check_names_wanted, locate,
                                rebuild_names)
from arc_trm.stopping import current
from augment.errors import InputError
from augment.grids import task_of
from augment.reference_ids import RECIPES
from augment.identifier_map import IdentifierMap
from augment.files import check_not_around_cwd, finished_line, read_text, write_text_atomic
from submission.notice import licence_fields
from submission.runfolder import IMPORT_RECORD, run_files

# Values no weight shape reveals: printed when they come from the paper preset.
_UNSEEN_IN_WEIGHTS = ("num_heads", "H_cycles", "L_cycles", "halt_max_steps", "halt_exploration_prob",
                      "expansion", "puzzle_emb_len", "forward_dtype", "rope_theta")


def read_config_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON config file as a mapping."""
    if not path.is_file():
        raise InputError(f"{path}: config file missing")
    text = read_text(path, "config file")  # one line for a file that is not UTF-8 text
    try:
        data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise InputError(f"{path}: unreadable config ({type(e).__name__}: {e})".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    return data


def reference_sections(data: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(model settings, our train section or None) from a config file's contents (`data`, read
    from `path`): the reference's all_config.yaml (or a JSON copy) with an `arch` section, a bare
    arch dict, or an arc-trm run config.json (`model`/`train`/`data` sections)."""
    if isinstance(data.get("arch"), dict):
        return dict(data["arch"]), None
    if isinstance(data.get("model"), dict) and ("train" in data or "data" in data):
        return dict(data["model"]), data.get("train") if isinstance(data.get("train"), dict) else None
    if "hidden_size" in data or "H_cycles" in data or "L_layers" in data:
        return dict(data), None
    raise InputError(f"{path}: no `arch` section (nor a bare arch dict or an arc-trm `model` section)")


def infer_from_state_dict(state_dict: dict[str, Tensor]) -> tuple[dict[str, Any], int | None]:
    """Reference-named arch settings the tensor shapes reveal, and the full sequence length
    (puzzle prefix + grid) when learned positions or mlp_t fix it (else None)."""
    sd = {strip_wrappers(k): v for k, v in state_dict.items()}
    found: dict[str, Any] = {}
    total_len = None
    if "inner.embed_tokens.embedding_weight" in sd:
        vocab, hidden = sd["inner.embed_tokens.embedding_weight"].shape
        found["vocab_size"], found["hidden_size"] = int(vocab), int(hidden)
    if "inner.puzzle_emb.weights" in sd:
        found["num_puzzle_identifiers"] = int(sd["inner.puzzle_emb.weights"].shape[0])
    layers = {int(m.group(1)) for k in sd if (m := REF_BLOCK.match(k))}
    if layers:
        found["L_layers"] = max(layers) + 1
    mlp_t = any(".mlp_t." in k for k in sd)
    if layers:
        found["mlp_t"] = mlp_t
    if "inner.embed_pos.embedding_weight" in sd:
        found["pos_encodings"] = "learned"
        total_len = int(sd["inner.embed_pos.embedding_weight"].shape[0])
    elif mlp_t:
        found["pos_encodings"] = "none"  # what the reference's mlp_t configs use (no attention)
    if mlp_t:
        w = sd.get("inner.L_level.layers.0.mlp_t.down_proj.weight")
        if w is not None:
            total_len = int(w.shape[0])
    return found, total_len


def resolve_model_config(state_dict: dict[str, Tensor], arch: dict[str, Any] | None, overrides: list[str],
                         canvas: int) -> tuple[Any, list[str]]:
    """ModelConfig for the checkpoint: paper preset < weight shapes < --config < --set.

    Returns (config, names of settings that came from the paper preset unchecked)."""
    base = preset("paper").model.to_dict()
    base["num_puzzle_identifiers"] = base.pop("num_puzzle_ids")
    inferred, total_len = infer_from_state_dict(state_dict)
    given = dict(arch or {})
    if "num_puzzle_ids" in given:  # an arc-trm model section
        given["num_puzzle_identifiers"] = given.pop("num_puzzle_ids")
    merged = {**base, **inferred, **given}
    cfg = ModelConfig.from_reference(merged)
    try:
        cfg = apply_overrides(RunConfig(model=cfg), overrides, derived=True).model  # other sections: applied later
    except ValueError as e:
        raise ValueError(f"--set: {e}") from None
    set_keys = {override_field(item)[1] for item in overrides}  # checked by apply_overrides above
    if "seq_len" not in given and "seq_len" not in set_keys:
        cfg.seq_len = total_len - cfg.puzzle_emb_len if total_len is not None else canvas * canvas
        if cfg.seq_len < 1:
            raise ValueError(f"the weights fix the sequence length at {total_len} positions, no room for "
                             f"puzzle_emb_len {cfg.puzzle_emb_len}; set model.puzzle_emb_len")
    cfg.__post_init__()
    defaulted = [k for k in _UNSEEN_IN_WEIGHTS if k not in given and k not in set_keys]
    return cfg, defaulted


def _summary(cfg: Any) -> str:
    mix = "mlp_t" if cfg.mlp_t else f"attention ({cfg.num_heads} heads)"
    return (f"hidden {cfg.hidden_size}, {cfg.L_layers} blocks, {mix}, expansion {cfg.expansion:g}, "
            f"T={cfg.H_cycles} n={cfg.L_cycles}, halt_max_steps {cfg.halt_max_steps}, "
            f"puzzle_emb_len {cfg.puzzle_emb_len} + seq_len {cfg.seq_len}, pos {cfg.pos_encodings}, "
            f"vocab {cfg.vocab_size}, {cfg.num_puzzle_ids} puzzle ids, forward {cfg.forward_dtype}")


def _load_reference_file(path: Path) -> dict[str, Tensor]:
    """A reference state dict, loaded weights-only; one line for anything else (corrupt or
    truncated files, pickles that would run code, modules, lists, arc-trm checkpoints).

    Memory-mapped where the file allows: the 1.8-2.5 GB puzzle table is then read from the file
    as it is written out, not held twice."""
    if not path.is_file():
        raise InputError(f"{path}: checkpoint file missing")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except ckpt.LOAD_ERRORS:  # an old-format or unreadable file: the ordinary load, or its one-line error
        obj = ckpt.torch_load(path, "cpu")
    if isinstance(obj, dict) and "model" in obj and "config" in obj:
        raise InputError(f"{path}: this is an arc-trm checkpoint, not a reference state dict; use it "
                         "directly with --checkpoint / --resume")
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, Tensor)
                                                       for k, v in obj.items()):
        raise InputError(f"{path}: expected a state dict (names -> tensors), as saved by "
                         "torch.save(model.state_dict())")
    return obj


@dataclass(frozen=True)
class ImportRequest:
    """What `arc-trm import-checkpoint` is asked to do."""

    reference: str  # a step_N file, a folder of them, or hf://OWNER/REPO/FOLDER
    out: Path  # run folder to write
    config: Path | None = None  # all_config.yaml / JSON (None: beside the weights, else their shapes)
    overrides: tuple[str, ...] = ()  # --set KEY=VALUE
    canvas: int = 30  # canvas side the model was trained on
    force: bool = False  # move a run already in `out` aside to OUT.old-<time>
    step: int | None = None  # which step_N of a folder (None: the latest)
    names: NamesWanted = NamesWanted()  # --identifiers, or the recipe to rebuild them for


def import_model_config(request: ImportRequest, state_dict: dict[str, Tensor], arch: dict[str, Any] | None,
                        names: ImportedNames, config_path: Path | None, log: Callable[[str], object]) -> ModelConfig:
    """The model config, checked against the canvas and the identifiers' row count."""
    canvas, rows = request.canvas, len(names.identifiers)
    try:
        model_cfg, defaulted = resolve_model_config(state_dict, arch, list(request.overrides), canvas)
    except ValueError as e:
        where = f" ({config_path})" if config_path is not None and not str(e).startswith("--set") else ""
        raise InputError(f"model config{where}: {e}".replace("\n", " ")) from None
    if model_cfg.seq_len != canvas * canvas:
        raise InputError(f"the model's grid length seq_len {model_cfg.seq_len} (= positions "
                         f"{model_cfg.total_len} - puzzle_emb_len {model_cfg.puzzle_emb_len}) is not "
                         f"--canvas {canvas} squared ({canvas * canvas}); pass the canvas the model was "
                         "trained on, or fix puzzle_emb_len")
    if rows != model_cfg.num_puzzle_ids:
        raise InputError(f"{names.source}: {rows} puzzle names (blank included) but the checkpoint's "
                         f"puzzle table has {model_cfg.num_puzzle_ids} rows")
    log(f"model: {_summary(model_cfg)}")
    if config_path is None and defaulted:
        log(f"note: no --config; {', '.join(defaulted)} are the paper's (weights do not show them)")
    return model_cfg


def import_run_config(request: ImportRequest, model_cfg: ModelConfig, train_section: dict[str, Any] | None,
                      versions: int, config_path: Path | None) -> RunConfig:
    """The run config: the imported model, the reference's train section if given, then --set."""
    try:
        train_cfg = RunConfig.from_dict({"model": model_cfg.to_dict(), "train": train_section or {},
                                         "data": {}}).train if train_section else TrainConfig()
    except (ValueError, TypeError) as e:
        raise InputError(f"{config_path}: train section: {e}") from None
    run_cfg = RunConfig(model=model_cfg, train=train_cfg)
    run_cfg.data.tasks = ""  # the reference's task sources are not recorded in its checkpoint
    run_cfg.data.augmentations = versions
    run_cfg.data.canvas = request.canvas
    try:
        apply_overrides(run_cfg, list(request.overrides), derived=True)  # train/data keys; model keys are already in place
    except ValueError as e:
        raise InputError(str(e)) from None
    if run_cfg.data.canvas ** 2 != model_cfg.seq_len:
        raise InputError(f"data.canvas {run_cfg.data.canvas} does not fit the model's seq_len {model_cfg.seq_len}")
    return run_cfg


def imported_state(model: TRM, run_cfg: RunConfig, identifiers: list[str], step: int) -> dict:
    """The state.pt dict of an imported run: the weights as raw and EMA weights, fresh moments.
    The model's own tensors go in uncopied (the puzzle table is most of a published checkpoint)."""
    tc = run_cfg.train
    opt = AdamATan2(model.parameters(), lr=0.0, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay)
    return {
        "model": {k: v.detach() for k, v in model.state_dict().items()},
        "ema": {n: p.detach().clone() for n, p in model.named_parameters()},  # the reference saves its EMA
        "optim": opt.state_dict(),  # empty state: moments start afresh if training continues
        "sampler": None,
        "explore_rng": torch.Generator().manual_seed(tc.seed + 1).get_state(),
        "step": step,
        "config": json.dumps(run_cfg.to_dict(), indent=2),
        "identifiers": identifiers,
    }


def write_imported_run(request: ImportRequest, located: Located, config: Path | None, state: dict,
                       names: ImportedNames) -> Path:
    """OUT/config.json, OUT/import.json and the checkpoint folder, atomically; returns the folder.
    They are one run: a signal waits for the last (no config.json without its checkpoint), and the
    command then says the import finished and exits with the signal's code. With --force, a run
    already in OUT moves aside first (now that the import is known to succeed)."""
    out, step, config_json = request.out, state["step"], state["config"]
    stop = current()
    with stop.polled(f"finishing the writes of the imported run in {out}"):
        stop.describe = lambda signame: finished_line(signame, "import", f"{out} holds the run")
        if request.force:
            claim_run_folder(out, force=True)
        out.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.begin_checkpoint(out, step)
        ckpt.torch_save_atomic(state, tmp / "state.pt")
        write_text_atomic(tmp / "config.json", config_json)
        id_map = IdentifierMap(names.identifiers, names.augmentations, names.task_hashes)
        write_text_atomic(tmp / "identifiers.json", json.dumps(id_map.to_json()))
        write_text_atomic(out / "config.json", config_json)
        weights = str(located.weights.resolve())
        write_text_atomic(out / IMPORT_RECORD, json.dumps({
            "source": request.reference, "reference_checkpoint": weights,
            "identifiers": names.source, "config": str(config.resolve()) if config is not None else None,
            "overrides": list(request.overrides), "step": step, **licence_fields(request.reference, weights)},
            indent=2))
        return ckpt.commit_checkpoint(out, step, keep=0)


def build_model(model_cfg: ModelConfig, state_dict: dict[str, Tensor], where: str) -> TRM:
    """The model holding the checkpoint's own tensors: built with a one-row table, whose real
    shape is then declared on the meta device and filled by assignment, never allocated twice."""
    model = TRM.to_assign(model_cfg)
    try:
        load_reference_state_dict(model, state_dict, assign=True)
    except ValueError as e:
        raise InputError(f"{where}: {e}") from None
    return model


def check_import_out(out: Path, force: bool) -> None:
    """One line unless --out can take the imported run: new or empty, or a run folder with --force
    (which moves it aside; any of a run's files makes one, as for train, a run killed before its
    first checkpoint included); never a checkpoint or an export (whose weights `--checkpoint OUT`
    would load instead), a folder of other files, a place under a file, or the folder you are in
    with --force. Checked before the weights are located: an hf:// folder downloads gigabytes."""
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"--out {out}: {existing} exists and is not a folder")
    if (out / ckpt.STATE).exists() or (out / ckpt.EXPORT_WEIGHTS).exists():
        raise InputError(f"--out {out}: holds a checkpoint or an inference export, not a run folder; use a new folder")
    held = run_files(out) if out.is_dir() else []
    others = [p.name for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
    if others and not held:  # nothing of a run's: its files would be mixed in, or moved aside with --force
        raise InputError(f"--out {out}: holds other files ({', '.join(sorted(others)[:3])}), not a run folder; "
                         f"use a new or empty folder")
    if not force:
        refuse_held_run(out, resumable=False)
    elif held:
        check_not_around_cwd(out, "--force moves its folder aside whole", "run from another folder")


def import_reference_checkpoint(request: ImportRequest, log: Callable[[str], object] = print) -> Path:
    """Write an arc-trm run folder for a reference checkpoint; returns the checkpoint folder."""
    if request.canvas < 1:
        raise InputError(f"--canvas must be positive, got {request.canvas}")
    check_import_out(request.out, request.force)
    local = not request.reference.startswith(HUB_PREFIX)  # a missing path is named before what else is missing
    located = locate(request.reference, request.step) if local else None
    given = check_names_wanted(request.names)  # --identifiers read now: before any download
    located = located or locate(request.reference, request.step)
    config_path = request.config or located.config
    raw_config = read_config_file(config_path) if config_path is not None else None
    names = given if given is not None else rebuild_names(request.names, raw_config, config_path, log)
    state_dict = _load_reference_file(located.weights)
    arch, train_section = (reference_sections(raw_config, config_path) if raw_config is not None and
                           config_path is not None else (None, None))
    model_cfg = import_model_config(request, state_dict, arch, names, config_path, log)
    model = build_model(model_cfg, state_dict, str(located.weights))
    run_cfg = import_run_config(request, model_cfg, train_section, names.versions, config_path)
    state = imported_state(model, run_cfg, names.identifiers, located.step or 0)
    final = write_imported_run(request, located, config_path, state, names)
    tasks = len({task_of(i) for i in names.identifiers[1:]})
    if names.task_hashes is None:  # predict and ttt then use a task's rows whatever its content
        log(f"note: {names.source} names no task set, so the tasks' content is not recorded: predict and ttt "
            "cannot check that a task is the one its puzzle rows were trained on")
    log(f"imported {sum(p.numel() for p in model.parameters()):,} parameters and {len(names.identifiers) - 1:,} "
        f"puzzle embeddings ({tasks:,} tasks, up to {names.versions} versions each) -> {final}")
    return final


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="REF_CHECKPOINT",
                   help="a reference state dict file (step_N), a folder of them as published (the latest step "
                        "unless --step), or hf://OWNER/REPO/FOLDER[/step_N], e.g. "
                        "hf://arcprize/trm_arc_prize_verification/arc_v1_public")
    p.add_argument("--out", required=True, help="run folder to write (usable by predict and ttt): a new or empty "
                                                "folder, or a run folder (--force when it holds a run)")
    p.add_argument("--step", type=int, help="the step_N of a folder to import (default: the latest)")
    p.add_argument("--identifiers",
                   help="the reference data set's identifiers.json (puzzle id -> name, id 0 '<blank>'); default: "
                        "rebuilt for the recipe, as `arc-trm reference-ids` does")
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="the recipe the weights were trained on (default: from the config's data path)")
    p.add_argument("--augmentations", type=int,
                   help="its augmentation count (default: from the config's data path, else 1000)")
    p.add_argument("--seed", type=int, default=42, help="the reference builder's seed (default 42)")
    p.add_argument("--conceptarc", help="ConceptARC challenges JSON with its _solutions.json beside it "
                                        "(needed to rebuild the identifiers; default: none)")
    p.add_argument("--config", help="reference all_config.yaml / JSON with an `arch` section, or a bare arch "
                                     "dict (default: all_config.yaml beside the weights, else read the weights' "
                                     "shapes, paper preset for the rest)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set model.H_cycles=3 (repeatable)")
    p.add_argument("--canvas", type=int, default=30, help="canvas side the model was trained on (default 30)")
    p.add_argument("--force", action="store_true",
                   help="--out holds a run: move it aside to OUT.old-<time> (never deleted) and import anew")


def run(args: argparse.Namespace) -> int:
    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    names = NamesWanted(path(args.identifiers), args.recipe, args.augmentations, args.seed, path(args.conceptarc))
    import_reference_checkpoint(ImportRequest(
        reference=args.checkpoint, out=Path(args.out), config=path(args.config), overrides=tuple(args.set),
        canvas=args.canvas, force=args.force, step=args.step, names=names))
    return 0
