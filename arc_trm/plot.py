"""Draw a run's training curves (loss, exact accuracy, halting steps, throughput, evaluation) to PNG.

  arc-trm plot runs/agi2            writes runs/agi2/curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display: before pyplot loads
import matplotlib.pyplot as plt  # noqa: E402

from augment.errors import InputError

PANELS = (("loss", "loss"), ("exact_accuracy", "exact accuracy (halted rows)"),
          ("halt_steps", "mean halting steps"), ("samples_per_s", "samples / s"))


def read_metrics(run: Path) -> tuple[list[dict], list[dict]]:
    """(training lines, evaluation lines) of RUN/metrics.jsonl."""
    path = run / "metrics.jsonl"
    if not path.exists():
        raise InputError(f"{path}: no metrics (is {run} a training run folder?)")
    train, evals = [], []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{path}: line {n} is not JSON") from None
        (evals if any(k.startswith("eval_") for k in row) else train).append(row)
    return train, evals


def plot_run(run: Path, out: Path | None = None) -> Path:
    train, evals = read_metrics(run)
    if not train:
        raise InputError(f"{run / 'metrics.jsonl'}: no training lines yet")
    eval_keys = sorted({k for row in evals for k in row if k.startswith("eval_pass")})
    panels = list(PANELS) + ([("eval", "evaluation")] if eval_keys else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    steps = [r["step"] for r in train]
    for ax, (key, title) in zip(axes, panels):
        if key == "eval":
            for k in eval_keys:
                ax.plot([r["step"] for r in evals if k in r], [r[k] for r in evals if k in r], marker="o",
                        label=k.removeprefix("eval_"))
            ax.legend()
        else:
            ax.plot(steps, [r.get(key, float("nan")) for r in train])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(str(run))
    fig.tight_layout()
    out = out or run / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (holds metrics.jsonl)")
    p.add_argument("--out", help="PNG path (default RUN/curves.png)")


def run(args: argparse.Namespace) -> int:
    path = plot_run(Path(args.run), Path(args.out) if args.out else None)
    print(f"wrote {path}")
    return 0
