"""imgclone copy (alt_disk_copy): capture the running system or an image, restore it, customize, finalize.

Phase 1 streams: the capture writes the archive into a pipe that restore reads as it comes
(copy/stream.py), tee'd into --archive PATH when asked; no temporary archive is written. The
targets are refused, when they must be, before the capture starts. -P23 on targets of an
earlier -P1 needs no source at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imgclone.capture.common import CaptureOptions, ErrMode
from imgclone.cli.restore import finish, options, report_phase1, run_held, run_phases, say
from imgclone.copy import blocks as copy_blocks
from imgclone.copy.stream import CaptureFeed
from imgclone.errors import ReadErrors, UsageError
from imgclone.guest import session
from imgclone.guest.appliance import Appliance
from imgclone.host import locks, targets
from imgclone.model import journal as state
from imgclone.model.content import ContentFacts
from imgclone.model.layout import Layout
from imgclone.phases.restore import RestoreOptions
from imgclone.plan.planner import make_plan
from imgclone.plan.types import Target

log = logging.getLogger("imgclone")


def cmd_copy(args: argparse.Namespace) -> int:
    """alt_disk_copy: the three phases from the running system (or --source) onto the targets."""
    todo_capture = "1" in set("123" if args.phases == "all" else args.phases)
    archive = args.archive or ("<stream>" if todo_capture else None)
    opts = options(args, archive=archive)
    if not todo_capture:
        if args.source or args.archive or args.exclude_list:
            raise UsageError("--source, --archive and -e belong to Phase 1, which -P" + args.phases + " does not run")
        return finish(args, run_phases(args, opts, {"targets": list(opts.targets)}))
    # a conversion is checked against the content's extremes before anything is written: the capture finds them first
    cap = capture_options(args, prescan=bool(opts.plan.convert) or opts.plan.edited is not None)
    disks = targets.resolve(list(opts.targets), force=opts.force, protected=targets.running_root_disks())
    if cap.source and any(os.path.realpath(cap.source) == os.path.realpath(d.path) for d in disks):
        raise UsageError(f"-d {cap.source}: is the source of the copy")
    if opts.dry_run:
        return finish(args, dry_run(args, opts, cap, disks))
    result: dict[str, Any] = {"targets": list(opts.targets), "archive": args.archive}
    if by_blocks(args, opts, cap, disks, result):
        return finish(args, result)
    result["by"] = "files"
    report_errors = copy_phases(args, opts, cap, result)
    if report_errors:
        result["read_errors"] = True
    return finish(args, result, rc=1 if report_errors else 0)


def by_blocks(args: argparse.Namespace, opts: RestoreOptions, cap: CaptureOptions, disks: list[targets.TargetDisk],
              result: dict[str, Any]) -> bool:  # fmt: skip
    """The whole copy with Phase 1 by blocks (copy/blocks.py), when --by allows it and the copy needs no files: True
    when done. What the options ask for decides quietly (-D says it); a plan that blocks cannot build, seen after
    the copy, falls back to files with a note. --by blocks makes either an error."""
    if args.by == "files":
        return False
    why = copy_blocks.host_refusal(opts, cap, disks, keep_archive=bool(args.archive))
    try:
        if why is not None:
            log.debug("Phase 1 copies by files: %s", why)
            raise copy_blocks.CopyByFiles(why)
        blocks_phases(args, dataclasses.replace(opts, archive_name=state.BLOCKS), cap, disks[0], result)
        return True
    except copy_blocks.CopyByFiles as e:
        if args.by == "blocks":
            raise UsageError(f"--by blocks: {e}", "give --by files, or leave --by out") from e
        if why is None:
            print(f"imgclone: note: Phase 1 copies by files: {e}", file=sys.stderr)
        return False


def blocks_phases(args: argparse.Namespace, opts: RestoreOptions, cap: CaptureOptions, disk: targets.TargetDisk,
                  result: dict[str, Any]) -> None:  # fmt: skip
    """Phase 1 by blocks, then the later phases in the same appliance, under one lock of the target."""
    with locks.hold(opts.targets), session.Session(debug=args.debug) as appliance:
        ctx = copy_blocks.phase1(opts, cap, disk, appliance)
        result["by"] = "blocks"
        report_phase1(args, ctx, result)
        rest = later_phases(args)
        if rest:
            run_held(phase_args(args, rest), opts, result, False, appliance)


def later_phases(args: argparse.Namespace) -> str:
    """The phases after Phase 1 that -P asks for ("" for none)."""
    return {"1": "", "12": "2", "all": "23"}.get(args.phases, "")


def phase_args(args: argparse.Namespace, phases: str) -> argparse.Namespace:
    """args with -P phases: Phase 1 runs while the capture feeds it, Phases 2 and 3 once the capture is done."""
    return argparse.Namespace(**dict(vars(args), phases=phases))


def capture_options(args: argparse.Namespace, prescan: bool = False) -> CaptureOptions:
    if args.archive and os.path.exists(args.archive):
        raise UsageError(f"--archive {args.archive}: exists already", "give a new file, or restore it with -a")
    if args.source and not os.path.exists(args.source):
        raise UsageError(f"--source {args.source}: no such image or device")
    return CaptureOptions(
        output=args.archive or "-", source=os.path.abspath(args.source) if args.source else None,
        exclude_list=args.exclude_list, verbose=args.verbose, debug=args.debug, err_mode=ErrMode.from_env(),
        progress=False if args.no_progress else None, prescan=prescan,
    )  # fmt: skip


def capture(cap: CaptureOptions) -> tuple[dict[str, Any] | None, bool]:
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


Capture = Callable[[CaptureOptions], tuple[dict[str, Any] | None, bool]]
Phases = Callable[[argparse.Namespace, RestoreOptions, dict[str, Any], bool, session.Session], dict[str, Any]]


def copy_phases(args: argparse.Namespace, opts: RestoreOptions, cap: CaptureOptions, result: dict[str, Any],
                capture_into: Capture = capture, phases: Phases = run_held) -> bool:  # fmt: skip
    """Phase 1 while the capture streams, then the later phases, under one lock of the targets taken before the
    capture starts: released between the two, another run could take the targets. True: ALT_BAK_ERR_REPORT saw
    read errors."""
    # one bar and one file list: restore's, which see the same bytes as they arrive (the capture's would interleave)
    cap = dataclasses.replace(cap, progress=False, verbose=False)
    with locks.hold(opts.targets), session.Session(debug=args.debug) as appliance:  # the phases' one appliance
        with CaptureFeed(lambda out: capture_into(dataclasses.replace(cap, output=out)), keep=args.archive) as feed:
            named = dataclasses.replace(options(args, archive=feed.path), archive_name=args.archive or state.STREAMED)
            phases(phase_args(args, "1"), named, result, False, appliance)
        assert feed.result is not None
        manifest, report_errors = feed.result
        if manifest is not None:  # under ALT_BAK_ERR_REPORT the warning said what was captured
            total = sum(int(s["bytes"]) for s in manifest["streams"])
            say(args, f"Phase 1: captured {len(manifest['streams'])} filesystem(s), {total} bytes of streams\n")
        rest = later_phases(args)
        if rest:
            phases(phase_args(args, rest), opts, result, report_errors, appliance)
    return report_errors


def dry_run(
    args: argparse.Namespace, opts: RestoreOptions, cap: CaptureOptions, disks: list[targets.TargetDisk]
) -> dict[str, Any]:
    """The plan from the source's layout and inode counts (and, converting, its files near a type's limits), probed
    without capturing anything; by blocks when the copy would go by blocks (copy_blocks.dry_plan)."""
    source, inodes, content = probe_source(cap)
    plan_opts = dataclasses.replace(opts.plan, files=inodes, content=content)
    plan, why = None, "--by files"
    if args.by != "files":
        why = copy_blocks.host_refusal(opts, cap, disks, keep_archive=bool(args.archive)) or ""
        if not why:
            plan, why = copy_blocks.dry_plan(source, disks[0], plan_opts)
        if plan is None and args.by == "blocks":
            raise UsageError(f"--by blocks: {why}", "give --by files, or leave --by out")
    if plan is None:
        plan = make_plan(source, [Target(d.path, d.size, d.sector_size) for d in disks], plan_opts)
    for w in plan.warnings:
        print(f"imgclone: warning: {w}", file=sys.stderr)
    note = FILES_NOTE if inodes else ""
    by = "files" if why else "blocks"
    way = f"by files ({why})" if why else "by blocks"
    say(args, plan.table() + note + f"\nPhase 1 would copy {way}\nnothing was written (--dry-run)\n")
    return {"targets": [d.path for d in disks], "plan": plan.to_dict(), "dry_run": True, "by": by, "why": why}


FILES_NOTE = "FILES: inodes in use on the source filesystem, at most what its files need on the clone\n"
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
