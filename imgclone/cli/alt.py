"""imgclone alt (query | wake | sleep | cleanup) and the alt_rootvg_op console script that spells them as AIX."""

from __future__ import annotations

import argparse
import contextlib
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from imgclone.cli.commands import emit
from imgclone.errors import UsageError
from imgclone.host import locks
from imgclone.host.targets import split_targets
from imgclone.units import human

# altop and state (libguestfs, the planner) are imported where an alt command runs: every imgclone command
# builds this parser, and must not pay for them

ALT_EPILOG = textwrap.dedent("""\
    examples:
      imgclone alt query                                   every alternate the journals know
      imgclone alt query -d clone.qcow2 --json             one, as JSON
      imgclone alt wake -d clone.qcow2                     mount its filesystems read-write at /alt_inst
      imgclone alt wake -d "/dev/sdb /dev/sdc" --mountpoint /mnt/alt
      imgclone alt sleep -d clone.qcow2                    unmount, flush the images, forget the mount
      imgclone alt cleanup -d clone.qcow2                  forget the alternate (the disks keep their data)
      imgclone alt cleanup -d clone.qcow2 --wipe           and blank the disks so restore takes them again
      imgclone alt cleanup --old-vg old_rootvg             say what would be removed from this host
      imgclone alt cleanup --old-vg old_rootvg --yes-wipe  remove it: vgremove, pvremove, wipefs

    The AIX spellings work too: alt_rootvg_op -q -d clone.qcow2, -W -d ..., -S -d ..., -X [old_rootvg].
    An alternate is named by the -d targets its Phase 1 (restore or copy) was given; its journal lives in
    /var/lib/imgclone/alternates (IMGCLONE_STATE_DIR). Until Phase 3 its volume group is altinst_<vg> with
    logical volumes alt_<lv>; after it, <vg> and <lv>.
    """)


def _targets(p: argparse.ArgumentParser, required: bool, text: str) -> None:
    p.add_argument("-d", "--target", action="append", required=required, metavar="TARGETS",
                   help=text + "; repeat, or quote a space-separated list")  # fmt: skip


def add_alt(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """The alt subcommand (alt_rootvg_op): query, wake, sleep, cleanup."""
    raw = argparse.RawDescriptionHelpFormatter
    alt = sub.add_parser(
        "alt", formatter_class=raw, epilog=ALT_EPILOG,
        help="query, wake (mount), sleep (unmount) or clean up an alternate (alt_rootvg_op)",
        description="Operate on the alternates that restore/copy built: list them with their targets, volume "
        "group names and phases; mount one's filesystems read-write on this host (through guestmount, no "
        "device-mapper needed) and unmount it; forget one and optionally wipe its disks; remove the "
        "old_<vg> volume group (AIX's old_rootvg) from this host.",
    )  # fmt: skip
    asub = alt.add_subparsers(dest="alt_action", metavar="ACTION", required=True)
    q = asub.add_parser("query", parents=[common], formatter_class=raw, epilog=ALT_EPILOG,
                        help="alternates: targets, volume groups as named now, phases, archive, mount",
                        description="Show every alternate recorded in the journals (or the one on -d): its "
                        "targets and whether each still exists, its volume groups and logical volumes as named now, "
                        "the phases completed and when, the archive it came from, and where it is woken.")  # fmt: skip
    _targets(q, False, "only the alternate on these targets")
    w = asub.add_parser("wake", parents=[common], formatter_class=raw, epilog=ALT_EPILOG,
                        help="mount the alternate's filesystems read-write at /alt_inst (guestmount)",
                        description="Mount every filesystem of the alternate, parents first, read-write at the "
                        "mount point through libguestfs's guestmount, a FUSE daemon that keeps running after this "
                        "command returns. Changes reach the images when `imgclone alt sleep` unmounts.")  # fmt: skip
    _targets(w, True, "the alternate's targets, as given to restore/copy")
    w.add_argument("--mountpoint", default=None, metavar="DIR",
                   help="an empty directory, made when absent (default /alt_inst)")  # fmt: skip
    s = asub.add_parser("sleep", parents=[common], formatter_class=raw, epilog=ALT_EPILOG,
                        help="unmount a woken alternate (guestunmount) and wait until its images are written",
                        description="Unmount the woken alternate with guestunmount, wait for guestmount to flush "
                        "the images and exit, and clear the wake record (also a stale one).")  # fmt: skip
    _targets(s, False, "the woken alternate's targets (default: the only woken one)")
    c = asub.add_parser("cleanup", parents=[common], formatter_class=raw, epilog=ALT_EPILOG,
                        help="forget an alternate, optionally wiping its disks; or remove old_<vg> from this host",
                        description="-d: forget the alternate (remove its journal); with --wipe first remove its "
                        "volume groups and PVs and wipe filesystem, PV and partition-table signatures on its "
                        "recorded targets (and only those), so restore takes them again without --force. "
                        "--old-vg old_<vg>: a source VG its clone renamed (AIX's old_rootvg): refused while any of its "
                        "logical volumes is active or mounted; --yes-wipe runs vgremove, pvremove and wipefs "
                        "on its PVs.")  # fmt: skip
    _targets(c, False, "the alternate's targets")
    c.add_argument("--wipe", action="store_true", help="also blank the recorded targets (through one appliance)")
    c.add_argument("--old-vg", metavar="old_VG", help="a volume group old_<vg> on this host instead of an alternate")
    c.add_argument("--yes-wipe", action="store_true", help="with --old-vg: really remove it and wipe its PVs")


def cmd_alt(args: argparse.Namespace) -> int:
    """imgclone alt query|wake|sleep|cleanup."""
    targets = split_targets(args.target) if getattr(args, "target", None) else None
    with contextlib.nullcontext() if args.alt_action == "query" or not targets else locks.hold(targets):
        return _alt(args, targets)


def _alt(args: argparse.Namespace, targets: list[str] | None) -> int:
    from imgclone.alt import ops as altop
    from imgclone.model.journal import state_dir

    if args.alt_action == "query":
        alts = [altop.find(targets)] if targets else altop.all_alternates()
        data = {"state_dir": str(state_dir()), "alternates": [a.to_dict() for a in alts]}
        emit(args, data, lambda: query_text(data))
        return 0
    if args.alt_action == "wake":
        assert targets is not None  # -d is required
        w = altop.wake(targets, args.mountpoint or altop.DEFAULT_MOUNTPOINT)
        text = (f"woke the alternate on -d {' '.join(targets)}: its filesystems are mounted read-write at "
                f"{w.mountpoint} (guestmount pid {w.pid}); `imgclone alt sleep` writes them back\n")  # fmt: skip
        emit(args, w.to_dict(), lambda: text)
        return 0
    if args.alt_action == "sleep":
        said = altop.sleep(targets)
        emit(args, {"result": said}, lambda: said + "\n")
        return 0
    return _cleanup(args, targets)


def _cleanup(args: argparse.Namespace, targets: list[str] | None) -> int:
    from imgclone.alt import ops as altop

    if args.old_vg is not None:
        if targets or args.wipe:
            raise UsageError("cleanup: --old-vg works on this host's volume group alone: no -d, no --wipe",
                             "use --yes-wipe to remove it")  # fmt: skip
        actions = altop.cleanup_old_vg(args.old_vg, yes=args.yes_wipe)
    elif args.yes_wipe:
        raise UsageError("cleanup: --yes-wipe goes with --old-vg old_<vg>", "for an alternate: -d TARGETS --wipe")
    elif not targets:
        raise UsageError("cleanup: give -d TARGETS (an alternate) or --old-vg old_<vg> (this host's former rootvg)")
    else:
        actions = altop.cleanup(targets, wipe=args.wipe, debug=args.debug)
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


# -- alt_rootvg_op ----------------------------------------------------------------------------------------------

AIX_EPILOG = textwrap.dedent("""\
    examples:
      alt_rootvg_op -q -d clone.qcow2             query (imgclone alt query -d clone.qcow2)
      alt_rootvg_op -q                            every alternate
      alt_rootvg_op -W -d clone.qcow2             wake: mount at /alt_inst (imgclone alt wake)
      alt_rootvg_op -S -d clone.qcow2             sleep: unmount (imgclone alt sleep); -S alone: the woken one
      alt_rootvg_op -X -d clone.qcow2             forget the alternate (imgclone alt cleanup); --wipe blanks it
      alt_rootvg_op -X old_rootvg                 what removing the host's old_rootvg would do; --yes-wipe does it

    Here -S is sleep, as in AIX alt_rootvg_op (in alt_disk_copy, -S skips the space check). AIX's -X removes
    only the definition; this one needs -d TARGETS to know the alternate, since Linux has no ODM to look in.
    Other AIX flags (-C customize, -m, -c, -t, -v) are not supported: use imgclone restore -P2/-P3.
    """)


def _aix_parser() -> argparse.ArgumentParser:
    from imgclone.cli.parser import (
        Parser,  # one-line usage errors, as imgclone's (cli imports this module: not at the top)
    )

    p = Parser(
        prog="alt_rootvg_op", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=AIX_EPILOG,
        description="AIX alt_rootvg_op spellings of imgclone alt: query, wake, sleep and clean up alternates.",
    )  # fmt: skip
    op = p.add_mutually_exclusive_group()
    op.add_argument("-q", dest="op", action="store_const", const="query", help="query an alternate (or all)")
    op.add_argument("-W", dest="op", action="store_const", const="wake", help="wake: mount at /alt_inst")
    op.add_argument("-S", dest="op", action="store_const", const="sleep", help="sleep: unmount")
    op.add_argument("-X", dest="remove", nargs="?", const="altinst_rootvg", metavar="VG",
                    help="clean up: altinst_<vg> (default; needs -d) or old_<vg> on this host")  # fmt: skip
    p.add_argument("-d", dest="targets", action="append", metavar="TARGETS", help="the alternate's target disks")
    p.add_argument("-D", dest="debug", action="store_true", help="debug: trace every command")
    p.add_argument("--json", action="store_true", help="-q: machine-readable output")
    p.add_argument("--mountpoint", metavar="DIR", help="-W: mount here instead of /alt_inst")
    p.add_argument("--wipe", action="store_true", help="-X -d: also blank the targets")
    p.add_argument("--yes-wipe", action="store_true", help="-X old_<vg>: really remove it")
    return p


def translate(argv: Sequence[str]) -> list[str]:
    """alt_rootvg_op arguments → imgclone arguments; usage errors exit 2 through argparse."""
    p = _aix_parser()
    a, unknown = p.parse_known_args(list(argv))
    if unknown:
        p.error(f"not supported here: {' '.join(unknown)} (query -q, wake -W, sleep -S and clean up -X are)")
    if a.op is None and a.remove is None:
        p.error("give one of -q (query), -W (wake), -S (sleep), -X (clean up)")
    op = a.op or "cleanup"
    d = ["-d", " ".join(a.targets)] if a.targets else []
    extra = (["-D"] if a.debug else []) + (["--json"] if a.json else [])
    allowed = (
        ("--mountpoint", a.mountpoint, "wake"),
        ("--wipe", a.wipe, "cleanup"),
        ("--yes-wipe", a.yes_wipe, "cleanup"),
    )
    misplaced = [flag for flag, value, ok in allowed if value and op != ok]
    if misplaced:
        letter = {"query": "q", "wake": "W", "sleep": "S", "cleanup": "X"}[op]
        p.error(f"{', '.join(misplaced)} does not go with -{letter}")
    if op == "wake":
        if not d:
            p.error("-W needs -d TARGETS: the disks or images of the alternate to wake")
        return ["alt", "wake", *d, *(["--mountpoint", a.mountpoint] if a.mountpoint else []), *extra]
    if op in ("query", "sleep"):
        return ["alt", op, *d, *extra]
    return _translate_remove(p, a.remove, d, a, extra)


def _translate_remove(p: argparse.ArgumentParser, vg: str, d: list[str], a: argparse.Namespace,
                      extra: list[str]) -> list[str]:  # fmt: skip
    from imgclone.alt.ops import OLD_VG_PREFIX

    if vg.startswith(OLD_VG_PREFIX):
        if d or a.wipe:
            p.error(f"-X {vg} removes this host's volume group: no -d, no --wipe (--yes-wipe does it)")
        return ["alt", "cleanup", "--old-vg", vg, *(["--yes-wipe"] if a.yes_wipe else []), *extra]
    if not vg.startswith("altinst_"):
        p.error(f"-X {vg}: give altinst_<vg> (with -d TARGETS) or old_<vg>")
    if not d:
        p.error(f"-X {vg} needs -d TARGETS: the disks or images of the alternate (Linux has no ODM to ask)")
    if a.yes_wipe:
        p.error("--yes-wipe goes with -X old_<vg>; for an alternate use --wipe")
    return ["alt", "cleanup", *d, *(["--wipe"] if a.wipe else []), *extra]


def alt_rootvg_op_main(argv: Sequence[str] | None = None) -> None:
    """Console script alt_rootvg_op: translate the AIX flags and run imgclone (which exits)."""
    from imgclone.__main__ import main

    main(translate(sys.argv[1:] if argv is None else argv))
