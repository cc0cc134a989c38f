"""Command line: argparse, with help that teaches by example."""

from __future__ import annotations

import argparse
import textwrap

from . import __version__

EPILOG = textwrap.dedent("""\
    examples:
      imgclone capture -o /backup/host.mksysb                  the running system (rootvg analog)
      imgclone capture --mount /srv/data -o data.mksysb         exactly the filesystem at /srv/data
      imgclone capture vm.qcow2 -o vm.mksysb                    an offline image, through libguestfs
      imgclone capture -e /root/exclude.list -o - | ssh backup 'cat > host.mksysb'
      imgclone archive verify host.mksysb

    exit codes: 0 success, 1 runtime failure, 2 usage or layout error, 130 interrupted
    environment: ALT_BAK_ERR_REPORT=1, ALT_BAK_ERR_FAIL=1 (files that cannot be read),
                 IMGCLONE_ACCEL=kvm|tcg (force the QEMU accelerator)
    """)


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-D", "--debug", action="store_true", help="trace every command; tracebacks on errors")
    p.add_argument("-V", "--verbose", action="store_true", help="list files as they are archived")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The imgclone parser with its subcommands."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="imgclone",
        description="Capture, clone and boot-test Linux system disks: alt_disk_copy and mksysb for Linux.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"imgclone {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    cap = sub.add_parser(
        "capture", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="capture mounted filesystems into a portable archive (mksysb)",
        description="Capture the mounted filesystems of this system (every filesystem on the disks or VGs that "
        "hold /), of the given mount points, or of an offline disk image into one archive: a tar holding "
        "manifest.json and one tar.zst stream per filesystem. Files matching the grep patterns in "
        "/etc/exclude.rootvg (the image's own, for an image) and in -e LIST are left out; patterns are matched "
        "against ./-relative paths, e.g. ^./tmp/ drops the contents of /tmp.",
        epilog=EPILOG,
    )  # fmt: skip
    cap.add_argument("source", nargs="?", metavar="SOURCE", help="disk image (qcow2/raw) or unmounted block device")
    cap.add_argument("-o", "--output", required=True, metavar="ARCHIVE", help="archive file, or - for stdout")
    cap.add_argument("-e", "--exclude-list", metavar="EXCLUDELIST", help="grep patterns, one a line (full path)")
    cap.add_argument("--mount", nargs="+", default=[], metavar="MOUNTPOINT",
                     help="capture exactly the filesystems mounted here")  # fmt: skip
    cap.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    arc = sub.add_parser("archive", help="list, show or verify an archive")
    asub = arc.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("list", "streams with their sizes and file counts"),
        ("show", "the manifest: source, boot facts, layout"),
        ("verify", "check every stream's sha256 and its zstd and tar integrity"),
    ):
        a = asub.add_parser(name, parents=[common], help=text, description=text)
        a.add_argument("archive", metavar="ARCHIVE", help="archive file, or - for stdin")
        if name == "show":
            a.add_argument("--layout", action="store_true", help="print only the layout JSON (for restore -i)")
    return parser
