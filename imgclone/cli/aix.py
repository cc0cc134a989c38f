"""AIX's spellings: alt_rootvg_op's flags and alt_disk_mksysb's -m, translated to imgclone's commands."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence

from imgclone.cli.parser import Parser
from imgclone.model.names import ALT_VG_PREFIX, OLD_VG_PREFIX


def mksysb_argv(argv: Sequence[str]) -> list[str]:
    """alt_disk_mksysb -m device → restore -a device."""
    return ["-a" if a == "-m" else "-a" + a[2:] if a.startswith("-m") and len(a) > 2 else a for a in argv]


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
    if vg.startswith(OLD_VG_PREFIX):
        if d or a.wipe:
            p.error(f"-X {vg} removes this host's volume group: no -d, no --wipe (--yes-wipe does it)")
        return ["alt", "cleanup", "--old-vg", vg, *(["--yes-wipe"] if a.yes_wipe else []), *extra]
    if not vg.startswith(ALT_VG_PREFIX):
        p.error(f"-X {vg}: give altinst_<vg> (with -d TARGETS) or old_<vg>")
    if not d:
        p.error(f"-X {vg} needs -d TARGETS: the disks or images of the alternate (Linux has no ODM to ask)")
    if a.yes_wipe:
        p.error("--yes-wipe goes with -X old_<vg>; for an alternate use --wipe")
    return ["alt", "cleanup", *d, *(["--wipe"] if a.wipe else []), *extra]
