"""Shared helpers for imgclone's benchmarks (standard library only).

- a deterministic, realistic test tree (text, binaries, large mixed files, hardlinks,
  symlinks, a sparse file, xattrs and ACLs),
- fresh ext4 filesystems on loop devices, cleaned up on any exit (Ctrl-C included),
- timing of a child process with the peak RSS of its whole process tree,
- the machine description that goes with every report,
- the command line every benchmark shares (--workdir, --keep, --patience, --retries).
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import platform
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
CONTENDED = 0.2  # a run is redone when other processes used more than this many CPUs meanwhile
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
PAGE = os.sysconf("SC_PAGE_SIZE")
T = TypeVar("T")
SPARSE_SIZE = 64 * MiB


def note(msg: str) -> None:
    """Progress message on stderr (the report itself goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv: Sequence[str]) -> str:
    """Run a command, fail loudly, return its stdout."""
    cp = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if cp.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({cp.returncode}): {cp.stderr.strip()}")
    return cp.stdout


def sigterm_as_interrupt() -> None:
    """Let SIGTERM unwind like Ctrl-C, so finally blocks unmount and detach."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


# -- the command line ------------------------------------------------------------------------


def imgclone_argv() -> list[str]:
    """The imgclone under test: the venv's entry point, else this Python's module."""
    exe = ROOT / ".venv/bin/imgclone"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "imgclone"]


def bench_parser(doc: str | None, *, holds: str, kept: str, keep_dir: Path, retries: int) -> argparse.ArgumentParser:
    """A parser with the options every benchmark has; the script adds its own."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", help=f"where {holds} go (default: a new dir in /var/tmp)")
    p.add_argument("--keep", action="store_true", help=f"keep {kept} (default dir {keep_dir})")
    p.add_argument("--patience", type=float, default=120.0,
                   help="before each run, wait up to this many seconds for other processes to go idle "
                        "(default 120; 0: don't wait)")  # fmt: skip
    p.add_argument("--retries", type=int, default=retries,
                   help=f"redo a run up to this many times when others used > {CONTENDED} CPUs meanwhile "
                        f"(default {retries}; the least contended attempt counts)")  # fmt: skip
    p.add_argument("--summary", metavar="JSON",
                   help="also write the ratio rows here, for bench/all.py's one table")  # fmt: skip
    return p


def write_summary(path: str | None, rows: Sequence[Sequence[str]]) -> None:
    """The rows [what, measured, goal, verdict] bench/all.py puts in its one table (a JSON list of lists)."""
    if path:
        Path(path).write_text(json.dumps([list(r) for r in rows], indent=1) + "\n")


def make_workdir(args: argparse.Namespace, keep_dir: Path, prefix: str) -> tuple[Path, bool]:
    """--workdir, else keep_dir with --keep, else a new dir in /var/tmp; and whether it was created here."""
    if args.workdir:
        workdir, created = Path(args.workdir).resolve(), not Path(args.workdir).exists()
    elif args.keep:
        workdir, created = keep_dir, not keep_dir.exists()
    else:
        workdir, created = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp")), True
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir, created


def start_bench(args: argparse.Namespace, script: str, why: str, keep_dir: Path) -> tuple[Path, bool] | None:
    """What a bench that writes to disks does first: root (why: what for), SIGTERM unwinding like Ctrl-C, its
    workdir (make_workdir), locked against another bench, with imgclone's journals kept in it. Returns the
    workdir and whether it was created here; None, after saying why, when the bench cannot start."""
    if not is_root(script, why):
        return None
    sigterm_as_interrupt()
    workdir, created = make_workdir(args, keep_dir, f"imgclone-bench-{script.removesuffix('.py')}-")
    if lock_dir(workdir) is None:
        print(f"{script}: workdir {workdir} is in use by another benchmark; leaving it alone", file=sys.stderr)
        return None
    os.environ["IMGCLONE_STATE_DIR"] = str(workdir / "state")  # imgclone's journals stay in the workdir
    return workdir, created


def is_root(script: str, why: str) -> bool:
    """True as root; otherwise says what root is needed for."""
    if os.geteuid() == 0:
        return True
    print(f"{script}: needs root ({why})", file=sys.stderr)
    return False


# -- the test tree ---------------------------------------------------------------------------

SYLLABLES = "ka to ri mon sel ar ve lin dus pre con ex ta ble ment ing er ion us al or sys net fs".split()


class Words:
    """Pseudo-text from a fixed vocabulary with a Zipf-like frequency (compresses like prose)."""

    def __init__(self, rng: random.Random, size: int = 6000) -> None:
        words = {"".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(size)}
        self.vocab = sorted(words) + ["\n"] * 40 + ["=", "{", "}", "#", "0", "1", "/usr/lib", "-"]
        rng.shuffle(self.vocab)
        self.cum = list(itertools.accumulate(1.0 / (r + 1) ** 1.05 for r in range(len(self.vocab))))

    def text(self, rng: random.Random, n: int) -> bytes:
        out = " ".join(rng.choices(self.vocab, cum_weights=self.cum, k=n // 5 + 1)).encode()
        while len(out) < n:
            out += out[: n - len(out)]
        return out[:n]


NIBBLES = bytes.maketrans(bytes(range(256)), bytes((b & 0x0F) * 17 for b in range(256)))


def binary(rng: random.Random, n: int) -> bytes:
    """Executable-like bytes: random code, low-entropy tables and zero padding in 4 KiB pages."""
    out = bytearray()
    while len(out) < n:
        kind = rng.random()
        if kind < 0.45:
            out += rng.randbytes(4096)
        elif kind < 0.8:
            out += rng.randbytes(4096).translate(NIBBLES)
        else:
            out += bytes(4096)
    return bytes(out[:n])


def mixed_chunk(rng: random.Random, words: Words, i: int) -> bytes:
    """1 MiB of a large file: a rotation of incompressible, text, binary and zero-padded chunks."""
    kind = i % 5
    if kind == 0:
        return rng.randbytes(MiB)
    if kind in (1, 3):
        return words.text(rng, MiB)
    if kind == 2:
        return binary(rng, MiB)
    return bytes(MiB // 2) + rng.randbytes(MiB // 2).translate(NIBBLES)


@dataclass
class TreeStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    data_bytes: int = 0
    xattrs: int = 0
    acls: int = 0
    paths: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.files} files ({self.data_bytes / GiB:.2f} GiB of data), {self.dirs} dirs, "
            f"{self.symlinks} symlinks, {self.hardlinks} hardlinks, 1 fifo, "
            f"1 sparse file ({SPARSE_SIZE // MiB} MiB, 3 MiB of data), "
            f"{self.xattrs} files with user xattrs, {self.acls} ACL entries set"
        )


TOPS = ["usr/lib", "usr/share/doc", "usr/share/locale", "usr/include", "etc", "var/log", "opt", "home"]


class TreeBuilder:
    """Writes the tree; every choice comes from one seeded RNG, so a seed gives one tree."""

    def __init__(self, root: Path, size: int, seed: int = 20240611) -> None:
        self.root = root
        self.size = size
        self.rng = random.Random(seed)
        self.words = Words(self.rng)
        self.stats = TreeStats()
        self.dirs: list[Path] = []

    def write(self, rel: Path, data: bytes, mode: int = 0o644) -> Path:
        path = self.root / rel
        path.write_bytes(data)
        os.chmod(path, mode)
        self.stats.files += 1
        self.stats.data_bytes += len(data)
        self.stats.paths.append(path)
        return path

    def make_dirs(self, count: int) -> None:
        for i in range(count):
            top = self.rng.choice(TOPS)
            depth = self.rng.randint(1, 3)
            word = self.rng.choice(self.words.vocab).strip() or "x"
            rel = Path(top, *(f"d{i:04d}-{word}{j}" for j in range(depth)))
            (self.root / rel).mkdir(parents=True, exist_ok=True)
            self.dirs.append(rel)
        self.stats.dirs = sum(1 for _ in self.root.rglob("*") if _.is_dir())

    def small_files(self, budget: int) -> None:
        """Config files, sources, docs: 200 B to 24 KiB of text (log-normal sizes)."""
        used = i = 0
        while used < budget:
            n = int(min(24 * KiB, max(200, self.rng.lognormvariate(8.3, 1.0))))
            rel = self.rng.choice(self.dirs) / f"f{i:06d}.{self.rng.choice(['conf', 'txt', 'py', 'h', 'md'])}"
            self.write(rel, self.words.text(self.rng, n), 0o755 if i % 17 == 0 else 0o644)
            used += n
            i += 1

    def medium_files(self, budget: int) -> None:
        """Libraries, data and already-compressed files: 32 KiB to 4 MiB."""
        used = i = 0
        while used < budget:
            n = int(min(4 * MiB, max(32 * KiB, self.rng.lognormvariate(12.5, 1.0))))
            kind = self.rng.random()
            if kind < 0.5:
                data, ext, mode = binary(self.rng, n), "so", 0o755
            elif kind < 0.85:
                data, ext, mode = self.words.text(self.rng, n), "dat", 0o644
            else:
                data, ext, mode = self.rng.randbytes(n), "gz", 0o644
            self.write(self.rng.choice(self.dirs) / f"m{i:05d}.{ext}", data, mode)
            used += n
            i += 1

    def large_files(self, budget: int, count: int = 4) -> None:
        """A few big files (images, databases): partly random, partly compressible."""
        big = self.root / "var/lib/big"
        big.mkdir(parents=True, exist_ok=True)
        for f in range(count):
            chunks = budget // count // MiB
            path = big / f"blob{f}.img"
            with path.open("wb") as out:
                for i in range(chunks):
                    out.write(mixed_chunk(self.rng, self.words, i + f))
            self.stats.files += 1
            self.stats.data_bytes += chunks * MiB
            self.stats.paths.append(path)

    def sparse_file(self) -> None:
        """64 MiB apparent, 3 MiB of data (tar without --sparse reads the holes as zeros)."""
        path = self.root / "var/lib/sparse.img"
        with path.open("wb") as f:
            f.truncate(SPARSE_SIZE)
            for off in (0, 20 * MiB, SPARSE_SIZE - MiB):
                f.seek(off)
                f.write(self.rng.randbytes(MiB))
        self.stats.files += 1
        self.stats.data_bytes += 3 * MiB

    def links(self, hard: int, soft: int) -> None:
        files = [p for p in self.stats.paths if p.stat().st_size < 64 * KiB]
        bindir = self.root / "usr/bin"
        bindir.mkdir(parents=True, exist_ok=True)
        for i, target in enumerate(self.rng.sample(files, hard)):
            os.link(target, bindir / f"hl{i:04d}")
        os.link(self.root / "var/lib/big/blob0.img", self.root / "var/lib/big/blob0.hardlink")
        self.stats.hardlinks = hard + 1
        for i in range(soft):
            os.symlink(self.link_target(i, files, bindir), bindir / f"sl{i:04d}")
        self.stats.symlinks = soft

    def link_target(self, i: int, files: list[Path], linkdir: Path) -> str:
        """Relative to a file, absolute to a file, absolute to a directory, or dangling."""
        kind = i % 4
        if kind == 3:
            return f"/nonexistent/dangling{i}"
        dest = self.rng.choice(files) if kind < 2 else self.root / self.rng.choice(self.dirs)
        if kind == 0:
            return os.path.relpath(dest, linkdir)
        return "/" + str(dest.relative_to(self.root))

    def metadata(self, xattr_files: int, acl_files: int) -> None:
        """user.* xattrs (os.setxattr), POSIX ACLs (setfacl), numeric owners, a fifo."""
        for p in self.rng.sample(self.stats.paths, xattr_files):
            os.setxattr(p, "user.bench.origin", self.rng.randbytes(16).hex().encode())
            os.setxattr(p, "user.bench.note", self.words.text(self.rng, 60))
        self.stats.xattrs = xattr_files
        acl = [str(p) for p in self.rng.sample(self.stats.paths, acl_files)]
        run(["setfacl", "-m", "u:1234:rw,g:2345:r,m::rw", *acl])
        shared = self.root / "home/user/shared"
        shared.mkdir(parents=True, exist_ok=True)
        run(["setfacl", "-m", "u:1234:rwx", "-d", "-m", "u:1234:rwx,g:2345:rx", str(shared)])
        self.stats.acls = acl_files * 3 + 4
        for p in self.rng.sample(self.stats.paths, len(self.stats.paths) // 10):
            uid = self.rng.choice([0, 1, 33, 100, 1000, 1234, 65534])
            os.chown(p, uid, uid)
        os.mkfifo(self.root / "home/user/fifo")

    def build(self) -> TreeStats:
        note(f"generating a {self.size / GiB:.2f} GiB tree in {self.root}")
        self.make_dirs(1500)
        self.small_files(int(self.size * 0.22))
        self.medium_files(int(self.size * 0.36))
        self.large_files(self.size - self.stats.data_bytes - 3 * MiB)
        self.sparse_file()
        self.links(hard=400, soft=1200)
        self.metadata(xattr_files=200, acl_files=100)
        self.stats.dirs = sum(1 for _ in self.root.rglob("*") if _.is_dir() and not _.is_symlink())
        self.stats.paths = []
        return self.stats


def lock_dir(directory: Path) -> int | None:
    """An exclusive lock on directory/.lock (held until exit), or None when another process holds it."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


# -- loop-mounted filesystems ----------------------------------------------------------------


def make_ext4(image: Path, size: int, label: str = "bench") -> None:
    """A sparse backing file holding a fresh ext4 (fully initialised: no lazy init later)."""
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        f.truncate(-(-size // MiB) * MiB)  # whole MiB: loop devices want whole sectors
    opts = "lazy_itable_init=0,lazy_journal_init=0"
    run(["mkfs.ext4", "-q", "-F", "-L", label, "-E", opts, str(image)])


@contextmanager
def loop_mounted(image: Path, mountpoint: Path, readonly: bool = False) -> Iterator[Path]:
    """Attach image to a loop device (direct I/O: no second page cache) and mount it."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    dev = run(["losetup", "--find", "--show", "--direct-io=on", str(image)]).strip()
    try:
        run(["mount", *(["-o", "ro"] if readonly else []), dev, str(mountpoint)])
        try:
            yield mountpoint
        finally:
            unmount(mountpoint)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def unmount(mountpoint: Path) -> None:
    """umount, retrying briefly; lazily as a last resort so the loop device can go."""
    for _ in range(10):
        if subprocess.run(["umount", str(mountpoint)], check=False, capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


# -- timing and memory -----------------------------------------------------------------------


def drop_caches() -> None:
    """Flush dirty pages and drop the page, dentry and inode caches."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def session_rss(sid: int, appliances: set[tuple[int, int]] | None = None) -> int:
    """Sum of the RSS (bytes) of every process in session sid; adds its QEMU processes to appliances."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2 :].split()
        if int(rest[3]) == sid:
            total += int(rest[21]) * PAGE
            if appliances is not None and stat[stat.find(b"(") + 1 :].startswith(b"qemu-system"):
                appliances.add((int(entry.name), int(rest[19])))  # pid and start time: a pid can be reused
    return total


class TreeRssPoller:
    """Samples the summed RSS of a child's whole process tree (its session) every interval."""

    def __init__(self, sid: int, interval: float = 0.05) -> None:
        self.sid = sid
        self.interval = interval
        self.peak = 0
        self.appliances: set[tuple[int, int]] = set()  # QEMU processes seen (libguestfs appliances, boot tests)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, session_rss(self.sid, self.appliances))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRssPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Measured:
    wall: float  # seconds until the command exited
    flush: float  # seconds of the sync() right after it (its dirty output reaching the disk)
    returncode: int
    cpu: float  # user + system seconds of the tool's whole process tree
    others: float  # busy CPU seconds (incl. steal) of everything else meanwhile: contention
    max_proc_rss: int  # bytes, largest single process of the tree (wait4's ru_maxrss)
    tree_rss: int  # bytes, peak of the summed RSS of the tree (sampled)
    stderr: str
    launches: int = 0  # QEMU processes the tree started (appliance launches; each lives seconds: sampled surely)

    @property
    def durable(self) -> float:
        return self.wall + self.flush


def cpu_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (user .. steal, not idle or iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def wait_quiet(cores: float = 0.15, window: float = 1.0, patience: float = 120.0) -> float:
    """Wait until other processes use less than `cores` CPUs over `window`; return that load."""
    deadline = time.monotonic() + patience
    while True:
        busy, mine = cpu_busy(), own_cpu()
        time.sleep(window)
        load = (cpu_busy() - busy - (own_cpu() - mine)) / window
        if load < cores:
            return load
        if time.monotonic() > deadline:
            note(f"machine still busy ({load:.2f} CPUs used by others); measuring anyway")
            return load
        note(f"waiting for a quiet machine ({load:.2f} CPUs used by others)")


TIME = "/usr/bin/time"


def measure(argv: Sequence[str], *, stdout_to: Path | None = None, cwd: Path | None = None) -> Measured:
    """Run argv in its own session; time it and its flush, and track its tree's CPU and memory.

    The tool runs under GNU time, which reports the largest ru_maxrss of the tree: wait4's own
    figure would be at least this (big) process's RSS, since a child's maxrss starts from the
    memory of the process it was forked from.
    """
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as err:
        with open(stdout_to or os.devnull, "wb") as out:
            wrap = [TIME, "-f", "%M", "-o", rss.name] if os.access(TIME, os.X_OK) else []
            busy, mine, start = cpu_busy(), own_cpu(), time.monotonic()
            proc = subprocess.Popen([*wrap, *argv], stdout=out, stderr=err, cwd=cwd, start_new_session=True)
            try:
                with TreeRssPoller(proc.pid) as poller:
                    _, status, rusage = os.wait4(proc.pid, 0)
                    wall = time.monotonic() - start
                proc.returncode = os.waitstatus_to_exitcode(status)
            finally:
                if proc.returncode is None:
                    stop_session(proc)
        cpu = rusage.ru_utime + rusage.ru_stime
        others = max(0.0, cpu_busy() - busy - cpu - (own_cpu() - mine))
        t = time.monotonic()
        os.sync()
        flush = time.monotonic() - t
        err.seek(0)
        text = err.read().decode(errors="replace")
        reported = Path(rss.name).read_text().split()
    largest = (int(reported[-1]) if wrap and reported else rusage.ru_maxrss) * KiB
    # The tree's peak is at least its largest process's peak, which sampling can miss.
    peak = max(poller.peak, largest)
    return Measured(wall, flush, proc.returncode, cpu, others, largest, peak, text, len(poller.appliances))


def stop_session(proc: subprocess.Popen[bytes]) -> None:
    """End the process group we started (interrupted run): TERM, then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue


def redo_when_contended(attempt: Callable[[], T], measured: Callable[[T], Measured], retries: int,
                        label: str) -> tuple[T, int]:  # fmt: skip
    """attempt() again (up to retries times) while other processes took more than CONTENDED CPUs during it;
    a failed attempt ends the retries. The least contended result, and how many attempts were redone."""
    best: T | None = None
    for redone in range(retries + 1):
        result = attempt()
        m = measured(result)
        if best is None or m.others < measured(best).others:
            best = result
        if m.returncode != 0 or m.others <= CONTENDED * m.wall:
            break
        if redone < retries:
            note(f"{label}: others used {m.others / m.wall:.2f} CPUs meanwhile: again")
    assert best is not None
    return best, redone


def repeat_interleaved(names: Sequence[str], runs: int, one: Callable[[str, int], T]) -> dict[str, list[T]]:
    """Run each named tool `runs` times, round-robin, rotating who goes first each round."""
    results: dict[str, list[T]] = {n: [] for n in names}
    for r in range(runs):
        order = list(names[r % len(names) :]) + list(names[: r % len(names)])
        for name in order:
            results[name].append(one(name, r))
    return results


# -- reporting -------------------------------------------------------------------------------


def output(argv: Sequence[str]) -> str:
    """stdout and stderr of a command that may fail (for reports: tools print versions anywhere)."""
    try:
        cp = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError as e:
        return f"unavailable ({e.strerror})"
    return cp.stdout + cp.stderr


def first_line(argv: Sequence[str]) -> str:
    lines = output(argv).strip().splitlines()
    return lines[0].strip() if lines else "?"


def meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * KiB
    return 0


def disk_of(path: Path) -> str:
    """`device (fstype, rotational|non-rotational)` for the filesystem holding path."""
    src, fstype = run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", str(path)]).split()[:2]
    dev = Path(src).name
    rot = Path(f"/sys/class/block/{dev}/queue/rotational")
    flag = rot.read_text().strip() if rot.exists() else ""
    kind = {"1": "rotational", "0": "non-rotational"}.get(flag, "?")
    return f"{src} ({fstype}, {kind} per the kernel)"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def machine(workdir: Path, tools: dict[str, Sequence[str]]) -> list[str]:
    """Lines describing this machine and the tools' versions."""
    release = Path("/etc/os-release").read_text().splitlines()
    osrel = dict(line.split("=", 1) for line in release if "=" in line)
    lines = [
        f"cpu: {cpu_model()}, nproc {len(os.sched_getaffinity(0))} (of {os.cpu_count()})",
        f"memory: {meminfo('MemTotal') / GiB:.1f} GiB total, {meminfo('MemAvailable') / GiB:.1f} GiB free",
        f"kernel: {platform.release()} ({osrel.get('PRETTY_NAME', '?').strip(chr(34))})",
        f"workdir disk: {disk_of(workdir)}",
        f"python: {platform.python_version()}",
    ]
    lines += [f"{name}: {first_line(argv)}" for name, argv in tools.items()]
    return lines


def print_header(title: str, workdir: Path, tools: dict[str, Sequence[str]]) -> None:
    """The report's first lines: its title, this machine and the tools' versions."""
    print(f"== imgclone {title} benchmark ==")
    print(*(f"  {line}" for line in machine(workdir, tools)), sep="\n")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table, first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(r) for r in rows)])


def mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB"


def median_wall(runs: Sequence[Measured]) -> float | None:
    """The median wall time of the runs that succeeded (None: none did)."""
    ok = [m.wall for m in runs if m.returncode == 0]
    return float(statistics.median(ok)) if ok else None


def wall_ratio_of(results: dict[str, list[Measured]], mine: str, theirs: str) -> float | None:
    """median_wall(mine) / median_wall(theirs), None when either has no successful run."""
    a, b = median_wall(results.get(mine, [])), median_wall(results.get(theirs, []))
    return a / b if a is not None and b else None


def runs_table(results: dict[str, list[Measured]], names: Sequence[str], first: str = "tool") -> str:
    """One row per name: median wall, each run's wall, median CPU, the most others used, peak tree RSS, launches."""
    rows = []
    for name in names:
        runs = results.get(name, [])
        wall = median_wall(runs)
        walls = " / ".join(f"{m.wall:.2f}" + ("" if m.returncode == 0 else " (failed)") for m in runs)
        ok = [m for m in runs if m.returncode == 0]
        if wall is None:
            rows.append([name, "FAILED" if runs else "not run", walls or "-", "-", "-", "-", "-"])
            continue
        rows.append([name, f"{wall:.2f}", walls, f"{statistics.median(m.cpu for m in ok):.2f}",
                     f"{max(m.others for m in ok):.2f}", mib(max(m.tree_rss for m in ok)),
                     str(max(m.launches for m in ok))])  # fmt: skip
    return table([first, "wall s (median)", "runs s", "cpu s", "others s", "peak tree RSS", "appliances"], rows)
