"""imgclone restore: arguments → RestoreOptions, and what it prints."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from .commands import human
from .errors import UsageError
from .finalize import finalize
from .layout import Layout
from .plan import PlanOptions, Resize
from .restore import Context as RestoreContext
from .restore import RestoreOptions, restore
from .targets import split_targets

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
    """-i: a full path to a layout file (the seed's image.data)."""
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


def phases(value: str) -> set[str]:
    """-P: 1, 2, 3, 12, 23 or all."""
    return {"1", "2", "3"} if value == "all" else set(value)


def options(args: argparse.Namespace) -> RestoreOptions:
    """Every usage check of restore, before anything is read or written."""
    if "1" in phases(args.phases) and not args.archive:
        raise UsageError("-a ARCHIVE is needed for Phase 1", "or give -P23 to continue an earlier -P1")
    if args.lv_name_limit < 5:
        raise UsageError(f"--lv-name-limit {args.lv_name_limit}: too small for the alt_ prefix")
    plan = PlanOptions(
        resize=Resize(args.resize) if args.resize else None,
        convert=parse_convert(args.convert, args.upgrade),
        lv_name_limit=args.lv_name_limit,
        skip_space_check=args.skip_space,
        size=parse_size(args.size) if args.size else None,
        edited=load_layout(args.layout),
    )
    return RestoreOptions(
        archive=args.archive or "", targets=tuple(split_targets(args.target)), plan=plan, force=args.force,
        keep_uuids=args.keep_uuids, dry_run=args.dry_run, verbose=args.verbose, debug=args.debug,
        progress=False if args.no_progress else None,
    )  # fmt: skip


def cmd_restore(args: argparse.Namespace) -> int:
    """imgclone restore: Phase 1 from the archive, then Phases 2 and 3 as -P says."""
    opts = options(args)
    todo = phases(args.phases)
    result: dict[str, object] = {"targets": list(opts.targets)}
    if "1" in todo:
        ctx = restore(opts)
        for w in ctx.plan.warnings:
            print(f"imgclone: warning: {w}", file=sys.stderr)
        result["plan"] = ctx.plan.to_dict()
        if opts.dry_run:
            result["dry_run"] = True
            say(args, ctx.plan.table() + "\nnothing was written (--dry-run)\n")
            return finish(args, result)
        result["phase1"] = {"uuids": ctx.uuids, "timings": ctx.timings}
        say(args, phase1_text(ctx))
    elif opts.dry_run:
        raise UsageError("--dry-run plans Phase 1; give -P1 or more")
    if "2" in todo:
        result["phase2"] = {"actions": []}
        say(args, "Phase 2: no customization requested\n")
    if "3" in todo:
        fin = finalize(opts.targets, skip_checks=args.skip_boot_checks, debug=args.debug)
        result["phase3"] = {"actions": fin.actions, "timings": fin.timings}
        say(args, "Phase 3: " + "; ".join(fin.actions) + "\n")
    return finish(args, result)


def say(args: argparse.Namespace, text: str) -> None:
    """Human output as each phase ends (with --json, one document at the end instead)."""
    if not args.json:
        sys.stdout.write(text)
        sys.stdout.flush()


def finish(args: argparse.Namespace, result: dict[str, object]) -> int:
    if args.json:
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    return 0


def phase1_text(ctx: RestoreContext) -> str:
    """What Phase 1 built."""
    lines = [ctx.plan.table(), ""]
    for d in ctx.disks:
        used = human(os.path.getsize(d.path)) if d.kind == "image" else human(d.size)
        lines.append(f"restored onto {d.path} ({d.kind}, {d.format}, {used} on disk)")
    lines.append("steps: " + ", ".join(f"{k} {v:.0f} s" for k, v in ctx.timings.items()))
    return "\n".join(lines) + "\n"
