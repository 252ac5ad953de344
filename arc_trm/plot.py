"""Draw a run's training curves (loss, exact accuracy, halting steps, throughput, learning rate,
evaluation) to PNG. A ttt run's phases (from RUN/ttt_plan.json) are marked with labelled lines.

  arc-trm plot runs/agi2            writes runs/agi2/curves.png
"""

from __future__ import annotations

import argparse
import json
import math
import reprlib
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display: before pyplot loads
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from augment.console import eprint
from augment.errors import InputError
from augment.files import atomic_writer, read_json
from augment.json_kind import is_digits, is_number

PANELS = (("loss", "loss"), ("exact_accuracy", "exact accuracy (halted rows)"),
          ("halt_steps", "mean halting steps"), ("samples_per_s", "samples / s"), ("lr", "learning rate"))
HALTING_KEYS = ("exact_accuracy", "halt_steps")  # absent where no row halted (0.0 for both in older files)
COLUMNS = 3
MARKED_POINTS = 40  # curves with at most this many points get markers (a single point needs one to show)
PHASE_COLOUR = "#7a5195"


@dataclass(frozen=True)
class PhaseMark:
    """A vertical line at a step where a ttt phase ended."""

    step: int
    label: str


def read_metrics(run: Path) -> tuple[list[dict], list[dict]]:
    """(training lines, evaluation lines) of RUN/metrics.jsonl."""
    path = run / "metrics.jsonl"
    if not path.exists():
        per_task = (run / "tasks").is_dir()  # ttt --per-task: one training run per task below
        hint = f"; a ttt --per-task run has one per task: arc-trm plot {run / 'tasks' / 'TASK'}" if per_task else ""
        raise InputError(f"{path}: no metrics (is {run} a training run folder?){hint}")
    train, evals = [], []
    panels = dict(PANELS)
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip("\0 \t"):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines) and not text.endswith("\n"):  # cut short by a crash; `--resume` drops it too
                eprint(f"warning: {path}: left out its last line, which was cut short")
                break
            raise InputError(f"{path}: line {n} is not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
            raise InputError(f"{path}: line {n} is not a metrics record (a JSON object with a numeric \"step\")")
        drawn = [k for k in row if k in panels or k.startswith("eval_pass")]
        for key in drawn:  # else float() or matplotlib fails on it with a traceback
            if not (row[key] is None or is_number(row[key])):
                raise InputError(f"{path}: line {n}: {key!r} is {reprlib.repr(row[key])}, not a number")
        (evals if any(k.startswith("eval_") for k in row) else train).append(row)
    return train, evals


def value(row: dict, key: str) -> float:
    """A record's `key` to draw; NaN (a gap in the curve) where it is absent or null, and for the
    halting figures where no row halted (an older file's halt_steps 0: a halted row takes a step)."""
    if key in HALTING_KEYS and not row.get("halt_steps"):
        return math.nan
    got = row.get(key)
    return math.nan if got is None else float(got)


def phase_marks(plan: dict) -> list[PhaseMark]:
    """The steps where ttt's phases end (ttt_plan.json), one label per step."""
    steps, freeze = int(plan.get("steps", 0)), int(plan.get("freeze_steps", 0))
    quick = {int(s) for s in plan.get("quick_stops", [])}
    labels: dict[int, list[str]] = {}
    if freeze > 0:
        labels.setdefault(freeze, []).append("embeddings-only ends")
    for s in (int(s) for s in plan.get("stops", [])):
        name = "planned end: final predict" if s == steps else "quick predict" if s in quick else "re-plan"
        labels.setdefault(s, []).append(name)
    return [PhaseMark(s, ", ".join(names)) for s, names in sorted(labels.items())]


def run_phases(run: Path) -> list[PhaseMark]:
    """The phase marks of a ttt run folder; none for a train run or an unreadable plan (warned)."""
    path = run / "ttt_plan.json"
    if not path.is_file():
        return []
    try:
        plan = read_json(path, "ttt plan")
        if not isinstance(plan, dict):
            raise InputError(f"{path}: expected a JSON object")
        return phase_marks(plan)
    except (InputError, TypeError, ValueError) as e:
        eprint(f"warning: {e}; phases not marked")
        return []


def pass_k(key: str) -> int:
    """k of an `eval_pass@k` key (pass@1 sorts first)."""
    tail = key.rpartition("@")[2]
    return int(tail) if is_digits(tail) else 0


def draw_eval(ax, evals: list[dict], keys: list[str]) -> None:
    """pass@k curves, the largest k first, so pass@1 is drawn last (dashed, on top): it often equals pass@2."""
    for k in sorted(keys, key=pass_k, reverse=True):
        points = [(r["step"], r[k]) for r in evals if k in r]
        first = pass_k(k) == 1
        ax.plot([p[0] for p in points], [p[1] for p in points], label=k.removeprefix("eval_"),
                marker="s" if first else "o", markersize=4 if first else 7, linestyle="--" if first else "-",
                linewidth=1.2 if first else 2.5, zorder=3 if first else 2)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: pass_k(labels[i]))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8)
    ax.set_ylim(-0.05, 1.05)


def draw_phases(ax, marks: list[PhaseMark]) -> None:
    for m in marks:
        ax.axvline(m.step, color=PHASE_COLOUR, linestyle=":", linewidth=1.2, zorder=1)
        ax.text(m.step, 0.98, f" {m.label}", transform=ax.get_xaxis_transform(), rotation=90, va="top",
                ha="right", fontsize=7, color=PHASE_COLOUR, zorder=4,
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1})


def curves_figure(run: Path) -> Figure:
    """The figure of a run's curves: one panel per metric, evaluation last when there is one."""
    train, evals = read_metrics(run)
    if not train:
        raise InputError(f"{run / 'metrics.jsonl'}: no training lines yet")
    eval_keys = sorted({k for row in evals for k in row if k.startswith("eval_pass")}, key=pass_k)
    panels = list(PANELS) + ([("eval", "evaluation (pass@k)")] if eval_keys else [])
    rows = math.ceil(len(panels) / COLUMNS)
    fig, grid = plt.subplots(rows, COLUMNS, figsize=(4.2 * COLUMNS, 3.2 * rows + 0.4), squeeze=False)
    for ax in grid.flat[len(panels):]:
        fig.delaxes(ax)
    marks = run_phases(run)
    steps = [r["step"] for r in train]
    marker = "o" if len(steps) <= MARKED_POINTS else None
    for ax, (key, title) in zip(grid.flat, panels):
        if key == "eval":
            draw_eval(ax, evals, eval_keys)
        elif key in HALTING_KEYS and all(math.isnan(value(r, key)) for r in train):
            ax.text(0.5, 0.5, "no row halted\nat any logged step", transform=ax.transAxes,
                    ha="center", va="center", color="#777")
        elif any(key in r for r in train):
            ax.plot(steps, [value(r, key) for r in train], marker=marker, markersize=3)
        else:
            ax.text(0.5, 0.5, f"not recorded\n(no '{key}' in metrics.jsonl)", transform=ax.transAxes,
                    ha="center", va="center", color="#777")
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        draw_phases(ax, marks)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if steps[-1] - steps[0] < 2:  # one record: a span of whole steps, not 0.95 .. 1.05
            ax.set_xlim(steps[0] - 1, steps[-1] + 1)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run}  ({len(train)} training record{'s' if len(train) != 1 else ''}, last step {steps[-1]})")
    fig.tight_layout()
    return fig


NEEDS_LATEX = ("pgf",)  # matplotlib writes it through xelatex, which a machine may lack


def picture_format(out: Path) -> str:
    """The format a path's suffix names (PNG without one): curves.pdf is a PDF, not PNG bytes."""
    suffix = out.suffix.lower().lstrip(".")
    if not suffix:
        return "png"
    if suffix not in FigureCanvasBase.get_supported_filetypes() or suffix in NEEDS_LATEX:
        raise InputError(f"--out {out}: .{suffix} is not a picture format plot writes; use .png, .pdf or .svg")
    return suffix


def plot_run(run: Path, out: Path | None = None) -> Path:
    out = out or run / "curves.png"
    fmt = picture_format(out)
    fig = curves_figure(run)
    with atomic_writer(out, binary=True) as f:  # a plot of a live run never leaves half a picture
        fig.savefig(f, format=fmt, dpi=100)
    plt.close(fig)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (holds metrics.jsonl; a ttt run's ttt_plan.json marks its phases)")
    p.add_argument("--out", help="picture path; its suffix picks the format: .png, .pdf, .svg ... (default RUN/curves.png)")


def run(args: argparse.Namespace) -> int:
    path = plot_run(Path(args.run), Path(args.out) if args.out else None)
    print(f"wrote {path}")
    return 0
