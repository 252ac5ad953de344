"""Name maps between the reference TinyRecursiveModels state dicts and ours.

Reference names look like `_orig_mod.model.inner.L_level.layers.0.self_attn.qkv_proj.weight`
(`_orig_mod.` from torch.compile, `model.` from the loss-head wrapper); ours are the module paths
of `arc_trm.model.TRM`. The pseudo-name `puzzle_rows` stands for the batch's gathered puzzle rows
(the reference's `inner.puzzle_emb.local_weights`), used when comparing gradients.
`arc-trm import-checkpoint` (arc_trm.import_reference) uses these maps to turn a reference
checkpoint into a run folder.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

_WRAPPER_PREFIXES = ("_orig_mod.", "model.")

# reference name (without wrapper prefixes) -> ours
_TOP_LEVEL = {
    "inner.H_init": "y_init",
    "inner.L_init": "z_init",
    "inner.embed_tokens.embedding_weight": "embed_tokens.weight",
    "inner.embed_pos.embedding_weight": "embed_pos.weight",
    "inner.puzzle_emb.weights": "puzzle_table",
    "inner.puzzle_emb.local_weights": "puzzle_rows",
    "inner.lm_head.weight": "lm_head.weight",
    "inner.q_head.weight": "q_head.weight",
    "inner.q_head.bias": "q_head.bias",
}
# suffix inside a reference block -> ours
_IN_BLOCK = {
    "self_attn.qkv_proj.weight": "attn.qkv.weight",
    "self_attn.o_proj.weight": "attn.out.weight",
    "mlp.gate_up_proj.weight": "mlp.gate_up.weight",
    "mlp.down_proj.weight": "mlp.down.weight",
    "mlp_t.gate_up_proj.weight": "mlp_t.gate_up.weight",
    "mlp_t.down_proj.weight": "mlp_t.down.weight",
}
REF_BLOCK = re.compile(r"^inner\.L_level\.layers\.(\d+)\.(.+)$")
_OUR_BLOCK = re.compile(r"^net\.blocks\.(\d+)\.(.+)$")


def strip_wrappers(name: str) -> str:
    """Remove any leading `_orig_mod.` / `model.` wrappers, in any order."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


def reference_to_ours(name: str) -> str | None:
    """Our name for a reference key, or None if it is not a known reference key."""
    name = strip_wrappers(name)
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name]
    m = REF_BLOCK.match(name)
    if m and m.group(2) in _IN_BLOCK:
        return f"net.blocks.{m.group(1)}.{_IN_BLOCK[m.group(2)]}"
    return None


def ours_to_reference(name: str) -> str | None:
    """Reference name (without wrapper prefixes) for one of our keys, or None if unknown."""
    for ref, ours in _TOP_LEVEL.items():
        if ours == name:
            return ref
    m = _OUR_BLOCK.match(name)
    if m:
        for ref, ours in _IN_BLOCK.items():
            if ours == m.group(2):
                return f"inner.L_level.layers.{m.group(1)}.{ref}"
    return None


def convert_reference_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a reference state dict to our names (float32 master copies). Raises on unknown keys."""
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        ours = reference_to_ours(key)
        if ours is None:
            unknown.append(key)
            continue
        if ours in out:
            raise ValueError(f"reference state dict maps two keys onto {ours!r} (second: {key!r})")
        out[ours] = value.detach().to(torch.float32)
    if unknown:
        raise ValueError(f"unknown reference keys: {sorted(unknown)}")
    return out


def to_reference_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict (or a dict of gradients by our names) -> reference names."""
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        ref = ours_to_reference(key)
        if ref is None:
            unknown.append(key)
        else:
            out[ref] = value
    if unknown:
        raise ValueError(f"keys with no reference name: {sorted(unknown)}")
    return out


def load_reference_state_dict(model: nn.Module, state_dict: dict[str, Tensor], assign: bool = False) -> None:
    """Load a reference checkpoint into `model`, checking keys and shapes strictly. With `assign`
    the model takes the checkpoint's tensors themselves (no copy; its own may be on "meta")."""
    converted = convert_reference_state_dict(state_dict)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(converted[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(converted) & set(expected)
        if converted[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches: {mismatched}")
    if problems:
        raise ValueError("cannot load reference state dict; " + "; ".join(problems))
    model.load_state_dict(converted, strict=True, assign=assign)
