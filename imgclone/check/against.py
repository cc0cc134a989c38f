"""archive verify --against: read the archive's streams on the host and the restored target in one appliance.

Which target filesystem holds which archive filesystem:
1. the alternate's journal (model/journal.py), when these targets are the -d of a restore: the layout Phase 1 built,
   under the names the volumes carry now, gives each filesystem's device;
2. else inspection of the clone (its fstab, as libguestfs reads it): mount point → device;
3. else the filesystem UUIDs (a restore with --keep-uuids, or a data-only archive).
An archive filesystem found by none of them is reported missing.

The appliance mounts each target filesystem alone, read-only, and runs fidelity_read.TARGET_SCRIPT with the
appliance's own tools (libguestfs's `sh` runs the guest's binaries chrooted into the mounted filesystem, which
a /var or /boot filesystem does not have, so the script goes through `debug sh`); its output files come back
base64-encoded in chunks of 2 MiB, a handful of calls per filesystem, never one call per file.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Sequence

from imgclone.archive.reader import ArchiveReader, read_manifest
from imgclone.archive.streams import ZSTD_DECOMPRESS
from imgclone.check.fidelity import FileRecord, FsResult, Report, compare_fs
from imgclone.check.records import TARGET_FILES, TARGET_OUT, archive_records, rel, target_records, target_script
from imgclone.errors import ArchiveError, GuestfsError, UsageError
from imgclone.guest.appliance import Appliance
from imgclone.guest.interface import Guest
from imgclone.guest.treemount import mount_tree, os_roots
from imgclone.host.images import image_format
from imgclone.host.run import PIPE, Pipeline
from imgclone.model import journal as state
from imgclone.model.layout import Layout
from imgclone.model.manifest import Manifest
from imgclone.model.trees import Tree
from imgclone.storage import build

log = logging.getLogger("imgclone")
CHUNK = 2 * 1024 * 1024  # base64 of it stays under libguestfs's 4 MiB message limit
ASSUMED_PHASES = ("1", "3")


def verify_against(archive: str, targets: Sequence[str], *, debug: bool = False) -> Report:
    """Compare every file of the archive with the targets a restore wrote (one appliance, read-only drives)."""
    if archive == "-":
        raise UsageError("--against reads the archive twice (manifest, then streams)", "give a file, not -")
    for t in targets:
        if not os.path.exists(t):
            raise UsageError(f"--against {t}: no such image or device")
    manifest = read_manifest(archive)
    journal = state.load(list(targets))
    drives = journal.target_paths if journal else list(targets)
    g = Appliance(trace=debug)
    for path in drives:
        g.add_drive(path, readonly=True, format=image_format(path))
    launched = _Launch(g)  # the appliance boots while the archive is read
    try:
        records = read_archive(archive)
        launched.wait()
        return compare_targets(g, manifest, journal, records, archive, list(targets))
    finally:
        launched.wait(quiet=True)
        g.close()


class _Launch:
    """g.launch() in a thread; wait() re-raises its failure."""

    def __init__(self, g: Appliance) -> None:
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                g.launch()
            except BaseException as e:  # noqa: B036 - handed to the main thread
                self._error.append(e)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def wait(self, quiet: bool = False) -> None:
        self._thread.join()
        if self._error and not quiet:
            raise self._error[0]


def read_archive(path: str) -> dict[str, list[FileRecord]]:
    """fs id → the records of its stream; every stream checked against the manifest as it is read."""
    out: dict[str, list[FileRecord]] = {}
    current: _StreamRecords | None = None
    with ArchiveReader(path) as reader:
        try:
            for part in reader.parts():
                if current is None or current.member != part.member:
                    if current is not None:
                        out[current.fs_id] = current.finish()
                    current = _StreamRecords(part.member)
                while chunk := part.data.read(1 << 20):
                    if not current.pipe.write(chunk):
                        break
            if current is not None:
                out[current.fs_id] = current.finish()
                current = None
        finally:
            if current is not None:
                current.pipe.kill()
                current.pipe.__exit__(BaseException, None, None)
    return out


class _StreamRecords:
    """One stream: parts → zstd -d → tarfile in a thread, which hashes each member's data."""

    def __init__(self, member: str) -> None:
        self.member = member
        self.fs_id = member.rsplit("/", 1)[-1].removesuffix(".tar.zst")
        self.pipe = Pipeline([ZSTD_DECOMPRESS], stdin=PIPE, stdout=PIPE, stderr=PIPE).__enter__()
        self.records: list[FileRecord] = []
        self._error: list[BaseException] = []

        def read() -> None:
            try:
                self.records.extend(archive_records(self.pipe.out))
            except BaseException as e:  # noqa: B036 - handed to the main thread
                self._error.append(e)
            finally:
                self.pipe.out.read()  # drain, so zstd can finish

        self._thread = threading.Thread(target=read, daemon=True)
        self._thread.start()

    def finish(self) -> list[FileRecord]:
        self.pipe.close_input()
        [rc] = self.pipe.wait()
        self._thread.join()
        err = self.pipe.stderr_text()
        self.pipe.__exit__(None, None, None)
        if rc != 0:
            raise ArchiveError(f"stream {self.member} is damaged: zstd: {err.strip() or rc}")
        if self._error:
            raise ArchiveError(f"stream {self.member}: its tar cannot be read ({self._error[0]})")
        return self.records


def compare_targets(g: Guest, manifest: Manifest, journal: state.Journal | None,
                    records: dict[str, list[FileRecord]], archive: str, targets: list[str]) -> Report:  # fmt: skip
    """Map each archive filesystem to a target device, read each stream's tree there in the appliance, compare."""
    g.vg_activate_all(True)
    trees = {t.id: t for t in manifest.trees()}
    streams = {s.tree: s for s in manifest.streams if s.tree in trees}
    devices, how = map_filesystems(g, manifest.layout, {s.fs: trees[s.fs].shown_at for s in streams.values()
                                                        if s.fs in trees}, journal)  # fmt: skip
    report = Report(archive=archive, targets=targets, mapping=how)
    phases = _phases(journal, report, manifest.created)
    mountpoints = sorted(s.mountpoint for s in streams.values() if s.mountpoint)
    for tree_id, stream in sorted(streams.items(), key=lambda kv: (kv[1].mountpoint or "~", kv[0])):
        tree = trees[tree_id]
        device = devices.get(stream.fs)
        result = FsResult(fs=tree_id, mountpoint=stream.mountpoint, device=device or "-")
        report.filesystems.append(result)
        if device is None:
            report.notes.append(f"{tree.label} ({tree_id}): no filesystem on the target holds it")
            compare_fs(result, records.get(tree_id, []), [], phases, mountpoints)
            continue
        result.type, result.uuid = str(g.vfs_type(device)), str(g.vfs_uuid(device))
        target, errors = read_target(g, tree, device)
        if errors.strip():
            report.notes.append(f"{tree.label}: reading the target: {errors.strip().splitlines()[-1]}")
        compare_fs(result, records.get(tree_id, []), target, phases, mountpoints)
    return report


def _phases(journal: state.Journal | None, report: Report, created: str) -> tuple[str, ...]:
    """The phases whose rules apply: the journal's, else restore's and Phase 3's (what may have run)."""
    if journal is None:
        report.notes.append("no journal for these targets: the rules of restore (1) and Phase 3 apply")
        return ASSUMED_PHASES
    done = tuple(sorted(journal.phases))
    if journal.archive == state.BLOCKS:
        report.notes.append("the journal says imgclone copy copied these targets' blocks from their source: compared "
                            "with this archive all the same")  # fmt: skip
    elif journal.archive_created != created:
        report.notes.append(f"the journal says these targets were restored from an archive made at "
                            f"{journal.archive_created}, not this one")  # fmt: skip
    phase2 = journal.phases.get("2")
    actions = phase2.actions if phase2 else ()
    if actions:
        report.notes.append(f"Phase 2 customized the clone ({len(actions)} action(s)): what it changed is "
                            "reported as differences; verify after -P1 to check the restore alone")  # fmt: skip
    return done


def map_filesystems(g: Guest, layout: Layout, streams: dict[str, str],
                    journal: state.Journal | None) -> tuple[dict[str, str], str]:  # fmt: skip
    """fs id → appliance device, and how it was found."""
    if journal is not None:
        current = journal.current_layout()
        devs = build.devices(g, current)
        return {fs.id: devs.path(fs.device) for fs in current.filesystems if fs.id in streams}, "the journal"
    found: dict[str, str] = {}
    how = []
    roots = os_roots(g)
    if len(roots) == 1:  # a btrfs subvolume's mountable (btrfsvol:DEVICE/PATH) is found by its UUID instead
        by_mountpoint = {str(k): str(v) for k, v in g.inspect_get_mountpoints(roots[0]).items()
                         if not str(v).startswith("btrfsvol:")}  # fmt: skip
        found = {fs: by_mountpoint[mp] for fs, mp in streams.items() if mp in by_mountpoint}
        how.append("the clone's fstab")
    left = {fs for fs in streams if fs not in found}
    if left:
        uuids = {f.id: f.uuid.lower() for f in layout.filesystems if f.id in left and f.uuid}
        by_uuid = {}
        for dev, kind in g.list_filesystems().items():
            if kind not in ("swap", "unknown", ""):
                try:
                    by_uuid[str(g.vfs_uuid(dev)).lower()] = str(dev)
                except GuestfsError:
                    continue
        found |= {fs: by_uuid[u] for fs, u in uuids.items() if u in by_uuid}
        how.append("filesystem UUIDs")
    return found, " and ".join(how)


def read_target(g: Guest, tree: Tree, device: str) -> tuple[list[FileRecord], str]:
    """One tree (a filesystem, a btrfs subvolume) alone, read-only: TARGET_SCRIPT's output parsed, the subvolumes
    nested in it left out as its stream leaves them out; and what its tools said on stderr."""
    g.umount_all()
    mount_tree(g, tree, device, "/", readonly=True)
    try:
        g.debug("sh", [target_script()])
        files = {name: _fetch(g, f"{TARGET_OUT}/{name}") for name in TARGET_FILES}
    finally:
        g.umount_all()
    nested = {rel(n) for n in tree.nested}
    found = [r for r in target_records(files) if r.path not in nested]
    return found, files["errors"].decode("utf-8", "replace")


def _fetch(g: Guest, path: str) -> bytes:
    """A file of the appliance (not of the mounted target), base64 in chunks."""
    out = bytearray()
    index = 0
    while True:
        text = str(g.debug("sh", [f"dd if={path} bs={CHUNK} skip={index} count=1 2>/dev/null | base64 -w0"]))
        chunk = base64.b64decode(text.strip())
        out += chunk
        if len(chunk) < CHUNK:
            return bytes(out)
        index += 1
