"""imgclone restore (alt_disk_mksysb): arguments → options, the three phases, the boot order, what it prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from typing import Any

from imgclone.capture.common import ErrMode
from imgclone.cli import rules as flags
from imgclone.errors import UsageError
from imgclone.guest import session
from imgclone.host import locks
from imgclone.host.targets import split_targets
from imgclone.model import journal as state
from imgclone.model.layout import Layout
from imgclone.phases import alternate, bootorder
from imgclone.phases.customize import customize
from imgclone.phases.finalize import finalize
from imgclone.phases.restore import Context as RestoreContext
from imgclone.phases.restore import RestoreOptions, restore
from imgclone.plan.types import PlanOptions, Resize
from imgclone.units import human

CONVERTIBLE = ("ext2", "ext3", "ext4", "xfs", "btrfs")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'20G' → bytes (binary units)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise UsageError(f"--size {text}: not a size", "e.g. 20G, 512M, 1.5T")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * 1024**power)


def parse_convert(values: list[str], upgrade: bool) -> dict[str, str]:
    """-T and --convert SRC=DST into one type map."""
    conv = {"ext2": "ext4", "ext3": "ext4"} if upgrade else {}
    for v in values:
        src, sep, dst = v.partition("=")
        if not sep or src not in CONVERTIBLE or dst not in CONVERTIBLE or src == dst:
            raise UsageError(f"--convert {v}: expected SRC=DST with two different types of {', '.join(CONVERTIBLE)}")
        conv[src] = dst
    return conv


def load_layout(path: str | None) -> Layout | None:
    """-i: a full path to a layout file (AIX's image.data)."""
    if path is None:
        return None
    if not path.startswith("/"):
        raise UsageError(f"-i {path}: must be a full path name")
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise UsageError(f"-i {path}: {e.strerror}") from e
    layout = Layout.from_json(text, source=path)
    layout.validate()
    return layout


def options(args: argparse.Namespace, archive: str | None = None) -> RestoreOptions:
    """Every usage check of restore and copy, before anything is read or written."""
    flags.check_rules(args)
    todo = flags.phases(args.phases)
    archive = archive if archive is not None else args.archive
    if "1" in todo and not archive:
        raise UsageError("-a ARCHIVE is needed for Phase 1", "or give -P23 to continue an earlier -P1")
    if "1" in todo and archive == "-" and sys.stdin.isatty():
        raise UsageError("-a -: standard input is a terminal", "pipe an archive into it: imgclone capture -o - | …")
    if args.lv_name_limit < 5:
        raise UsageError(f"--lv-name-limit {args.lv_name_limit}: too small for the alt_ prefix")
    if args.dry_run and "1" not in todo:
        raise UsageError("--dry-run plans Phase 1; give -P1 or more")
    plan = PlanOptions(
        resize=Resize(args.resize) if args.resize else None,
        convert=parse_convert(args.convert, args.upgrade),
        lv_name_limit=args.lv_name_limit,
        skip_space_check=args.skip_space,
        size=parse_size(args.size) if args.size else None,
        edited=load_layout(args.layout),
    )
    opts = RestoreOptions(
        archive=archive or "", targets=tuple(split_targets(args.target)), plan=plan, force=args.force,
        keep_uuids=args.keep_uuids, dry_run=args.dry_run, verbose=args.verbose, debug=args.debug,
        progress=False if args.no_progress else None, wipe_on_failure=ErrMode.from_env() is ErrMode.FAIL,
    )  # fmt: skip
    flags.check_reboot(args, opts.targets)
    same = [t for t in opts.targets if archive and os.path.realpath(t) == os.path.realpath(archive)]
    if same:
        raise UsageError(f"-d {same[0]}: is the archive being restored", "give another target")
    return opts


def cmd_restore(args: argparse.Namespace) -> int:
    """imgclone restore: Phase 1 from the archive, then Phases 2 and 3 as -P says."""
    opts = options(args)
    return finish(args, run_phases(args, opts, {"targets": list(opts.targets)}))


def run_phases(
    args: argparse.Namespace, opts: RestoreOptions, result: dict[str, Any], report_errors: bool = False
) -> dict[str, Any]:
    """Phases 1, 2 and 3 as -P says, in one appliance, then the boot order; report_errors: ALT_BAK_ERR_REPORT saw
    read errors."""
    with contextlib.nullcontext() if opts.dry_run else locks.hold(opts.targets):
        with session.Session(debug=args.debug) as appliance:
            return run_held(args, opts, result, report_errors, appliance)


def run_held(args: argparse.Namespace, opts: RestoreOptions, result: dict[str, Any], report_errors: bool = False,
             appliance: session.Session | None = None) -> dict[str, Any]:  # fmt: skip
    """run_phases for a caller that holds the targets' lock already (copy holds it across its two calls), in the
    caller's appliance when it shares one across them."""
    todo = flags.phases(args.phases)
    custom = flags.customize_options(args)
    if "1" in todo:
        ctx = restore(opts, appliance)
        result["plan"] = ctx.plan.to_dict()
        if opts.dry_run:
            result["dry_run"] = True
            say(args, ctx.plan.table() + "\nnothing was written (--dry-run)\n")
            return result
        report_phase1(args, ctx, result)
    if "2" in todo:
        if custom.requested:
            cus = customize(opts.targets, custom, debug=args.debug, appliance=appliance)
            result["phase2"] = {"actions": cus.actions, "notes": cus.notes, "timings": cus.timings}
            for note in cus.notes:
                print(f"imgclone: note: {note}", file=sys.stderr)
            say(args, steps_text("Phase 2", cus.actions or ["nothing changed"]))
        else:
            result["phase2"] = {"actions": [], "notes": [], "timings": {}}
            # journaled as run (`alt query` listed it as "not run" after a whole copy); Phase 1 must be there, as for
            # a Phase 2 with work to do
            alternate.load(opts.targets)
            state.mark_phase(opts.targets, "2", {"timings": {}, "actions": [], "notes": ["no customization requested"]})
            say(args, "Phase 2: no customization requested\n")
    if "3" in todo:
        fin = finalize(opts.targets, skip_checks=args.skip_boot_checks, beside_source=args.beside_source,
                       debug=args.debug, appliance=appliance)  # fmt: skip
        result["phase3"] = {"actions": fin.actions, "timings": fin.timings}
        say(args, steps_text("Phase 3", fin.actions))
        if appliance is not None:
            appliance.close()  # the clone's disks are let go before the boot order names them and -r reboots
        boot_order(args, opts, result, report_errors)
    return result


def report_phase1(args: argparse.Namespace, ctx: RestoreContext, result: dict[str, Any]) -> None:
    """What Phase 1 built, into the --json result and on stdout."""
    result["plan"] = ctx.plan.to_dict()
    result["phase1"] = {"uuids": ctx.uuids, "timings": ctx.timings}
    say(args, phase1_text(ctx))


def boot_order(args: argparse.Namespace, opts: RestoreOptions, result: dict[str, Any], report_errors: bool) -> None:
    """AIX's bootlist after Phase 3: unless -B, or read errors under ALT_BAK_ERR_REPORT; then -r."""
    if args.no_bootlist:
        lines = ["boot order: left alone (-B)"]
    elif report_errors:
        lines = ["boot order: not set, files could not be read (ALT_BAK_ERR_REPORT)"]
    else:
        lines = bootorder.set_boot_order(state.load(opts.targets) or {"targets": []})
    result["boot_order"] = lines
    say(args, "\n".join(lines) + "\n")
    if args.reboot and not report_errors:
        say(args, "rebooting into the clone (-r)\n")
        bootorder.reboot()


def say(args: argparse.Namespace, text: str) -> None:
    """Human output as each phase ends (with --json, one document at the end instead)."""
    if not args.json:
        sys.stdout.write(text)
        sys.stdout.flush()


def finish(args: argparse.Namespace, result: dict[str, Any], rc: int = 0) -> int:
    if args.json:
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    return rc


def steps_text(phase: str, actions: list[str]) -> str:
    return f"{phase}:\n" + "".join(f"  {a}\n" for a in actions)


def phase1_text(ctx: RestoreContext) -> str:
    """What Phase 1 built."""
    lines = [ctx.plan.table(), ""]
    for d in ctx.disks:
        used = human(os.stat(d.path).st_blocks * 512) if d.kind == "image" else human(d.size)  # sparse: allocated
        how = "copied the source's blocks onto" if ctx.opts.archive_name == state.BLOCKS else "restored onto"
        lines.append(f"{how} {d.path} ({d.kind}, {d.format}, {used} on disk)")
    lines.append("steps: " + ", ".join(f"{k} {v:.0f} s" for k, v in ctx.timings.items()))
    return "\n".join(lines) + "\n"
