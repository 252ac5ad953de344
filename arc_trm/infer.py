"""Voted inference: a trained model loaded (load_model), its views run over ranks and voted on
(vote_views), and the two callers: `predict`, which writes the submission, its candidates and
record, and evaluate_built, which scores a build's test split during training. The command line
(`arc-trm predict`) is arc_trm/predict_cli.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from arc_trm import checkpoint as ckpt
from arc_trm.common import Dist
from arc_trm.config import RunConfig
from arc_trm.consistency import InputStream, ViewRecord, best_trajectories
from arc_trm.model import TRM
from arc_trm.views import (View, ViewOutputs, ViewRun, encode_views, fitting_views, make_views, prediction_of,
                           run_views, view_sides, with_trajectories)
from augment.build import max_side
from augment.console import counted
from augment.identifier_map import IdentifierMap
from augment.errors import InputError
from augment.tasks import Task, absolute_spec
from submission.outputs import record_path
from submission.runfolder import is_lean_export
from submission.kaggle import (candidates_path, earlier_entries, is_submission_of, merge_candidates, merge_submission,
                               write_candidates, write_submission)
from augment.files import write_json_atomic
from arc_trm.stopping import current
from submission.score import pass_count, task_solutions
from submission.vote import Candidate, pool_candidates, rank_candidates


@dataclass
class LoadedModel:
    model: TRM
    cfg: RunConfig
    id_map: IdentifierMap  # row -> identifier, augmentation and task hash
    checkpoint: Path

    def view_run(self, batch_size: int = 256, halting: bool = True, progress: bool = True,
                 deadline: float | None = None, scoring: str = "votes") -> ViewRun:
        """How to run views of this model: its canvas and length buckets, and these settings."""
        return ViewRun(self.cfg.data.canvas, batch_size, halting, self.cfg.data.bucketing, progress, deadline,
                       scoring)


def check_prediction_checkpoint(path: str | Path, weights: str) -> Path:
    """The folder holding `path`'s weights, or one line when predict cannot use it: none there, a
    lean export (no task's puzzle row), or raw weights asked of an export (it holds one set: the
    EMA values where the run kept EMA, arc_trm.export.inference_weights). Cheap: an ensemble
    checks every checkpoint before its first model runs."""
    folder = ckpt.resolve_checkpoint(path)
    if is_lean_export(folder):  # its one trained row is the mean: no view of any task
        raise InputError(f"{folder}: a lean export (export --lean) keeps no task's puzzle row, so predict has "
                         "nothing to answer with; use it with `arc-trm ttt --checkpoint`, or export without --lean")
    if weights == "model" and ckpt.reads_as_export(folder):
        raise InputError(f"{folder}: an inference export holds the EMA weights only (the raw ones where the run "
                         "kept no EMA): drop --weights model, or give the run's checkpoint for its raw weights")
    return folder


def load_model(path: str | Path, device: torch.device, weights: str = "ema") -> LoadedModel:
    """A trained model from a run folder or checkpoint folder (EMA weights by default). The model
    takes the checkpoint's own tensors, so a large puzzle table is held once, not twice."""
    found = ckpt.load_checkpoint(check_prediction_checkpoint(path, weights))
    state, cfg = found.state, found.config
    model = TRM.to_assign(cfg.model)
    chosen = {**state["model"], **state["ema"]} if weights == "ema" and state.get("ema") else state["model"]
    model.load_state_dict(chosen, assign=True)  # shapes were checked against the config by load_checkpoint
    return LoadedModel(model.to(device).eval(), cfg, found.id_map, found.folder)


# ----------------------------------------------------------------------------------------------
# Running views over ranks, and the two callers: predict and evaluation during training


@dataclass
class VotedResult:
    ranked: dict[tuple[str, int], list[Candidate]]
    mean_steps: float  # per run
    views: int  # views with a finished run (each votes once)
    seconds: float
    runs: int = 0  # runs that finished: `views` times the trajectories, less those a deadline cut


def vote_views(model: TRM, views: list[View], tasks: dict[str, Task], run: ViewRun, d: Dist) -> VotedResult | None:
    """Run this rank's share of the views (one length bucket at a time) and rank the candidates
    of every test input on rank 0: by votes, or by consistency. Consistency needs all views of an
    input on one rank, so it splits the work by test input and runs an input's views together.
    With noisy trajectories, each view's surest trajectory stands for it (best_trajectories)."""
    consistency = run.scoring == "consistency"
    if consistency:
        inputs_order = sorted({(v.task_id, v.test_index) for v in views})
        mine_inputs = set(inputs_order[d.rank::d.world])
        mine = [v for v in views if (v.task_id, v.test_index) in mine_inputs]
    else:
        mine = views[d.rank::d.world]
    sides = view_sides(mine, tasks, run)
    records: list[ViewRecord] = []  # votes: one per view (the best trajectory)
    ranked: dict = {}
    steps: list[int] = []  # of every finished run
    views_done = 0
    seconds = 0.0
    for side in sorted(set(sides)):
        group = [v for v, s in zip(mine, sides) if s == side]
        rows, noise, owner = with_trajectories(group, run)
        if consistency:  # an input's rows together (stable), so the stream frees each input early
            order = sorted(range(len(rows)), key=lambda j: (rows[j].task_id, rows[j].test_index))
            rows, noise, owner = [rows[j] for j in order], noise[order], owner[order]
        inputs, fits = encode_views(rows, tasks, side)
        ids = np.array([v.row for v in rows], dtype=np.int32)
        stream = InputStream([(v.task_id, v.test_index) for v in rows], side) if consistency else None

        def record(outputs: ViewOutputs, j: int, logprobs: np.ndarray | None) -> ViewRecord:
            view = int(owner[j]) if run.trajectories > 1 else None
            return ViewRecord(prediction_of(rows[j], outputs, j, fits[j], side), rows[j].augmentation,
                              logprobs if fits[j] else None, view)

        def stream_views(outputs: ViewOutputs, finished: np.ndarray, logprobs: np.ndarray) -> None:
            for j, lp in zip(finished, logprobs):
                stream.add(record(outputs, j, lp))

        outputs = run_views(model, inputs, ids, replace(run, progress=run.progress and d.main), d.device,
                            on_finished=stream_views if consistency else None,
                            noise=noise if run.trajectories > 1 else None)
        if consistency:
            ranked.update(stream.close())
        else:
            records += best_trajectories([record(outputs, j, None) for j in range(len(rows)) if outputs.steps[j] > 0])
        steps += [int(s) for s in outputs.steps if s > 0]
        views_done += len(set(owner[outputs.steps > 0].tolist()))  # a view's trajectories count once
        seconds += outputs.seconds
    preds = [r.prediction for r in records]
    if d.world > 1:
        gathered: list = [None] * d.world
        dist.all_gather_object(gathered, (preds, ranked, steps, seconds, views_done))
        preds = [p for g in gathered for p in g[0]]
        ranked = {k: c for g in gathered for k, c in g[1].items()}
        steps = [s for g in gathered for s in g[2]]
        seconds = max(g[3] for g in gathered)
        views_done = sum(g[4] for g in gathered)
    if not d.main:
        return None
    if not consistency:
        ranked = rank_candidates(preds)
    return VotedResult(ranked, float(np.mean(steps)) if steps else 0.0, views_done, seconds, len(steps))


def evaluate_built(model: TRM, built, *, views_per_input: int, d: Dist, run: ViewRun | None = None
                   ) -> dict[str, float] | None:
    """pass@1/pass@2 and mean halting steps on a built set's test split (None off rank 0)."""
    test_tasks = [t for t in built.tasks if t.role == "test"]
    if not test_tasks:
        return None
    views = make_views(test_tasks, built.identifiers, built.augmentation_records(), views_per_input).views
    run = run or ViewRun(canvas=built.canvas)
    result = vote_views(model, views, {t.id: t for t in test_tasks}, run, d)
    if result is None:
        return None
    metrics = {"mean_steps": result.mean_steps, "views": float(result.views)}
    for k in (1, 2):
        count = pass_count(result.ranked, task_solutions(test_tasks), k)
        if count.total:
            metrics[f"pass@{k}"] = count.solved / count.total
    return metrics


@dataclass
class PredictSummary:
    submission: Path
    tasks: int
    test_inputs: int
    views: int  # views with a finished run, each voting once per model
    mean_steps: float  # per run (a view runs once per trajectory)
    seconds: float
    untrained: list[str]
    ranked: dict[tuple[str, int], list[Candidate]]
    kept: list[str] = field(default_factory=list)  # untrained tasks that kept an earlier file's answers
    other_content: list[str] = field(default_factory=list)  # untrained tasks whose rows (in some model) hold other content
    answered: int = 0  # test inputs some view decoded a grid for
    answered_tasks: int = 0  # the tasks they belong to
    runs: int = 0  # finished runs: views times trajectories, less those a deadline cut
    undecoded: list[str] = field(default_factory=list)  # tasks with a test input whose views finished, no grid
    undecoded_kept: list[str] = field(default_factory=list)  # of those, the ones an earlier file answered
    too_large: list[str] = field(default_factory=list)  # tasks with a grid no model's canvas holds (a test input)
    canvas: int = 0  # the (largest) model canvas
    too_large_kept: list[str] = field(default_factory=list)  # of those, the ones an earlier file answered
    written: bool = True  # False: no view finished and the earlier submission was left as it was


@dataclass(frozen=True)
class PredictOptions:
    """What `predict` answers with besides how views run (ViewRun)."""

    source: str  # the task spec, recorded in NAME.predict.json
    named: str = ""  # the source as the user named it when `source` is a run's own copy (ttt); recorded as "source"
    max_views: int = 0  # views per test input (0: every view the checkpoint trained)
    max_steps: int = 0  # step cap per view (0: the model's halt_max_steps)


def predict(models: Iterable[LoadedModel], tasks: list[Task], out: Path, options: PredictOptions, run: ViewRun,
            d: Dist) -> PredictSummary | None:
    """Run voted inference on `tasks` and write the submission, NAME.candidates.json and the
    record NAME.predict.json beside it (rank 0). The folder of `out` must exist. Several models
    (an ensemble) pool their votes: each view votes once per model. Pass a generator to hold one
    model at a time. `run` gives the settings; each model's own canvas and bucketing replace its."""
    results: list[VotedResult] = []
    untrained: set[str] | None = None
    other_content: set[str] = set()  # tasks some model has rows for, trained on other content (none answers: named)
    fitting: set[tuple[str, int]] = set()  # test inputs some model has a view of that fits its canvas
    too_large: set[tuple[str, int]] = set()  # test inputs with views, larger than a model's canvas
    canvases: set[int] = set()
    by_id = {t.id: t for t in tasks}
    checkpoints: list[str] = []
    max_steps = 0
    for loaded in models:
        if options.max_steps > 0:
            loaded.model.cfg.halt_max_steps = options.max_steps
        max_steps = loaded.model.cfg.halt_max_steps
        ids = loaded.id_map
        found = make_views(tasks, ids.identifiers, ids.augmentations, options.max_views, ids.task_hashes)
        untrained = set(found.untrained) if untrained is None else untrained & set(found.untrained)
        other_content.update(found.other_content)
        views, unfit = fitting_views(found.views, by_id, loaded.cfg.data.canvas)
        fitting.update((v.task_id, v.test_index) for v in views)
        too_large |= unfit
        canvases.add(loaded.cfg.data.canvas)
        result = vote_views(loaded.model, views, by_id,
                            replace(run, canvas=loaded.cfg.data.canvas, bucketing=loaded.cfg.data.bucketing), d)
        results += [result] if result is not None else []
        checkpoints.append(str(Path(loaded.checkpoint).resolve()))
        del loaded  # before the next model loads
    if not checkpoints:
        raise ValueError("predict needs at least one model")
    if not d.main:
        return None
    ranked = results[0].ranked if len(results) == 1 else pool_candidates(r.ranked for r in results)
    views_run, runs = sum(r.views for r in results), sum(r.runs for r in results)
    mean_steps = sum(r.mean_steps * r.runs for r in results) / runs if runs else 0.0
    seconds = sum(r.seconds for r in results)
    canvas = max(canvases)
    # A task without rows whose grids no model's canvas holds: ttt would skip it too, so it counts as too large
    unfit = {task_id for task_id in untrained or () if max_side(by_id[task_id]) > canvas}
    untrained_tasks = sorted(set(untrained or ()) - unfit)
    too_large_tasks = sorted({task_id for task_id, _ in too_large - fitting} | unfit)
    answered = {key for key, candidates in ranked.items() if candidates}
    undecoded = sorted({task_id for task_id, _ in set(ranked) - answered})  # a key: some view of it finished
    out = Path(out)
    earlier = earlier_entries(out, tasks)
    summary = PredictSummary(out, len(tasks), sum(len(t.test) for t in tasks), views_run, mean_steps,
                             seconds, untrained_tasks, ranked, kept=[t for t in untrained_tasks if t in earlier],
                             other_content=sorted(other_content & set(untrained or ())), answered=len(answered),
                             answered_tasks=len({task_id for task_id, _ in answered}), runs=runs,
                             undecoded=undecoded, undecoded_kept=[t for t in undecoded if t in earlier],
                             too_large=too_large_tasks, canvas=canvas,
                             too_large_kept=[t for t in too_large_tasks if t in earlier])
    # Only answers produced replace an earlier file's; with none (a deadline before any view
    # finished, or views that decoded no grid), a valid earlier submission is left as it was.
    if not answered and is_submission_of(out, tasks):
        print(f"{counted(views_run, 'view')} finished but none decoded a valid grid: {out} keeps its answers"
              if views_run else f"no view finished: {out} keeps its answers")
        return replace(summary, written=False)
    # The three files are one result: a signal waits for the last (no new submission beside an
    # old record); the command then says it finished and exits with the signal's code.
    with current().polled(f"finishing the writes of {out.name}, its candidates and record"):
        write_submission(out, merge_submission(tasks, ranked, earlier), tasks)
        kept = [t for t in tasks if t.id in earlier]  # an earlier answer stands: its candidates stand with it
        write_candidates(candidates_path(out), merge_candidates(candidates_path(out), ranked, kept))
        write_json_atomic(record_path(out), {
            "tasks": absolute_spec(options.source),
            **({"source": absolute_spec(options.named)} if options.named else {}),
            "checkpoint": checkpoints[0],
            **({"checkpoints": checkpoints} if len(checkpoints) > 1 else {}),
            "submission": out.name, "candidates": candidates_path(out).name,  # beside this record
            "halting": run.halting, "scoring": run.scoring, "trajectories": run.trajectories, "noise": run.noise,
            "max_steps": max_steps, "views": views_run, "runs": runs, "answered": len(answered),
            "mean_steps": mean_steps, "seconds": seconds, "untrained_tasks": untrained_tasks,
            "other_content_tasks": summary.other_content, "too_large_tasks": too_large_tasks,
        }, indent=2)
    return summary
