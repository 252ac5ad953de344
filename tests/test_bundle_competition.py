"""`kaggle bundle --competition SLUG` reaches the notebook: its COMPETITION default is the slug
(kernel-metadata.json attached the competition, but the notebook still looked for the 2026 slug and,
missing it, took any challenges file below the input, an attached dataset's before the competition's).
The notebook's first cell runs here as it does in the kernel (standard library only)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import nbformat
import pytest

from submission import bundle as kb

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "kaggle_submission.ipynb"
NAME = "arc-agi_test_challenges.json"


def run_first_cell(notebook: Path, monkeypatch: pytest.MonkeyPatch, root: Path, **env: str) -> tuple[dict, str]:
    """The notebook's settings cell run against root/input; its globals and what it printed."""
    code = next(c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code")
    monkeypatch.delenv("ARC_TRM_COMPETITION", raising=False)
    for key, value in {"ARC_TRM_INPUT": str(root / "input"), "ARC_TRM_WORKING": str(root / "working"), **env}.items():
        monkeypatch.setenv(key, value)
    names: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(code, str(notebook), "exec"), names)  # noqa: S102 - the notebook's own code
    return names, out.getvalue()


def challenges(root: Path, folder: str) -> Path:
    path = root / "input" / folder / NAME
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({folder.replace("/", "_"): {"train": [], "test": [{"input": [[1]]}]}}))
    return path


def test_the_shipped_notebook_looks_for_the_bundles_competition(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    spec = kb.BundleSpec(user="alice", competition="arc-prize-2025", cache=tmp_path / "empty", download=False)
    shipped = kb.write_bundle(tmp_path / "dist", spec, log=lambda *_: None).kernel / kb.NOTEBOOK_NAME
    text = shipped.read_text()
    assert 'COMPETITION = env(\\"ARC_TRM_COMPETITION\\", \\"arc-prize-2025\\")' in text
    assert text.replace("arc-prize-2025", kb.DEFAULT_COMPETITION) == NOTEBOOK.read_text()  # nothing else changed

    own = challenges(tmp_path, "arc-prize-2025")  # the 2025 layout: /kaggle/input/<slug>/
    challenges(tmp_path, "datasets/alice/extra")  # an attached dataset holding a challenges file too
    names, _ = run_first_cell(shipped, monkeypatch, tmp_path)
    assert names["COMPETITION"] == "arc-prize-2025" and names["CHALLENGES"] == own
    other = challenges(tmp_path, "competitions/arc-prize-2027")  # the environment still overrides
    names, _ = run_first_cell(shipped, monkeypatch, tmp_path, ARC_TRM_COMPETITION="arc-prize-2027")
    assert names["CHALLENGES"] == other


def test_the_default_competition_ships_the_notebook_as_it_is(tmp_path: Path) -> None:
    kb.ship_notebook(NOTEBOOK, tmp_path / "nb.ipynb", kb.DEFAULT_COMPETITION)
    assert (tmp_path / "nb.ipynb").read_bytes() == NOTEBOOK.read_bytes()


def test_the_search_takes_the_competitions_file_over_a_datasets(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """No folder of the slug: of the files found below the input, one under competitions/ is taken and
    one line names them all ("datasets/" sorted after "competitions/", and the last was taken)."""
    own = challenges(tmp_path, "competitions/arc-prize-2099")
    decoy = challenges(tmp_path, "datasets/alice/extra")
    names, printed = run_first_cell(NOTEBOOK, monkeypatch, tmp_path)
    assert names["CHALLENGES"] == own
    line, last = printed.splitlines()
    found = (f"{a}, {b}" for a, b in ((own, decoy), (decoy, own)))
    assert line in (f"2 {NAME} below {tmp_path / 'input'}: {pair}; using {own}" for pair in found)
    assert last == f"challenges: {own}"
    decoy.unlink()  # one file: taken without a word
    names, printed = run_first_cell(NOTEBOOK, monkeypatch, tmp_path)
    assert names["CHALLENGES"] == own and printed.splitlines() == [f"challenges: {own}"]
