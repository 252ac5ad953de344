"""The paper-size network through import, predict and score on CPU (benchmarks/published_smoke.py),
with a small puzzle table (arc1concept at 0 augmentations) instead of the 1.8 GB one. Slow: a
paper-size view-step takes seconds on a CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CONCEPTARC

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not CONCEPTARC.exists(), reason="ConceptARC is read from ../shared/data")
def test_published_layout_imports_predicts_and_scores(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "published_smoke.py"), "--rows", "961",
                          "--augmentations", "0", "--conceptarc", str(CONCEPTARC), "--workdir", str(tmp_path),
                          "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads(out.read_text())
    for name in ("import", "predict", "score"):
        assert result[name]["exit_code"] == 0, result[name]
    assert any("960 puzzle embeddings" in line for line in result["import"]["tail"])
    assert not any(p.name.startswith("published_smoke_") for p in tmp_path.iterdir()), "work folder removed"
