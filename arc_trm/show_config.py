"""Print the resolved config: every key, its value and what it means.

  arc-trm config                                  the default preset (paper on a GPU, else cpu-quick)
  arc-trm config --preset kaggle --set lr=3e-4    a preset with overrides, as `train` would run it
  arc-trm config --run runs/agi2                  a run's saved config

Keys are what `--set KEY=VALUE` takes (train, ttt): `section.field`, or the field alone where it
is unique.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from arc_trm.config import PRESETS, RunConfig, config_from_json, preset
from arc_trm.overrides import apply_overrides, default_preset
from augment.errors import InputError
from augment.files import read_json

# One line per field: what it sets. tests/test_signals.py checks every field has one.
MEANINGS: dict[str, str] = {
    "model.hidden_size": "width of the network's hidden states",
    "model.num_heads": "attention heads (hidden_size must divide by it)",
    "model.L_layers": "transformer blocks in the one network",
    "model.expansion": "SwiGLU width as a multiple of hidden_size",
    "model.H_cycles": "T: cycles per supervision step (the last one takes gradients)",
    "model.L_cycles": "n: latent updates per cycle",
    "model.halt_max_steps": "N_sup: most supervision steps an example gets",
    "model.halt_exploration_prob": "share of rows made to run a random minimum of steps while training",
    "model.puzzle_emb_len": "prefix positions; the puzzle vector sits in the first",
    "model.num_puzzle_ids": "rows of the puzzle table (set from the build: one per augmented task, plus blank)",
    "model.vocab_size": "tokens: pad, end of row and ten colours",
    "model.seq_len": "grid tokens (set from data.canvas squared)",
    "model.pos_encodings": "rope, learned or none",
    "model.mlp_t": "mix the sequence with an MLP instead of attention (fixed length)",
    "model.rope_theta": "base of the rotary position frequencies",
    "model.rms_norm_eps": "epsilon of the RMS norms",
    "model.forward_dtype": "float32 or bfloat16 for the forward pass",
    "model.no_ACT_continue": "halt on the halt logit alone (no Q-continue target)",
    "train.global_batch_size": "examples per step, summed over processes",
    "train.epochs": "passes over the task groups (used when max_steps is 0)",
    "train.max_steps": "steps of the run (0: from epochs)",
    "train.lr": "learning rate of the network's weights (AdamATan2)",
    "train.lr_warmup_steps": "steps of linear warmup from 0",
    "train.lr_min_ratio": "cosine after warmup down to lr times this (1: constant)",
    "train.weight_decay": "weight decay of the network's weights",
    "train.beta1": "Adam first-moment rate",
    "train.beta2": "Adam second-moment rate",
    "train.puzzle_emb_lr": "learning rate of the puzzle table (sign SGD)",
    "train.puzzle_emb_weight_decay": "weight decay of the puzzle table",
    "train.freeze_model_steps": "first steps that train only the puzzle table (test-time training)",
    "train.ema_rate": "exponential moving average of the weights used to predict (0: none)",
    "train.ema_warmup": "warm the EMA rate up over the first steps",
    "train.token_loss": "stablemax (the reference) or softmax cross-entropy over grid tokens",
    "train.drop_last": "drop an epoch's last incomplete batch (the reference's boundary)",
    "train.grad_accum_steps": "micro-batches per process and step (same gradient, less memory)",
    "train.seed": "seed of the weights' initialisation, the sampler and exploration",
    "train.log_every": "steps between metrics lines",
    "train.eval_every": "steps between evaluations on the test split (0: never)",
    "train.eval_views": "augmented views per test input in those evaluations",
    "train.checkpoint_every": "steps between checkpoints (a signal or the end also writes one)",
    "train.keep_checkpoints": "newest checkpoints kept (0: all)",
    "train.save_carry": "save the ACT carry, so that a resumed run continues exactly",
    "train.compile": "torch.compile the step: auto (CUDA only), on or off",
    "train.compile_backend": "torch.compile backend",
    "train.device": "auto, cpu, cuda, cuda:N or mps",
    "train.wandb_project": "also log metrics to this Weights & Biases project",
    "data.tasks": "task sources, comma-separated",
    "data.augmentations": "augmented versions per task, the identity included",
    "data.canvas": "canvas side: larger grids are skipped",
    "data.build_seed": "seed of the augmentations",
    "data.build_dir": "folder of the augmented set (empty: data/built/<sources>-a<augmentations>-c<canvas>-<hash>, "
                       "which train records absolute)",
    "data.bucketing": "length buckets: small grids train and answer on small canvases",
}


def config_lines(cfg: RunConfig) -> list[str]:
    """'key = value  meaning' for every field, aligned."""
    rows = [(f"{section}.{key}", repr(value) if isinstance(value, str) else str(value))
            for section, values in cfg.to_dict().items() for key, value in values.items()]
    width = max(len(k) + len(v) for k, v in rows) + 3
    return [f"{k} = {v}".ljust(width) + f"  {MEANINGS.get(k, '')}".rstrip() for k, v in rows]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), help="preset (default: paper on a GPU, cpu-quick otherwise)")
    p.add_argument("--run", help="a run folder (its saved config.json) or a config.json file, instead of a preset "
                                 "(default: none)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field (repeatable)")


def run(args: argparse.Namespace) -> int:
    if args.run and args.preset:
        raise InputError("--run shows a run's saved config and --preset a preset's: pass one")
    if args.run:
        path = Path(args.run) if Path(args.run).is_file() else Path(args.run) / "config.json"
        cfg = config_from_json(read_json(path, "run config"), path)
    else:
        cfg = preset(args.preset or default_preset("train", args.set or []))  # as `train` picks it
    try:
        cfg = apply_overrides(cfg, args.set or [])
    except ValueError as e:
        raise InputError(str(e)) from None
    cfg.fit_canvas()  # as train builds the model: after --set, which may change a run's canvas too
    print("\n".join(config_lines(cfg)))
    return 0
