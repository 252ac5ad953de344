"""`--set key=value` overrides of a RunConfig, and the preset a command runs without --preset.
Torch-free at import (ttt checks its options before torch loads)."""

from __future__ import annotations

import difflib
import math
from typing import Any, Sequence

from arc_trm.config import RunConfig, validate
from arc_trm.config_rules import field_types

# The preset a command runs without --preset: (on a GPU, otherwise).
DEFAULT_PRESETS = {"train": ("paper", "cpu-quick"), "ttt": ("kaggle", "cpu-quick")}


def default_preset(command: str, overrides: Sequence[str] = (), device: str | None = None) -> str:
    """`command`'s preset without --preset, for the device asked for: `device` (--device), then a
    --set train.device (the last wins); with none, or auto, a GPU when this machine has one."""
    for item in overrides:
        try:
            if override_field(item) == ("train", "device"):
                device = item.partition("=")[2].strip()
        except ValueError:
            continue  # refused, with its line, where the overrides are applied
    if device in (None, "auto"):
        import torch

        cuda = torch.cuda.is_available()
    else:
        cuda = device.startswith("cuda")
    on_gpu, otherwise = DEFAULT_PRESETS[command]
    return on_gpu if cuda else otherwise


def _parse_value(text: str, kind: Any) -> Any:
    if kind in (bool, "bool"):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if kind in (int, "int"):
        try:
            value = float(text) if "e" in text.lower() else int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
        if isinstance(value, float) and not (math.isfinite(value) and value == int(value)):
            raise ValueError(f"expected an integer, got {text!r}")
        return int(value)
    if kind in (float, "float"):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    return text


# Names people reach for from other trainers -> ours (difflib finds typos, not synonyms).
KEY_ALIASES = {"learning_rate": "lr", "batch_size": "global_batch_size", "batch": "global_batch_size",
               "steps": "max_steps", "num_steps": "max_steps", "warmup": "lr_warmup_steps",
               "warmup_steps": "lr_warmup_steps", "hidden": "hidden_size", "heads": "num_heads",
               "layers": "L_layers", "n_sup": "halt_max_steps", "ema": "ema_rate", "wd": "weight_decay"}


def suggest_key(key: str, sections: dict[str, Any]) -> str:
    """'; did you mean NAME?' for a mistyped config key (in the form it was typed), or ''."""
    full = {f"{name}.{field}": field for name, obj in sections.items() for field in field_types(obj)}
    bare = key.rpartition(".")[2]
    alias = KEY_ALIASES.get(bare.lower())
    if alias is not None:
        found = next(name for name, field in full.items() if field == alias)
        return f"; did you mean {found if '.' in key else alias}?"
    candidates = list(full) if "." in key else sorted(set(full.values()))
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close and "." in key:  # a typo in the section: match the field alone
        close = [name for name, field in full.items() if field in difflib.get_close_matches(bare, full.values(), 1)]
    return f"; did you mean {close[0]}?" if close else ""


# Model fields a run sets itself, over any --set (import-checkpoint alone reads them from the weights).
DERIVED = {"seq_len": "data.canvas (its square): set data.canvas",
           "num_puzzle_ids": "the build (a row per augmented puzzle): set data.augmentations"}


def apply_overrides(cfg: RunConfig, overrides: list[str], derived: bool = False) -> RunConfig:
    """Apply `key=value` overrides; key is `section.field` or a field name unique across sections.
    Only real dataclass fields are accepted (not properties or methods), each value is parsed as
    its field's type, and the result is validated. The DERIVED fields only with `derived`."""
    sections = {"model": cfg.model, "train": cfg.train, "data": cfg.data}
    for item in overrides:
        sec_name, field = override_field(item, sections)
        if sec_name == "model" and field in DERIVED and not derived:  # else silently replaced
            raise ValueError(f"override {item!r}: model.{field} follows {DERIVED[field]}")
        target = sections[sec_name]
        try:
            setattr(target, field, _parse_value(item.partition("=")[2].strip(), field_types(target)[field]))
        except ValueError as e:
            raise ValueError(f"override {item!r}: {e}") from None
    return validate(cfg)


def override_field(item: str, sections: dict[str, Any] | None = None) -> tuple[str, str]:
    """The (section, field) a `key=value` override sets; ValueError when it names none, or several."""
    if sections is None:
        cfg = RunConfig()
        sections = {"model": cfg.model, "train": cfg.train, "data": cfg.data}
    key, sep, _ = item.partition("=")
    key = key.strip()
    if not sep:
        raise ValueError(f"override {item!r} is not key=value")
    if "." in key:
        sec_name, _, field = key.partition(".")
        if sec_name not in sections:
            raise ValueError(f"unknown config section {sec_name!r} in {item!r}; use model, train or data"
                             f"{suggest_key(key, sections)}")
        owners = [sec_name] if field in field_types(sections[sec_name]) else []
    else:
        field = key
        owners = [n for n, s in sections.items() if field in field_types(s)]
    if len(owners) != 1:
        where = "no config field" if not owners else f"several sections ({', '.join(owners)}); prefix one"
        raise ValueError(f"config key {key!r} matches {where}{'' if owners else suggest_key(key, sections)}")
    return owners[0], field
