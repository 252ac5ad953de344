"""The licence a bundle gives shipped weights (submission/notice.py): read from the run's import
record, or known from the published source it names; none for weights trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from augment.errors import InputError
from submission.notice import CODE_LICENCE, known_licence, licence_fields, licence_label, weights_source

CACHE_WEIGHTS = ("/root/.cache/huggingface/hub/models--arcprize--trm_arc_prize_verification/snapshots/abc/"
                 "arc_v1_public/step_518071")


def imported_run(tmp: Path, record: dict) -> Path:
    """RUN/import.json and RUN/checkpoints/step_5 (the folder a bundle is given)."""
    checkpoint = tmp / "run" / "checkpoints" / "step_5"
    checkpoint.mkdir(parents=True)
    (tmp / "run" / "import.json").write_text(json.dumps(record))
    return checkpoint


@pytest.mark.parametrize("record, licence", [
    ({"source": "hf://arcprize/trm_arc_prize_verification/arc_v1_public", "reference_checkpoint": "x"}, "MIT"),
    ({"source": "/data/step_518071", "reference_checkpoint": CACHE_WEIGHTS}, "MIT"),  # the hub cache's path
    ({"source": "/data/step_1", "reference_checkpoint": "/data/step_1", "licence": "CC-BY-4.0"}, "CC-BY-4.0"),
    ({"source": "/data/step_1", "reference_checkpoint": "/data/step_1"}, None),
])
def test_the_weights_licence_comes_from_the_record_or_the_known_source(tmp_path: Path, record: dict,
                                                                      licence: str | None) -> None:
    shipped = weights_source(imported_run(tmp_path, record))
    assert shipped is not None and shipped.licence == licence
    assert licence_label(shipped) == [{"name": "other" if licence else "unknown"}]
    assert (f"licence: {licence}" if licence else "not recorded") in shipped.notice()


def test_an_export_carries_its_own_record(tmp_path: Path) -> None:
    """An inference export (no run folder above it) holds its source's import.json itself."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "import.json").write_text(json.dumps({"source": "hf://arcprize/trm_arc_prize_verification/x"}))
    shipped = weights_source(export)
    assert shipped is not None and shipped.licence == "MIT"


def test_weights_trained_here_keep_the_code_licence(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run" / "checkpoints" / "step_5"
    checkpoint.mkdir(parents=True)
    assert weights_source(checkpoint) is None and licence_label(None) == [{"name": CODE_LICENCE}]
    assert known_licence("/data/my_weights") is None


def test_the_record_names_a_known_licence_and_where_it_is_stated(tmp_path: Path) -> None:
    """What import-checkpoint writes for a known source is what the notice then says."""
    source, weights = "hf://arcprize/trm_arc_prize_verification/arc_v2_public", CACHE_WEIGHTS
    fields = licence_fields(source, weights)
    assert fields == {"licence": "MIT", "licence_stated_at": "https://huggingface.co/arcprize/trm_arc_prize_verification"}
    shipped = weights_source(imported_run(tmp_path, {"source": source, "reference_checkpoint": weights, **fields}))
    assert shipped is not None and f"licence: MIT ({fields['licence_stated_at']})" in shipped.notice()
    assert licence_fields("/data/step_1", "/data/step_1") == {}


def test_a_record_without_a_source_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="import record without a source"):
        weights_source(imported_run(tmp_path, {"step": 5}))


@pytest.mark.parametrize("names", [
    ("hf://notarcprize/trm_arc_prize_verification/arc_v1_public", "/c/models--notarcprize--trm_arc_prize_verification/s/x/step_5"),
    ("/data/arcprize/trm_arc_prize_verification_finetuned/step_1", "/data/arcprize/trm_arc_prize_verification_finetuned/step_1"),
    ("hf://arcprize/trm_arc_prize_verification_v2/x", "/c/models--arcprize--trm_arc_prize_verification_v2/s/x/step_5"),
])
def test_a_name_that_only_contains_a_known_repo_claims_no_licence(names) -> None:
    """Any source whose text held `arcprize/trm_arc_prize_verification` (another owner's copy on the
    hub, a local folder of fine-tuned weights) was recorded as MIT, and export and bundle passed the
    claim on."""
    assert licence_fields(*names) == {}
    assert known_licence("hf://arcprize/trm_arc_prize_verification") is not None
    assert known_licence("/local/x", "/h/hub/models--arcprize--trm_arc_prize_verification/snapshots/abc/arc_v1_public/step_5")
