"""A state machine over run-folder operations: train, ttt (one process, two processes, per task)
and export, into the same or nested folders, fresh, with --resume or with --force.

Each operation runs the real guards and the real ttt and export code; only the torch-heavy parts
are stand-ins that write what they write (train: a real tiny checkpoint; ttt's training: answers
that differ from the fallback). After every operation:
  - a refused operation (one-line InputError) changed no file anywhere, its submission included;
  - the processes of one ttt all refuse or none does;
  - no file that existed is lost or changed, except inside the folder a --resume continued, an
    earlier export that export replaced, the submission a ttt that went ahead rewrote, and files
    that --force moved, whole, to OUT.old-<time>;
  - no temporary file is left.
It finds, on the code before their fixes, issue 24's items 1 (export deleted a run), 2 (a second
per-task run wrote the submission, then refused) and 4 (rank 0 wrote before rank 1 checked).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from arc_trm import runs
from arc_trm import ttt as ttt_module
from arc_trm.export import export_inference
from arc_trm.ttt import as_test_tasks, begin_run, ttt
from arc_trm.ttt_plan import TTTJob, TTTOptions
from arc_trm.ttt_phases import TTTOutcome
from augment.errors import InputError
from augment.tasks import load_tasks
from submission.kaggle import candidates_path, fallback_submission, write_submission
from submission.outputs import record_path

from conftest import SMALL_TASKS, write_tiny_checkpoint

FOLDERS = ("A", "A/B", "A/checkpoints", "A/tasks/3c9b0459", "C")  # nested in each other and in runs
MODES = ("fresh", "resume", "force")
SUBMISSIONS = (None, "S.json")  # None: OUT/submission.json
TASKS = as_test_tasks(load_tasks(SMALL_TASKS))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@dataclass(frozen=True)
class Allowed:
    """What an operation that went ahead may change."""

    resumed: str | None = None  # a folder whose run it continued
    forced: str | None = None  # a folder it may have moved aside
    replaced_export: str | None = None  # an earlier export it replaced
    submission: str | None = None  # the submission it wrote


def beside_submission(submission: str) -> set[str]:
    """The submission a run writes and the files that go with it: its record and candidates."""
    return {submission, str(record_path(submission)), str(candidates_path(submission))}


def under(path: str, folder: str | None) -> bool:
    return folder is not None and (path == folder or path.startswith(folder + "/"))


class RunFolders(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="run-folders-"))
        self.runs = 0  # stand-in trainings so far: each writes other answers and another step

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ stand-ins for torch's work

    def trained_answers(self, tasks: list) -> dict:
        self.runs += 1
        sub = fallback_submission(tasks)
        for entries in sub.values():
            for entry in entries:
                entry["attempt_2"] = [[self.runs % 10]]
        return sub

    def test_time_train(self, options: TTTOptions, job: TTTJob) -> TTTOutcome:
        """ttt_phases.test_time_train: train() checks the folder, then a run and its answers."""
        runs.claim_run_folder(job.out, force=False, resume=options.resume)
        job.out.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "ttt_challenges.json", "ttt_plan.json"):
            (job.out / name).write_text(f"{self.runs}\n")
        (job.out / "checkpoints").mkdir(exist_ok=True)
        write_submission(job.submission, self.trained_answers(job.answered), job.answered)
        return TTTOutcome()

    # ------------------------------------------------------------------ operations

    def checked(self, operation, allowed: Allowed) -> None:
        before = tree(self.root)
        siblings = set(self.root.rglob("*.old-*"))
        try:
            operation()
        except InputError as e:
            assert "\n" not in str(e)
            assert tree(self.root) == before, f"a refused operation changed files: {e}"
            return
        finally:
            assert not [p for p in self.root.rglob(".*")], "a temporary file or folder was left"
        after = tree(self.root)
        asides = [p for p in set(self.root.rglob("*.old-*")) - siblings if allowed.forced]
        for path, content in before.items():
            if after.get(path) == content or under(path, allowed.resumed) or under(path, allowed.replaced_export):
                continue
            if allowed.submission is not None and path in beside_submission(allowed.submission):
                continue
            if under(path, allowed.forced):
                rel = path[len(allowed.forced) + 1:]
                assert any((a / rel).is_file() and (a / rel).read_bytes() == content for a in asides), \
                    f"{path}: not moved aside whole by --force"
                continue
            raise AssertionError(f"{path}: {'changed' if path in after else 'lost'}")

    @rule(folder=st.sampled_from(FOLDERS), mode=st.sampled_from(MODES))
    def train(self, folder: str, mode: str) -> None:
        """train.run then train(): the checks in their order, then a real tiny checkpoint."""
        out = self.root / folder

        def operation() -> None:
            resume, force = mode == "resume", mode == "force"
            runs.check_not_a_ttt_run(out, force)
            if force:
                runs.claim_run_folder(out, force=True)
            if resume and not out.is_dir():
                raise InputError(f"--resume: no such run folder {out}")
            if not resume:
                runs.make_output_folder(out)
                runs.claim_run_folder(out, force=False)
            self.runs += 1
            write_tiny_checkpoint(out, step=self.runs)
            with open(out / "metrics.jsonl", "a") as f:
                f.write(f'{{"step": {self.runs}, "loss": 1.0}}\n')

        self.checked(operation, Allowed(resumed=folder if mode == "resume" else None,
                                        forced=folder if mode == "force" else None))

    def ttt_options(self, folder: str, mode: str, submission: str | None, per_task: bool) -> tuple[TTTOptions, Allowed]:
        options = TTTOptions(tasks=SMALL_TASKS, out=self.root / folder, budget="1h", progress=False,
                             per_task=per_task, submission=self.root / submission if submission else None,
                             resume=mode == "resume", force=mode == "force")
        return options, Allowed(resumed=folder if options.resume else None, forced=folder if options.force else None,
                                submission=str(options.submission_path.relative_to(self.root)))

    @rule(folder=st.sampled_from(FOLDERS), mode=st.sampled_from(MODES), submission=st.sampled_from(SUBMISSIONS),
          per_task=st.booleans())
    def ttt(self, folder: str, mode: str, submission: str | None, per_task: bool) -> None:
        """The whole command (one process), its training a stand-in."""
        options, allowed = self.ttt_options(folder, mode, submission, per_task)
        with mock.patch("arc_trm.ttt_phases.test_time_train", self.test_time_train), \
                mock.patch.object(ttt_module, "load_answer_tasks", lambda spec: (TASKS, [])):
            self.checked(lambda: ttt(options), allowed)

    @rule(folder=st.sampled_from(FOLDERS), mode=st.sampled_from(MODES), submission=st.sampled_from(SUBMISSIONS))
    def ttt_two_processes(self, folder: str, mode: str, submission: str | None) -> None:
        options, allowed = self.ttt_options(folder, mode, submission, per_task=False)  # --per-task refuses torchrun
        self.checked(lambda: self.two_process_ttt(options), allowed)

    def two_process_ttt(self, options: TTTOptions) -> None:
        """ttt's start on two processes (threads here, with a barrier), rank 1 as late as can be:
        it starts only once rank 0 waits at the barrier or is done. Both refuse, or both go on
        and rank 0 trains."""
        barrier = threading.Barrier(2, timeout=5)
        errors: list[Exception | None] = [None, None]

        def rank(k: int) -> None:
            try:
                begin_run(options, TASKS, main=k == 0, barrier=barrier.wait)
            except (InputError, threading.BrokenBarrierError) as e:
                errors[k] = e

        first = threading.Thread(target=rank, args=(0,))
        first.start()
        while first.is_alive() and barrier.n_waiting == 0:
            time.sleep(0.001)
        rank(1)
        first.join()
        if isinstance(errors[0], InputError) and isinstance(errors[1], InputError):
            raise errors[0]
        assert errors == [None, None], f"one process refused the folder and the other went ahead: {errors}"
        now = time.time()
        self.test_time_train(options, TTTJob(TASKS, TASKS, Path(options.out), options.submission_path, now, now + 60))

    @rule(source=st.sampled_from(FOLDERS), folder=st.sampled_from((*FOLDERS, "E", "A/E")))
    def export(self, source: str, folder: str) -> None:
        out = self.root / folder
        from submission.runfolder import is_export

        earlier = folder if is_export(out) else None
        self.checked(lambda: export_inference(self.root / source, out), Allowed(replaced_export=earlier))


TestRunFolders = RunFolders.TestCase
TestRunFolders.settings = settings(max_examples=25, stateful_step_count=8, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])


def test_the_guard_continues_with_resume_and_refuses_it_with_force(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    assert runs.claim_run_folder(tmp_path, force=False, resume=True) is None and (tmp_path / "checkpoints").is_dir()
    with pytest.raises(InputError, match="pass one"):
        runs.claim_run_folder(tmp_path, force=True, resume=True)
    with pytest.raises(InputError, match="already holds a run"):
        runs.claim_run_folder(tmp_path, force=False)


def test_build_and_export_share_one_replace_guard(tmp_path):
    """`build` replaces only an earlier build, `export` only an earlier export; each refuses the
    other's folder, a run and other files in one line, and deletes nothing."""
    from augment.build import BuildOptions, build_set

    run = tmp_path / "run"
    write_tiny_checkpoint(run)
    build, export = tmp_path / "build", tmp_path / "export"
    build_set(TASKS[:1], build, BuildOptions(augmentations=2, canvas=6, progress=False))
    build_set(TASKS[:1], build, BuildOptions(augmentations=2, canvas=6, progress=False))  # replaced
    export_inference(run, export)
    export_inference(run, export)  # replaced
    before = tree(tmp_path)
    for out in (run, export):
        with pytest.raises(InputError, match="is not a build; refusing to replace it"):
            build_set(TASKS[:1], out, BuildOptions(augmentations=2, canvas=6, progress=False))
    with pytest.raises(InputError, match="is not an inference export; refusing to replace it"):
        export_inference(run, build)
    assert tree(tmp_path) == before
