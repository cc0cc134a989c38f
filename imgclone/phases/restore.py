"""Phase 1, restore (alt_disk_mksysb): an archive onto target disks or images.

Everything that can be refused is refused before anything is written: targets, the plan
(sizes, names, space, conversions). Then one appliance builds the planned layout, mounts
it, streams every filesystem in from the archive (zstd on the host, tar_in inside), fixes
the clone's references to the new UUIDs and types, and records what it built.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from imgclone import faults
from imgclone.alt import ops as altop
from imgclone.archive.reader import ArchiveReader, Part, read_manifest
from imgclone.archive.streams import TAR_LIST, ZSTD_DECOMPRESS
from imgclone.errors import ArchiveError, GuestfsError, ImgcloneError
from imgclone.guest import session
from imgclone.guest.interface import Guest
from imgclone.host import targets
from imgclone.host.run import DEVNULL, PIPE, Pipeline
from imgclone.model import journal as state
from imgclone.model.content import ContentFacts
from imgclone.model.layout import Layout
from imgclone.phases import fixups, stream_guard
from imgclone.phases.stream_guard import StreamGuard
from imgclone.plan.planner import make_plan
from imgclone.plan.types import Plan, PlanOptions, Target
from imgclone.storage import build

log = logging.getLogger("imgclone")


@dataclass(frozen=True)
class RestoreOptions:
    archive: str
    targets: tuple[str, ...]
    plan: PlanOptions = field(default_factory=PlanOptions)
    force: bool = False
    keep_uuids: bool = False
    dry_run: bool = False
    verbose: bool = False
    debug: bool = False
    progress: bool | None = None
    wipe_on_failure: bool = False  # ALT_BAK_ERR_FAIL=1: a failed Phase 1 blanks the targets that existed
    archive_name: str = ""  # what the journal calls the archive (copy reads a pipe: /dev/fd/N names nothing)


@dataclass
class Context:
    """State of one restore run."""

    opts: RestoreOptions
    manifest: dict[str, Any]
    disks: list[targets.TargetDisk]
    plan: Plan
    g: Guest | None = None
    devs: build.Devices | None = None
    uuids: dict[str, str] = field(default_factory=dict)
    created: list[targets.TargetDisk] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    reader: ArchiveReader | None = None  # open after the first manifest: the streams are read once, in order


def prepare(opts: RestoreOptions) -> Context:
    """Read the manifest, resolve the targets and plan: every refusal happens here. The archive stays open."""
    reader = ArchiveReader(opts.archive)
    try:
        return plan_restore(opts, reader)
    except BaseException:
        reader.close()
        raise


def plan_restore(opts: RestoreOptions, reader: ArchiveReader) -> Context:
    """The plan from the archive's first manifest: complete in an archive file; in a pipe (stdin, imgclone copy) it
    has the layout and no streams yet, which restore checks against the final manifest at the end."""
    manifest = reader.manifest
    if not manifest.get("complete") and os.path.isfile(opts.archive):
        manifest = read_manifest(opts.archive)  # a piped archive saved to a file: its last manifest has file counts
    source = Layout.from_dict(manifest["layout"])
    protected = targets.running_root_disks()
    disks = targets.resolve(list(opts.targets), force=opts.force, protected=protected)
    plan_opts = dataclasses.replace(opts.plan, files=planning_files(manifest),  # inodes a shrunk fs must still hold
                                    content=planning_content(manifest))  # fmt: skip
    plan = make_plan(source, [Target(d.path, d.size, d.sector_size) for d in disks], plan_opts)
    return Context(opts=opts, manifest=manifest, disks=disks, plan=plan, reader=reader)


def planning_files(manifest: dict[str, Any]) -> dict[str, int]:
    """fs id → files to plan for: the streams' own counts, or in the first manifest of a piped archive (no streams
    yet) the source's inodes in use when the capture began, an upper bound (older archives have none)."""
    if manifest["streams"]:
        return {str(s["fs"]): int(s["files"]) for s in manifest["streams"]}
    return {str(fs): int(n) for fs, n in manifest.get("inodes", {}).items()}


def planning_content(manifest: dict[str, Any]) -> dict[str, ContentFacts | None]:
    """fs id → what its content needs of a target type (None: its stream records nothing). A piped archive's first
    manifest has no streams yet: its `prescan` (copy with a conversion: the files near a type's limits) when it has
    one, else nothing is known."""
    if not manifest["streams"]:
        return {str(fs): ContentFacts.from_dict(d) for fs, d in manifest.get("prescan", {}).items()}
    return {str(s["fs"]): ContentFacts.from_dict(s.get("content")) for s in manifest["streams"]}


def restore(opts: RestoreOptions, appliance: session.Session | None = None) -> Context:
    """Run Phase 1 restore (in `appliance` when the command's later phases share it); returns the context (plan,
    new UUIDs, timings)."""
    ctx = prepare(opts)
    for w in ctx.plan.warnings:  # before anything is written, so a Phase 1 that fails has shown them too
        print(f"imgclone: warning: {w}", file=sys.stderr)
    try:
        if not opts.dry_run:
            build_clone(ctx, appliance)
    finally:
        _reader(ctx).close()
    return ctx


def build_clone(ctx: Context, appliance: session.Session | None = None) -> None:
    """Phase 1's writing half: images, then one appliance for every step; a failure cleans up what it can."""
    opts = ctx.opts
    try:
        create_images(ctx)
        with session.opened([(d.path, d.format) for d in ctx.disks], appliance, debug=opts.debug) as g:
            ctx.g = g
            run_steps(ctx, [check_targets, record_start, partition, create_lvm, make_filesystems, extract_streams,
                            fix_references, finish])  # fmt: skip
    except BaseException as e:
        clean_up_failure(ctx, e)
        raise
    state.save_phase1(ctx.opts.targets, ctx.disks, ctx.plan, ctx.manifest, opts.archive_name or opts.archive,
                      ctx.uuids)  # fmt: skip


def clean_up_failure(ctx: Context, error: BaseException, wipe: Callable[[Sequence[str]], object] | None = None) -> None:
    """After a failed Phase 1: the images it created are removed. Targets that existed are, with ALT_BAK_ERR_FAIL=1,
    wiped back to blank as `alt cleanup --wipe` does (AIX's "runs cleanup and stops"); else the error says they
    are partly written and how to wipe them. An interrupt is not wiped: it stops at once, and says the same."""
    started = "record_start" in ctx.timings
    note = ""
    if started and ctx.opts.wipe_on_failure and len(ctx.created) < len(ctx.disks) and isinstance(error, Exception):
        try:  # every target, created ones included: cleanup refuses an alternate whose targets are missing
            (wipe or (lambda t: altop.cleanup(t, wipe=True, debug=ctx.opts.debug)))(ctx.opts.targets)
            note = "ALT_BAK_ERR_FAIL=1: the targets were wiped back to blank"
        except Exception as e:  # noqa: BLE001 - the restore's error is the news; this one is added to it
            note = f"ALT_BAK_ERR_FAIL=1: wiping the targets failed too ({e})"
    targets.remove_created(ctx.created)
    state.phase1_failed(ctx.opts.targets, error, started=started, targets_removed=len(ctx.created) == len(ctx.disks))
    if note and isinstance(error, ImgcloneError):
        error.hint = f"{error.hint}; {note}" if error.hint else note


def run_steps(ctx: Context, steps: list[Callable[[Context], None]]) -> None:
    """Each step timed, named in -D output."""
    for step in steps:
        t0 = time.monotonic()
        log.debug("step %s", step.__name__)
        faults.maybe_fail("1", step.__name__)
        step(ctx)
        ctx.timings[step.__name__] = round(time.monotonic() - t0, 1)


def create_images(ctx: Context) -> None:
    """Create the images that do not exist yet, at the plan's sizes."""
    for i, d in enumerate(ctx.disks):
        if d.kind == "image" and not d.exists:
            made = targets.create_image(d, ctx.plan.target_sizes[i])
            ctx.created.append(made)
            ctx.disks[i] = made


def _guest(ctx: Context) -> Guest:
    assert ctx.g is not None and ctx.devs is not None
    return ctx.g


def check_targets(ctx: Context) -> None:
    """Attach every target and map layout disks to appliance devices; refuse occupied ones."""
    g = ctx.g
    assert g is not None
    devices = g.list_devices()
    ctx.devs = build.Devices(ctx.plan.target, {d.id: devices[i] for i, d in enumerate(ctx.plan.target.disks)})
    # images this run made are empty: the occupancy check is for targets that already existed
    created = {d.path for d in ctx.created}
    force = ctx.opts.force or all(d.path in created for d in ctx.disks)
    build.check_empty(g, ctx.devs, force=force)


def record_start(ctx: Context) -> None:
    """Journal the alternate before the first write (state.save_phase1 started=True)."""
    opts = ctx.opts
    state.save_phase1(opts.targets, ctx.disks, ctx.plan, ctx.manifest, opts.archive_name or opts.archive, {},
                      started=True)  # fmt: skip


def partition(ctx: Context) -> None:
    build.partition_disks(_guest(ctx), _devs(ctx))


def create_lvm(ctx: Context) -> None:
    build.create_lvm(_guest(ctx), _devs(ctx))


def make_filesystems(ctx: Context) -> None:
    keep: dict[str, str] = {}
    if ctx.opts.keep_uuids:
        src = ctx.plan.source
        keep = {f.id: f.uuid for f in src.filesystems if f.uuid} | {s.id: s.uuid for s in src.swaps if s.uuid}
    ctx.uuids = build.make_filesystems(_guest(ctx), _devs(ctx), keep)


def _devs(ctx: Context) -> build.Devices:
    assert ctx.devs is not None
    return ctx.devs


def _reader(ctx: Context) -> ArchiveReader:
    assert ctx.reader is not None
    return ctx.reader


def extract_streams(ctx: Context) -> None:
    """Stream every filesystem from the archive into its mounted target (one pass over the archive)."""
    g = _guest(ctx)
    devs = _devs(ctx)
    # each filesystem mounted alone at / while its stream goes in: layouts without "/" work too
    where = {fs.id: devs.path(fs.device) for fs in ctx.plan.target.filesystems}
    mountpoint = {fs.id: fs.mountpoint for fs in ctx.plan.target.filesystems}
    reader = _reader(ctx)
    guarded = stream_guard.guards(ctx.plan, planning_content(ctx.manifest))
    total = sum(int(s["bytes"]) for s in ctx.manifest["streams"]) or None  # None: still being captured
    disable = not (sys.stderr.isatty() if ctx.opts.progress is None else ctx.opts.progress)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="restore", disable=disable,
              file=sys.stderr, dynamic_ncols=True) as bar:  # fmt: skip

        def say(line: str) -> None:
            bar.write(line, file=sys.stderr)  # above the bar; a plain line when it is disabled

        current: _Extraction | None = None
        try:
            for part in reader.parts():
                if current is None or current.member != part.member:
                    if current is not None:
                        current.finish()
                    fs_id = part.member.rsplit("/", 1)[-1].removesuffix(".tar.zst")
                    if fs_id not in where:
                        raise ArchiveError(f"stream {part.member} has no filesystem in the target layout")
                    listing = _Listing(mountpoint[fs_id], say) if ctx.opts.verbose else None
                    current = _Extraction(g, part.member, where[fs_id], listing, guarded.get(fs_id))
                current.feed(part, bar)
            if current is not None:
                current.finish()
            ctx.manifest = reader.manifest  # the final one, with the streams (parts() checked them against it)
        except BaseException:
            if current is not None:
                current.abandon()  # else tar_in waits for zstd forever, and the appliance cannot shut down
            raise


class _Listing:
    """-V: each file of a stream as it passes, named at its mount point. tar_in lists nothing, so a second
    `zstd -d | tar -t` reads the same compressed bytes; without -V none of this runs."""

    def __init__(self, mountpoint: str, say: Callable[[str], None]) -> None:
        self._pipe = Pipeline([ZSTD_DECOMPRESS, TAR_LIST], stdin=PIPE, stderr=DEVNULL).__enter__()
        prefix = mountpoint.rstrip("/")

        def names() -> None:
            for raw in self._pipe.out:
                name = raw.decode("utf-8", "backslashreplace").rstrip("\n").removeprefix(".").rstrip("/")
                say(prefix + name or "/")

        self._thread = threading.Thread(target=names, daemon=True)
        self._thread.start()

    def write(self, chunk: bytes) -> None:
        self._pipe.write(chunk)  # False: a damaged stream; restore's own checks say so

    def close(self, *, abandon: bool = False) -> None:
        """Wait for the last names (or, abandoning, stop listing)."""
        if abandon:
            self._pipe.kill()
        self._pipe.close_input()
        self._thread.join(timeout=60)
        self._pipe.__exit__(BaseException if abandon else None, None, None)


class _Extraction:
    """One stream: parts → zstd -d (host) → pipe → tar_in (appliance), in a thread. With a guard, zstd's output
    passes through this process on its way, so the guard reads its headers first (phases/stream_guard.py)."""

    def __init__(self, g: Guest, member: str, device: str, listing: _Listing | None = None,
                 guard: StreamGuard | None = None) -> None:  # fmt: skip
        self.member = member
        self._g = g
        self._listing = listing
        self._refused: str | None = None
        g.umount_all()
        g.mount(device, "/")
        r, w = os.pipe()
        self._pipe = Pipeline([ZSTD_DECOMPRESS], stdin=PIPE, stdout=w if guard is None else PIPE,
                              stderr=PIPE).__enter__()  # fmt: skip
        self._relay = None
        if guard is None:
            os.close(w)
        else:
            self._relay = threading.Thread(target=self._guarded, args=(guard, w), daemon=True)
            self._relay.start()
        self._failure: list[BaseException] = []

        def consume() -> None:
            try:
                g.tar_in(f"/dev/fd/{r}", "/", xattrs=True, selinux=True, acls=True)
            except BaseException as e:  # noqa: B036 - handed to the main thread
                self._failure.append(e)
            finally:
                os.close(r)

        self._thread = threading.Thread(target=consume, daemon=True)
        self._thread.start()
        self._done = False

    def _guarded(self, guard: StreamGuard, w: int) -> None:
        """zstd's output → the guard → tar_in's pipe; at the first refusal tar_in gets no more (it fails on the cut
        stream) and zstd is stopped, so that feed() stops too."""
        try:
            with os.fdopen(w, "wb") as dst:
                while chunk := self._pipe.out.read(1 << 20):
                    self._refused = guard.check(chunk)
                    if self._refused is not None:
                        self._pipe.kill()
                        return
                    dst.write(chunk)
        except BrokenPipeError:
            self._pipe.kill()  # tar_in stopped reading: its own error says why

    def _check_refused(self) -> None:
        if self._refused is not None:
            raise ImgcloneError(self._refused, "the restore stopped there, before tar had the file")

    def feed(self, part: Part, bar: Any) -> None:
        while chunk := part.data.read(1 << 20):
            if not self._pipe.write(chunk):
                break  # zstd gave up (or the guard stopped it); finish() reports why
            if self._listing is not None:
                self._listing.write(chunk)
            bar.update(len(chunk))
        self._check_refused()  # at once: the rest of a piped stream would be read for nothing

    def abandon(self) -> None:
        """After an error mid-stream: kill zstd, so that tar_in reads the end of its input and returns."""
        if self._done:
            return
        self._done = True
        self._pipe.kill()
        self._pipe.close_input()
        if self._relay is not None:
            self._relay.join(timeout=60)
        self._thread.join(timeout=60)
        self._pipe.__exit__(BaseException, None, None)
        if self._listing is not None:
            self._listing.close(abandon=True)

    def finish(self) -> None:
        self._done = True
        self._pipe.close_input()
        [rc] = self._pipe.wait()
        if self._relay is not None:
            self._relay.join()
        self._thread.join()
        err = self._pipe.stderr_text()
        self._pipe.__exit__(None, None, None)
        if self._listing is not None:
            self._listing.close()
        self._g.umount_all()
        self._check_refused()
        if rc != 0:
            raise ArchiveError(f"stream {self.member} is damaged: zstd: {err.strip() or rc}")
        if self._failure:
            e = self._failure[0]
            raise GuestfsError(f"restoring {self.member}: {e}") from e


def fix_references(ctx: Context) -> None:
    """Rewrite the clone's fstab (and resume/crypttab) to the new UUIDs and filesystem types."""
    g, devs = _guest(ctx), _devs(ctx)
    root = ctx.plan.target.filesystem_at("/")
    if root is None:
        return
    # the whole tree, parents first: a mount point missing from its parent's stream is made in the right one
    build.mount_tree(g, devs)
    fixups.rewrite_references(g, ctx.plan, ctx.uuids, {p.id: _partuuid(g, devs.path(p.id)) for p in
                                                      ctx.plan.target.partitions})  # fmt: skip


def _partuuid(g: Guest, dev: str) -> str:
    """The PARTUUID the new partition table gives dev ("" when blkid finds none)."""
    try:
        return str(g.blkid(dev).get("PART_ENTRY_UUID", ""))
    except GuestfsError as e:
        log.debug("%s: no partition entry: %s", dev, e)
        return ""


def finish(ctx: Context) -> None:
    """Flush, unmount, deactivate the alternate VGs (they stay as placeholders, as on AIX)."""
    g = _guest(ctx)
    g.sync()
    g.umount_all()
    if ctx.plan.target.vgs:
        g.vg_activate(False, [vg.name for vg in ctx.plan.target.vgs])
