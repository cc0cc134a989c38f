#!/usr/bin/env python3
"""Partition restore benchmark: imgclone restore against fsarchiver restfs, onto a loop device.

    .venv/bin/python bench/partition.py [--size-gb 0.25] [--runs 3] [--workdir DIR] [--keep]

One plain partition: a raw disk image with an msdos table and one ext4 partition holding
capture.py's generated tree (0.25 GiB of data by default), attached as a loop device. It is
saved once by each tool (untimed): `imgclone capture --mount` of the mounted partition and
`fsarchiver savefs` of the unmounted one. Then, round-robin, each archive is restored onto a
second loop device of the same size (a physical disk's stand-in), wiped before each run:

- imgclone --via host: `imgclone restore -a ARCHIVE -d /dev/loopN -P1 --via host` (Phase 1: the
  table, the partition, mkfs, the data, with the host's parted, mkfs and GNU tar, the clone at /alt_inst);
- imgclone --via appliance: the same through the libguestfs appliance (launch included);
- fsarchiver: the source's partition table written with `sfdisk`, then `fsarchiver restfs
  -jNPROC ARCHIVE id=0,dest=/dev/loopNp1` (on the host: mkfs and the data).

Caches are dropped before each run, which first waits (up to --patience s) for a quiet
machine; a run during which others used more than 0.2 CPUs is redone (up to --retries
times). Goal: --via host / fsarchiver <= 1.2 (issue "Host mode"); --via appliance is a report
(under TCG here its tar_in runs at ~10 MB/s).

Exit status: 0 when both tools ran, 1 when one failed, 2 when not root, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    GiB,
    Measured,
    MiB,
    TreeBuilder,
    bench_parser,
    drop_caches,
    imgclone_argv,
    measure,
    mib,
    note,
    print_header,
    redo_when_contended,
    repeat_interleaved,
    run,
    runs_table,
    start_bench,
    unmount,
    wait_quiet,
    wall_ratio_of,
    write_summary,
)

TOOLS = ("imgclone restore --via host", "imgclone restore --via appliance", "fsarchiver restfs")
ANCHOR = TOOLS[-1]
GOALS = {TOOLS[0]: 1.2, TOOLS[1]: None}  # imgclone's ways / the anchor: at most this (None: a report)
SEED = 20240611
KEEP_DIR = Path("/var/tmp/imgclone-bench-partition")


@dataclass(frozen=True)
class Setup:
    workdir: Path
    size: int  # tree data bytes
    nproc: int
    patience: float
    retries: int

    def path(self, name: str) -> Path:
        return self.workdir / name


def disk_bytes(size: int) -> int:
    """The source and target disks: the tree with room for ext4's metadata, in whole MiB."""
    return -(-int(size * 1.5 + 256 * MiB) // MiB) * MiB


@contextmanager
def attached(image: Path, readonly: bool = False) -> Iterator[str]:
    """image on a loop device with its partitions scanned; the device."""
    dev = run(["losetup", "--find", "--show", "--partscan", *(["--read-only"] if readonly else []), str(image)])
    dev = dev.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def partition(dev: str) -> str:
    """dev's first partition node, waiting for it (losetup's scan can miss it: partx adds it)."""
    node = f"{dev}p1"
    subprocess.run(["partx", "-u", dev], check=False, capture_output=True)
    for _ in range(100):
        if os.path.exists(node):
            return node
        time.sleep(0.1)
    raise RuntimeError(f"{node} did not appear")


def ensure_source(s: Setup, reuse: bool) -> str:
    """The source disk (msdos, one ext4 partition holding the tree), built or reused; its summary."""
    image, stamp = s.path("source.img"), s.path("source.json")
    want = {"size": s.size, "seed": SEED, "version": 1}
    if reuse and image.exists() and stamp.exists():
        saved = json.loads(stamp.read_text())
        if {k: saved.get(k) for k in want} == want:
            note(f"reusing the source disk {image}")
            return str(saved["summary"])
    stamp.unlink(missing_ok=True)
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        f.truncate(disk_bytes(s.size))
    run(["parted", "-s", str(image), "mklabel", "msdos", "mkpart", "primary", "ext4", "1MiB", "100%"])
    mnt = s.path("mnt")
    mnt.mkdir(exist_ok=True)
    with attached(image) as dev:
        part = partition(dev)
        run(["mkfs.ext4", "-q", "-F", "-L", "benchpart", "-E", "lazy_itable_init=0,lazy_journal_init=0", part])
        run(["mount", part, str(mnt)])
        try:
            summary = TreeBuilder(mnt, s.size, SEED).build().summary()
        finally:
            unmount(mnt)
    stamp.write_text(json.dumps({**want, "summary": summary}) + "\n")
    return summary


def save_both(s: Setup) -> None:
    """The two archives of the source partition and its partition table (untimed)."""
    mnt = s.path("mnt")
    for p in (s.path("part.mksysb"), s.path("part.fsa")):
        p.unlink(missing_ok=True)
    with attached(s.path("source.img"), readonly=True) as dev:
        part = partition(dev)
        s.path("table.sfdisk").write_text(run(["sfdisk", "--dump", dev]))
        run(["mount", "-o", "ro", part, str(mnt)])
        try:
            note("saving the partition with imgclone capture (untimed)")
            run([*imgclone_argv(), "capture", "--mount", str(mnt), "-o", str(s.path("part.mksysb")), "--no-progress"])
        finally:
            unmount(mnt)
        note("saving the partition with fsarchiver savefs (untimed)")
        run(["fsarchiver", "savefs", f"-j{s.nproc}", "-o", str(s.path("part.fsa")), part])


def command(s: Setup, tool: str, target: str) -> list[str]:
    if tool.startswith("imgclone restore"):
        return [*imgclone_argv(), "restore", "-a", str(s.path("part.mksysb")), "-d", target, "-P1", "--no-progress",
                *tool.split()[2:]]  # fmt: skip
    table_file, fsa, part = (shlex.quote(str(x)) for x in (s.path("table.sfdisk"), s.path("part.fsa"), f"{target}p1"))
    wait = f"for i in $(seq 100); do [ -b {part} ] && break; sleep 0.1; done"
    return ["bash", "-c", f"set -e; sfdisk -q {shlex.quote(target)} < {table_file}; partx -u {shlex.quote(target)} "
            f"|| true; {wait}; fsarchiver restfs -j{s.nproc} {fsa} id=0,dest={part}"]  # fmt: skip


def wipe(target: str) -> None:
    """The target blank again: no signature, no partition table, no partition nodes."""
    for node in sorted(Path("/dev").glob(Path(target).name + "p*")):
        subprocess.run(["wipefs", "-a", "-q", str(node)], check=False)
    run(["wipefs", "-a", "-q", target])
    subprocess.run(["partx", "-d", target], check=False, capture_output=True)


def one_run(s: Setup, tool: str, r: int, target: str) -> Measured:
    """One measured run, redone (up to s.retries times) when other processes took CPU meanwhile."""

    def attempt() -> Measured:
        wipe(target)
        shutil.rmtree(s.path("state"), ignore_errors=True)  # imgclone's journal of the target: a fresh start
        drop_caches()
        if s.patience > 0:
            wait_quiet(patience=s.patience)
        note(f"run {r + 1}: {tool}")
        m = measure(command(s, tool, target))
        note(f"run {r + 1}: {tool}: {m.wall:.2f} s, cpu {m.cpu:.2f} s, others {m.others:.2f} s, rc {m.returncode}")
        if m.returncode != 0:
            note(f"{tool} failed (exit {m.returncode}):\n{m.stderr[-3000:]}")
        return m

    return redo_when_contended(attempt, lambda m: m, s.retries, f"run {r + 1}: {tool}")[0]


def report(s: Setup, summary: str, results: dict[str, list[Measured]], target: str) -> dict[str, float | None]:
    tools: dict[str, Sequence[str]] = {"imgclone": [*imgclone_argv(), "--version"], "fsarchiver": ["fsarchiver", "-V"],
             "mkfs.ext4": ["mke2fs", "-V"]}  # fmt: skip
    print_header("partition restore", s.workdir, tools)
    print(f"source: one ext4 partition (msdos table) on a {mib(disk_bytes(s.size))} raw disk: {summary}")
    for name in ("part.mksysb", "part.fsa"):
        print(f"  {name}: {s.path(name).stat().st_size:,} bytes")
    print(f"target: a raw disk of the same size on {target}, wiped before each run; caches dropped before each")
    print()
    print(runs_table(results, TOOLS))
    print()
    ratios: dict[str, float | None] = {}
    for tool in GOALS:
        ratios[tool] = wall_ratio_of(results, tool, ANCHOR)
        print(f"{tool} / {ANCHOR}: " + (f"wall {ratios[tool]:.3f}" if ratios[tool] else "not available"))
    for tool in TOOLS[:-1]:
        print(f"{tool}: " + shlex.join(command(s, tool, target)))
    print("fsarchiver: " + command(s, ANCHOR, target)[2])
    return ratios


def summary_rows(ratios: dict[str, float | None]) -> list[list[str]]:
    """bench/all.py's rows: [what, measured, goal, verdict]."""
    rows = []
    for tool, goal in GOALS.items():
        r = ratios.get(tool)
        verdict = ("met" if r <= goal else "MISSED") if r and goal is not None else ("report" if r else "n/a")
        rows.append([f"restore of a plain partition onto a loop device, {tool.removeprefix('imgclone restore ')} / "
                     "sfdisk + fsarchiver restfs", f"{r:.3f}" if r else "-", f"<= {goal:.2f}" if goal else "-",
                     verdict])  # fmt: skip
    return rows


def cleanup(s: Setup, keep: bool, created: bool) -> None:
    """Remove what the runs made; the source disk too unless kept, and the workdir if we made it."""
    shutil.rmtree(s.path("state"), ignore_errors=True)
    gone = ["target.img", "part.mksysb", "part.fsa", "table.sfdisk"] + ([] if keep else ["source.img", "source.json"])
    for name in gone:
        s.path(name).unlink(missing_ok=True)
    if created and not keep:
        shutil.rmtree(s.workdir, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, holds="the disks and archives", kept="the source disk and reuse it",
                     keep_dir=KEEP_DIR, retries=1)  # fmt: skip
    p.add_argument("--size-gb", type=float, default=0.25, help="tree data size in GiB (default 0.25)")
    p.add_argument("--runs", type=int, default=3, help="runs per tool (default 3)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_bench(args, "partition.py", "loop devices, mount, drop_caches", KEEP_DIR)
    if started is None:
        return 2
    workdir, created = started
    s = Setup(workdir, int(args.size_gb * GiB), len(os.sched_getaffinity(0)), args.patience, args.retries)
    results: dict[str, list[Measured]] = {}
    try:
        target_image = s.path("target.img")
        with target_image.open("wb") as f:
            f.truncate(disk_bytes(s.size))
        with attached(target_image) as target:  # first: the source never gets the target's device name
            summary = ensure_source(s, reuse=args.keep)
            save_both(s)
            results = repeat_interleaved(TOOLS, args.runs, lambda tool, r: one_run(s, tool, r, target))
            ratios = report(s, summary, results, target)
        write_summary(args.summary, summary_rows(ratios))
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    except RuntimeError as e:  # a set-up command failed (common.run)
        note(f"failed: {e}")
        return 1
    finally:
        cleanup(s, args.keep, created)
    failed = not results or any(m.returncode != 0 for runs in results.values() for m in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
