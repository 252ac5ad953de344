"""The Tiny Recursive Model for ARC: model, training, test-time training and voted inference.

    import arc_trm
    cfg = arc_trm.preset("cpu-quick")
    arc_trm.train(cfg, "runs/quick")

The names below load on first use: `arc-trm score` and `arc-trm build` import this package
without importing torch.
"""

from importlib import import_module

__version__ = "0.2.0"

_LAZY = {
    "TRM": "arc_trm.model", "Batch": "arc_trm.model", "ModelConfig": "arc_trm.config",
    "RunConfig": "arc_trm.config", "preset": "arc_trm.config", "apply_overrides": "arc_trm.overrides",
    "train": "arc_trm.train", "load_model": "arc_trm.infer", "predict": "arc_trm.infer",
    "Dist": "arc_trm.common",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'arc_trm' has no attribute {name!r}")
