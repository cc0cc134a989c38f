"""imgclone copy (alt_disk_copy): capture the running system or an image, restore it, customize, finalize.

Phase 1 goes one of two ways. By blocks (blocks.py), when the source is an image, the target a new image and the
copy needs nothing that only files give: the source's blocks are copied on the host, then grown, renamed and
renewed in the appliance. Otherwise by files, streamed: the capture writes the archive into a pipe that restore
reads as it comes (stream.py), tee'd into --archive PATH when asked; no temporary archive is written. The targets
are refused, when they must be, before the capture starts, and stay locked from the capture to Phase 3; one
appliance serves every phase.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imgclone.capture.common import CaptureOptions, ErrMode
from imgclone.copy import blocks, blocks_rules
from imgclone.copy.stream import CaptureFeed
from imgclone.errors import ReadErrors, UsageError
from imgclone.guest import session
from imgclone.guest.appliance import Appliance
from imgclone.host import locks, targets
from imgclone.model import journal as state
from imgclone.model.content import ContentFacts
from imgclone.model.layout import Layout
from imgclone.model.manifest import Manifest
from imgclone.phases import command
from imgclone.phases.command import Listener, Outcome
from imgclone.phases.phase import Phase
from imgclone.phases.request import RestoreRequest
from imgclone.phases.restore import RestoreOptions
from imgclone.plan.planner import make_plan
from imgclone.plan.types import Plan, Target

log = logging.getLogger("imgclone")
STREAM = "<stream>"  # Phase 1's archive until the capture's pipe names it
By = Literal["auto", "blocks", "files"]  # --by: how Phase 1 copies an image source (auto: blocks when they can)


@dataclass(frozen=True)
class CopyRequest:
    """What `imgclone copy` is asked: the phases and their options, the source, how Phase 1 copies."""

    phases: RestoreRequest  # its restore.archive is STREAM (or --archive's path), its targets the copy's
    capture: CaptureOptions  # the source: the running system, or capture.source (an image or unmounted device)
    by: By = "auto"
    keep: str | None = None  # --archive PATH: the Phase 1 archive is also written there

    @property
    def targets(self) -> tuple[str, ...]:
        return self.phases.targets


@dataclass(frozen=True)
class CopyWay:
    """How Phase 1 copied: "blocks" or "files"."""

    by: str


@dataclass(frozen=True)
class Captured:
    """The capture that fed Phase 1 by files has ended."""

    streams: int
    bytes: int
    filesystems: int  # a btrfs with subvolumes has a stream for each


@dataclass(frozen=True)
class CopyPlanned:
    """--dry-run: the plan Phase 1 would build and how it would copy (why: the reason it would go by files)."""

    targets: list[str]
    plan: Plan
    by: str
    why: str
    files_known: bool  # the FILES column holds the source's inodes in use


CopyOutcome = Outcome | CopyWay | Captured | CopyPlanned
CopyListener = Callable[[CopyOutcome], None]


def copy(req: CopyRequest, listener: CopyListener) -> bool:
    """The copy: Phase 1 by blocks when it can go that way, else by files, then the later phases. True: files
    could not be read and ALT_BAK_ERR_REPORT said go on (the boot order was left alone)."""
    disks = resolve(req)
    if by_blocks(req, disks, listener):
        return False
    listener(CopyWay("files"))
    return copy_phases(req, listener)


def resolve(req: CopyRequest) -> list[targets.TargetDisk]:
    """The targets, refused as restore refuses them, before anything is read; a target that is the source too."""
    opts = req.phases.restore
    disks = targets.resolve(list(opts.targets), force=opts.force, protected=targets.running_root_disks())
    cap = req.capture
    if cap.source and any(os.path.realpath(cap.source) == os.path.realpath(d.path) for d in disks):
        raise UsageError(f"-d {cap.source}: is the source of the copy")
    return disks


def by_blocks(req: CopyRequest, disks: list[targets.TargetDisk], listener: CopyListener) -> bool:
    """The whole copy with Phase 1 by blocks (blocks.py), when --by allows it and the copy needs no files: True
    when done. What the options ask for decides quietly (-D says it); a plan that blocks cannot build, seen after
    the copy, falls back to files with a note. --by blocks makes either an error."""
    if req.by == "files":
        return False
    opts = req.phases.restore
    why = blocks_rules.host_refusal(opts, req.capture, disks, keep_archive=bool(req.keep))
    try:
        if why is not None:
            log.debug("Phase 1 copies by files: %s", why)
            raise blocks_rules.CopyByFiles(why)
        blocks_phases(req, dataclasses.replace(opts, archive_name=state.BLOCKS), disks[0], listener)
        return True
    except blocks_rules.CopyByFiles as e:
        if req.by == "blocks":
            raise UsageError(f"--by blocks: {e}", "give --by files, or leave --by out") from e
        if why is None:
            print(f"imgclone: note: Phase 1 copies by files: {e}", file=sys.stderr)
        return False


def blocks_phases(req: CopyRequest, opts: RestoreOptions, disk: targets.TargetDisk,
                  listener: CopyListener) -> None:  # fmt: skip
    """Phase 1 by blocks, then the later phases in the same appliance, under one lock of the target."""
    with locks.hold(opts.targets), command.session_for(req.phases, listener) as shared:
        ctx = blocks.phase1(opts, req.capture, disk, shared)
        listener(CopyWay("blocks"))
        listener(command.restored(ctx))
        rest = req.phases.only(Phase.CUSTOMIZE, Phase.FINALIZE)
        if rest.phases:
            command.run_held(rest, listener, shared)


def capture(cap: CaptureOptions) -> tuple[Manifest | None, bool]:
    """Phase 1's capture: its manifest, and True when files could not be read and ALT_BAK_ERR_REPORT says go on."""
    try:
        if cap.source:
            from imgclone.capture.offline import capture_offline

            return capture_offline(cap), False
        from imgclone.capture.host import capture_host

        return capture_host(cap), False
    except ReadErrors as e:
        if cap.err_mode is not ErrMode.REPORT:
            raise
        print(f"imgclone: warning: {e}; going on (ALT_BAK_ERR_REPORT)", file=sys.stderr)
        return None, True


Capture = Callable[[CaptureOptions], tuple[Manifest | None, bool]]
Phases = Callable[[RestoreRequest, Listener, session.Session, bool], None]


def copy_phases(req: CopyRequest, listener: CopyListener, capture_into: Capture = capture,
                phases: Phases = command.run_held) -> bool:  # fmt: skip
    """Phase 1 while the capture streams, then the later phases, under one lock of the targets taken before the
    capture starts: released between the two, another run could take the targets. True: ALT_BAK_ERR_REPORT saw
    read errors."""
    # one bar and one file list: restore's, which see the same bytes as they arrive (the capture's would interleave)
    cap = dataclasses.replace(req.capture, progress=False, verbose=False)
    with locks.hold(req.targets), command.session_for(req.phases, listener) as shared:  # the phases' one clone
        with CaptureFeed(lambda out: capture_into(dataclasses.replace(cap, output=out)), keep=req.keep) as feed:
            streamed = dataclasses.replace(req.phases.restore, archive=feed.path,
                                           archive_name=req.keep or state.STREAMED)  # fmt: skip
            phase1 = dataclasses.replace(req.phases.only(Phase.RESTORE), restore=streamed)
            phases(phase1, listener, shared, False)
        assert feed.result is not None
        manifest, report_errors = feed.result
        if manifest is not None:  # under ALT_BAK_ERR_REPORT the warning said what was captured
            listener(Captured(len(manifest.streams), manifest.stream_bytes(), len({s.fs for s in manifest.streams})))
        rest = req.phases.only(Phase.CUSTOMIZE, Phase.FINALIZE)
        if rest.phases:
            phases(rest, listener, shared, report_errors)
    return report_errors


def dry_run(req: CopyRequest, listener: CopyListener) -> None:
    """The plan from the source's layout and inode counts (and, converting, its files near a type's limits), probed
    without capturing anything; by blocks when the copy would go by blocks (blocks_rules.dry_plan)."""
    disks = resolve(req)
    opts = req.phases.restore
    source, inodes, content = probe_source(req.capture)
    plan_opts = dataclasses.replace(opts.plan, files=inodes, content=content, snapshots=req.capture.snapshots)
    plan, why = None, "--by files"
    if req.by != "files":
        why = blocks_rules.host_refusal(opts, req.capture, disks, keep_archive=bool(req.keep)) or ""
        if not why:
            plan, why = blocks_rules.dry_plan(source, disks[0], plan_opts)
        if plan is None and req.by == "blocks":
            raise UsageError(f"--by blocks: {why}", "give --by files, or leave --by out")
    if plan is None:
        plan = make_plan(source, [Target(d.path, d.size, d.sector_size) for d in disks], plan_opts)
    for w in plan.warnings:
        print(f"imgclone: warning: {w}", file=sys.stderr)
    listener(CopyPlanned([d.path for d in disks], plan, "files" if why else "blocks", why, bool(inodes)))


Content = dict[str, ContentFacts | None]


def probe_source(cap: CaptureOptions) -> tuple[Layout, dict[str, int], Content]:
    """The source's layout, its filesystems' inodes in use and, with cap.prescan, the files near a type's limits
    that the exclude rules keep: what the capture's first manifest records (`inodes`, `prescan`)."""
    with tempfile.TemporaryDirectory(prefix="imgclone-") as tmp:
        if cap.source is None:
            return _probe_host(cap, Path(tmp))
        return _probe_image(cap, Path(tmp))


def _probe_host(cap: CaptureOptions, workdir: Path) -> tuple[Layout, dict[str, int], Content]:
    from imgclone.capture.host import host_rules, prescan_fs
    from imgclone.probe.host import probe_running, used_inodes

    layout, found = probe_running()
    content: Content = {}
    if cap.prescan:
        rules = host_rules(cap, workdir)
        content = {s.fs_id: prescan_fs(s.mountpoint, rules, workdir) for s in found}
    return layout, used_inodes(found), content


def _probe_image(cap: CaptureOptions, workdir: Path) -> tuple[Layout, dict[str, int], Content]:
    from imgclone.capture.offline import prescan_all, read_rules
    from imgclone.host.images import image_format
    from imgclone.probe.guest import mount_sources, probe_image
    from imgclone.probe.guest import used_inodes as guest_inodes

    assert cap.source is not None
    g = Appliance(trace=cap.debug)
    g.add_drive(cap.source, readonly=True, format=image_format(cap.source))
    with g:
        layout, sources = probe_image(g, [cap.source])
        mount_sources(g, sources)
        inodes = guest_inodes(g, sources)
        if not cap.prescan:
            return layout, inodes, {}
        found = prescan_all(g, layout, {s.fs_id: s.device for s in sources}, read_rules(g, workdir, cap), workdir)
        return layout, inodes, dict(found)
