"""Config validation: every field's type and range is checked before any work starts, and a
device name against this machine. Torch-free at import (ttt checks its options before torch loads)."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable

from augment.encoding import VOCAB_SIZE
from augment.grids import MAX_SIDE
from augment.transforms import NUM_MAPS
DEVICES = ("auto", "cpu", "cuda", "mps")


def _positive(v: Any) -> bool:
    return v >= 1


def _non_negative(v: Any) -> bool:
    return v >= 0 and math.isfinite(v)


def _probability(v: Any) -> bool:
    return 0.0 <= v <= 1.0


def _rate(v: Any) -> bool:  # a decay/momentum rate: 0 <= v < 1
    return 0.0 <= v < 1.0


def _finite_positive(v: Any) -> bool:
    return v > 0 and math.isfinite(v)


def _device(v: Any) -> bool:
    return v in DEVICES or bool(re.fullmatch(r"cuda:\d+", v))


# (section, field) -> (check, what it must be)
RULES: dict[tuple[str, str], tuple[Callable[[Any], bool], str]] = {
    **{("model", f): (_positive, "an integer >= 1") for f in (
        "hidden_size", "num_heads", "L_layers", "H_cycles", "L_cycles", "halt_max_steps", "puzzle_emb_len",
        "num_puzzle_ids", "seq_len")},
    ("model", "vocab_size"): (lambda v: v >= VOCAB_SIZE, f"an integer >= {VOCAB_SIZE} (PAD, EOS and 10 colours)"),
    ("model", "expansion"): (_finite_positive, "a number > 0"),
    ("model", "halt_exploration_prob"): (_probability, "a probability in [0, 1]"),
    ("model", "rope_theta"): (_finite_positive, "a number > 0"),
    ("model", "rms_norm_eps"): (_finite_positive, "a number > 0"),
    **{("train", f): (_positive, "an integer >= 1") for f in (
        "global_batch_size", "epochs", "log_every", "eval_views", "checkpoint_every", "grad_accum_steps")},
    ("train", "lr_min_ratio"): (_probability, "a ratio in [0, 1]"),
    **{("train", f): (_non_negative, "an integer >= 0") for f in (
        "max_steps", "lr_warmup_steps", "freeze_model_steps", "seed", "eval_every", "keep_checkpoints")},
    **{("train", f): (_non_negative, "a number >= 0") for f in (
        "lr", "weight_decay", "puzzle_emb_lr", "puzzle_emb_weight_decay")},
    **{("train", f): (_rate, "a number in [0, 1)") for f in ("beta1", "beta2", "ema_rate")},
    ("train", "device"): (_device, f"one of {', '.join(DEVICES)} or cuda:N"),
    ("data", "augmentations"): (lambda v: 1 <= v <= NUM_MAPS, f"an integer from 1 to {NUM_MAPS}"),
    ("data", "canvas"): (lambda v: 1 <= v <= MAX_SIDE, f"an integer from 1 to {MAX_SIDE}"),  # ARC's largest grid
    ("data", "build_seed"): (_non_negative, "an integer >= 0"),
}


_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_section(obj: Any, section: str) -> None:
    """ValueError naming the first field of `obj` (config section `section`) of the wrong type or
    outside its range."""
    for name, kind in field_types(obj).items():
        value = getattr(obj, name)
        wanted = _TYPES.get(str(kind), (object,))
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            raise ValueError(f"{section}.{name} must be of type {kind}, got {value!r}")
        rule = RULES.get((section, name))
        if rule is not None and not rule[0](value):
            raise ValueError(f"{section}.{name} must be {rule[1]}, got {value!r}")


def check_device_available(name: str) -> None:
    """ValueError naming the devices this machine has, unless `name` is one of them."""
    import torch  # config.py stays torch-free: ttt checks its options before torch loads

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    present = ["cpu"] + [f"cuda:{i}" for i in range(cuda)] + (["mps"] if mps else [])
    kind, _, index = name.partition(":")
    missing = ((kind == "cuda" and (not cuda or (index and int(index) >= cuda)))
               or (kind == "mps" and not mps) or not _device(name))
    if missing:
        raise ValueError(f"device {name!r} is not available here; this machine has: "
                         f"{', '.join(['auto'] + present)}")


def field_types(obj: Any) -> dict[str, Any]:
    """Dataclass field name -> declared type (a string under `from __future__ import annotations`)."""
    return {f.name: f.type for f in dataclasses.fields(obj)}
