#!/usr/bin/env python3
"""Host mode benchmark: `--via host` against `--via appliance`, and Phase 3's initramfs against a plain chroot.

    .venv/bin/python bench/host.py [--copy-runs 1] [--runs 3] [--workdir DIR] [--keep]

The source is the bootable ext3 fixture (fixtures/build.py: msdos, root ext3 + swap, Debian 12,
grub-pc; built first when it is not cached, as `make fixtures` does). The target is a sparse 3 GiB
raw disk in the workdir, attached as a loop device (a physical disk's stand-in).

1. copy, all phases: `imgclone copy --source FIXTURE -d /dev/loopN -B --force --via host` against the
   same with `--via appliance`, round-robin (--copy-runs each, 1 by default: under TCG an appliance
   copy takes minutes). Before each run the target is blank again (wipefs of its partitions and of
   itself, partx -d, imgclone's journal removed). A report, no goal. After the last --via host run
   (untimed) `imgclone boot-test /dev/loopN --timeout 600` proves that clone boots.
2. Phase 3's initramfs: Phase 3 regenerates it only when the clone needs it (finalize.py: deferred VG
   names, which need LVM, or a root filesystem whose new type's module the initramfs lacks; ext3 → ext4
   keeps ext4.ko), so the ext3 clone never makes it run. Its code path in host mode is timed alone
   instead: a small driver opens imgclone's HostGuest on the disk, mounts its root and calls
   `imgclone.phases.initramfs.regenerate(g, None)`, i.e. the clone's `update-initramfs -u -k all` by
   the guest's command() (a chroot of /alt_inst with its own /dev, /sys, /proc, /run). Against it: the
   same command in a plain chroot (the partition mounted on a temporary dir, /dev bound, proc and sysfs
   mounted, unmounted after). Both run in a mount namespace of their own (unshare), round-robin, --runs
   each (3 by default), on the clone `imgclone copy -P1 --via host` restored (untimed). Goal: host
   mode / plain chroot <= 1.2.

Caches are dropped before each run, which first waits (up to --patience s) for a quiet machine; a
run during which others used more than 0.2 CPUs is redone (up to --retries times). Times are
medians, ratios ratios of medians.

Exit status: 0 when every run ran (and the clone booted), 1 when one failed, 2 when not root, 130
when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    GiB,
    Measured,
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
    wait_quiet,
    wall_ratio_of,
    write_summary,
)

COPIES = ("imgclone copy --via host", "imgclone copy --via appliance")
INITRAMFS = ("Phase 3's initramfs, host mode", "update-initramfs, plain chroot")
GOAL = 1.2  # host mode / plain chroot, for the initramfs
TARGET_SIZE = 3 * GiB
BOOT_TIMEOUT = 600
KEEP_DIR = Path("/var/tmp/imgclone-bench-host")
UNSHARE = ["unshare", "--mount", "--propagation", "private", "--"]
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # as imgclone's chroot has it
# (b): the partition on a temporary dir, /dev bound, proc and sysfs, the clone's update-initramfs, all unmounted
PLAIN_CHROOT = f"""set -e
part=$1; dir=$2
mount "$part" "$dir"
mkdir -p "$dir/dev" "$dir/proc" "$dir/sys"
mount --bind /dev "$dir/dev"
mount -t proc proc "$dir/proc"
mount -t sysfs sysfs "$dir/sys"
PATH={CHROOT_PATH} LC_ALL=C.UTF-8 chroot "$dir" update-initramfs -u -k all
umount "$dir/sys" "$dir/proc" "$dir/dev" "$dir"
"""
# (a): Phase 3's initramfs step in host mode, alone (finalize.py's install_vg_rename calls it so)
DRIVER = f'''"""Phase 3's initramfs in host mode: HostGuest on the disk, its root mounted, initramfs.regenerate()."""
import sys

sys.path.insert(0, {str(ROOT)!r})
from imgclone.guest.onhost import HostGuest  # noqa: E402
from imgclone.phases import initramfs  # noqa: E402

disk = sys.argv[1]
with HostGuest([(disk, "raw")]) as g:
    g.mount(disk + "p1", "/")
    print(initramfs.regenerate(g, None))  # where it ran: "clone" (the guest's chroot on this host)
'''


@dataclass(frozen=True)
class Setup:
    workdir: Path
    fixture: Path
    target: str
    patience: float
    retries: int

    def path(self, name: str) -> Path:
        return self.workdir / name


@dataclass
class BootTest:
    ran: bool = False
    ok: bool = False
    seconds: float = 0.0
    line: str = ""


def ext3_fixture() -> Path:
    """The cached ext3 fixture, built first when missing (its build's messages go to stderr, not the report)."""
    sys.path.insert(0, str(ROOT))
    from fixtures.build import fixture_path

    with contextlib.redirect_stdout(sys.stderr):
        return fixture_path("ext3")


@contextlib.contextmanager
def attached(image: Path) -> Iterator[str]:
    """image on a loop device with its partitions scanned; the device."""
    dev = run(["losetup", "--find", "--show", "--partscan", str(image)]).strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def partition(dev: str) -> str:
    """dev's first partition node, waiting for it (an appliance's writes are not seen by this kernel: partx adds it)."""
    node = f"{dev}p1"
    subprocess.run(["partx", "-u", dev], check=False, capture_output=True)
    for _ in range(100):
        if os.path.exists(node):
            return node
        time.sleep(0.1)
    raise RuntimeError(f"{node} did not appear")


def wipe(s: Setup) -> None:
    """The target blank again: no signature, no partition table, no partition nodes, no journal of imgclone's.
    partx -u first: this kernel knows no partition an appliance wrote."""
    subprocess.run(["partx", "-u", s.target], check=False, capture_output=True)
    for node in sorted(Path("/dev").glob(Path(s.target).name + "p*")):
        subprocess.run(["wipefs", "-a", "-q", str(node)], check=False)
    run(["wipefs", "-a", "-q", s.target])
    subprocess.run(["partx", "-d", s.target], check=False, capture_output=True)
    shutil.rmtree(s.path("state"), ignore_errors=True)


def copy_command(s: Setup, tool: str, phases: str = "all") -> list[str]:
    """The copy of the fixture onto the target; -B (no boot order) is an option of Phase 3 only."""
    via = tool.rsplit(" ", 1)[1]
    return [*imgclone_argv(), "copy", "--source", str(s.fixture), "-d", s.target, "--via", via, "--force",
            "--no-progress", *(["-B"] if phases == "all" else [f"-P{phases}"])]  # fmt: skip


def initramfs_command(s: Setup, tool: str) -> list[str]:
    if tool == INITRAMFS[0]:
        return [*UNSHARE, sys.executable, str(s.path("regenerate.py")), s.target]
    return [*UNSHARE, "sh", "-c", PLAIN_CHROOT, "sh", f"{s.target}p1", str(s.path("mnt"))]


def measured_run(s: Setup, label: str, argv: list[str], prepare: Callable[[], None] | None = None, *,
                 stdout_to: Path | None = None) -> Measured:  # fmt: skip
    """One run (after prepare()) on a quiet machine with dropped caches; redone (up to s.retries times) when
    others took CPU meanwhile."""

    def attempt() -> Measured:
        if prepare is not None:
            prepare()
        drop_caches()
        if s.patience > 0:
            wait_quiet(patience=s.patience)
        note(label)
        m = measure(argv, stdout_to=stdout_to)
        note(f"{label}: {m.wall:.2f} s, cpu {m.cpu:.2f} s, others {m.others:.2f} s, rc {m.returncode}")
        if m.returncode != 0:
            note(f"{label} failed (exit {m.returncode}):\n{m.stderr[-3000:]}")
        return m

    return redo_when_contended(attempt, lambda m: m, s.retries, label)[0]


def boot_test(s: Setup, result: BootTest) -> None:
    """Whether the clone on the target boots, into result (untimed: a report line)."""
    out = s.path("boot-test.txt")
    note(f"boot test of the clone copied via host ({s.target}, up to {BOOT_TIMEOUT} s)")
    m = measure(boot_command(s), stdout_to=out)
    line = out.read_text().strip().splitlines()[-1:] if out.exists() else []
    result.ran, result.ok, result.seconds = True, m.returncode == 0, m.wall
    result.line = line[0] if line else m.stderr.strip()[-300:]
    note(f"boot test: {'PASSED' if result.ok else 'FAILED'} in {m.wall:.0f} s: {result.line}")
    if not result.ok:
        note(m.stderr[-3000:])


def boot_command(s: Setup) -> list[str]:
    return [*imgclone_argv(), "boot-test", s.target, "--timeout", str(BOOT_TIMEOUT)]


def copy_part(s: Setup, runs: int) -> tuple[dict[str, list[Measured]], BootTest]:
    """Part 1: the copies, interleaved; the boot test right after the last --via host run (before a wipe)."""
    boot = BootTest()

    def one(tool: str, r: int) -> Measured:
        m = measured_run(s, f"copy run {r + 1}: {tool}", copy_command(s, tool), lambda: wipe(s))
        if tool == COPIES[0] and r == runs - 1:
            if m.returncode == 0:
                boot_test(s, boot)
            else:
                boot.ran, boot.line = True, "not booted: the copy failed"
        return m

    return repeat_interleaved(COPIES, runs, one), boot


def initramfs_part(s: Setup, runs: int) -> dict[str, list[Measured]]:
    """Part 2: the clone restored by Phase 1 (untimed), then the two ways of regenerating its initramfs."""
    wipe(s)
    note("set-up: imgclone copy -P1 --via host of the fixture onto the target (untimed)")
    run(copy_command(s, COPIES[0], "1"))
    partition(s.target)
    s.path("regenerate.py").write_text(DRIVER)
    s.path("mnt").mkdir(exist_ok=True)
    out = s.path("regenerate.out")

    def one(tool: str, r: int) -> Measured:
        m = measured_run(s, f"initramfs run {r + 1}: {tool}", initramfs_command(s, tool),
                         stdout_to=out if tool == INITRAMFS[0] else None)  # fmt: skip
        if tool == INITRAMFS[0] and m.returncode == 0 and out.read_text().strip() != "clone":
            note(f"the driver's update-initramfs ran {out.read_text().strip()!r}, not in the clone's chroot")
            return replace(m, returncode=1)
        return m

    return repeat_interleaved(INITRAMFS, runs, one)


# -- the report -------------------------------------------------------------------------------------------------


def report(s: Setup, copies: dict[str, list[Measured]], boot: BootTest, initrds: dict[str, list[Measured]]) -> None:
    tools: dict[str, Sequence[str]] = {"imgclone": [*imgclone_argv(), "--version"],
                                       "qemu": ["qemu-system-x86_64", "--version"]}  # fmt: skip
    print_header("host mode", s.workdir, tools)
    print(f"source: the ext3 fixture {s.fixture} ({mib(s.fixture.stat().st_size)} qcow2): msdos, root ext3 + "
          "swap, Debian 12, grub-pc")  # fmt: skip
    print(f"target: a sparse {mib(TARGET_SIZE)} raw disk on {s.target}; caches dropped before each run")
    print()
    print("1. copy of the fixture onto the target, all phases (the target blank before each run: wipefs, partx -d, "
          "imgclone's journal removed)")  # fmt: skip
    print(runs_table(copies, COPIES, "way"))
    r = wall_ratio_of(copies, *COPIES)
    print(f"{COPIES[0]} / {COPIES[1]}: " + (f"wall {r:.3f}" if r else "not available"))
    if boot.ran:
        verdict = "PASSED" if boot.ok else "FAILED"
        print(f"boot test of the clone copied via host (its last run): {verdict} ({boot.seconds:.0f} s): {boot.line}")
    else:
        print("boot test of the clone copied via host: not run (no copy runs)")
    print()
    print("2. the clone's initramfs (update-initramfs -u -k all) on the clone `copy -P1 --via host` restored; Phase 3 "
          "does not regenerate it for this clone: its host-mode code path timed alone")  # fmt: skip
    print(runs_table(initrds, INITRAMFS, "way"))
    r = wall_ratio_of(initrds, *INITRAMFS)
    print(f"{INITRAMFS[0]} / {INITRAMFS[1]}: " + (f"wall {r:.3f} (goal <= {GOAL:.2f})" if r else "not available"))
    print()
    print("commands:")
    for tool in COPIES:
        print(f"  {tool}: {shlex.join(copy_command(s, tool))}")
    print(f"  boot test: {shlex.join(boot_command(s))}")
    print(f"  set-up of part 2: {shlex.join(copy_command(s, COPIES[0], '1'))}")
    print(f"  {INITRAMFS[0]}: {shlex.join(initramfs_command(s, INITRAMFS[0]))}, with {s.path('regenerate.py')}:")
    print("".join(f"    | {line}\n" for line in DRIVER.splitlines()), end="")
    print(f"  {INITRAMFS[1]}: {shlex.join(UNSHARE)} sh -c SCRIPT sh {s.target}p1 {s.path('mnt')}, with SCRIPT:")
    print("".join(f"    | {line}\n" for line in PLAIN_CHROOT.splitlines()), end="")


def summary_rows(copies: dict[str, list[Measured]], boot: BootTest,
                 initrds: dict[str, list[Measured]]) -> list[list[str]]:  # fmt: skip
    """bench/all.py's rows: [what, measured, goal, verdict]."""
    c, i = wall_ratio_of(copies, *COPIES), wall_ratio_of(initrds, *INITRAMFS)
    return [
        ["copy of the ext3 fixture onto a loop device, all phases, --via host / --via appliance",
         f"{c:.3f}" if c else "-", "-", "report" if c else "n/a"],
        ["clone copied via host boots", ("PASSED" if boot.ok else "FAILED") if boot.ran else "-", "boots",
         ("met" if boot.ok else "MISSED") if boot.ran else "n/a"],
        ["Phase 3's initramfs (update-initramfs -u -k all), host mode / plain chroot", f"{i:.3f}" if i else "-",
         f"<= {GOAL:.2f}", ("met" if i <= GOAL else "MISSED") if i else "n/a"],
    ]  # fmt: skip


def cleanup(s: Setup, keep: bool, created: bool) -> None:
    """Remove what the runs made (the target disk too unless kept), and the workdir if we made it."""
    shutil.rmtree(s.path("state"), ignore_errors=True)
    with contextlib.suppress(OSError):
        s.path("mnt").rmdir()
    if not keep:
        for name in ("target.img", "regenerate.py", "regenerate.out", "boot-test.txt"):
            s.path(name).unlink(missing_ok=True)
    if created and not keep:
        shutil.rmtree(s.workdir, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, holds="the target disk and imgclone's journal", kept="the target disk (the last clone)",
                     keep_dir=KEEP_DIR, retries=1)  # fmt: skip
    p.add_argument("--copy-runs", type=int, default=1, help="copies per way (default 1; 0: skip part 1)")
    p.add_argument("--runs", type=int, default=3, help="initramfs runs per way (default 3; 0: skip part 2)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = start_bench(args, "host.py", "loop devices, mount, chroot, drop_caches", KEEP_DIR)
    if started is None:
        return 2
    workdir, created = started
    copies: dict[str, list[Measured]] = {}
    initrds: dict[str, list[Measured]] = {}
    boot = BootTest()
    s = Setup(workdir, Path(), "", args.patience, args.retries)
    try:
        fixture = ext3_fixture()
        target_image = workdir / "target.img"
        target_image.unlink(missing_ok=True)
        with target_image.open("wb") as f:
            f.truncate(TARGET_SIZE)
        with attached(target_image) as target:
            s = Setup(workdir, fixture, target, args.patience, args.retries)
            if args.copy_runs > 0:
                copies, boot = copy_part(s, args.copy_runs)
            if args.runs > 0:
                initrds = initramfs_part(s, args.runs)
            subprocess.run(["partx", "-d", target], check=False, capture_output=True)  # its partition nodes go
        report(s, copies, boot, initrds)
        write_summary(args.summary, summary_rows(copies, boot, initrds))
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    except RuntimeError as e:  # a set-up command failed (common.run)
        note(f"failed: {e}")
        return 1
    finally:
        cleanup(s, args.keep, created)
    failed = any(m.returncode != 0 for runs in (*copies.values(), *initrds.values()) for m in runs)
    return 1 if failed or (boot.ran and not boot.ok) else 0


if __name__ == "__main__":
    sys.exit(main())
