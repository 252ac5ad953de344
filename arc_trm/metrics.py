"""Metrics flow through one sink. RUN/metrics.jsonl is the source of truth (`arc-trm plot` and a
resumed run read it); with `--set train.wandb_project=NAME` the same records also go to Weights &
Biases, an optional extra (`pip install wandb`) imported only when asked for. A log step's
figures are summed on the device over the steps since the last line (`LogWindow`) and shown the
same way by the bar, the plain log line and the final line (`step_text`)."""

from __future__ import annotations

import json
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TextIO

import torch
import torch.distributed as dist

from arc_trm.common import Dist
from arc_trm.config import RunConfig
from augment.console import duration_text
from augment.errors import InputError, missing_extra

METRICS_FILE = "metrics.jsonl"


class MetricsSink:
    """Rank 0's metric records: one JSON line each in metrics.jsonl, and a W&B run when set.
    Other ranks get a sink that drops what it is given."""

    def __init__(self, file: TextIO | None = None, wandb_run: Any = None) -> None:
        self.file = file
        self.wandb_run = wandb_run

    @classmethod
    def open(cls, out: Path, main: bool, wandb_run: Any = None) -> MetricsSink:
        """`wandb_run`: start_wandb's run, when train.wandb_project is set."""
        if not main:
            return cls()
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
    out.mkdir(parents=True, exist_ok=True)  # its files go under OUT/wandb
    try:
        return wandb.init(project=cfg.train.wandb_project, name=out.name, dir=str(out), config=cfg.to_dict())
    except wandb.errors.Error as e:  # no API key, no network, a project it may not write to
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"train.wandb_project={cfg.train.wandb_project}: W&B did not start ({why}); run "
                         "`wandb login`, set WANDB_MODE=offline, or leave train.wandb_project unset") from None


# ----------------------------------------------------------------------------------------------
# What a log step measures, and how its lines show it


@dataclass
class LogWindow:
    """Sums over the steps since the last log line. The sums stay on the device and are read
    (and all-reduced) once per log line, so other steps never wait for the host."""

    # (6,) float64 sums: loss, then over the halted rows: rows, exact rows, halt steps, token
    # accuracy, rows whose halt signal was right
    stats: torch.Tensor | None = None
    samples: int = 0
    steps: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def add(self, stats: torch.Tensor, batch_size: int) -> None:
        self.stats = stats if self.stats is None else self.stats + stats
        self.samples += batch_size
        self.steps += 1

    def summary(self, d: Dist) -> dict[str, float]:
        stats = self.stats.clone()
        if d.world > 1:
            dist.all_reduce(stats)
        loss, halted, exact, halt_steps, token_accuracy, q_halt_correct = stats.tolist()
        # Where no row halted there is no halted rows' accuracy or step count: the keys are left out
        # (a stored 0 read as a measured 0 on curves.png). The reference logs the same four.
        halting = ({"exact_accuracy": exact / halted, "halt_steps": halt_steps / halted,
                    "accuracy": token_accuracy / halted, "q_halt_accuracy": q_halt_correct / halted}
                   if halted > 0 else {})
        return {"loss": loss / max(self.samples, 1), **halting,
                "samples_per_s": self.samples / max(time.perf_counter() - self.t0, 1e-9)}


ETA_LAPS = 20  # the ETA's window of recent laps (log step to log step)


def eta_seconds(steps_left: int, recent: Sequence[float]) -> float:
    """The time `steps_left` steps take at the median of the `recent` seconds per step: a compile, a
    checkpoint or a burst of another job's load moves a mean, not the median."""
    return steps_left * statistics.median(recent) if recent else 0.0


@dataclass
class StepClock:
    """Seconds per step, for the ETA, the deadline and the run's summary. A call's first step may
    hold a compile, so it is timed alone and the laps start after it. A log step is the loop's only
    host synchronisation: on a GPU the steps between return before their kernels finish, so a step's
    own wall time reads short and the sync's wait lands on the log step. So laps, from one log step
    to the next, give the ETA and bound the deadline; each step's own time (the sync's wait
    included) gives the mean and covers the deadline before the first lap."""
    began: int  # the step this call started after
    queues: bool = True  # the device runs behind the host (a GPU; a CPU step is done when it returns)
    prior_s: float = 0.0  # a step's seconds as the caller measured them (0: unknown), until a step is timed
    t: float = field(default_factory=time.perf_counter)  # when the lap in progress started
    lap_from: int = field(init=False)  # the step it started after
    done: int = field(init=False)  # the last step timed
    first_s: float = 0.0  # the call's first step's own time
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=ETA_LAPS))
    step_s: float = 0.0  # running mean of a step's own time, the first aside
    timed_s: float = 0.0  # the steps' own time, the first aside

    def __post_init__(self) -> None:
        self.lap_from = self.done = self.began

    def step_done(self, step: int, seconds: float, synced: bool, now: float | None = None) -> None:
        """Record a step's own `seconds`; a `synced` (log) step also ends a lap."""
        now = time.perf_counter() if now is None else now
        self.done = step
        if step == self.began + 1:
            self.first_s, self.lap_from, self.t = seconds, step, now
            return
        self.step_s = 0.9 * self.step_s + 0.1 * seconds if self.step_s else seconds
        self.timed_s += seconds
        if synced:
            self.recent.append((now - self.t) / max(step - self.lap_from, 1))
            self.lap_from, self.t = step, now

    def eta(self, steps_left: int) -> float:
        return eta_seconds(steps_left, self.recent or [self.step_s or self.first_s])

    def mean_step_s(self) -> float:
        """This call's mean seconds per step, its first step aside (unless it ran that one only)."""
        steps = self.done - self.began - 1
        return self.timed_s / steps if steps > 0 else self.first_s

    def seconds_needed(self, steps: int, now: float | None = None) -> float:
        """Seconds from `now` until `steps` more steps are done, on the safe side: a step takes the
        longer of its own time and the latest lap's, and on a device that `queues` the steps since the
        last sync may not have run yet (those past the lap's time have). Before a second step is
        timed, a step takes `prior_s` when known (the first may have compiled), else the first's time."""
        now = time.perf_counter() if now is None else now
        latest = self.recent[-1] if self.recent else 0.0
        per_step = max(self.step_s or self.prior_s or self.first_s, latest)
        queued = max(0.0, self.t + (self.done - self.lap_from) * latest - now) if self.queues else 0.0
        return queued + steps * per_step


def log_line(last: dict[str, float], end: int, eta_s: float) -> str:
    """A log step's line when no progress bar shows it."""
    return f"step {last['step']}/{end}: {step_text(last)}, lr {last['lr']:.3g}, ETA {duration_text(eta_s)}"


# The train bar: tqdm's own remaining time (a moving average) is left out for the median ETA.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def bar_text(last: dict[str, float], eta_s: float) -> str:
    """A log step's text in the bar (after its steps and elapsed time)."""
    return f"{step_text(last)}, ETA {duration_text(eta_s)}"


def step_text(last: dict[str, float]) -> str:
    """A log step's loss, halting and speed, as the bar, the plain line and the final line show them."""
    return (f"loss {last['loss']:.3f}, {halting_text(last.get('exact_accuracy'), last.get('halt_steps'))}, "
            f"{last['samples_per_s']:.0f} samples/s")


def halting_text(exact: float | None, halt_steps: float | None) -> str:
    """The halted rows' accuracy and steps; None (no row halted, so none recorded) or 0 steps (an
    older record's way: a halted row took at least one step) has nothing to show, not a measured 0."""
    if exact is None or halt_steps is None or halt_steps <= 0:
        return "no row halted"
    return f"exact {exact:.2f}, halt steps {halt_steps:.1f}"
