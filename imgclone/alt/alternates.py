"""The alternates the journals know: one Alternate per set of targets a Phase 1 built, as `alt query` shows it.

An alternate is the set of target disks or images one Phase 1 built (model/journal.py keeps its journal): its
targets and whether they still exist, its layout under the names its volumes carry now, the phases completed, the
archive it came from, and where `alt wake` mounted it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclone.errors import ImgcloneError, PhaseStateError
from imgclone.fs.mounttab import unescape
from imgclone.model import journal as state
from imgclone.model import names
from imgclone.model.layout import Layout, LogicalVolume, Partition
from imgclone.model.manifest import now as now  # wake's record: the same timestamps as the journal's

log = logging.getLogger("imgclone")


@dataclass(frozen=True)
class Alternate:
    """One alternate as its journal describes it, with the LVM names it has now."""

    id: str
    journal: str
    targets: tuple[state.TargetRecord, ...]
    missing: frozenset[str]  # the targets' paths that were not there when the journal was read
    layout: Layout  # altinst_<vg>/alt_<lv> until Phase 3 ran, <vg>/<lv> after
    phases: dict[str, str]  # phase → completion time
    archive: str
    archive_created: str
    uuids: dict[str, str]
    woken: state.Woken | None

    @property
    def target_paths(self) -> list[str]:
        return [t.path for t in self.targets]

    @property
    def dflag(self) -> str:
        """The -d argument that names this alternate."""
        paths = self.target_paths
        return paths[0] if len(paths) == 1 else '"' + " ".join(paths) + '"'

    def device_name(self, obj_id: str) -> str:
        """A block device as the user knows it: vg/lv, a target path, or partition N of a target path."""
        obj = self.layout.get(obj_id)
        if isinstance(obj, LogicalVolume):
            vg = self.layout.get(obj.vg)
            return f"{getattr(vg, 'name', '?')}/{obj.name}"
        for i, disk in enumerate(self.layout.disks):
            if obj_id == disk.id:
                return self.targets[i].path
            if isinstance(obj, Partition) and obj.disk == disk.id:
                return f"partition {obj.number} of {self.targets[i].path}"
        return obj_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "journal": self.journal,
            "targets": [
                {
                    "path": t.path,
                    "kind": t.kind,
                    "format": t.format,
                    "size": t.size,
                    "exists": t.path not in self.missing,
                }
                for t in self.targets
            ],
            "vgs": [
                {"name": vg.name, "lvs": [lv.name for lv in self.layout.lvs if lv.vg == vg.id]}
                for vg in self.layout.vgs
            ],
            "filesystems": [
                {"mountpoint": fs.mountpoint, "type": str(fs.type), "device": self.device_name(fs.device)}
                for fs in self.layout.mount_order()
            ],
            "final_names": "3" in self.phases,
            "phases": dict(sorted(self.phases.items())),
            "archive": self.archive,
            "archive_created": self.archive_created,
            "woken": None
            if self.woken is None
            else {**self.woken.to_dict(), "alive": guestmount_alive(self.woken.pid)},
        }


def from_journal(path: Path, journal: state.Journal) -> Alternate:
    """An Alternate from one journal."""
    phases = {k: v.completed for k, v in journal.phases.items()}
    layout = names.final_layout(journal.built) if "3" in phases else journal.built
    missing = frozenset(t.path for t in journal.targets if not os.path.exists(t.path))
    return Alternate(
        id=path.stem, journal=str(path), targets=journal.targets, missing=missing, layout=layout, phases=phases,
        archive=journal.archive, archive_created=journal.archive_created or "", uuids=dict(journal.uuids),
        woken=journal.woken,
    )  # fmt: skip


def all_alternates() -> list[Alternate]:
    """Every alternate the journals in state.state_dir() know (a journal that does not parse is skipped, said)."""
    out = []
    for path, journal in state.list_alternates():
        try:
            out.append(from_journal(path, journal))
        except (ImgcloneError, KeyError, ValueError, TypeError) as e:
            log.warning("%s: journal skipped: %s", path, e)
    return out


def find(targets: Sequence[str]) -> Alternate:
    """The alternate built on exactly these targets; PhaseStateError when no journal names them."""
    journal = state.load(targets)
    if journal is None:
        known = all_alternates()
        hint = f"imgclone alt query lists the {len(known)} known" if known else "no alternate is recorded there"
        raise PhaseStateError(f"-d {' '.join(targets)}: no alternate recorded for these targets in "
                              f"{state.state_dir()}", hint)  # fmt: skip
    return from_journal(state.state_path(targets), journal)


def mounted(path: str) -> bool:
    """Whether path is a mount point in /proc/self/mountinfo (also a FUSE mount whose daemon died)."""
    real = os.path.realpath(path)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return os.path.ismount(path)
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and unescape(fields[4]) == real:
            return True
    return False


def guestmount_alive(pid: int) -> bool:
    """Whether pid is still a (non-zombie) guestmount; a pid reused by another program does not count."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return os.path.basename(argv0.decode(errors="replace")) == "guestmount"


def refuse_woken(alt: Alternate, doing: str) -> None:
    w = alt.woken
    if w is None:
        return
    where = f"{doing}: the alternate on -d {alt.dflag}"
    if guestmount_alive(w.pid):
        raise PhaseStateError(f"{where} is woken at {w.mountpoint} (guestmount pid {w.pid})",
                              f"imgclone alt sleep -d {alt.dflag} first")  # fmt: skip
    if mounted(w.mountpoint):
        raise PhaseStateError(f"{where} is woken at {w.mountpoint}, but its guestmount (pid {w.pid}) is gone",
                              f"imgclone alt sleep -d {alt.dflag} unmounts it")  # fmt: skip
    raise PhaseStateError(f"{where} has a stale wake record ({w.mountpoint}, guestmount pid {w.pid} gone)",
                          f"imgclone alt sleep -d {alt.dflag} clears it")  # fmt: skip


def refuse_missing(alt: Alternate, doing: str) -> None:
    missing = [t.path for t in alt.targets if t.path in alt.missing]
    if missing:
        raise PhaseStateError(f"{doing}: target(s) {', '.join(missing)} no longer exist",
                              "imgclone alt cleanup -d ... forgets the alternate")  # fmt: skip
