"""The licence of shipped weights: a bundle's dataset says where imported weights came from.

arc-trm's code is Apache-2.0 (pyproject). Weights imported from published ones keep their own
licence, which a redistribution must carry: `arc-trm import-checkpoint` records the source (and a
known source's licence, licence_fields) in the run's import.json, which every `arc-trm export` of
the run, every `ttt` run started from it and a bundle's copied checkpoint carry (carry_import_record),
and `kaggle bundle` writes a notice (NOTICE_NAME) into the dataset and labels its metadata. Kaggle's dataset-metadata.json takes exactly one licence from a fixed list (no MIT),
so a dataset that mixes the two is labelled `other` and its description names both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath

from augment.errors import InputError
from augment.files import read_json, write_text_atomic
from submission.runfolder import IMPORT_RECORD

NOTICE_NAME = "LICENSE-weights.txt"
CODE_LICENCE = "apache-2.0"  # Kaggle's name for the package's own licence

# Published weights whose licence is known: the repository (as it appears in an hf:// source or in
# the Hugging Face cache path of the weights) -> (licence, where it is stated).
KNOWN_SOURCES: dict[str, tuple[str, str]] = {
    "arcprize/trm_arc_prize_verification": ("MIT", "https://huggingface.co/arcprize/trm_arc_prize_verification"),
}


@dataclass(frozen=True)
class WeightsSource:
    """Where a checkpoint's weights came from, as its run recorded it."""

    source: str  # the import's source (hf://OWNER/REPO/FOLDER or a path)
    weights: str  # the file the import read
    licence: str | None  # None: neither recorded nor known
    stated_at: str = ""  # where the licence is stated, when known

    def notice(self) -> str:
        licence = (f"licence: {self.licence}" + (f" ({self.stated_at})" if self.stated_at else "")
                   if self.licence else "licence: not recorded by the import; check the source's terms before "
                                        "redistributing")
        return (f"The checkpoint in this dataset holds weights imported with `arc-trm import-checkpoint` from\n"
                f"  {self.source}\n  (file {self.weights})\n{licence}.\n"
                f"They are redistributed under that licence; its copyright and permission notice apply to them.\n"
                f"The arc-trm wheel in wheels/ is Apache-2.0.\n")

    def description(self) -> str:
        licence = self.licence or "not recorded"
        return (f"arc-trm (Apache-2.0) with weights from {self.source} (licence: {licence}); see {NOTICE_NAME}.")


def record_folders(checkpoint: Path) -> list[Path]:
    """The folders that may hold a checkpoint's import record: the checkpoint folder (an inference
    export carries its source's record), and the run folder above it (RUN/checkpoints/step_N)."""
    folders = [checkpoint]
    if checkpoint.parent.name == "checkpoints":
        folders.append(checkpoint.parent.parent)
    return folders


def import_record(checkpoint: Path) -> Path | None:
    """The import record of `checkpoint`'s weights (see record_folders), or None: trained here."""
    for folder in record_folders(Path(checkpoint)):
        if (folder / IMPORT_RECORD).is_file():
            return folder / IMPORT_RECORD
    return None


def carry_import_record(checkpoint: Path, folder: Path) -> Path | None:
    """Copy the import record of `checkpoint`'s weights (import_record) into `folder`, atomically:
    what is made from imported weights (an export, a ttt run, a bundle's checkpoint/) names their
    source and licence as the import does. None, nothing written: weights trained here."""
    record = import_record(checkpoint)
    target = Path(folder) / IMPORT_RECORD
    if record is None or record.resolve() == target.resolve():
        return None if record is None else target
    write_text_atomic(target, record.read_text(encoding="utf-8"))
    return target


def known_licence(*names: str) -> tuple[str, str] | None:
    """The licence of a known published source named (hf://, or the hub cache's models--O--R) in `names`."""
    for repo, licence in KNOWN_SOURCES.items():
        cached = "models--" + repo.replace("/", "--")  # one whole folder of the cache's path, not a part of a name
        if any(name == f"hf://{repo}" or name.startswith(f"hf://{repo}/") or cached in PurePath(name).parts
               for name in names):
            return licence
    return None


def licence_fields(source: str, weights: str) -> dict[str, str]:
    """What `import-checkpoint` adds to its record for a known published source (read back by
    weights_source), so the record itself names the licence; nothing for an unknown one."""
    known = known_licence(source, weights)
    return {} if known is None else {"licence": known[0], "licence_stated_at": known[1]}


def weights_source(checkpoint: Path) -> WeightsSource | None:
    """The source of `checkpoint`'s weights from its run's import record; None when there is none
    (trained here). A record's own `licence` wins over the table of known sources."""
    path = import_record(checkpoint)
    if path is None:
        return None
    record = read_json(path, "import record")
    if not isinstance(record, dict) or not isinstance(record.get("source"), str):
        raise InputError(f"{path}: import record without a source; cannot name the weights' licence")
    source, weights = record["source"], str(record.get("reference_checkpoint") or "")
    recorded = record.get("licence") or record.get("license")
    if isinstance(recorded, str) and recorded:
        return WeightsSource(source, weights, recorded, str(record.get("licence_stated_at") or ""))
    licence, stated_at = known_licence(source, weights) or (None, "")
    return WeightsSource(source, weights, licence, stated_at)


def licence_label(shipped: WeightsSource | None) -> list[dict[str, str]]:
    """dataset-metadata.json's `licenses` (Kaggle takes exactly one): the code's alone, else `other`
    (the description says which), or `unknown` when the weights' licence is not known."""
    if shipped is None:
        return [{"name": CODE_LICENCE}]
    return [{"name": "other" if shipped.licence else "unknown"}]
