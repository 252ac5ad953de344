"""`arc-trm`: one command line for the whole pipeline.

Each subcommand lives in the module that does the work and exposes `add_arguments(parser)` and
`run(args) -> int`. Modules are imported only when their command runs, so `arc-trm build` and
`arc-trm score` never import torch.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import signal
import sys
from pathlib import Path
from typing import NoReturn

from augment.console import eprint
from augment.errors import InputError
from augment.launch import exit_process, peer_gone
from arc_trm import __version__
from arc_trm.stopping import guarded

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("augment.build_cli", "build an augmented task set from ARC sources"),
    "show": ("submission.render", "write a PNG of a task (with attempts and solution when given)"),
    "train": ("arc_trm.train_cli", "train TRM on a built task set (CPU, one GPU or torchrun)"),
    "plot": ("arc_trm.plot", "write a PNG of a run's training curves"),
    "reference-ids": ("augment.reference_ids", "write the reference builder's puzzle identifier list for a recipe"),
    "import-checkpoint": ("arc_trm.import_reference", "convert a reference TRM checkpoint into an arc-trm run"),
    "export": ("arc_trm.export", "write a checkpoint's inference export (EMA weights in safetensors)"),
    "predict": ("arc_trm.predict_cli", "voted inference with halting -> Kaggle submission.json"),
    "score": ("submission.score", "score a submission.json against solutions"),
    "report": ("submission.report", "write an HTML page of a run's answers, scored where solutions are known"),
    "ttt": ("arc_trm.ttt", "test-time train on new tasks under a deadline, then predict"),
    "kaggle": ("submission.bundle_cli", "bundle the package, wheels and a checkpoint for Kaggle"),
    "config": ("arc_trm.show_config", "print the resolved config: every key, its value and meaning"),
}

EPILOG = """typical flow:
  arc-trm train --tasks arc-agi-2 --out runs/agi2      builds the augmented set on first use
  arc-trm predict --checkpoint runs/agi2 --tasks arc-agi-2:evaluation --out submission.json
  arc-trm score submission.json --tasks arc-agi-2:evaluation

task sources: arc-agi-1, arc-agi-2, kaggle2024, kaggle2025 (bundled, offline; add :training or
:evaluation for one split), a Kaggle challenges .json file, or a folder of task .json files.
Run `arc-trm COMMAND --help` for each command's options."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option's help ends with its default when it has one and
    does not say it already (flags and options without a default are left as they are)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (action.option_strings and action.nargs != 0 and default not in (None, False, [], argparse.SUPPRESS)
                and "default" not in text):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """A usage error in one line: argparse would print the usage block (up to 7 lines) first. It
    keeps the actions it declares, and its subcommands' action, for the checks below (argparse
    keeps them only in private attributes)."""

    def __init__(self, *args, **kwargs) -> None:
        self.declared: list[argparse.Action] = []  # before super().__init__, which declares --help
        self.subcommands: argparse.Action | None = None
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        if kwargs.get("type") is Path:  # Path("") is ".": an unset "$DIR" would pass for the current folder
            raise TypeError(f"{args}: declare paths as str (the empty-value check sees only strings)")
        action = super().add_argument(*args, **kwargs)
        self.declared.append(action)
        return action

    def add_subparsers(self, **kwargs) -> argparse.Action:  # type: ignore[override]
        self.subcommands = super().add_subparsers(**kwargs)
        return self.subcommands

    def error(self, message: str) -> NoReturn:
        eprint(f"{self.prog}: error: {message} (`{self.prog} --help` lists every option)")
        sys.exit(2)


def build_parser() -> Parser:
    parser = Parser(
        prog="arc-trm", description="Tiny Recursive Model (TRM) for ARC, from task files to a scored submission.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"arc-trm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)  # type: ignore[attr-defined]
    return parser


def command_parser(name: str) -> Parser:
    """The parser of one subcommand (its module imported)."""
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    sub = Parser(prog=f"arc-trm {name}", description=module.__doc__ or help_text, formatter_class=HelpFormatter)
    module.add_arguments(sub)
    return sub


def join_negative_values(parser: Parser, argv: list[str]) -> list[str]:
    """`--budget -5m` as `--budget=-5m`: argparse reads a value like -5m as an unknown option and
    says only "expected one argument"; joined, the command's own check names the problem."""
    options = {name: action for action in parser.declared for name in action.option_strings}
    out: list[str] = []
    for token in argv:
        action = options.get(out[-1]) if out else None
        if action is not None and action.nargs is None and re.match(r"-\.?\d", token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def empty_value_line(parser: Parser, args: argparse.Namespace) -> str | None:
    """The error line for an option or argument given as an empty string (`--checkpoint "$CKPT"` with
    the variable unset), which a command would read as left out (train on the preset's tasks, ttt from
    scratch) or as the current folder (--out); None when there is none. It names the parser that
    holds the option (`arc-trm kaggle bundle`), as argparse's own errors do."""
    for action in parser.declared:
        value = getattr(args, action.dest, None)
        if value == action.default:
            continue
        if any(isinstance(v, str) and not v.strip() for v in (value if isinstance(value, list) else [value])):
            name = "/".join(action.option_strings) or action.metavar or action.dest
            optional = action.option_strings and not action.required
            return f"{parser.prog}: error: {name} is empty; give a value" + (", or leave it out" if optional else "")
    if (sub := parser.subcommands) is not None and sub.choices:  # kaggle's actions: their own options
        chosen = sub.choices.get(getattr(args, sub.dest, None))  # type: ignore[union-attr]
        if isinstance(chosen, Parser):
            return empty_value_line(chosen, args)
    return None


# Errors of the machine, not the code, that name no path (a write to an open file on a full disk).
SYSTEM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def os_error_line(e: OSError) -> str | None:
    """The one-line account of an OSError that the user can act on: one naming a path (an --out
    folder that is read-only, busy, under a file, not theirs) or a full or failing disk; None for
    the rest (a socket, a bad call), which are bugs and keep their traceback."""
    if e.filename is None and e.errno not in SYSTEM_ERRNOS:
        return None
    words = e.strerror or str(e)
    if e.filename is None:
        return words
    where = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else f"{e.filename}"
    return f"{where}: {words}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = argv[0] if argv else None
    if first == "--version":
        print(f"arc-trm {__version__}")
        return 0
    if first in (None, "-h", "--help"):
        build_parser().print_help()
        if first is None:  # `arc-trm $CMD` with the variable unset must not pass for a run
            eprint("arc-trm: error: no command given (the commands are listed above)")
            return 2
        return 0
    if first not in COMMANDS:
        eprint(f"arc-trm: error: unknown command {first!r} (`arc-trm --help` lists the commands)")
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    sub = command_parser(name)
    args = sub.parse_args(join_negative_values(sub, rest))
    if (empty := empty_value_line(sub, args)) is not None:
        eprint(empty)
        return 2
    try:
        return guarded(name, lambda: int(module.run(args) or 0), rest)  # a signal from here on: one line, 128 + signum
    except InputError as e:
        # Bad input is the user's to fix: one line, no traceback.
        eprint(f"arc-trm {name}: error: {e}")
        return 2
    except RuntimeError as e:
        if (words := peer_gone(e)) is None:
            raise
        # A peer's own error or signal ended it; its line says why, and this rank's traceback would bury it.
        eprint(f"arc-trm {name}: stopped: another process of this torchrun job has ended ({words}); its line says why")
        return 1
    except BrokenPipeError:
        # `arc-trm score ... | head`: the reader left; the rest of the output has no one to read it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        # Ctrl-C while the guard's handlers go back (its last instant): no line to give but this
        eprint(f"arc-trm {name}: interrupted (SIGINT)")
        return 128 + signal.SIGINT
    except OSError as e:  # after BrokenPipeError, an OSError of its own
        if (line := os_error_line(e)) is None:
            raise
        eprint(f"arc-trm {name}: error: {line}")
        return 2


def entry() -> NoReturn:
    """The `arc-trm` console script and `python -m arc_trm.cli`."""
    exit_process(main())


if __name__ == "__main__":
    entry()
