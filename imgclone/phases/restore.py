"""Phase 1, restore (alt_disk_mksysb): an archive onto target disks or images.

Everything that can be refused is refused before anything is written: targets, the plan (sizes, names, space,
conversions), where the phases work (--via). Then STEPS run on the opened clone (guest/session.py: on this host or
in an appliance): they build the planned layout, stream every filesystem in from the archive (extract.py), fix the
clone's references to the new UUIDs and types, and the journal records what was built. A Phase 1 that fails
removes the images it created (and, under ALT_BAK_ERR_FAIL=1, blanks the others).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from imgclone.alt import cleanup as alt_cleanup
from imgclone.archive.reader import ArchiveReader, read_manifest
from imgclone.errors import GuestfsError, ImgcloneError
from imgclone.guest import session, via
from imgclone.guest.interface import Guest
from imgclone.guest.steps import Context, run_phase, steps
from imgclone.host import targets
from imgclone.model import journal as state
from imgclone.model.manifest import Manifest
from imgclone.model.trees import Tree, trees
from imgclone.phases import extract, fixups, stream_guard
from imgclone.phases.phase import Phase
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
    via: str = "auto"  # --via: where the phases work on the clone (guest/via.py)


@dataclass(kw_only=True)
class Restore(Context):
    """One Phase 1 run: its plan, its targets, what it made."""

    opts: RestoreOptions
    manifest: Manifest
    disks: list[targets.TargetDisk]
    plan: Plan
    devs: build.Devices | None = None
    uuids: dict[str, str] = field(default_factory=dict)
    created: list[targets.TargetDisk] = field(default_factory=list)
    reader: ArchiveReader | None = None  # open after the first manifest: the streams are read once, in order

    @property
    def devices(self) -> build.Devices:
        assert self.devs is not None, "check_targets maps the devices first"
        return self.devs


def prepare(opts: RestoreOptions) -> Restore:
    """Read the manifest, resolve the targets and plan: every refusal happens here. The archive stays open."""
    reader = ArchiveReader(opts.archive)
    try:
        return plan_restore(opts, reader)
    except BaseException:
        reader.close()
        raise


def plan_restore(opts: RestoreOptions, reader: ArchiveReader) -> Restore:
    """The plan from the archive's first manifest: complete in an archive file; in a pipe (stdin, imgclone copy) it
    has the layout and no streams yet, which restore checks against the final manifest at the end."""
    manifest = reader.manifest
    if not manifest.complete and os.path.isfile(opts.archive):
        manifest = read_manifest(opts.archive)  # a piped archive saved to a file: its last manifest has file counts
    source = manifest.layout
    protected = targets.running_root_disks()
    disks = targets.resolve(list(opts.targets), force=opts.force, protected=protected)
    plan_opts = dataclasses.replace(opts.plan, files=manifest.planning_files(),  # inodes a shrunk fs must still hold
                                    content=manifest.planning_content(), snapshots=manifest.snapshots)  # fmt: skip
    plan = make_plan(source, [Target(d.path, d.size, d.sector_size) for d in disks], plan_opts)
    return Restore(targets=opts.targets, opts=opts, manifest=manifest, disks=disks, plan=plan, reader=reader)


def journal_of(ctx: Restore) -> state.Journal:
    """What the journal records of this Phase 1: the targets, the layout built (its UUIDs so far), the archive."""
    return state.Journal(
        targets=tuple(state.TargetRecord(d.path, d.kind, d.format, d.size) for d in ctx.disks),
        layout=ctx.plan.target, source_layout=ctx.plan.source, uuids=dict(ctx.uuids),
        archive=state.archive_name(ctx.opts.archive_name or ctx.opts.archive),
        archive_created=ctx.manifest.created or None, boot=ctx.manifest.boot,
    )  # fmt: skip


def restore(opts: RestoreOptions, shared: session.Session | None = None) -> Restore:
    """Run Phase 1 restore (on the `shared` session's clone when the command's later phases share it); returns the
    context (plan, new UUIDs, timings). Where it works is decided before anything is written (--dry-run too)."""
    ctx = prepare(opts)
    try:
        with (
            contextlib.nullcontext(shared)
            if shared is not None
            else session.Session(debug=opts.debug, via_asked=opts.via) as sess
        ):
            sess.decide([via.Drive(d.path, d.format, d.kind != "image") for d in ctx.disks], ctx.plan.target)
            for w in ctx.plan.warnings:  # before anything is written, so a Phase 1 that fails has shown them too
                print(f"imgclone: warning: {w}", file=sys.stderr)
            if not opts.dry_run:
                build_clone(ctx, sess)
    finally:
        reader(ctx).close()
    return ctx


def build_clone(ctx: Restore, shared: session.Session) -> None:
    """Phase 1's writing half: images, then one opened clone for every step; a failure cleans up what it can."""
    try:
        create_images(ctx)
        run_phase(Phase.RESTORE.value, ctx, STEPS, shared.use([(d.path, d.format) for d in ctx.disks]))
    except BaseException as e:
        clean_up_failure(ctx, e)
        raise
    state.save_phase1(ctx.opts.targets, journal_of(ctx))


def clean_up_failure(ctx: Restore, error: BaseException, wipe: Callable[[Sequence[str]], object] | None = None) -> None:
    """After a failed Phase 1: the images it created are removed. Targets that existed are, with ALT_BAK_ERR_FAIL=1,
    wiped back to blank as `alt cleanup --wipe` does (AIX's "runs cleanup and stops"); else the error says they
    are partly written and how to wipe them. An interrupt is not wiped: it stops at once, and says the same."""
    started = "record_start" in ctx.timings
    note = ""
    if started and ctx.opts.wipe_on_failure and len(ctx.created) < len(ctx.disks) and isinstance(error, Exception):
        try:  # every target, created ones included: cleanup refuses an alternate whose targets are missing
            (wipe or (lambda t: alt_cleanup.cleanup(t, wipe=True, debug=ctx.opts.debug)))(ctx.opts.targets)
            note = "ALT_BAK_ERR_FAIL=1: the targets were wiped back to blank"
        except Exception as e:  # noqa: BLE001 - the restore's error is the news; this one is added to it
            note = f"ALT_BAK_ERR_FAIL=1: wiping the targets failed too ({e})"
    targets.remove_created(ctx.created)
    state.phase1_failed(ctx.opts.targets, error, started=started, targets_removed=len(ctx.created) == len(ctx.disks))
    if note and isinstance(error, ImgcloneError):
        error.hint = f"{error.hint}; {note}" if error.hint else note


def create_images(ctx: Restore) -> None:
    """Create the images that do not exist yet, at the plan's sizes (before the clone is opened: it attaches them)."""
    for i, d in enumerate(ctx.disks):
        if d.kind == "image" and not d.exists:
            made = targets.create_image(d, ctx.plan.target_sizes[i])
            ctx.created.append(made)
            ctx.disks[i] = made


def reader(ctx: Restore) -> ArchiveReader:
    assert ctx.reader is not None
    return ctx.reader


# -- the steps ----------------------------------------------------------------------------------------------------
def check_targets(ctx: Restore) -> None:
    """Map layout disks to the guest's devices; refuse occupied ones."""
    listed = ctx.g.list_devices()
    ctx.devs = build.Devices(ctx.plan.target, {d.id: listed[i] for i, d in enumerate(ctx.plan.target.disks)})
    # images this run made are empty: the occupancy check is for targets that already existed
    created = {d.path for d in ctx.created}
    force = ctx.opts.force or all(d.path in created for d in ctx.disks)
    build.check_empty(ctx.g, ctx.devs, force=force)


def record_start(ctx: Restore) -> None:
    """Journal the alternate before the first write (state.save_phase1 started=True)."""
    opts = ctx.opts
    state.save_phase1(opts.targets, journal_of(ctx), started=True)


def partition(ctx: Restore) -> None:
    build.partition_disks(ctx.g, ctx.devices)


def create_lvm(ctx: Restore) -> None:
    build.create_lvm(ctx.g, ctx.devices)


def make_filesystems(ctx: Restore) -> None:
    keep: dict[str, str] = {}
    if ctx.opts.keep_uuids:
        src = ctx.plan.source
        keep = {f.id: f.uuid for f in src.filesystems if f.uuid} | {s.id: s.uuid for s in src.swaps if s.uuid}
    ctx.uuids = build.make_filesystems(ctx.g, ctx.devices, keep)


def create_subvolumes(ctx: Restore) -> None:
    """The btrfs subvolumes the archive has streams of, parents first; the default one set."""
    build.create_subvolumes(ctx.g, ctx.devices, target_trees(ctx))


def target_trees(ctx: Restore) -> list[Tree]:
    """The trees of the target layout, each a stream of the archive (its snapshots are there when it has them)."""
    return trees(ctx.plan.target, snapshots=True)


def extract_streams(ctx: Restore) -> None:
    """Stream every tree (filesystem, btrfs subvolume) from the archive into the target's (one pass over it)."""
    made = target_trees(ctx)
    rd = reader(ctx)
    extract.extract_all(
        ctx.g, rd, {t.id: (t, ctx.devices.path(t.fs.device)) for t in made},
        stream_guard.guards(ctx.plan, ctx.manifest.planning_content()),
        total=ctx.manifest.stream_bytes() or None,  # None: still being captured
        verbose=ctx.opts.verbose, progress=ctx.opts.progress,
    )  # fmt: skip
    ctx.manifest = rd.manifest  # the final one, with the streams (parts() checked them against it)


def fix_references(ctx: Restore) -> None:
    """Rewrite the clone's fstab (and resume/crypttab) to the new UUIDs and filesystem types."""
    g, devs = ctx.g, ctx.devices
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


def seal_subvolumes(ctx: Restore) -> None:
    """Read-only subvolumes (snapshots kept) become read-only again, now that their streams are in."""
    ctx.g.umount_all()
    build.seal_subvolumes(ctx.g, ctx.devices, target_trees(ctx))


def unmount(ctx: Restore) -> None:
    """Flush, unmount, deactivate the alternate VGs (they stay as placeholders, as on AIX)."""
    g = ctx.g
    g.sync()
    g.umount_all()
    if ctx.plan.target.vgs:
        g.vg_activate(False, [vg.name for vg in ctx.plan.target.vgs])


STEPS = steps(check_targets, record_start, partition, create_lvm, make_filesystems, create_subvolumes, extract_streams,
              fix_references, seal_subvolumes, unmount)  # fmt: skip
