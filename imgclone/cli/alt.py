"""imgclone alt (query | wake | sleep | cleanup): alt_rootvg_op's operations on the alternates."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from imgclone.cli.output import emit
from imgclone.errors import UsageError
from imgclone.host import locks
from imgclone.host.targets import split_targets
from imgclone.units import human

# alt/ and the journal (libguestfs, the planner) are imported where an alt command runs


def cmd_alt(args: argparse.Namespace) -> int:
    """imgclone alt query|wake|sleep|cleanup."""
    targets = split_targets(args.target) if getattr(args, "target", None) else None
    with contextlib.nullcontext() if args.alt_action == "query" or not targets else locks.hold(targets):
        return _alt(args, targets)


def _alt(args: argparse.Namespace, targets: list[str] | None) -> int:
    from imgclone.alt import alternates, wake
    from imgclone.model.journal import state_dir

    if args.alt_action == "query":
        alts = [alternates.find(targets)] if targets else alternates.all_alternates()
        data = {"state_dir": str(state_dir()), "alternates": [a.to_dict() for a in alts]}
        emit(args, data, lambda: query_text(data))
        return 0
    if args.alt_action == "wake":
        assert targets is not None  # -d is required
        w = wake.wake(targets, args.mountpoint or wake.DEFAULT_MOUNTPOINT)
        text = (f"woke the alternate on -d {' '.join(targets)}: its filesystems are mounted read-write at "
                f"{w.mountpoint} (guestmount pid {w.pid}); `imgclone alt sleep` writes them back\n")  # fmt: skip
        emit(args, w.to_dict(), lambda: text)
        return 0
    if args.alt_action == "sleep":
        said = wake.sleep(targets)
        emit(args, {"result": said}, lambda: said + "\n")
        return 0
    return _cleanup(args, targets)


def _cleanup(args: argparse.Namespace, targets: list[str] | None) -> int:
    from imgclone.alt import cleanup, host_vg

    if args.old_vg is not None:
        if targets or args.wipe:
            raise UsageError("cleanup: --old-vg works on this host's volume group alone: no -d, no --wipe",
                             "use --yes-wipe to remove it")  # fmt: skip
        actions = host_vg.cleanup_old_vg(args.old_vg, yes=args.yes_wipe)
    elif args.yes_wipe:
        raise UsageError("cleanup: --yes-wipe goes with --old-vg old_<vg>", "for an alternate: -d TARGETS --wipe")
    elif not targets:
        raise UsageError("cleanup: give -d TARGETS (an alternate) or --old-vg old_<vg> (this host's former rootvg)")
    else:
        actions = cleanup.cleanup(targets, wipe=args.wipe, debug=args.debug)
    emit(args, {"actions": actions}, lambda: "".join(a + "\n" for a in actions))
    return 0


def query_text(data: dict[str, Any]) -> str:
    """alt query as text: one block per alternate."""
    alts = data["alternates"]
    if not alts:
        return f"no alternates recorded in {data['state_dir']}\n"
    return "\n".join(_alt_text(a) for a in alts)


def _alt_text(a: dict[str, Any]) -> str:
    lines = [f"alternate {a['id']} (journal {a['journal']})"]
    for t in a["targets"]:
        there = "" if t["exists"] else "  MISSING"
        lines.append(f"  target       {t['path']} ({t['kind']}, {t['format']}, {human(t['size'])}){there}")
    for vg in a["vgs"]:
        lines.append(f"  volume group {vg['name']}: {', '.join(vg['lvs']) or 'no logical volumes'}")
    for fs in a["filesystems"]:
        lines.append(f"  filesystem   {fs['mountpoint']:<12} {fs['type']:<6} {fs['device']}")
    done = ", ".join(f"{p} at {t}" for p, t in a["phases"].items()) or "none completed"
    todo = [p for p in ("1", "2", "3") if p not in a["phases"]]
    lines.append(f"  phases       {done}" + (f"; not run: {', '.join(todo)}" if todo else ""))
    created = f" (created {a['archive_created']})" if a["archive_created"] else ""
    lines.append(f"  archive      {a['archive']}{created}")
    w = a["woken"]
    if w is None:
        lines.append("  woken        no")
    else:
        stale = "" if w["alive"] else "  STALE: guestmount is gone (alt sleep clears it)"
        lines.append(f"  woken        at {w['mountpoint']} (guestmount pid {w['pid']}, since {w['since']}){stale}")
    return "\n".join(lines) + "\n"
