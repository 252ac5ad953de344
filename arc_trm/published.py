"""Published reference checkpoints: where their weights are and which identifier list they need.

A published checkpoint (ARC Prize's `arcprize/trm_arc_prize_verification`, and the same format
elsewhere) is a folder of `step_N` weight files plus the reference's `all_config.yaml`, without
identifiers.json. `locate` finds the weights (a `step_N` file, a folder, whose latest step is
taken unless --step says otherwise, or `hf://OWNER/REPO/FOLDER` through huggingface_hub), and
`recipe_from_config` reads which data set they were trained on from the config's data path
(`data/arc1concept-aug-1000` is recipe arc1concept at 1000 augmentations), so that
augment.reference_ids can rebuild the identifier list (REFERENCE §2b).
"""

from __future__ import annotations

import contextlib
import logging
import re
import reprlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from augment.console import eprint
from augment.errors import InputError, missing_extra
from augment.files import read_json
from augment.grids import split_identifier
from augment.reference_ids import (RECIPES, WHERE_CONCEPTARC, check_draw_settings, load_conceptarc,
                                   recipe_task_hashes, reference_identifiers)
from augment.transforms import Augmentation

REF_SEPARATOR = "|||"  # the reference's separator inside augmented puzzle names
BLANK = "<blank>"
_AUG_DIHEDRAL = re.compile(r"^t([0-7])$")
_AUG_PERM = re.compile(r"^[0-9]{10}$")
HUB_PREFIX = "hf://"
CONFIG_NAME = "all_config.yaml"
_STEP = re.compile(r"^step_(\d+)$")
_OUR_SUFFIX = re.compile(r"#\d+$")  # our `task#k`; no reference name (ARC, ConceptARC ids) ends so
_DATA_PATH = re.compile(r"(arc[12]concept)-aug-(\d+)$")


@dataclass(frozen=True)
class Located:
    weights: Path  # the step_N file
    config: Path | None  # all_config.yaml beside it, if there is one
    step: int | None  # N of step_N, None for another file name


@dataclass(frozen=True)
class Recipe:
    name: str  # a key of augment.reference_ids.RECIPES
    augmentations: int
    where: str  # what said so, for messages


def _pick_step(steps: dict[int, str], wanted: int | None, where: str) -> int:
    if not steps:
        raise InputError(f"{where}: no step_N weight files")
    if wanted is None:
        return max(steps)
    if wanted not in steps:
        raise InputError(f"{where}: no step_{wanted} (steps here: {', '.join(map(str, sorted(steps)))})")
    return wanted


def _step_files(names: list[str]) -> dict[int, str]:
    return {int(m.group(1)): n for n in names if (m := _STEP.match(n))}


def locate(source: str, step: int | None = None) -> Located:
    """The weights and config of a step_N file, a folder of them, or an hf:// folder."""
    if source.startswith(HUB_PREFIX):
        return locate_on_hub(source, step)
    path = Path(source)
    if path.is_dir():
        files = _step_files([p.name for p in path.iterdir() if p.is_file()])
        chosen = _pick_step(files, step, str(path))
        config = path / CONFIG_NAME
        return Located(path / files[chosen], config if config.is_file() else None, chosen)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint file missing")
    m = _STEP.match(path.name)
    if step is not None and (m is None or int(m.group(1)) != step):
        raise InputError(f"--step {step} names a step of a folder; {path} is one file")
    config = path.with_name(CONFIG_NAME)
    return Located(path, config if config.is_file() else None, int(m.group(1)) if m else None)


def _hub():
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:
        raise missing_extra("hf:// sources", "huggingface_hub", "hub") from None
    return huggingface_hub, constants.HF_HUB_OFFLINE


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What the hub's calls raise for a network, HTTP or cache problem: OSError and ValueError, and
    from huggingface_hub 1.0 on also its HTTP client's base error (httpx's is no OSError)."""
    try:
        from huggingface_hub.errors import HTTPError
    except ImportError:  # older releases: requests' errors, which are OSErrors
        return (OSError, ValueError)
    return (OSError, ValueError, HTTPError)


def _cached_names(hub, repo_id: str, folder: str) -> list[str]:
    """The file names of `folder` in the cached snapshot of `repo_id` (no network)."""
    prefix = f"{folder}/" if folder else ""
    snapshot = Path(hub.snapshot_download(repo_id, allow_patterns=[f"{prefix}{CONFIG_NAME}"], local_files_only=True))
    here = snapshot / folder
    return [p.name for p in here.iterdir()] if here.is_dir() else []


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def quiet_hub(call: Callable):
    """huggingface_hub's own warnings silenced while `call` (one of its functions) runs: unreachable,
    it logs each of its five retries, and the one line said below is what the user needs. `call`
    is looked up first: the lazy import behind it sets the library's log level."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield call
    finally:
        logger.setLevel(level)


def _hub_names(hub, repo_id: str, folder: str, offline: bool, source: str) -> tuple[list[str], bool]:
    """(file names of `folder`, whether they come from the cache). Online, a hub that cannot be
    reached (no network, hub down, no token) falls back to the cache, as huggingface_hub's own
    downloads do; the hub's error is the one reported when the cache has no copy either."""
    if offline:  # only what the cache holds
        return _cached_names(hub, repo_id, folder), True
    prefix = f"{folder}/" if folder else ""
    try:
        with quiet_hub(hub.list_repo_files) as list_repo_files:
            return [f[len(prefix):] for f in list_repo_files(repo_id) if f.startswith(prefix)], False
    except _hub_errors() as online:
        try:
            names = _cached_names(hub, repo_id, folder)
        except _hub_errors():
            raise online from None
        if not _step_files(names):  # the cache has no weights there: the hub's error is the news
            raise online from None
        eprint(f"warning: {source}: the hub cannot be listed ({_first_line(online)}); using the copy in the "
               "Hugging Face cache (HF_HUB_OFFLINE=1 skips the hub)")
        return names, True


def locate_on_hub(source: str, step: int | None) -> Located:
    """hf://OWNER/REPO/FOLDER[/step_N] through huggingface_hub's cache (HF_HOME, HF_HUB_OFFLINE honoured;
    a hub that cannot be reached falls back to the cache)."""
    parts = source[len(HUB_PREFIX):].strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise InputError(f"{source}: expected hf://OWNER/REPO[/FOLDER]")
    if len(parts) > 2 and (m := _STEP.match(parts[-1])):  # one file, as the hub's page links it: its folder's step
        if step is not None and step != int(m.group(1)):
            raise InputError(f"--step {step} names a step of a folder; {source} is one file")
        parts, step = parts[:-1], int(m.group(1))
    repo_id, folder = "/".join(parts[:2]), "/".join(parts[2:])
    hub, offline = _hub()
    prefix = f"{folder}/" if folder else ""
    try:
        names, cached = _hub_names(hub, repo_id, folder, offline, source)
        files = _step_files(names)
        chosen = _pick_step(files, step, source)
        weights = Path(hub.hf_hub_download(repo_id, f"{prefix}{files[chosen]}", local_files_only=cached))
        config = Path(hub.hf_hub_download(repo_id, f"{prefix}{CONFIG_NAME}", local_files_only=cached)) \
            if CONFIG_NAME in names else None
    except InputError:
        raise
    except _hub_errors() as e:  # HTTP, no network, not cached, offline
        raise InputError(f"{source}: {_first_line(e)}") from None
    return Located(weights, config, chosen)


def recipe_from_config(config: dict[str, Any], where: str) -> Recipe | None:
    """The recipe a reference all_config.yaml trained on, from its data path(s); None if unknown."""
    key = "data_paths" if config.get("data_paths") else "data_path"
    given = config.get(key) or []
    paths = [given] if isinstance(given, str) else given
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise InputError(f"{where}: {key} must be a path or a list of paths, got {reprlib.repr(given)}")
    found = {(m.group(1), int(m.group(2))) for p in paths if (m := _DATA_PATH.search(p.rstrip("/")))}
    if len(found) != 1 or len(paths) != 1:
        return None
    name, augmentations = found.pop()
    return Recipe(name, augmentations, f"{where}: data path {paths[0]}") if name in RECIPES else None


_DIHEDRAL_NAMES = frozenset(f"t{t}" for t in range(8))  # the dihedral part of a well-formed name
_DIGITS = frozenset("0123456789")
_IDENTITY_RECORD = Augmentation.identity().to_str()


def _parse_name(name: str, row: int, next_k: dict[str, int]) -> tuple[str, int, str]:
    """(task id, k, augmentation record) of one reference name, every rule checked one by one;
    ValueError naming the row otherwise. The slow path: only names the fast check turns away."""
    parts = name.split(REF_SEPARATOR)
    if len(parts) == 1:
        task_id, k, record = name, 0, _IDENTITY_RECORD
    else:
        bad = f"malformed puzzle name {name!r} (id {row}); expected 'task' or 'task|||t<0-7>|||<10 digits>'"
        if len(parts) != 3 or not parts[0] or not _AUG_DIHEDRAL.match(parts[1]) or not _AUG_PERM.match(parts[2]):
            raise ValueError(bad)
        try:
            record = Augmentation(int(parts[1][1]), tuple(int(c) for c in parts[2])).to_str()
        except ValueError as e:
            raise ValueError(f"{bad}: {e}") from None
        task_id = parts[0]
        k = next_k.get(task_id, 1)
        next_k[task_id] = k + 1
    if not task_id.strip() or task_id == BLANK:
        raise ValueError(f"malformed puzzle name {name!r} (id {row}): empty or reserved task id")
    if _OUR_SUFFIX.search(task_id):  # mapped, it would be task `task#k` and every row the identity
        raise ValueError(f"malformed puzzle name {name!r} (id {row}): ends in '#<number>' as arc-trm's own "
                         "identifiers do; expected the reference data set's names")
    return task_id, k, record


def _first_repeat(names: list[str]) -> tuple[int, int] | None:
    """(first id, later id) of the earliest name that appears again, or None."""
    if len(set(names)) == len(names):
        return None
    seen: dict[str, int] = {}
    for row, name in enumerate(names):
        if name in seen:
            return seen[name], row
        seen[name] = row
    return None  # unreachable: the set was smaller


def map_reference_identifiers(names: list[Any]) -> ImportedNames:
    """Reference puzzle names (row = puzzle id) -> our identifiers, augmentation records and the
    most versions of one task (no source yet). Row order is kept: row r of the result describes
    reference puzzle id r. Raises ValueError on a malformed or duplicated name
    (the first bad row in id order).
    """
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("expected a JSON list of puzzle names")
    if not names or names[0] != BLANK:
        raise ValueError(f"puzzle id 0 must be {BLANK!r}, got {names[0] if names else None!r}")
    repeat = _first_repeat(names)
    stop = repeat[1] if repeat is not None else len(names)
    identifiers, augmentations = [BLANK], [""]
    next_k: dict[str, int] = {}
    versions: dict[str, int] = {}
    # Published lists hold about a million names: the common shapes are checked inline (a dict
    # look-up and a few string tests per name); anything else goes through _parse_name.
    for row in range(1, stop):
        name = names[row]
        parts = name.split(REF_SEPARATOR)
        task_id = parts[0]
        if len(parts) == 3 and parts[1] in _DIHEDRAL_NAMES and len(perm := parts[2]) == 10 and perm[0] == "0" \
                and set(perm) == _DIGITS and (task_id in next_k or (task_id.strip() and task_id != BLANK
                                                              and "#" not in task_id)):
            k = next_k.get(task_id, 1)
            next_k[task_id] = k + 1
            record = f"{parts[1]}p{perm}"
        else:
            task_id, k, record = _parse_name(name, row, next_k)
        identifiers.append(f"{task_id}#{k}")
        augmentations.append(record)
        versions[task_id] = versions.get(task_id, 0) + 1
    if repeat is not None:
        raise ValueError(f"puzzle name {names[repeat[1]]!r} appears twice (ids {repeat[0]} and {repeat[1]})")
    if not versions:
        raise ValueError("names no puzzles besides the blank id 0")
    return ImportedNames(identifiers, augmentations, max(versions.values()))


@dataclass
class ImportedNames:
    identifiers: list[str]  # row -> our `task#k`
    augmentations: list[str]  # row -> augmentation record
    versions: int  # most versions of one task
    source: str = ""  # where the names came from, for messages and import.json
    task_hashes: dict[str, str] | None = None  # task id -> content hash; None: the source names no task set


def read_identifiers(path: Path) -> ImportedNames:
    """The reference data set's identifiers.json (a JSON list of puzzle names) as our identifiers."""
    names = read_json(path, "identifiers file")
    if isinstance(names, dict) and "identifiers" in names:  # its rows are our build's, not the reference's
        raise InputError(f"{path}: an arc-trm identifier map (as a run's checkpoints or a build hold), not the "
                         "reference data set's identifiers.json (a JSON list of puzzle names, id 0 '<blank>'); "
                         "pass that list, or leave out --identifiers to rebuild it (--recipe, --conceptarc)")
    try:
        return replace(map_reference_identifiers(names), source=str(path))
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None


@dataclass(frozen=True)
class NamesWanted:
    """Where the identifier list comes from: a file, else the recipe rebuilt (flags, then config)."""

    identifiers: Path | None = None  # the reference data set's identifiers.json
    recipe: str | None = None  # None: from the config's data path
    augmentations: int | None = None  # None: from the config's data path, else 1000
    seed: int = 42  # the reference builder's seed
    conceptarc: Path | None = None  # ConceptARC challenges JSON, for rebuilding


def check_names_wanted(request: NamesWanted) -> ImportedNames | None:
    """The --identifiers file's names, read and checked; else None, once what a rebuild needs is
    checked: the seed and count of its draws, and ConceptARC (both recipes rebuild with it). Called
    before the weights are located, since an hf:// folder downloads gigabytes first; the recipe
    itself is read from their config later (rebuild_names)."""
    if request.identifiers is not None:
        return read_identifiers(request.identifiers)  # seconds for a published list's million names
    check_draw_settings(request.augmentations or 0, request.seed)  # None: the config's count, never negative
    if request.conceptarc is None:
        raise InputError(WHERE_CONCEPTARC)
    load_conceptarc(request.conceptarc)  # under a second: a missing _solutions.json is named now
    return None


def rebuild_names(request: NamesWanted, config: dict[str, Any] | None, config_path: Path | None,
                  log: Callable[[str], object]) -> ImportedNames:
    """The reference's list rebuilt for the recipe (flags, then config); without --identifiers."""
    found = recipe_from_config(config, str(config_path)) if config is not None else None
    recipe = request.recipe or (found.name if found else None)
    if recipe is None:
        raise InputError("no identifiers: pass --identifiers FILE, or --recipe " + "|".join(RECIPES) +
                         (" (no all_config.yaml beside the weights)" if config is None
                          else f" ({config_path} names no known recipe in its data path)"))
    augmentations = request.augmentations if request.augmentations is not None else (
        found.augmentations if found and found.name == recipe else 1000)
    if request.augmentations is None and found and found.name == recipe:  # else blamed on the flag
        check_draw_settings(augmentations, request.seed, f"{found.where}: its augmentation count")
    if request.conceptarc is None:
        raise InputError(WHERE_CONCEPTARC)
    where = found.where if found and request.recipe is None else "--recipe"
    log(f"identifiers: the reference builder's list for {recipe}, {augmentations} augmentations, seed "
        f"{request.seed} ({where})")
    built = reference_identifiers(recipe, request.conceptarc, augmentations, request.seed)
    source = f"recipe {recipe} at {augmentations} augmentations (seed {request.seed})"
    mapped = map_reference_identifiers(built.names)
    content = recipe_task_hashes(recipe, request.conceptarc)
    tasks = dict.fromkeys(split_identifier(i).task_id for i in mapped.identifiers[1:])
    return replace(mapped, source=source, task_hashes={task: content[task] for task in tasks})
