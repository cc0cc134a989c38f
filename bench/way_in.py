#!/usr/bin/env python3
"""Ways into the appliance: how one filesystem stream of an archive gets into a target filesystem.

Issue 4 asks to measure more than one way in, under TCG, and keep the fastest. Each way fills a
new ext4 on a qcow2 with the same stream (the largest of the archive, by default the BIOS
fixture's root), all in one appliance launch (imgclone's Appliance: the same vCPUs, memory and
accelerator as a restore), rounds interleaved with the starting way rotating:

1. tar_in: `zstd -d` on the host, the tar stream piped into libguestfs's `tar-in`. This is what
   `imgclone restore` does.
2. drive + zstd: the archive attached as a read-only raw drive; inside the appliance `dd` reads
   the stream's parts at their offsets, `zstd -d` and `tar -x` (appliance programs, `debug sh`).
3. drive, plain tar: the stream decompressed on the host beforehand into a file attached as a
   drive, `tar -x` inside. Not a usable way (a decompressed copy of every stream on the host);
   it is the floor: the appliance's tar and the target filesystem alone.

Each way's time includes the `sync` after it. The ratios are to tar_in (medians). Before each way
the bench waits up to --patience s for a quiet machine; runs are not redone (--retries is unused).

    .venv/bin/python bench/way_in.py [--archive A.mksysb] [--stream FS_ID] [--runs N] [--keep]
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import (  # noqa: E402
    ROOT,
    bench_parser,
    imgclone_argv,
    is_root,
    make_workdir,
    mib,
    note,
    print_header,
    table,
    wait_quiet,
    write_summary,
)

sys.path.insert(0, str(ROOT))
from imgclone.archive.reader import ArchiveReader  # noqa: E402
from imgclone.archive.streams import ZSTD_DECOMPRESS  # noqa: E402
from imgclone.guest.appliance import Appliance  # noqa: E402
from imgclone.guest.interface import Guest  # noqa: E402

KEEP_DIR = Path("/var/tmp/imgclone-bench/way-in")
TAR_X = "tar -C /sysroot -xf {src} --numeric-owner --xattrs --xattrs-include='*' --selinux --acls"
ARCHIVE_DEV, PLAIN_DEV = "/dev/disk/guestfs/archive", "/dev/disk/guestfs/plain"
Part = tuple[int, int]  # offset of the data in the archive file, size


def stream_parts(archive: Path, fs_id: str | None) -> tuple[str, list[Part]]:
    """The parts of one stream (the largest when fs_id is None), by their spans in the archive file (imgclone's own
    reader: it checks the archive's structure as it goes)."""
    streams: dict[str, list[Part]] = {}
    with ArchiveReader(str(archive)) as reader:
        for part in reader.parts(check=False):
            assert part.span is not None, "a regular file is read with seeks"
            fs = part.member.removeprefix("streams/").removesuffix(".tar.zst")
            streams.setdefault(fs, []).append(part.span)
    if not streams:
        raise SystemExit(f"{archive}: no streams")
    chosen = fs_id or max(streams, key=lambda f: sum(n for _, n in streams[f]))
    if chosen not in streams:
        raise SystemExit(f"--stream {fs_id}: not in {archive} (it has {', '.join(streams)})")
    return chosen, streams[chosen]


def decompress(archive: Path, parts: list[Part], out: Path) -> int:
    """The stream's parts, one after another, through zstd -d into out (or into a pipe fd: out=/dev/fd/N)."""
    with open(archive, "rb") as f, open(out, "wb") as dst:
        z = subprocess.Popen(ZSTD_DECOMPRESS, stdin=subprocess.PIPE, stdout=dst)
        assert z.stdin is not None
        for off, n in parts:
            f.seek(off)
            while n:
                chunk = f.read(min(n, 1 << 20))
                z.stdin.write(chunk)
                n -= len(chunk)
        z.stdin.close()
        return z.wait()


def make_ways(g: Guest, archive: Path, parts: list[Part]) -> dict[str, Callable[[], None]]:
    def tar_in() -> None:
        r, w = os.pipe()
        rcs: list[int] = []

        def feed() -> None:
            try:
                rcs.append(decompress(archive, parts, Path(f"/dev/fd/{w}")))
            finally:
                os.close(w)  # tar_in reads to the end of the pipe: no write end may stay open

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            g.tar_in(f"/dev/fd/{r}", "/", xattrs=True, selinux=True, acls=True)
        finally:
            feeder.join()
            os.close(r)
        if rcs != [0]:
            raise SystemExit(f"zstd -d failed: {rcs}")

    def drive_zstd() -> None:
        reads = "; ".join(
            f"dd if={ARCHIVE_DEV} iflag=skip_bytes,count_bytes skip={o} count={n} bs=4M status=none" for o, n in parts
        )
        # dash has no pipefail: a short read or a zstd error leaves tar a truncated stream, which it fails on
        g.appliance_command(["sh", "-c", f"{{ {reads}; }} | zstd -d -c -q | " + TAR_X.format(src="-")])

    def drive_plain() -> None:
        g.appliance_command(["sh", "-c", TAR_X.format(src=PLAIN_DEV)])

    return {"tar_in": tar_in, "drive + zstd": drive_zstd, "drive, plain tar (floor)": drive_plain}


def main() -> int:
    p = bench_parser(__doc__, holds="the target image and the decompressed stream", kept="them", keep_dir=KEEP_DIR,
                     retries=0)  # fmt: skip
    p.add_argument("--archive", type=Path, help="an imgclone archive (default: capture the BIOS fixture into workdir)")
    p.add_argument("--stream", help="the filesystem id of the stream (default: the largest)")
    p.add_argument("--runs", type=int, default=2, help="rounds of the three ways (default 2)")
    args = p.parse_args()
    if not is_root("way_in.py", "libguestfs on the fixture's archive"):
        return 2
    workdir, _ = make_workdir(args, KEEP_DIR, "imgclone-way-in-")
    archive = args.archive
    if archive is None:
        from fixtures.build import fixture_path

        archive = workdir / "bios.mksysb"
        if not archive.exists():
            argv = [*imgclone_argv(), "capture", str(fixture_path("bios")), "-o", str(archive), "--no-progress"]
            note(f"capturing: {shlex.join(argv)}")
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    fs_id, parts = stream_parts(archive, args.stream)
    plain = workdir / f"{fs_id}.tar"
    if decompress(archive, parts, plain) != 0:
        raise SystemExit(f"{archive}: stream {fs_id} does not decompress")
    target = workdir / "target.qcow2"
    target.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(target), "4G"], check=True)
    print_header("ways into the appliance", workdir, {"libguestfs": ["guestfish", "--version"]})
    compressed = sum(n for _, n in parts)
    print(f"stream {fs_id} of {archive}: {mib(compressed)} compressed in {len(parts)} part(s), "
          f"{mib(plain.stat().st_size)} of tar")  # fmt: skip
    g = Appliance()
    g.add_drive(str(target), readonly=False, format="qcow2")
    g.add_drive(str(archive), readonly=True, format="raw", label="archive")  # by label: sdX order is not fixed
    g.add_drive(str(plain), readonly=True, format="raw", label="plain")
    times: dict[str, list[float]] = {}
    with g:
        g.part_disk("/dev/sda", "gpt")
        ways = make_ways(g, archive, parts)
        names = list(ways)
        for r in range(args.runs):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                g.umount_all()
                g.mkfs("ext4", "/dev/sda1")
                g.mount("/dev/sda1", "/")
                wait_quiet(patience=args.patience)
                t0 = time.monotonic()
                ways[name]()
                g.sync()
                times.setdefault(name, []).append(time.monotonic() - t0)
                st = g.statvfs("/")
                used = (st["blocks"] - st["bfree"]) * st["bsize"]
                note(f"run {r + 1} {name}: {times[name][-1]:.1f} s, {mib(used)} used")
    base = statistics.median(times["tar_in"])
    rows = [[name, " / ".join(f"{t:.1f}" for t in ts), f"{statistics.median(ts):.1f}",
             f"{statistics.median(ts) / base:.3f}"] for name, ts in times.items()]  # fmt: skip
    print(table(["way in", "runs s", "median s", "/ tar_in"], rows))
    write_summary(args.summary, [[f"way in: {r[0]} / tar_in", r[3], "", "info"] for r in rows[1:]])
    if not args.keep:
        target.unlink(missing_ok=True)
        plain.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
