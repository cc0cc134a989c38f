"""The alternate's journal: what Phase 1 built, for Phases 2 and 3, `alt query` and `archive verify --against`.

One JSON file per alternate (a set of targets), under /var/lib/imgclone/alternates, or IMGCLONE_STATE_DIR. Its name
is derived from the targets' real paths, so a later process naming the same -d targets finds it. `Journal` is its
content as data; `to_dict` writes the keys imgclone has always written and `from_dict` reads every journal an
imgclone wrote (a field it lacks takes its empty value). Each change is written to a temporary file and renamed,
so a run killed meanwhile leaves the old journal or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclone.errors import ImgcloneError, PhaseStateError
from imgclone.model import names
from imgclone.model.boot import BootFacts
from imgclone.model.layout import Layout
from imgclone.model.manifest import now as now  # the journal's timestamps are the manifest's

STATE_VERSION = 1
STDIN = "(standard input)"  # the archive of `restore -a -`: no path to record
STREAMED = "(streamed by imgclone copy, not kept)"  # copy without --archive: its pipe is no name either
BLOCKS = "(none: imgclone copy copied the source's blocks)"  # copy --by blocks reads no archive


@dataclass(frozen=True)
class TargetRecord:
    """One target as Phase 1 found or made it."""

    path: str
    kind: str = "image"  # "image" or "device"
    format: str = "raw"
    size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TargetRecord:
        return cls(str(d["path"]), str(d.get("kind", "image")), str(d.get("format", "raw")), int(d.get("size", 0)))


@dataclass(frozen=True)
class PhaseRecord:
    """A completed phase: when, and what it did."""

    completed: str
    timings: Mapping[str, float] = field(default_factory=dict)
    actions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    deferred_vgs: Mapping[str, str] | None = None  # Phase 3: altinst_<vg> → <vg>, renamed on the first boot

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"completed": self.completed}
        if self.timings or self.actions or self.notes:
            d |= {"timings": dict(self.timings), "actions": list(self.actions), "notes": list(self.notes)}
        if self.deferred_vgs is not None:
            d["deferred_vgs"] = dict(self.deferred_vgs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PhaseRecord:
        deferred = d.get("deferred_vgs")
        timings = {str(k): float(v) for k, v in (d.get("timings") or {}).items()}
        renames = {str(k): str(v) for k, v in deferred.items()} if isinstance(deferred, Mapping) else None
        return cls(str(d.get("completed", "")), timings, tuple(map(str, d.get("actions") or ())),
                   tuple(map(str, d.get("notes") or ())), renames)  # fmt: skip


@dataclass(frozen=True)
class Woken:
    """What `alt wake` left: where the alternate is mounted on this host and by which guestmount."""

    mountpoint: str
    pid: int
    since: str
    made_mountpoint: bool = False  # wake made the directory: sleep removes it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Woken | None:
        if not isinstance(d, Mapping):
            return None
        return cls(str(d["mountpoint"]), int(d["pid"]), str(d.get("since", "")), bool(d.get("made_mountpoint")))


@dataclass(frozen=True)
class Journal:
    """One alternate: its targets, the layout Phase 1 built (altinst_/alt_ names), the phases completed."""

    targets: tuple[TargetRecord, ...] = ()
    layout: Layout | None = None  # what Phase 1 built, under the names it gave
    source_layout: Layout | None = None  # what it was planned from
    uuids: Mapping[str, str] = field(default_factory=dict)  # layout id → the UUID its filesystem or swap got
    archive: str = ""  # its path, or STDIN, STREAMED, BLOCKS
    archive_created: str | None = None
    boot: BootFacts | None = None  # how the source booted
    phases: Mapping[str, PhaseRecord] = field(default_factory=dict)  # "1", "2", "3" → completed
    phase1_started: str | None = None  # Phase 1 started writing (and, without phases["1"], did not finish)
    woken: Woken | None = None
    version: int = STATE_VERSION

    @property
    def target_paths(self) -> list[str]:
        return [t.path for t in self.targets]

    @property
    def interrupted_phase1(self) -> bool:
        """Phase 1 started writing to the targets and did not complete."""
        return self.phase1_started is not None and "1" not in self.phases

    @property
    def firmware(self) -> str:
        """bios, uefi or uefi+bios: what the source booted with."""
        return (self.boot.firmware if self.boot else "") or "bios"

    @property
    def drives(self) -> list[tuple[str, str]]:
        """The targets as an appliance's drives (path, format), in the journal's order."""
        return [(t.path, t.format) for t in self.targets]

    def current_layout(self) -> Layout:
        """The built layout under the names the volumes carry now: altinst_/alt_ until Phase 3 renamed them (the VGs
        keep altinst_ until the clone's first boot when Phase 3 deferred their renaming)."""
        phase3 = self.phases.get("3")
        if phase3 is None:
            return self.built
        return names.deferred_layout(self.built) if phase3.deferred_vgs else names.final_layout(self.built)

    @property
    def built(self) -> Layout:
        """The layout Phase 1 built (a journal without one is no alternate's)."""
        if self.layout is None:
            raise PhaseStateError("the journal records no layout", "run Phase 1 again")
        return self.layout

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "version": self.version, "targets": [t.to_dict() for t in self.targets],
            "layout": self.layout.to_dict() if self.layout is not None else None,
            "source_layout": self.source_layout.to_dict() if self.source_layout is not None else None,
            "uuids": dict(self.uuids), "archive": self.archive, "archive_created": self.archive_created,
            "boot": self.boot.to_dict() if self.boot is not None else {},
            "phases": {k: v.to_dict() for k, v in sorted(self.phases.items())},
        }  # fmt: skip
        if self.phase1_started is not None:
            d["phase1_started"] = self.phase1_started
        if self.woken is not None:
            d["woken"] = self.woken.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Journal:
        layout, source = d.get("layout"), d.get("source_layout")
        return cls(
            targets=tuple(TargetRecord.from_dict(t) for t in d.get("targets") or ()),
            layout=Layout.from_dict(layout) if layout else None,
            source_layout=Layout.from_dict(source) if source else None,
            uuids={str(k): str(v) for k, v in (d.get("uuids") or {}).items()}, archive=str(d.get("archive") or ""),
            archive_created=d.get("archive_created"), boot=BootFacts.from_dict(d.get("boot")),
            phases={str(k): PhaseRecord.from_dict(v) for k, v in (d.get("phases") or {}).items()},
            phase1_started=d.get("phase1_started"), woken=Woken.from_dict(d.get("woken")),
            version=int(d.get("version") or STATE_VERSION),
        )  # fmt: skip


def state_dir() -> Path:
    """Where the journals live."""
    return Path(os.environ.get("IMGCLONE_STATE_DIR", "/var/lib/imgclone/alternates"))


def alternate_id(target_paths: Sequence[str]) -> str:
    """Stable id of the alternate made of these targets."""
    key = "\0".join(sorted(os.path.realpath(p) for p in target_paths))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def state_path(target_paths: Sequence[str]) -> Path:
    return state_dir() / f"{alternate_id(target_paths)}.json"


def archive_name(archive: str) -> str:
    """What the journal calls Phase 1's archive: its absolute path, or what it was when it had none."""
    return {"-": STDIN, STREAMED: STREAMED, BLOCKS: BLOCKS}.get(archive) or os.path.abspath(archive)


def _write(path: Path, journal: Journal) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(journal.to_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def save_phase1(target_paths: Sequence[str], journal: Journal, *, started: bool = False) -> Path:
    """Record Phase 1 as complete: journal holds the targets, the built layout with its names and new UUIDs.

    started: record instead that Phase 1 is about to write to the targets (no phase completed), so that one
    that dies half-way leaves a journal saying so: `alt cleanup --wipe` can blank the targets, Phases 2 and 3
    refuse them.
    """
    at = now()
    if started:
        journal = dataclasses.replace(journal, phases={}, phase1_started=at)
    else:
        journal = dataclasses.replace(journal, phases={"1": PhaseRecord(at)}, phase1_started=None)
    return _write(state_path(target_paths), journal)


def interrupted_phase1(journal: Journal | None) -> bool:
    """Whether a journal is that of a Phase 1 that started writing and did not complete."""
    return journal is not None and journal.interrupted_phase1


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


def read(path: Path) -> Journal:
    """The journal in this file."""
    return Journal.from_dict(json.loads(path.read_text()))


def load(target_paths: Sequence[str]) -> Journal | None:
    """The journal of these targets, or None."""
    path = state_path(target_paths)
    return read(path) if path.exists() else None


def _rewrite(target_paths: Sequence[str], change: Callable[[Journal], Journal]) -> None:
    path = state_path(target_paths)
    _write(path, change(read(path)))


def mark_phase(target_paths: Sequence[str], phase: str, record: PhaseRecord) -> None:
    """Record a completed phase in the journal."""
    _rewrite(target_paths, lambda j: dataclasses.replace(j, phases={**j.phases, phase: record}))


def load_alternate(targets: Sequence[str]) -> Journal:
    """The journal of an earlier, completed Phase 1 on exactly these targets, not woken: what Phases 2 and 3 and
    verify --against need."""
    journal = load(targets)
    dflag = " ".join(targets)
    if journal is None:
        raise PhaseStateError(
            f"no Phase 1 recorded for -d {dflag}", "run Phase 1 first (restore/copy -P1 or all phases)"
        )
    if journal.interrupted_phase1:
        raise PhaseStateError(f"Phase 1 on -d {dflag} did not complete (started {journal.phase1_started})",
                              "run Phase 1 again (imgclone alt cleanup --wipe first if it says so)")  # fmt: skip
    if journal.woken is not None:
        raise PhaseStateError(f"the alternate on -d {dflag} is mounted at {journal.woken.mountpoint}",
                              f"imgclone alt sleep -d {dflag} first")  # fmt: skip
    return journal


# -- alt_rootvg_op (imgclone alt): every journal, the woken record, forgetting an alternate ---------------------------


def list_alternates() -> list[tuple[Path, Journal]]:
    """Every journal in state_dir() with its contents, by file name; unreadable ones are skipped with a warning."""
    out: list[tuple[Path, Journal]] = []
    directory = state_dir()
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
            if isinstance(doc, dict) and isinstance(doc.get("targets"), list):
                out.append((path, Journal.from_dict(doc)))
        except (OSError, ValueError, KeyError, TypeError, ImgcloneError) as e:
            logging.getLogger("imgclone").warning("%s: unreadable journal skipped: %s", path, e)
    return out


def set_woken(target_paths: Sequence[str], woken: Woken) -> None:
    """Record that the alternate is mounted on the host (alt wake): mount point, guestmount pid, since when."""
    _rewrite(target_paths, lambda j: dataclasses.replace(j, woken=woken))


def clear_woken(target_paths: Sequence[str]) -> None:
    """Forget the woken record (alt sleep)."""
    _rewrite(target_paths, lambda j: dataclasses.replace(j, woken=None))


def remove(target_paths: Sequence[str]) -> bool:
    """Delete the journal of these targets (alt cleanup); False when there was none."""
    path = state_path(target_paths)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
