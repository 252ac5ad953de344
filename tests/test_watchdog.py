"""The notebook's watchdog ends the whole tree of a fake ttt whose workers start in new sessions,
ignore SIGTERM and hold the output pipe: real subprocesses, real signals."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from submission import watchdog as wd

# A stand-in for torchrun/ttt: two workers in new sessions that ignore SIGTERM and keep stdout open,
# one of which starts a grandchild in yet another session. argv: PIDS_FILE MODE
#   crash     exits 1 at once (a hard crash leaving its workers behind)
#   hang      sleeps; exits on SIGTERM like torchrun (its workers do not)
#   stubborn  sleeps and ignores SIGTERM too
FAKE_TTT = textwrap.dedent(r'''
    import os, signal, subprocess, sys, time
    pids_file, mode = sys.argv[1], sys.argv[2]
    sleeper = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    worker = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "g = subprocess.Popen([sys.executable, '-c', %r], start_new_session=True); "
              "open(sys.argv[1], 'w').write(str(g.pid)); print('worker up', flush=True); time.sleep(600)") % sleeper
    if mode != "stubborn":
        signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    else:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    workers = [subprocess.Popen([sys.executable, "-c", worker, f"{pids_file}.g{i}"], start_new_session=True)
               for i in range(2)]
    while not all(os.path.exists(f"{pids_file}.g{i}") and open(f"{pids_file}.g{i}").read() for i in range(2)):
        time.sleep(0.02)
    grand = [open(f"{pids_file}.g{i}").read() for i in range(2)]
    with open(pids_file + ".tmp", "w") as f:
        f.write(" ".join([str(os.getpid())] + [str(w.pid) for w in workers] + grand))
    os.replace(pids_file + ".tmp", pids_file)
    print("fake ttt: workers started", flush=True)
    if mode == "crash":
        os._exit(1)
    time.sleep(600)
''')


def fake_ttt(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "fake_ttt.py"
    script.write_text(FAKE_TTT)
    return script, tmp_path / "pids.txt"


def alive(pid: int) -> bool:
    st = wd.read_stat(pid)
    return st is not None and st.state != "Z"


@pytest.fixture
def cleanup_pids():
    """Whatever the test's fake started is SIGKILLed at the end even if the watchdog failed."""
    files: list[Path] = []
    yield files
    for f in files:
        if f.is_file():
            wd.signal_each([int(p) for p in f.read_text().split() if alive(int(p))], signal.SIGKILL)


def run_fake(tmp_path: Path, mode: str, files: list[Path], **limits: float) -> tuple[wd.WatchResult, list[int], str]:
    script, pids = fake_ttt(tmp_path)
    files.append(pids)
    out: list[str] = []
    result = wd.run_watched([sys.executable, str(script), str(pids), mode], echo=out.append, **limits)
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 5  # root, two workers, two grandchildren
    return result, started, "".join(out)


@pytest.mark.parametrize("mode", ["hang", "stubborn"])
def test_timeout_ends_every_process_within_timeout_plus_grace(tmp_path: Path, mode: str, cleanup_pids) -> None:
    timeout, grace = 3.0, 2.0
    t0 = time.monotonic()
    result, started, text = run_fake(tmp_path, mode, cleanup_pids, timeout_s=timeout, grace_s=grace)
    took = time.monotonic() - t0
    assert result.timed_out
    assert took < timeout + grace + 4, took
    assert not [p for p in started if alive(p)], "processes survived the watchdog"
    assert result.leftovers == []
    # The workers ignore SIGTERM: they needed SIGKILL (and so did the root, when it ignores SIGTERM too).
    assert set(started[1:]) <= set(result.killed)
    assert (started[0] in result.killed) == (mode == "stubborn")
    assert result.returncode == (-signal.SIGKILL if mode == "stubborn" else 143)
    assert "fake ttt: workers started" in text and text.count("worker up") == 2


def test_a_crash_does_not_wait_for_orphans_holding_the_pipe(tmp_path: Path, cleanup_pids) -> None:
    t0 = time.monotonic()
    result, started, text = run_fake(tmp_path, "crash", cleanup_pids, timeout_s=120, grace_s=60)
    took = time.monotonic() - t0
    assert result.returncode == 1 and not result.timed_out
    # Not the 120 s timeout, not the 60 s grace: the leftovers get the short grace, then SIGKILL.
    assert took < wd.LEFTOVER_GRACE_S + 5, took
    assert not [p for p in started if alive(p)]
    assert set(started[1:]) <= set(result.killed)
    assert "left 4 processes" in text


def test_output_of_a_clean_run_is_echoed_whole(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(2000): print('line', i)\nprint('é', end='')\nsys.exit(3)"
    out: list[str] = []
    result = wd.run_watched([sys.executable, "-c", code], timeout_s=60, grace_s=5, echo=out.append)
    text = "".join(out)
    assert result.returncode == 3 and not result.timed_out and result.killed == []
    assert text.splitlines()[:2000] == [f"line {i}" for i in range(2000)] and text.endswith("é")


def test_descendants_and_token_holders_are_found(tmp_path: Path) -> None:
    stats = wd.all_stats()
    me = os.getpid()
    assert stats[me].ppid == os.getppid()
    assert me in wd.descendants(stats[me].ppid, stats)
    assert wd.token_holders("no-such-token", stats) == {}


def test_waiting_on_a_closed_pipe_sleeps_instead_of_spinning() -> None:
    """A command that closes its output and ignores SIGTERM: the watchdog waits out the timeout and
    the grace period on a closed pipe. It polls the tree every POLL_S there; spinning on the
    closed pipe used about half a core. A bound on the watchdog's own CPU time, not on wall time."""
    code = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "os.close(1); os.close(2); time.sleep(60)")
    cpu0, wall0 = time.process_time(), time.monotonic()
    result = wd.run_watched([sys.executable, "-c", code], timeout_s=1.0, grace_s=2.0, echo=lambda _: None)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    assert result.timed_out and result.returncode == -signal.SIGKILL and result.leftovers == []
    assert wall >= 3.0  # the timeout and the whole grace period were waited out
    assert cpu < 0.2 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s"
