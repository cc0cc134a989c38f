"""The alternate's state journal: what Phase 1 built, for Phases 2 and 3 and alt query.

One JSON file per alternate (a set of targets), under /var/lib/imgclone/alternates, or
IMGCLONE_STATE_DIR. Its name is derived from the targets' real paths, so a later process
naming the same -d targets finds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from imgclone.errors import ImgcloneError
from imgclone.host.targets import TargetDisk
from imgclone.plan.types import Plan

STATE_VERSION = 1
STDIN = "(standard input)"  # the archive of `restore -a -`: no path to record
STREAMED = "(streamed by imgclone copy, not kept)"  # copy without --archive: its pipe is no name either
BLOCKS = "(none: imgclone copy copied the source's blocks)"  # copy --by blocks reads no archive


def state_dir() -> Path:
    """Where the journals live."""
    return Path(os.environ.get("IMGCLONE_STATE_DIR", "/var/lib/imgclone/alternates"))


def alternate_id(target_paths: Sequence[str]) -> str:
    """Stable id of the alternate made of these targets."""
    key = "\0".join(sorted(os.path.realpath(p) for p in target_paths))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def state_path(target_paths: Sequence[str]) -> Path:
    return state_dir() / f"{alternate_id(target_paths)}.json"


def save_phase1(target_paths: Sequence[str], disks: Sequence[TargetDisk], plan: Plan, manifest: dict[str, Any],
                archive: str, uuids: dict[str, str], *, started: bool = False) -> Path:  # fmt: skip
    """Record Phase 1 as complete: targets, the built layout with its names and new UUIDs.

    started: record instead that Phase 1 is about to write to the targets (no phase completed), so that one
    that dies half-way leaves a journal saying so: `alt cleanup --wipe` can blank the targets, Phases 2 and 3
    refuse them.
    """
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    doc = {
        "version": STATE_VERSION,
        "targets": [{"path": d.path, "kind": d.kind, "format": d.format, "size": d.size} for d in disks],
        "layout": plan.target.to_dict(),
        "source_layout": plan.source.to_dict(),
        "uuids": uuids,
        "archive": {"-": STDIN, STREAMED: STREAMED, BLOCKS: BLOCKS}.get(archive) or os.path.abspath(archive),
        "archive_created": manifest.get("created"),
        "boot": manifest.get("boot", {}),
        "phases": {} if started else {"1": {"completed": now}},
    }
    if started:
        doc["phase1_started"] = now
    path = state_path(target_paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def interrupted_phase1(doc: dict[str, Any] | None) -> bool:
    """Whether a journal is that of a Phase 1 that started writing and did not complete."""
    return doc is not None and "phase1_started" in doc and "1" not in doc.get("phases", {})


def phase1_failed(target_paths: Sequence[str], error: BaseException, *, started: bool, targets_removed: bool) -> None:
    """After a failed Phase 1 that had started writing: forget it when its targets are gone (images it created),
    else say in the error how to blank them."""
    if not started or not interrupted_phase1(load(target_paths)):
        return  # it failed before writing: the targets (and an earlier journal) are as they were
    if targets_removed:
        remove(target_paths)
        return
    if isinstance(error, ImgcloneError):
        dflag = target_paths[0] if len(target_paths) == 1 else '"' + " ".join(target_paths) + '"'
        done = f"the targets are partly written; imgclone alt cleanup -d {dflag} --wipe blanks them"
        error.hint = f"{error.hint}; {done}" if error.hint else done


def load(target_paths: Sequence[str]) -> dict[str, Any] | None:
    """The journal of these targets, or None."""
    path = state_path(target_paths)
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def mark_phase(target_paths: Sequence[str], phase: str, details: dict[str, Any]) -> None:
    """Record a completed phase in the journal."""
    path = state_path(target_paths)
    doc = json.loads(path.read_text())
    doc.setdefault("phases", {})[phase] = {"completed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **details}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# -- alt_rootvg_op (imgclone alt): every journal, the woken record, forgetting an alternate ---------------------------


def list_alternates() -> list[tuple[Path, dict[str, Any]]]:
    """Every journal in state_dir() with its contents, by file name; unreadable ones are skipped with a warning."""
    out: list[tuple[Path, dict[str, Any]]] = []
    directory = state_dir()
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            logging.getLogger("imgclone").warning("%s: unreadable journal skipped: %s", path, e)
            continue
        if isinstance(doc, dict) and isinstance(doc.get("targets"), list):
            out.append((path, doc))
    return out


def _rewrite(target_paths: Sequence[str], change: Callable[[dict[str, Any]], None]) -> None:
    path = state_path(target_paths)
    doc = json.loads(path.read_text())
    change(doc)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def set_woken(target_paths: Sequence[str], record: dict[str, Any]) -> None:
    """Record that the alternate is mounted on the host (alt wake): mount point, guestmount pid, since when."""
    _rewrite(target_paths, lambda doc: doc.__setitem__("woken", record))


def clear_woken(target_paths: Sequence[str]) -> None:
    """Forget the woken record (alt sleep)."""
    _rewrite(target_paths, lambda doc: doc.pop("woken", None))


def remove(target_paths: Sequence[str]) -> bool:
    """Delete the journal of these targets (alt cleanup); False when there was none."""
    path = state_path(target_paths)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
