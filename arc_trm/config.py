"""Configuration dataclasses.

`ModelConfig` defaults are the paper's ARC configuration (TRM-Att, 7M parameters). Its keys keep
the reference code's names, so that reference configs and checkpoints map across; the model code
uses the paper's symbols. One vocabulary, two spellings:

    config key        paper / model.py            meaning
    H_cycles          T                           cycles per supervision step
    L_cycles          n                           latent updates per cycle
    L_layers          (blocks of `net`)           the one network's depth
    halt_max_steps    N_sup                       supervision steps per example
    z_H (reference)   y                           the answer state
    z_L (reference)   z                           the latent state
    puzzle_emb_*      puzzle vector / table       one learned vector per augmented task
    no_ACT_continue   halt on q_halt > 0 alone    (False: also learn Q-continue)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from arc_trm.config_rules import check_section
from augment.errors import InputError

POS_ENCODINGS = ("rope", "learned", "none")
FORWARD_DTYPES = ("float32", "bfloat16")
COMPILE_SETTINGS = ("auto", "on", "off")
TOKEN_LOSSES = ("stablemax", "softmax")  # arc_trm.loss
# What train and ttt print per log step when no progress bar is drawn (metrics.log_line), for --help;
# here, not in arc_trm.common, so that `arc-trm ttt` parses and writes its fallback before torch loads.
TRAIN_LOG_LINES = "a plain log line (with the ETA) every train.log_every steps"


def mlp_width(dim: int, expansion: float) -> int:
    """Hidden units of the SwiGLU over `dim` features: 2/3 of expansion * dim (the gate and up
    projections share that budget), rounded up to a multiple of 256 as in the reference."""
    return -(-round(expansion * dim * 2 / 3) // 256) * 256


def _reference_number(kind: type, value: Any, key: str) -> Any:
    """`kind(value)` of a reference config's `key`; ValueError naming the key otherwise (int() and
    float() of None or a list raise TypeError, and of a word a message without the key)."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {value!r}") from None


@dataclass
class ModelConfig:
    hidden_size: int = 512
    num_heads: int = 8
    L_layers: int = 2  # blocks in the single network `net`
    expansion: float = 4.0  # SwiGLU width factor
    H_cycles: int = 3  # T: cycles per supervision step
    L_cycles: int = 4  # n: latent updates per cycle
    halt_max_steps: int = 16  # N_sup
    halt_exploration_prob: float = 0.1
    puzzle_emb_len: int = 16  # prefix positions; the puzzle vector sits in position 0
    num_puzzle_ids: int = 1  # rows of the puzzle-embedding table (id 0 = blank)
    vocab_size: int = 12
    seq_len: int = 900  # grid tokens, prefix excluded
    pos_encodings: str = "rope"
    mlp_t: bool = False  # replace attention by a SwiGLU over the sequence axis
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    forward_dtype: str = "bfloat16"  # the reference runs its forward in bf16
    no_ACT_continue: bool = True  # halt on q_halt > 0 alone (no Q-continue target)

    def __post_init__(self) -> None:
        check_section(self, "model")  # types and ranges first: the checks below divide and compare
        if self.hidden_size % self.num_heads != 0 and not self.mlp_t:  # mlp_t has no attention heads
            raise ValueError(f"hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if self.pos_encodings not in POS_ENCODINGS:
            raise ValueError(f"pos_encodings must be one of {POS_ENCODINGS}, got {self.pos_encodings!r}")
        self.check_shapes()
        if self.forward_dtype not in FORWARD_DTYPES:
            raise ValueError(f"forward_dtype must be one of {FORWARD_DTYPES}, got {self.forward_dtype!r}")
        if self.puzzle_emb_len < 1:
            raise ValueError("puzzle_emb_len must be >= 1 (the puzzle embedding occupies position 0)")
        if self.H_cycles < 1 or self.L_cycles < 1 or self.L_layers < 1 or self.halt_max_steps < 1:
            raise ValueError("H_cycles, L_cycles, L_layers and halt_max_steps must all be >= 1")
        if self.num_puzzle_ids < 1:
            raise ValueError("num_puzzle_ids must be >= 1")

    def check_shapes(self) -> None:
        """ValueError naming the keys of a shape the first forward pass would fail on."""
        head_dim = self.hidden_size // self.num_heads
        if self.pos_encodings == "rope" and not self.mlp_t and head_dim % 2:
            raise ValueError(f"model.hidden_size {self.hidden_size} / model.num_heads {self.num_heads} is a head "
                             f"dim of {head_dim}; rope rotates pairs of dims, so the head dim must be even")
        mixed = [("model.hidden_size", self.hidden_size)] + (
            [("model.puzzle_emb_len + model.seq_len", self.total_len)] if self.mlp_t else [])
        for name, dim in mixed:
            if mlp_width(dim, self.expansion) < 1:
                raise ValueError(f"model.expansion {self.expansion} leaves the SwiGLU over {name} {dim} no hidden "
                                 f"units (round(expansion * {dim} * 2/3) is 0); raise model.expansion")

    @property
    def total_len(self) -> int:
        """Sequence length seen by the network: puzzle prefix + grid tokens."""
        return self.puzzle_emb_len + self.seq_len

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {unknown}")
        return cls(**d)

    @classmethod
    def from_reference(cls, ref: dict[str, Any]) -> ModelConfig:
        """Map a reference (TinyRecursiveModels) architecture config dict onto ours."""
        ignored = {"name", "loss", "batch_size", "H_layers", "causal"}
        renamed = {"num_puzzle_identifiers": "num_puzzle_ids"}
        own = {f.name for f in dataclasses.fields(cls)}
        out: dict[str, Any] = {}
        unknown = []
        for key, value in ref.items():
            if key in ignored or key == "puzzle_emb_ndim":
                continue
            name = renamed.get(key, key)
            if name not in own:
                unknown.append(key)
                continue
            out[name] = value
        if unknown:
            raise ValueError(f"unknown reference config keys: {sorted(unknown)}")

        hidden = _reference_number(int, out.get("hidden_size", cls.hidden_size), "hidden_size")
        ndim = _reference_number(int, ref.get("puzzle_emb_ndim", hidden), "puzzle_emb_ndim")
        if ndim != hidden:
            raise ValueError(f"only puzzle_emb_ndim == hidden_size is supported, got {ndim} vs {hidden}")
        if _reference_number(int, out.get("puzzle_emb_len", cls.puzzle_emb_len), "puzzle_emb_len") == 0:
            # The reference's 0 means "as many positions as the puzzle vector needs".
            out["puzzle_emb_len"] = math.ceil(ndim / max(hidden, 1))  # hidden_size 0: check_section's line
        out.setdefault("forward_dtype", "bfloat16")
        out["expansion"] = _reference_number(float, out.get("expansion", cls.expansion), "expansion")
        return cls(**out)


@dataclass
class DataConfig:
    tasks: str = "arc-agi-2"  # task sources (see `arc-trm build --help`)
    augmentations: int = 1000  # augmented versions per task (REFERENCE §2), identity included
    canvas: int = 30  # canvas side; the model's seq_len is canvas**2
    build_seed: int = 0
    build_dir: str = ""  # "" = data/built/<sources>-a<augmentations>-c<canvas>-<hash>; train records it absolute
    bucketing: bool = False  # length buckets: small grids train and answer on small canvases (augment/buckets.py)


@dataclass
class TrainConfig:
    global_batch_size: int = 768  # summed over all ranks
    epochs: int = 100_000  # passes over the task groups (sets max_steps when that is 0)
    max_steps: int = 0
    lr: float = 1e-4
    lr_warmup_steps: int = 2000  # linear from 0, then constant (or cosine: lr_min_ratio)
    lr_min_ratio: float = 1.0  # the reference's cosine after warmup, down to lr * this (1.0 = constant)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    puzzle_emb_lr: float = 1e-2  # sign-SGD on the puzzle table
    puzzle_emb_weight_decay: float = 0.1
    freeze_model_steps: int = 0  # train only the puzzle table for the first steps (test-time training)
    ema_rate: float = 0.999  # 0 disables the EMA
    ema_warmup: bool = True  # False: the reference's constant EMA rate from the first step
    token_loss: str = "stablemax"  # stablemax (the reference) | softmax: the grid tokens' cross-entropy
    drop_last: bool = False  # True: the reference's epoch boundary (an epoch's last incomplete batch is dropped)
    grad_accum_steps: int = 1  # split each rank's batch into this many micro-batches (same gradient, less memory)
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0  # evaluate on the test split every N steps and at the end (0 = never)
    eval_views: int = 8  # augmented views per test input in periodic evaluation
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    save_carry: bool = True  # False: a resumed run starts every row afresh (documented reset)
    compile: str = "auto"  # torch.compile the step: auto (on CUDA only) | on | off
    compile_backend: str = "inductor"  # torch.compile backend; "eager" traces without generating code
    device: str = "auto"  # auto | cpu | cuda | mps
    wandb_project: str = ""  # also log the metrics records to this Weights & Biases project (extra: wandb)

    def __post_init__(self) -> None:
        # `compile` was a bool before "auto" existed; true/false still mean on/off.
        self.compile = {"true": "on", "false": "off", True: "on", False: "off"}.get(self.compile, self.compile)
        if self.token_loss not in TOKEN_LOSSES:
            raise ValueError(f"token_loss must be one of {TOKEN_LOSSES}, got {self.token_loss!r}")
        if self.compile not in COMPILE_SETTINGS:
            raise ValueError(f"compile must be one of {COMPILE_SETTINGS} (or true/false), got {self.compile!r}")


@dataclass
class RunConfig:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)

    def fit_canvas(self) -> None:
        """The model's grid length follows the canvas (train sets it before building the model)."""
        self.model.seq_len = self.data.canvas ** 2

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "train": dataclasses.asdict(self.train),
                "data": dataclasses.asdict(self.data)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        stray = sorted(set(d) - {"model", "train", "data"})
        if stray:  # e.g. "lr" beside the sections: read nowhere, so the run would ignore it
            raise ValueError(f"unknown top-level keys: {stray}; every setting lives in model, train or data")

        def section(kind: type, values: dict[str, Any]) -> Any:
            known = {f.name for f in dataclasses.fields(kind)}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ValueError(f"unknown {kind.__name__} keys: {unknown}")
            return kind(**values)
        return validate(cls(ModelConfig.from_dict(d["model"]), section(TrainConfig, d["train"]),
                            section(DataConfig, d["data"])))


def _preset_paper() -> RunConfig:
    return RunConfig()


def _preset_kaggle() -> RunConfig:
    # Test-time training on 4 x L4 inside a 12 h notebook: the paper model (so pretrained
    # checkpoints load), fewer augmentations and a shorter warmup.
    cfg = RunConfig()
    cfg.data.augmentations = 256
    cfg.train.global_batch_size = 256  # 64 per L4: ~0.23 GB of activations a sample fits 24 GB
    cfg.train.lr_warmup_steps = 200
    cfg.train.checkpoint_every = 500
    return cfg


def _preset_cpu_quick() -> RunConfig:
    # Small enough to learn a simple rule on 2 CPU cores in about a minute.
    cfg = RunConfig()
    cfg.model = ModelConfig(hidden_size=64, num_heads=4, L_layers=2, H_cycles=2, L_cycles=2,
                            halt_max_steps=4, puzzle_emb_len=4, forward_dtype="float32")
    # On the CPU accuracy benchmark (benchmarks/RESULTS.md) 16 augmentations with a 10x faster
    # puzzle table and softmax cross-entropy beat the reference's 64 / 1e-2 / stablemax.
    cfg.data.augmentations = 16
    cfg.data.canvas = 10
    cfg.train.global_batch_size = 64
    cfg.train.max_steps = 600
    cfg.train.lr = 1e-3  # 3e-3 learns a single synthetic rule faster but stalls on real ARC tasks
    cfg.train.lr_warmup_steps = 50
    cfg.train.puzzle_emb_lr = 0.1
    cfg.train.token_loss = "softmax"
    cfg.train.ema_rate = 0.99
    cfg.train.log_every = 10
    cfg.train.checkpoint_every = 200
    cfg.train.eval_views = 8
    return cfg


PRESETS = {"paper": _preset_paper, "kaggle": _preset_kaggle, "cpu-quick": _preset_cpu_quick}


def config_from_json(data: object, path: object, what: str = "run config") -> RunConfig:
    """The RunConfig in parsed JSON (a run's or a checkpoint's config.json); one line naming the
    file for anything else, e.g. a config written by another version of arc-trm."""
    try:
        if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("model", "train", "data")):
            raise ValueError("expected a JSON object with model, train and data sections")
        return RunConfig.from_dict(data)
    except (ValueError, TypeError, KeyError) as e:
        raise InputError(f"{path}: {what} is not one this arc-trm reads ({e})") from None


def preset(name: str) -> RunConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def validate(cfg: RunConfig) -> RunConfig:
    """ValueError (one line naming the field) unless every field holds a usable value."""
    for section in ("model", "train", "data"):
        check_section(getattr(cfg, section), section)
    cfg.model.__post_init__()
    cfg.train.__post_init__()
    return cfg
