"""Metrics flow through one sink. RUN/metrics.jsonl is the source of truth (`arc-trm plot` and a
resumed run read it); with `--set train.wandb_project=NAME` the same records also go to Weights &
Biases, an optional extra (`pip install wandb`) imported only when asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from arc_trm.config import RunConfig
from augment.errors import missing_extra

METRICS_FILE = "metrics.jsonl"


class MetricsSink:
    """Rank 0's metric records: one JSON line each in metrics.jsonl, and a W&B run when set.
    Other ranks get a sink that drops what it is given."""

    def __init__(self, file: TextIO | None = None, wandb_run: Any = None) -> None:
        self.file = file
        self.wandb_run = wandb_run

    @classmethod
    def open(cls, out: Path, cfg: RunConfig, main: bool) -> MetricsSink:
        if not main:
            return cls()
        wandb_run = start_wandb(out, cfg) if cfg.train.wandb_project else None
        return cls(open(out / METRICS_FILE, "a"), wandb_run)

    def log(self, record: dict[str, float]) -> None:
        """One record with its "step"; written and flushed at once."""
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.wandb_run is not None:
            values = {k: v for k, v in record.items() if k != "step"}
            self.wandb_run.log(values, step=int(record["step"]))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def start_wandb(out: Path, cfg: RunConfig) -> Any:
    """A W&B run named after the run folder, its files under OUT/wandb (WANDB_MODE=offline works)."""
    try:
        import wandb  # optional extra: imported only when train.wandb_project is set
    except ImportError:
        raise missing_extra("train.wandb_project", "wandb", "wandb") from None
    return wandb.init(project=cfg.train.wandb_project, name=out.name, dir=str(out), config=cfg.to_dict())
