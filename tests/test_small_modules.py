"""One quick, real test for each small module that the other tests reach only through the CLI or a
training run: puzzle identifiers, output-path checks, the metrics sink, the curves plot, and the
checkpoint's model-config check."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from arc_trm.config import preset
from arc_trm.overrides import apply_overrides
from arc_trm.metrics import METRICS_FILE, MetricsSink
from arc_trm.plot import plot_run
from arc_trm.snapshot import check_compatible
from augment.errors import InputError
from augment.grids import make_identifier, same_grid, split_identifier
from submission.outputs import check_output_file, check_prediction_outputs, record_path

from conftest import TINY


def test_identifiers_round_trip_and_bad_ones_are_refused() -> None:
    assert split_identifier(make_identifier("a#b", 7)) == ("a#b", 7)  # the last '#' splits
    for bad in ("abc", "abc#", "abc#x", "abc#-1"):
        with pytest.raises(ValueError, match="TASK#K"):
            split_identifier(bad)
    assert same_grid([[1, 2]], np.array([[1, 2]], np.uint8))
    assert not same_grid([[1, 2]], [[1], [2]]) and not same_grid([[1, 2]], [[1, 3]])


def test_output_checks_refuse_what_cannot_be_written(tmp_path: Path) -> None:
    sub = tmp_path / "sub.json"
    assert record_path(sub) == tmp_path / "sub.predict.json"
    check_prediction_outputs(sub)  # a new file in a writable folder
    with pytest.raises(InputError, match="is a directory"):
        check_output_file(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        check_output_file(tmp_path / "absent" / "sub.json", flag="--submission")
    record_path(sub).mkdir()
    with pytest.raises(InputError, match=r"sub\.predict\.json \(written beside it\) is a directory"):
        check_prediction_outputs(sub)


def test_metrics_sink_writes_rank_0_lines_and_drops_the_others(tmp_path: Path) -> None:
    sink = MetricsSink.open(tmp_path, main=True)
    sink.log({"step": 1, "loss": 2.5})
    sink.log({"step": 2, "loss": 2.0})
    sink.close()
    other = MetricsSink.open(tmp_path, main=False)
    other.log({"step": 3, "loss": 1.0})
    other.close()
    lines = [json.loads(x) for x in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert lines == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}]


def test_plot_draws_training_and_evaluation_and_refuses_bad_metrics(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no metrics"):
        plot_run(tmp_path)
    rows = [{"step": s, "loss": 3.0 / s, "exact_accuracy": s / 10, "halt_steps": 2, "samples_per_s": 50}
            for s in (1, 2, 3)] + [{"step": 3, "eval_pass@1": 0.5, "eval_pass@2": 0.6}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = plot_run(tmp_path)
    assert out == tmp_path / "curves.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n')
    with pytest.raises(InputError, match="line 2 is not JSON"):
        plot_run(tmp_path)


def test_a_checkpoint_from_another_model_config_is_refused(tmp_path: Path) -> None:
    cfg = apply_overrides(preset("cpu-quick"), TINY)
    check_compatible({"model": cfg.model.to_dict()}, cfg, tmp_path)
    saved = {"model": {**cfg.model.to_dict(), "hidden_size": 64}}
    with pytest.raises(InputError, match="hidden_size: checkpoint 64 vs run 32"):
        check_compatible(saved, cfg, tmp_path / "state.pt")


def test_eprint_writes_each_line_in_one_write(monkeypatch):
    """Two processes sharing a pipe interleave at write boundaries: the newline must not be one."""
    from augment.console import eprint

    writes: list[str] = []

    class Stream:
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

        def flush(self) -> None:
            writes.append("<flush>")

    monkeypatch.setattr(sys, "stderr", Stream())
    eprint("SIGTERM: stopped;", 3)
    assert writes == ["SIGTERM: stopped; 3\n", "<flush>"]


def test_a_size_reads_the_same_in_every_summary():
    """export said 0.24 MB where kaggle bundle said 0.2 MB of the same folder, and build gave bytes."""
    from augment.console import size_text

    assert [size_text(n) for n in (0, 240_123, 9_994_000, 9_996_000, 45_120_000, 312_400_000, 999_600_000,
                                   1_254_000_000)] == ["0.00 MB", "0.24 MB", "9.99 MB", "10.0 MB", "45.1 MB",
                                                       "312 MB", "1.00 GB", "1.25 GB"]


def test_launch_reads_what_torchrun_set(monkeypatch):
    from augment.launch import Launch, launch

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert launch() == Launch() and launch().main and not launch().many
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch() == Launch(rank=3, world=4, local_rank=1, local_world=4)  # one node unless told
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert launch().local_world == 2 and launch().many and not launch().main


def test_warn_once_speaks_from_rank_0_only(monkeypatch, capsys):
    from augment.console import warn_once

    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        warn_once(f"rank {rank} read a bad task")
    assert capsys.readouterr().err == "warning: rank 0 read a bad task\n"


def test_a_folder_swap_that_fails_puts_the_earlier_folder_back(tmp_path, monkeypatch):
    """replace_folder moved the earlier build aside, and when the new one could not take its place
    (an OSError in the second rename) deleted it anyway: neither folder was left."""
    from augment.files import replace_folder

    out, tmp = tmp_path / "build", tmp_path / ".build.tmp"
    for folder, text in ((out, "earlier"), (tmp, "new")):
        folder.mkdir()
        (folder / "meta.json").write_text(text)
    rename = Path.rename

    def failing(self, target):
        if self == tmp:
            raise OSError(28, "No space left on device")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError):
        replace_folder(tmp, out, lambda p: True, "a build")
    assert (out / "meta.json").read_text() == "earlier" and (tmp / "meta.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".build.tmp", "build"]  # nothing left aside
    monkeypatch.setattr(Path, "rename", rename)
    replace_folder(tmp, out, lambda p: True, "a build")
    assert (out / "meta.json").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["build"]


def test_a_non_ascii_digit_is_no_count_anywhere_a_count_is_read(tmp_path):
    """"²".isdigit() is True and int("²") raises: a candidates file with a test index "²" ended in a
    ValueError traceback from `score`; each reader of a count written as text now says it is bad."""
    import json

    from arc_trm.plot import pass_k
    from augment.errors import TaskError
    from augment.grids import split_identifier
    from augment.json_kind import is_digits
    from augment.transforms import Augmentation
    from submission.kaggle import read_candidates

    assert is_digits("042") and not is_digits("²") and not is_digits("") and not is_digits("٣")
    with pytest.raises(ValueError, match="bad puzzle identifier"):
        split_identifier("abc#²")
    with pytest.raises(ValueError, match="bad augmentation record"):
        Augmentation.from_str("t²p0123456789")
    assert pass_k("eval_pass@²") == 0 and pass_k("eval_pass@2") == 2
    path = tmp_path / "s.candidates.json"
    path.write_text(json.dumps({"format": "arc-trm-candidates", "version": 1, "tasks": {"t2": {"²": []}}}))
    with pytest.raises(TaskError, match="bad entry for test index '²'"):
        read_candidates(path)
