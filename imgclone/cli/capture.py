"""imgclone capture (mksysb): arguments → CaptureOptions, the capture, what it prints."""

from __future__ import annotations

import argparse
import os
import time

from imgclone.cli.output import emit
from imgclone.errors import UsageError
from imgclone.model.manifest import Manifest, StreamInfo
from imgclone.units import human


def cmd_capture(args: argparse.Namespace) -> int:
    """imgclone capture."""
    from imgclone.capture.common import CaptureOptions, ErrMode

    if args.output == "-" and args.json:
        raise UsageError("--json and -o - both want standard output", "write the archive to a file")
    opts = CaptureOptions(
        output=args.output, source=args.source, mounts=tuple(os.path.abspath(m) for m in args.mount),
        exclude_list=args.exclude_list, verbose=args.verbose, debug=args.debug, err_mode=ErrMode.from_env(),
        progress=False if args.no_progress else None, level=args.level, snapshots=args.snapshots,
    )  # fmt: skip
    t0 = time.monotonic()
    if opts.source:
        from imgclone.capture.offline import capture_offline

        manifest = capture_offline(opts)
    else:
        from imgclone.capture.host import capture_host

        manifest = capture_host(opts)
    elapsed = time.monotonic() - t0
    if args.output == "-":
        return 0
    summary = {"archive": args.output, "seconds": round(elapsed, 1), "streams": [s.to_dict() for s in manifest.streams],
               "read_errors": manifest.read_errors or 0}  # fmt: skip
    emit(args, summary, lambda: _capture_text(manifest, args.output, elapsed))
    return 0


def _capture_text(m: Manifest, path: str, elapsed: float) -> str:
    nfs = len({s.fs for s in m.streams})
    what = f"{nfs} filesystem(s)" + (f" in {len(m.streams)} streams (btrfs: one per subvolume)"
                                     if len(m.streams) > nfs else "")  # fmt: skip
    lines = [f"captured {what} into {path} in {elapsed:.1f} s"]
    lines += [stream_row(s) for s in m.streams]
    total = m.stream_bytes()
    lines.append(f"archive: {human(os.path.getsize(path))} ({human(total)} of streams)")
    return "\n".join(lines) + "\n"


def stream_row(s: StreamInfo) -> str:
    data = human(s.data_bytes) if s.data_bytes else "?"
    return f"  {s.mountpoint or '-':<16} {s.tree:<18} {s.files:>9} files  {data:>10} → {human(s.bytes):>10} zstd"
