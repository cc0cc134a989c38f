"""alt_rootvg_op for imgclone: query, wake, sleep and clean up the alternates the journals know.

An alternate is the set of target disks or images one Phase 1 built (model/journal.py keeps its journal). AIX wakes an
altinst_rootvg by varying it on and mounting its filesystems under /alt_inst; here the volume groups live only
inside the libguestfs appliance (the host may have no device-mapper), so wake runs `guestmount`, a FUSE daemon
that keeps one appliance up with every filesystem mounted and outlives this process, and sleep unmounts it with
`guestunmount` and waits for the daemon to flush the images and exit. Cleanup forgets the alternate and, with
--wipe, returns its recorded targets to blank disks through one appliance. The old_<vg> (AIX's old_rootvg) lives
on the host, so its removal uses the host's LVM tools.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclone.errors import GuestfsError, ImgcloneError, PhaseStateError, UsageError
from imgclone.fs.mounttab import unescape
from imgclone.guest.appliance import Appliance
from imgclone.guest.interface import Guest
from imgclone.host import accel
from imgclone.host.run import HOST, Runner
from imgclone.model import journal as state
from imgclone.model import names
from imgclone.model.layout import Layout, LogicalVolume, Partition
from imgclone.model.names import OLD_VG_PREFIX
from imgclone.storage import build

log = logging.getLogger("imgclone")

DEFAULT_MOUNTPOINT = "/alt_inst"
SLEEP_TIMEOUT = 300.0  # the daemon syncs and shuts its appliance down after the unmount (slow under TCG)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class TargetInfo:
    """One recorded target and whether it is still there."""

    path: str
    kind: str
    format: str
    size: int
    exists: bool


@dataclass(frozen=True)
class Woken:
    """The record alt wake leaves: where the alternate is mounted and by which guestmount."""

    mountpoint: str
    pid: int
    since: str
    made_mountpoint: bool = False

    @property
    def alive(self) -> bool:
        return guestmount_alive(self.pid)

    def to_dict(self) -> dict[str, Any]:
        return {"mountpoint": self.mountpoint, "pid": self.pid, "since": self.since,
                "made_mountpoint": self.made_mountpoint}  # fmt: skip


@dataclass(frozen=True)
class Alternate:
    """One alternate as its journal describes it, with the LVM names it has now."""

    id: str
    journal: str
    targets: tuple[TargetInfo, ...]
    layout: Layout  # altinst_<vg>/alt_<lv> until Phase 3 ran, <vg>/<lv> after
    phases: dict[str, str]  # phase → completion time
    archive: str
    archive_created: str
    uuids: dict[str, str]
    woken: Woken | None

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
                {"path": t.path, "kind": t.kind, "format": t.format, "size": t.size, "exists": t.exists}
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
            "woken": None if self.woken is None else {**self.woken.to_dict(), "alive": self.woken.alive},
        }


def names_now(layout: Layout, finalized: bool) -> Layout:
    """The recorded (altinst_/alt_) layout under the names the volumes carry now: final ones once Phase 3 ran."""
    if not finalized:
        return layout
    vgs = tuple(dataclasses.replace(v, name=names.final_name(v.name)) for v in layout.vgs)
    lvs = tuple(dataclasses.replace(lv, name=names.final_name(lv.name)) for lv in layout.lvs)
    return dataclasses.replace(layout, vgs=vgs, lvs=lvs)


def from_journal(path: Path, doc: dict[str, Any]) -> Alternate:
    """An Alternate from one journal document."""
    phases = {str(k): str(v.get("completed", "")) for k, v in doc.get("phases", {}).items()}
    layout = names_now(Layout.from_dict(doc["layout"]), "3" in phases)
    targets = tuple(TargetInfo(str(t["path"]), str(t.get("kind", "image")), str(t.get("format", "raw")),
                               int(t.get("size", 0)), os.path.exists(str(t["path"])))
                    for t in doc["targets"])  # fmt: skip
    w = doc.get("woken")
    woken = None
    if isinstance(w, dict):
        woken = Woken(str(w["mountpoint"]), int(w["pid"]), str(w.get("since", "")), bool(w.get("made_mountpoint")))
    return Alternate(
        id=path.stem, journal=str(path), targets=targets, layout=layout, phases=phases,
        archive=str(doc.get("archive", "")), archive_created=str(doc.get("archive_created") or ""),
        uuids=dict(doc.get("uuids", {})), woken=woken,
    )  # fmt: skip


def all_alternates() -> list[Alternate]:
    """Every alternate the journals in state.state_dir() know (a journal that does not parse is skipped, said)."""
    out = []
    for path, doc in state.list_alternates():
        try:
            out.append(from_journal(path, doc))
        except (ImgcloneError, KeyError, ValueError, TypeError) as e:
            log.warning("%s: journal skipped: %s", path, e)
    return out


def find(targets: Sequence[str]) -> Alternate:
    """The alternate built on exactly these targets; PhaseStateError when no journal names them."""
    doc = state.load(targets)
    if doc is None:
        known = all_alternates()
        hint = f"imgclone alt query lists the {len(known)} known" if known else "no alternate is recorded there"
        raise PhaseStateError(f"-d {' '.join(targets)}: no alternate recorded for these targets in "
                              f"{state.state_dir()}", hint)  # fmt: skip
    return from_journal(state.state_path(targets), doc)


# -- wake ---------------------------------------------------------------------------------------------------------


def drive_name(index: int) -> str:
    """The appliance's name of the index-th drive added: /dev/sda, …, /dev/sdz, /dev/sdaa."""
    letters = ""
    n = index + 1
    while n:
        n, r = divmod(n - 1, 26)
        letters = chr(ord("a") + r) + letters
    return f"/dev/sd{letters}"


def guestmount_argv(alt: Alternate, mountpoint: str, pid_file: str) -> list[str]:
    """guestmount with every target (in the order Phase 1 added them) and one -m per filesystem, parents first."""
    argv = ["guestmount", "--rw"]
    for t in alt.targets:
        argv += [f"--format={t.format}", "-a", t.path]
    devs = build.Devices(alt.layout, {d.id: drive_name(i) for i, d in enumerate(alt.layout.disks)})
    for fs in alt.layout.mount_order():
        argv += ["-m", f"{devs.path(fs.device)}:{fs.mountpoint}"]
    return argv + ["--pid-file", pid_file, mountpoint]


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


def check_mountpoint(path: str) -> bool:
    """Refuse a mount point that is mounted on, not a directory or not empty; True when it must be made."""
    if mounted(path):
        raise UsageError(f"--mountpoint {path}: is a mount point already", "give an empty directory that is not one")
    if not os.path.lexists(path):
        return True
    if not os.path.isdir(path):
        raise UsageError(f"--mountpoint {path}: not a directory")
    if os.listdir(path):
        raise UsageError(f"--mountpoint {path}: directory is not empty", "give an empty or new directory")
    return False


def _refuse_woken(alt: Alternate, doing: str) -> None:
    w = alt.woken
    if w is None:
        return
    where = f"{doing}: the alternate on -d {alt.dflag}"
    if w.alive:
        raise PhaseStateError(f"{where} is woken at {w.mountpoint} (guestmount pid {w.pid})",
                              f"imgclone alt sleep -d {alt.dflag} first")  # fmt: skip
    if mounted(w.mountpoint):
        raise PhaseStateError(f"{where} is woken at {w.mountpoint}, but its guestmount (pid {w.pid}) is gone",
                              f"imgclone alt sleep -d {alt.dflag} unmounts it")  # fmt: skip
    raise PhaseStateError(f"{where} has a stale wake record ({w.mountpoint}, guestmount pid {w.pid} gone)",
                          f"imgclone alt sleep -d {alt.dflag} clears it")  # fmt: skip


def _refuse_missing(alt: Alternate, doing: str) -> None:
    missing = [t.path for t in alt.targets if not t.exists]
    if missing:
        raise PhaseStateError(f"{doing}: target(s) {', '.join(missing)} no longer exist",
                              "imgclone alt cleanup -d ... forgets the alternate")  # fmt: skip


def wake(targets: Sequence[str], mountpoint: str = DEFAULT_MOUNTPOINT, runner: Runner = HOST) -> Woken:
    """Mount the alternate's filesystems read-write at mountpoint through guestmount; record it in the journal."""
    alt = find(targets)
    _refuse_woken(alt, "wake")
    _refuse_missing(alt, "wake")
    mountpoint = os.path.abspath(mountpoint)
    make = check_mountpoint(mountpoint)
    env = {"LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"} if accel.choose(runner) == "tcg" else None
    if make:
        os.makedirs(mountpoint)
    try:
        with tempfile.TemporaryDirectory(prefix="imgclone-wake-") as tmp:
            pid_file = os.path.join(tmp, "guestmount.pid")
            runner.run(guestmount_argv(alt, mountpoint, pid_file), env=env)
            pid = int(Path(pid_file).read_text().strip())
    except BaseException:
        if make and not mounted(mountpoint):
            os.rmdir(mountpoint)
        raise
    woken = Woken(mountpoint, pid, now(), make)
    state.set_woken(alt.target_paths, woken.to_dict())
    return woken


# -- sleep --------------------------------------------------------------------------------------------------------


def _woken_one(targets: Sequence[str] | None) -> Alternate:
    if targets:
        return find(targets)
    woken = [a for a in all_alternates() if a.woken is not None]
    if len(woken) != 1:
        listed = "; ".join(f"-d {a.dflag} at {a.woken.mountpoint}" for a in woken if a.woken)
        raise UsageError("sleep: give -d TARGETS" + (f": {len(woken)} alternates are woken ({listed})" if woken
                                                     else ": no alternate is woken"))  # fmt: skip
    return woken[0]


def sleep(targets: Sequence[str] | None, runner: Runner = HOST, timeout: float = SLEEP_TIMEOUT) -> str:
    """Unmount a woken alternate, wait until its guestmount has flushed and exited, clear the record."""
    alt = _woken_one(targets)
    w = alt.woken
    if w is None:
        raise PhaseStateError(f"sleep: the alternate on -d {alt.dflag} is not woken",
                              f"imgclone alt wake -d {alt.dflag} mounts it")  # fmt: skip
    was_mounted, was_alive = mounted(w.mountpoint), w.alive
    if was_mounted:
        res = runner.run(["guestunmount", w.mountpoint], check=False)
        if res.returncode != 0:
            first = next((ln for ln in res.stderr.splitlines() if ln.strip()), f"exit code {res.returncode}")
            hint = f"close shells and files under it (fuser -vm {w.mountpoint}), then sleep again"
            raise ImgcloneError(f"sleep: guestunmount {w.mountpoint}: {first.strip()}", hint)
    deadline = time.monotonic() + timeout
    while guestmount_alive(w.pid):
        if time.monotonic() > deadline:
            raise ImgcloneError(f"sleep: guestmount (pid {w.pid}) still runs {timeout:g} s after the unmount",
                                "it is still writing the images; run alt sleep again later")  # fmt: skip
        time.sleep(0.2)
    if w.made_mountpoint and os.path.isdir(w.mountpoint) and not os.listdir(w.mountpoint):
        os.rmdir(w.mountpoint)
    state.clear_woken(alt.target_paths)
    if not was_mounted:
        return f"{w.mountpoint} was no longer mounted; wake record of -d {alt.dflag} cleared"
    if not was_alive:
        return (f"unmounted {w.mountpoint}, whose guestmount (pid {w.pid}) had died: what it had not written to the "
                f"images is lost; the alternate on -d {alt.dflag} sleeps")  # fmt: skip
    return f"unmounted {w.mountpoint}; the alternate on -d {alt.dflag} sleeps (images flushed)"


# -- cleanup of an alternate --------------------------------------------------------------------------------------


@dataclass
class Wipe:
    """State of one cleanup --wipe: the alternate, its appliance and what was done."""

    alt: Alternate
    g: Guest
    devs: build.Devices
    actions: list[str] = field(default_factory=list)


def cleanup(targets: Sequence[str], *, wipe: bool = False, debug: bool = False,
            make_guest: Callable[[], Appliance] | None = None) -> list[str]:  # fmt: skip
    """Forget the alternate (its journal); with wipe, first blank its recorded targets. Returns what was done."""
    alt = find(targets)
    _refuse_woken(alt, "cleanup")
    actions: list[str] = []
    if wipe:
        _refuse_missing(alt, "cleanup --wipe")
        actions += wipe_targets(alt, make_guest() if make_guest else Appliance(trace=debug))
    else:
        vgs = ", ".join(vg.name for vg in alt.layout.vgs)
        if vgs and any(t.exists for t in alt.targets):
            actions.append(f"the targets still hold {vgs} (restore refuses them; --wipe would have blanked them)")
    state.remove(alt.target_paths)
    actions.append(f"forgot the alternate on -d {alt.dflag} (removed {alt.journal})")
    return actions


def wipe_targets(alt: Alternate, g: Appliance) -> list[str]:
    """Through one appliance holding only the recorded targets: remove the VGs and PVs, wipe every signature."""
    for t in alt.targets:
        g.add_drive(t.path, readonly=False, format=t.format)
    steps: list[Callable[[Wipe], None]] = [check_holds_alternate, remove_volume_groups, remove_physical_volumes,
                                           wipe_partitions, wipe_disks, check_clean]  # fmt: skip
    with g:
        devices = g.list_devices()
        ctx = Wipe(alt, g, build.Devices(alt.layout, {d.id: devices[i] for i, d in enumerate(alt.layout.disks)}))
        for step in steps:
            log.debug("step %s", step.__name__)
            step(ctx)
    return ctx.actions


def _vg_present(ctx: Wipe) -> dict[str, str]:
    """Layout VG id → the name it has on the targets now (either name: a Phase 3 may have stopped half-way)."""
    existing = set(ctx.g.vgs())
    out = {}
    for vg in ctx.alt.layout.vgs:
        final = names.final_name(vg.name) if vg.name.startswith(names.ALT_VG_PREFIX) else vg.name
        found = [n for n in (names.alt_vg(final), final) if n in existing]
        if found:
            out[vg.id] = found[0]
    return out


def check_holds_alternate(ctx: Wipe) -> None:
    """Wipe only targets that still hold this alternate: one of its VGs or of its filesystem UUIDs."""
    if _vg_present(ctx) or not ctx.alt.phases:  # no phase completed: a Phase 1 that died while writing them
        return
    filesystems = ctx.g.list_filesystems()
    for fs in ctx.alt.layout.filesystems:
        dev = ctx.devs.path(fs.device)
        recorded = ctx.alt.uuids.get(fs.id, "")
        if recorded and dev in filesystems and ctx.g.vfs_uuid(dev).lower() == recorded.lower():
            return
    raise ImgcloneError(
        f"cleanup --wipe: -d {ctx.alt.dflag} no longer holds this alternate (none of its volume groups or filesystem "
        "UUIDs found); nothing wiped",
        "alt cleanup without --wipe forgets it; wipefs -a the disks yourself if you are sure",
    )


def remove_volume_groups(ctx: Wipe) -> None:
    """Wipe the LVs' filesystem and swap signatures, then remove each recorded VG with its LVs."""
    g = ctx.g
    present = _vg_present(ctx)
    if not present:
        return
    g.vg_activate(True, list(present.values()))
    lvs = g.lvs()
    for name in present.values():
        for lv in (lv for lv in lvs if lv.startswith(f"/dev/{name}/")):
            g.wipefs(lv)
        g.vgremove(name)
        ctx.actions.append(f"removed volume group {name} and its logical volumes")


def remove_physical_volumes(ctx: Wipe) -> None:
    """pvremove every recorded PV that still carries an LVM label."""
    g = ctx.g
    for pv in (pv for vg in ctx.alt.layout.vgs for pv in vg.pvs):
        dev = ctx.devs.path(pv)
        if _vfs_type(g, dev) == "LVM2_member":
            g.pvremove(dev)
            ctx.actions.append(f"removed physical volume {ctx.alt.device_name(pv)}")


def _vfs_type(g: Guest, dev: str) -> str:
    try:
        return str(g.vfs_type(dev))
    except GuestfsError:
        return ""  # a partition that is gone already, or nothing recognisable


def wipe_partitions(ctx: Wipe) -> None:
    """Filesystem, swap and leftover LVM signatures on every recorded partition."""
    g = ctx.g
    existing = set(g.list_partitions())
    for part in ctx.alt.layout.partitions:
        dev = ctx.devs.path(part.id)
        if dev in existing:
            g.wipefs(dev)
    if ctx.alt.layout.partitions:
        ctx.actions.append(f"wiped the signatures of {len(ctx.alt.layout.partitions)} partition(s)")


def wipe_disks(ctx: Wipe) -> None:
    """The partition tables (GPT: primary, backup and protective MBR) and whole-disk signatures."""
    g = ctx.g
    for i, disk in enumerate(ctx.alt.layout.disks):
        dev = ctx.devs.disks[disk.id]
        g.wipefs(dev)
        g.blockdev_rereadpt(dev)
        ctx.actions.append(f"wiped the partition table and signatures of {ctx.alt.targets[i].path}")


def check_clean(ctx: Wipe) -> None:
    """What restore checks before it writes: no partition table, no signature, no VG."""
    g = ctx.g
    left = [f"volume group {vg}" for vg in g.vgs()]
    filesystems = g.list_filesystems()
    for i, disk in enumerate(ctx.alt.layout.disks):
        dev = ctx.devs.disks[disk.id]
        try:
            left.append(f"a {g.part_get_parttype(dev)} partition table on {ctx.alt.targets[i].path}")
        except GuestfsError:
            pass
        if dev in filesystems and _vfs_type(g, dev) not in ("", "unknown"):
            left.append(f"a {_vfs_type(g, dev)} signature on {ctx.alt.targets[i].path}")
    if left:
        raise ImgcloneError(f"cleanup --wipe: still found {', '.join(left)}", "the journal is kept; run it again")


# -- cleanup of AIX's old_rootvg on the host ----------------------------------------------------------------

LVM_ENV = {"LVM_SUPPRESS_FD_WARNINGS": "1"}


@dataclass(frozen=True)
class HostLv:
    name: str
    path: str
    dm_path: str
    active: bool
    open: bool


@dataclass(frozen=True)
class OldVg:
    """A volume group on the host, as the LVM reports show it."""

    name: str
    pvs: tuple[str, ...]
    lvs: tuple[HostLv, ...]


def _report(runner: Runner, argv: list[str], kind: str) -> list[dict[str, str]]:
    res = runner.run(argv + ["--reportformat", "json"], env=LVM_ENV)
    try:
        return [dict(x) for r in json.loads(res.text).get("report", []) for x in r.get(kind, [])]
    except (ValueError, AttributeError, TypeError) as e:
        raise ImgcloneError(f"{argv[0]}: unexpected report: {e}") from e


def find_old_vg(name: str, runner: Runner = HOST) -> OldVg:
    """The host VG `name` with its PVs and LVs; UsageError for a name without old_, ImgcloneError when absent."""
    if not name.startswith(OLD_VG_PREFIX) or len(name) == len(OLD_VG_PREFIX):
        raise UsageError(
            f"--old-vg {name}: only a volume group named {OLD_VG_PREFIX}<vg> is removed this way",
            "it is a source VG its clone renamed, AIX's old_rootvg; other volume groups are not imgclone's to remove",
        )
    pvs = [p for p in _report(runner, ["pvs", "-o", "pv_name,vg_name"], "pv") if p.get("vg_name") == name]
    if not pvs:
        raise ImgcloneError(f"--old-vg {name}: no such volume group on this host (pvs lists none of its PVs)")
    lvs = _report(runner, ["lvs", "-o", "lv_name,vg_name,lv_attr,lv_path,lv_dm_path", name], "lv")
    host_lvs = tuple(HostLv(lv["lv_name"], lv.get("lv_path", ""), lv.get("lv_dm_path", ""),
                            lv.get("lv_attr", "")[4:5] == "a", lv.get("lv_attr", "")[5:6] == "o")
                     for lv in lvs if lv.get("vg_name", name) == name)  # fmt: skip
    return OldVg(name, tuple(sorted(p["pv_name"] for p in pvs)), host_lvs)


def mount_sources() -> dict[str, str]:
    """Mounted device → its mount point, from /proc/self/mountinfo (sources resolved to real paths)."""
    out: dict[str, str] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if sep and len(fields) > 4 and len(tail) > 1 and tail[1].startswith("/dev/"):
            out[os.path.realpath(unescape(tail[1]))] = unescape(fields[4])
    return out


def check_old_vg_unused(vg: OldVg, mounts: dict[str, str]) -> None:
    """Refuse when one of its LVs or PVs is mounted, or an LV is active or open."""
    for lv in vg.lvs:
        where = next((mounts[os.path.realpath(p)] for p in (lv.path, lv.dm_path)
                      if p and os.path.realpath(p) in mounts), None)  # fmt: skip
        if where:
            raise ImgcloneError(f"--old-vg {vg.name}: logical volume {lv.name} is mounted at {where}",
                                "unmount it, then vgchange -an " + vg.name)  # fmt: skip
        if lv.active or lv.open:
            raise ImgcloneError(f"--old-vg {vg.name}: logical volume {lv.name} is active",
                                f"vgchange -an {vg.name} first, if nothing uses it")  # fmt: skip
    for pv in vg.pvs:
        if os.path.realpath(pv) in mounts:
            raise ImgcloneError(f"--old-vg {vg.name}: {pv} is mounted at {mounts[os.path.realpath(pv)]}")


def cleanup_old_vg(name: str, *, yes: bool, runner: Runner = HOST) -> list[str]:
    """Remove the host VG old_<vg> and wipe its PVs (with yes); without yes, say what would be wiped."""
    vg = find_old_vg(name, runner)
    check_old_vg_unused(vg, mount_sources())
    what = (f"volume group {vg.name} ({len(vg.lvs)} logical volume(s)) and the LVM and other signatures of "
            f"{', '.join(vg.pvs)}")  # fmt: skip
    if not yes:
        return [f"would remove {what}; nothing done (--yes-wipe does it)"]
    runner.run(["vgremove", "--yes", "--force", vg.name], env=LVM_ENV)
    runner.run(["pvremove", "--yes", *vg.pvs], env=LVM_ENV)
    runner.run(["wipefs", "--all", *vg.pvs])
    return [f"removed {what}"]
