"""imgclone archive list | show | verify: the archive's streams, its manifest, its integrity or a clone's fidelity."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imgclone.archive.reader import ArchiveReader, read_manifest_doc
from imgclone.archive.verify import verify
from imgclone.cli.capture import stream_row
from imgclone.cli.output import emit
from imgclone.model.manifest import Manifest, StreamInfo
from imgclone.units import human


def cmd_archive(args: argparse.Namespace) -> int:
    """imgclone archive list|show|verify."""
    if args.action == "verify" and args.against:
        from imgclone.check.against import verify_against
        from imgclone.check.fidelity import report_text
        from imgclone.host.targets import split_targets

        fidelity = verify_against(args.archive, split_targets(args.against), debug=args.debug)
        emit(args, fidelity.to_dict(), lambda: report_text(fidelity))
        return 0 if fidelity.ok else 1
    if args.action == "verify":
        report = verify(args.archive, deep=args.deep)
        emit(args, report.to_dict(), lambda: _verify_text(report.to_dict()))
        return 0 if report.ok else 1
    doc = read_manifest_doc(args.archive) if args.archive != "-" else _stdin_manifest()
    m = Manifest.from_dict(doc)  # the text from the data; JSON is the manifest as the archive holds it
    if args.action == "list":
        emit(args, doc["streams"], lambda: "\n".join(stream_row(s) for s in m.streams) + "\n")
    elif getattr(args, "layout", False):
        sys.stdout.write(m.layout.to_json())
    else:
        emit(args, doc, lambda: _show_text(m))
    return 0


def _stdin_manifest() -> dict[str, Any]:
    with ArchiveReader("-") as r:
        for _ in r.parts():
            pass
        return r.doc


def _verify_text(r: dict[str, Any]) -> str:
    lines = []
    for s in r["streams"]:
        state = "ok" if not s["errors"] else "DAMAGED: " + "; ".join(s["errors"])
        files = f"{s['files']:>9} files  " if s["files"] is not None else ""
        lines.append(f"  {s['member']:<34} {s['parts']:>3} part(s) {human(s['bytes']):>10} {files}{state}")
    lines += [f"  error: {e}" for e in r["errors"]]
    checks = "sha256, zstd and tar" if r["deep"] else "sha256 and zstd; --deep adds tar"
    lines.append(f"{r['archive']}: " + (f"verified, all streams intact ({checks})" if r["ok"] else "VERIFY FAILED"))
    return "\n".join(lines) + "\n"


def _show_text(m: Manifest) -> str:
    layout, src, boot = m.layout, m.source, m.boot
    lines = [f"archive format {m.format_version}, imgclone {m.imgclone_version}, created {m.created}",
             f"source: {src.kind} {src.path or src.host}",
             f"boot: firmware {boot.firmware if boot else None}, bootloader {boot.bootloader if boot else None}, "
             f"root {boot.root_device if boot else None}",
             f"  cmdline: {boot.cmdline if boot else ''}"]  # fmt: skip
    for d in layout.disks:
        lines.append(f"disk {d.id}: {d.path} {human(d.size)} table {d.table}")
        for p in (p for p in layout.partitions if p.disk == d.id):
            flags = ",".join(p.flags)
            lines.append(f"  partition {p.number} {p.id}: {human(p.size)} at {p.start} {flags}")
    for vg in layout.vgs:
        lines.append(f"vg {vg.name} ({vg.id}) on {', '.join(vg.pvs)}, extent {human(vg.extent_size)}")
        for lv in (lv for lv in layout.lvs if lv.vg == vg.id):
            lines.append(f"  lv {lv.name} ({lv.id}): {human(lv.size)}")
    for fs in layout.mount_order():
        lines.append(f"fs {fs.mountpoint:<12} {fs.type:<6} on {fs.device}: {human(fs.size)}, {human(fs.used)} used, "
                     f"uuid {fs.uuid} label {fs.label!r}")  # fmt: skip
    for sw in layout.swaps:
        lines.append(f"swap {sw.id} on {sw.device}: {human(sw.size)}")
    lines += [_content_row(s) for s in m.streams]
    lines.append(f"excludes: {len(m.excludes.patterns)} pattern(s) from {', '.join(m.excludes.sources) or '-'}")
    return "\n".join(lines) + "\n"


def _content_row(s: StreamInfo) -> str:
    """What a stream's content needs of a target filesystem (the restore checks it against the target's limits)."""
    head = f"content {s.mountpoint:<8} {s.files} files"
    c = s.content
    if c is None:
        return f"{head}; largest file, hard links, xattrs: not recorded (an older imgclone)"
    xattr = (f"largest xattr {c.largest_xattr_name} {c.largest_xattr} bytes ({c.largest_xattr_path})"
             if c.largest_xattr is not None else "xattr sizes not recorded (host capture)")  # fmt: skip
    return (f"{head}; largest file {human(c.largest_file)} ({c.largest_file_path or '-'}), most hard links "
            f"{c.most_links} ({c.most_links_path or '-'}), {xattr}")  # fmt: skip
