#!/usr/bin/env python3
"""Capture benchmark: imgclone capture against tar|zstd and fsarchiver on one generated tree.

    .venv/bin/python bench/capture.py [--size-gb 1.0] [--workdir DIR] [--keep] [--runs 3] [--cold] [--rss-gb 4]

The tree (>= 1 GiB by default: small text files, medium binaries and text, large mixed
files, hardlinks, symlinks, a sparse file, xattrs and ACLs) lives on a fresh ext4 in a
sparse image file in the workdir, attached with a direct-I/O loop device and mounted
read-only for the runs. Every tool writes its output to the workdir's disk (outside the
source filesystem). Caches are warm for every tool (one untimed read of the tree first;
--cold drops them before every run instead); the tools run round-robin, rotating who
goes first, each after waiting for other processes to go idle, and a run during which
other processes took CPU is redone. Times are the median over the runs (ratios are
ratios of medians), memory the maximum.

Then `imgclone archive verify` of imgclone's archive against `zstd -t` of the same
stream (its parts cut out of the archive beforehand, untimed), and `archive verify --deep`
against `zstd -d | tar -t` of it, interleaved the same way;
and with --rss-gb, one imgclone capture of a second, larger tree for its peak memory.

Exit status: 0 when every tool ran (even when a goal is missed: this is a report), 1
when a tool failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    CONTENDED,
    GiB,
    Measured,
    MiB,
    TreeBuilder,
    bench_parser,
    drop_caches,
    imgclone_argv,
    is_root,
    lock_dir,
    loop_mounted,
    make_ext4,
    make_workdir,
    measure,
    mib,
    note,
    output,
    print_header,
    redo_when_contended,
    repeat_interleaved,
    sigterm_as_interrupt,
    table,
    wait_quiet,
    write_summary,
)

SAME_LEVEL = "imgclone --level 3"  # imgclone at the anchor's zstd level: what its own work costs (info)
TOOLS = ("tar|zstd", "fsarchiver", "imgclone", SAME_LEVEL)
OUTPUTS = {"tar|zstd": "out.tar.zst", "fsarchiver": "out.fsa", "imgclone": "out.mksysb", SAME_LEVEL: "out-3.mksysb"}
GOALS = {"tar|zstd": 1.05, "fsarchiver": 0.85}  # imgclone wall / tool wall must stay at or below
SEED = 20240611
KEEP_DIR = Path("/var/tmp/imgclone-bench")
HEADER = ["tool", "wall s (median)", "runs s", "wall+sync s", "cpu s", "others s",
          "output bytes", "data/out", "peak RSS largest proc", "peak tree RSS"]  # fmt: skip


@dataclass(frozen=True)
class Run:
    m: Measured
    size: int
    redone: int = 0  # extra attempts made because other processes took CPU meanwhile


@dataclass(frozen=True)
class Setup:
    workdir: Path
    image: Path
    mnt: Path
    out: Path
    size: int
    nproc: int
    patience: float
    retries: int
    cold: bool = False


def command(tool: str, s: Setup) -> list[str]:
    out = s.out / OUTPUTS[tool]
    if tool == "tar|zstd":
        mnt, dest = shlex.quote(str(s.mnt)), shlex.quote(str(out))
        return ["bash", "-c", f"set -o pipefail; tar --xattrs --acls -C {mnt} -cf - . | zstd -T0 -3 > {dest}"]
    if tool == "fsarchiver":
        return ["fsarchiver", "savedir", f"-j{s.nproc}", "-o", str(out), str(s.mnt)]
    level = ["--level", "3"] if tool == SAME_LEVEL else []
    return [*imgclone_argv(), "capture", "--mount", str(s.mnt), "-o", str(out), "--no-progress", *level]


def one_run(s: Setup, tool: str, r: int) -> Run:
    """One measured run; redone (up to s.retries times) when other processes took CPU meanwhile."""
    best, redone = redo_when_contended(lambda: measure_once(s, tool, r), lambda run: run.m, s.retries,
                                       f"run {r + 1}: {tool}")  # fmt: skip
    return Run(best.m, best.size, redone)


def measure_once(s: Setup, tool: str, r: int) -> Run:
    out = s.out / OUTPUTS[tool]
    out.unlink(missing_ok=True)
    if s.cold:
        drop_caches()
    if s.patience > 0:
        wait_quiet(patience=s.patience)
    note(f"run {r + 1}: {tool}")
    m = measure(command(tool, s), cwd=s.out)
    size = out.stat().st_size if out.exists() else 0
    note(
        f"run {r + 1}: {tool}: {m.wall:.2f} s (+{m.flush:.2f} s sync), cpu {m.cpu:.2f} s, "
        f"others {m.others:.2f} s, rc {m.returncode}, {mib(size)}"
    )
    if m.returncode != 0:
        note(f"{tool} failed (exit {m.returncode}):\n{m.stderr[-3000:]}")
    return Run(m, size)


def median(xs: Iterable[float]) -> float:
    return float(statistics.median(list(xs)))


# -- the tree ---------------------------------------------------------------------------------


def kept_tree(s: Setup, want: Mapping[str, object], reuse: bool) -> tuple[str, int] | None:
    """The summary and data bytes of the kept tree when it was built as `want` says; else None (and no stamp)."""
    stamp = s.workdir / "tree.json"
    if reuse and stamp.exists() and s.image.exists():
        saved = json.loads(stamp.read_text())
        if {k: saved.get(k) for k in want} == want:
            note(f"reusing the tree in {s.image}")
            return str(saved["summary"]), int(saved["data_bytes"])
    stamp.unlink(missing_ok=True)
    return None


def ensure_tree(s: Setup, reuse: bool) -> tuple[str, int]:
    """Build the tree image (or reuse the kept one of the same size); its summary and data bytes."""
    stamp = s.workdir / "tree.json"
    want = {"size": s.size, "seed": SEED, "version": 3}
    kept = kept_tree(s, want, reuse)
    if kept is not None:
        return kept
    make_ext4(s.image, int(s.size * 1.4) + 768 * MiB)
    with loop_mounted(s.image, s.mnt) as mnt:
        stats = TreeBuilder(mnt, s.size, SEED).build()
        st = os.statvfs(mnt)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
    summary = f"{stats.summary()}; {used / GiB:.2f} GiB used on its ext4"
    stamp.write_text(json.dumps({**want, "summary": summary, "data_bytes": stats.data_bytes}) + "\n")
    return summary, stats.data_bytes


def make_setup(args: argparse.Namespace) -> tuple[Setup, bool]:
    """The workdir layout; the flag says whether we created the workdir (and may remove it)."""
    workdir, created = make_workdir(args, KEEP_DIR, "imgclone-bench-")
    (workdir / "out").mkdir(exist_ok=True)
    size = int(args.size_gb * GiB)
    nproc = len(os.sched_getaffinity(0))
    dirs = (workdir / "tree.img", workdir / "mnt", workdir / "out")
    s = Setup(workdir, *dirs, size=size, nproc=nproc, patience=args.patience, retries=args.retries, cold=args.cold)
    return s, created


def cleanup(s: Setup, keep: bool, created: bool) -> None:
    shutil.rmtree(s.out, ignore_errors=True)
    if keep:
        note(f"kept the tree: {s.image} (rerun with --keep --workdir {s.workdir} to reuse it)")
        return
    for p in (s.image, s.workdir / "tree.json"):
        p.unlink(missing_ok=True)
    if s.mnt.is_dir() and not os.path.ismount(s.mnt):
        s.mnt.rmdir()
    if created:
        shutil.rmtree(s.workdir, ignore_errors=True)


# -- the report -------------------------------------------------------------------------------


def tool_versions() -> dict[str, Sequence[str]]:
    return {
        "tar": ["tar", "--version"],
        "zstd": ["zstd", "--version"],
        "fsarchiver": ["fsarchiver", "-V"],
        "imgclone": [*imgclone_argv(), "--version"],
        "mkfs.ext4": ["mke2fs", "-V"],
    }


def result_rows(results: dict[str, list[Run]], data_bytes: int) -> list[list[str]]:
    rows = []
    for tool in TOOLS:
        runs = results[tool]
        ok = [r for r in runs if r.m.returncode == 0]
        if not ok:
            rows.append([tool, "FAILED", *["-"] * 8])
            continue
        walls = " / ".join(f"{r.m.wall:.2f}" for r in runs)
        redone = sum(r.redone for r in runs)
        walls += f" ({redone} redone)" if redone else ""
        size = ok[-1].size
        rows.append([
            tool,
            f"{median(r.m.wall for r in ok):.2f}",
            walls,
            f"{median(r.m.durable for r in ok):.2f}",
            f"{median(r.m.cpu for r in ok):.2f}",
            f"{max(r.m.others for r in ok):.2f}",
            f"{size:,}",
            f"{data_bytes / size:.2f}x" if size else "-",
            mib(max(r.m.max_proc_rss for r in ok)),
            mib(max(r.m.tree_rss for r in ok)),
        ])  # fmt: skip
    return rows


def best(runs: list[Run], key: str) -> float | None:
    ok = [r for r in runs if r.m.returncode == 0]
    if not ok:
        return None
    return float(median(getattr(r.m, key) for r in ok)) if key != "size" else float(ok[-1].size)


def ratio_lines(results: dict[str, list[Run]]) -> list[str]:
    lines = []
    for tool, goal in GOALS.items():
        mine, theirs = best(results["imgclone"], "wall"), best(results[tool], "wall")
        if mine is None or theirs is None:
            lines.append(f"imgclone / {tool}: not available (a tool failed)")
            continue
        verdict = "met" if mine / theirs <= goal else "NOT met"
        extra = []
        for key, label in (("durable", "wall+sync"), ("size", "output size")):
            a, b = best(results["imgclone"], key), best(results[tool], key)
            if a is not None and b:
                extra.append(f"{label} {a / b:.3f}")
        head = f"imgclone / {tool}: wall {mine / theirs:.3f} (goal <= {goal:.2f}: {verdict})"
        lines.append(f"{head}; {', '.join(extra)}")
    mine, theirs = best(results[SAME_LEVEL], "wall"), best(results["tar|zstd"], "wall")
    if mine is not None and theirs:
        lines.append(f"{SAME_LEVEL} / tar|zstd: wall {mine / theirs:.3f} (info: both at zstd level 3)")
    return lines


def fsarchiver_compression(s: Setup) -> str:
    """What fsarchiver's defaults chose, from archinfo of the last archive."""
    info = output(["fsarchiver", "archinfo", str(s.out / OUTPUTS["fsarchiver"])])
    found = [ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("Compression")]
    return "compression " + (", ".join(found) or "unknown")


def imgclone_zstd() -> str:
    try:
        from imgclone.archive.streams import DEFAULT_LEVEL, zstd_compress
    except ImportError as e:
        return f"unknown ({e})"
    same = "same as" if DEFAULT_LEVEL == 3 else "DIFFERENT from"
    return (f"imgclone runs `{' '.join(zstd_compress())}`: level {DEFAULT_LEVEL}, {same} the anchor's 3 "
            f"(output size above); `{SAME_LEVEL}` runs `{' '.join(zstd_compress(3))}`")  # fmt: skip


def warm_up(s: Setup) -> None:
    """Read the whole tree once (untimed), so that every tool finds it in the page cache."""
    note("warming the caches: one untimed read of the tree")
    m = measure(["bash", "-c", f"tar -C {shlex.quote(str(s.mnt))} -cf - . | cat > /dev/null"])
    note(f"warm-up: {m.wall:.1f} s")


def report_more(verify: dict[str, list[Measured]], rss: list[Rss]) -> None:
    print()
    print("archive verify: `imgclone archive verify` of imgclone's archive (sha256 of every part, `pzstd -t` of")
    print("  every stream) against `zstd -t` of the same stream, cut out of the archive beforehand; `--deep` (the")
    print("  decompressed stream through `tar -t` too) against `zstd -d | tar -t` of that stream")
    print(table(["tool", "wall s (median)", "runs s", "cpu s", "others s", "peak tree RSS"], verify_rows(verify)))
    for mine, theirs, goal in VERIFY_PAIRS:
        r = wall_ratio(verify[mine], verify[theirs])
        verdict = "report" if goal is None else f"goal <= {goal:.2f}: {'met' if r and r <= goal else 'NOT met'}"
        print(f"{mine} / {theirs}: " + (f"wall {r:.3f} ({verdict})" if r else "not available (a tool failed)"))
    for x in rss:
        print()
        print(f"memory, {x.gib:g} GiB tree ({x.summary}): one imgclone capture, {x.m.wall:.1f} s, rc {x.m.returncode},")
        print(f"  peak tree RSS {mib(x.m.tree_rss)}, largest process {mib(x.m.max_proc_rss)}")


def report(s: Setup, summary: str, results: dict[str, list[Run]], data_bytes: int, runs: int) -> None:
    print_header("capture", s.workdir, tool_versions())
    print(f"tree: {summary}")
    print(f"source: ext4 on a direct-I/O loop device, mounted read-only at {s.mnt}; outputs in {s.out}")
    caches = "caches dropped before each" if s.cold else "caches warm (one untimed read of the tree first)"
    print(f"method: {runs} runs per tool, round-robin with rotating order; {caches},")
    print("  then up to --patience s waited for other processes to go idle;")
    print("  wall = median over runs (ratios: of medians); wall+sync = median of (wall + the sync() right after it);")
    print("  cpu = median user+sys of the tool's processes; others = max busy CPU s of everything else")
    print("  during a run, kernel I/O threads working for the tool included (~0.1 CPU when idle); a run")
    print(f"  is redone, up to --retries times, when others averaged above {CONTENDED} CPUs;")
    print("  data/out = tree data bytes / output bytes; RSS = max over runs (largest process: GNU time's")
    print("  %M; tree: summed RSS of the tool's session sampled every 50 ms, at least the former)")
    print()
    print(table(HEADER, result_rows(results, data_bytes)))
    print()
    print(*ratio_lines(results), sep="\n")
    print()
    print("anchor 1: " + command("tar|zstd", s)[2].removeprefix("set -o pipefail; "))
    print(f"  {imgclone_zstd()}")
    print("anchor 2: " + shlex.join(command("fsarchiver", s)))
    print(f"  fsarchiver defaults except -j{s.nproc}; its archive says: {fsarchiver_compression(s)}")
    print("imgclone: " + shlex.join(command("imgclone", s)))


# -- archive verify against zstd -t, memory on a larger tree --------------------------------------

VERIFY = ("zstd -t", "imgclone verify", "zstd -d | tar -t", "imgclone verify --deep")
VERIFY_PAIRS = (("imgclone verify", "zstd -t", 1.10), ("imgclone verify --deep", "zstd -d | tar -t", None))


def verify_argv(tool: str, s: Setup) -> list[str]:
    stream = shlex.quote(str(s.out / "stream.tar.zst"))
    if tool == "zstd -t":
        return ["zstd", "-t", "-q", str(s.out / "stream.tar.zst")]
    if tool == "zstd -d | tar -t":
        return ["bash", "-c", f"set -o pipefail; zstd -d -q -c {stream} | tar -t -f - > /dev/null"]
    deep = ["--deep"] if tool == "imgclone verify --deep" else []
    return [*imgclone_argv(), "archive", "verify", str(s.out / OUTPUTS["imgclone"]), *deep]


def cut_stream(s: Setup) -> None:
    """imgclone's stream, its parts concatenated out of the archive (untimed): zstd -t's input."""
    archive, dest = s.out / OUTPUTS["imgclone"], s.out / "stream.tar.zst"
    m = measure(["tar", "-xOf", str(archive), "--wildcards", "streams/*"], stdout_to=dest)
    if m.returncode != 0 or not dest.stat().st_size:
        raise RuntimeError(f"no stream cut out of {archive}: {m.stderr.strip()}")


def verify_runs(s: Setup, runs: int) -> dict[str, list[Measured]]:
    def one(tool: str, r: int) -> Measured:
        if s.cold:
            drop_caches()
        if s.patience > 0:
            wait_quiet(patience=s.patience)
        m = measure(verify_argv(tool, s))
        note(
            f"verify run {r + 1}: {tool}: {m.wall:.2f} s, cpu {m.cpu:.2f} s, others {m.others:.2f} s, rc {m.returncode}"
        )
        if m.returncode != 0:
            note(f"{tool} failed (exit {m.returncode}):\n{m.stderr[-3000:]}")
        return m

    return repeat_interleaved(VERIFY, runs, one)


def verify_rows(results: dict[str, list[Measured]]) -> list[list[str]]:
    rows = []
    for tool in VERIFY:
        ok = [m for m in results[tool] if m.returncode == 0]
        walls = " / ".join(f"{m.wall:.2f}" for m in results[tool])
        if not ok:
            rows.append([tool, "FAILED", walls, "-", "-", "-"])
            continue
        rows.append([tool, f"{median(m.wall for m in ok):.2f}", walls, f"{median(m.cpu for m in ok):.2f}",
                     f"{max(m.others for m in ok):.2f}", mib(max(m.tree_rss for m in ok))])  # fmt: skip
    return rows


def wall_ratio(mine: Sequence[Measured], theirs: Sequence[Measured]) -> float | None:
    a, b = [m.wall for m in mine if m.returncode == 0], [m.wall for m in theirs if m.returncode == 0]
    return median(a) / median(b) if a and b and median(b) > 0 else None


@dataclass(frozen=True)
class Rss:
    gib: float
    summary: str
    m: Measured


def rss_run(s: Setup, gib: float, keep: bool) -> Rss:
    """One imgclone capture of a tree of gib GiB in workdir/rss-<gib>g (kept with --keep): its memory."""
    sub = s.workdir / f"rss-{gib:g}g"
    (sub / "out").mkdir(parents=True, exist_ok=True)
    big = Setup(sub, sub / "tree.img", sub / "mnt", sub / "out", size=int(gib * GiB), nproc=s.nproc,
                patience=s.patience, retries=0, cold=s.cold)  # fmt: skip
    try:
        summary, _ = ensure_tree(big, reuse=keep)
        with loop_mounted(big.image, big.mnt, readonly=True):
            run = measure_once(big, "imgclone", 0)
    finally:
        cleanup(big, keep, created=not keep)
    return Rss(gib, summary, run.m)


def summary_rows(results: dict[str, list[Run]], verify: dict[str, list[Measured]], rss: list[Rss],
                 size_gb: float) -> list[list[str]]:  # fmt: skip
    """The rows of bench/all.py's one table: [what, measured, goal, verdict]."""
    out = []
    for tool, goal in GOALS.items():
        r = wall_ratio([x.m for x in results["imgclone"]], [x.m for x in results[tool]])
        out.append([f"capture {size_gb:g} GiB tree / {tool}", f"{r:.3f}" if r else "-", f"<= {goal:.2f}",
                    ("met" if r <= goal else "MISSED") if r else "n/a"])  # fmt: skip
    r = wall_ratio([x.m for x in results[SAME_LEVEL]], [x.m for x in results["tar|zstd"]])
    out.append([f"capture {size_gb:g} GiB tree at zstd level 3 / tar|zstd", f"{r:.3f}" if r else "-", "info", "info"])
    a, b = best(results["imgclone"], "size"), best(results["tar|zstd"], "size")
    out.append([f"capture {size_gb:g} GiB tree, archive bytes / tar|zstd's", f"{a / b:.3f}" if a and b else "-",
                "info", "info"])  # fmt: skip
    for mine, theirs, goal in VERIFY_PAIRS:
        r = wall_ratio(verify[mine], verify[theirs])
        verdict = ("met" if r <= goal else "MISSED") if r and goal is not None else ("report" if r else "n/a")
        what = "archive verify" + mine.removeprefix("imgclone verify")
        out.append([f"{what} / {theirs} (same stream)", f"{r:.3f}" if r else "-",
                     f"<= {goal:.2f}" if goal is not None else "-", verdict])  # fmt: skip
    peaks = [(size_gb, max(x.m.tree_rss for x in results["imgclone"]))] + [(x.gib, x.m.tree_rss) for x in rss]
    for gib, peak in peaks:
        out.append([f"capture peak RSS, {gib:g} GiB tree (whole process tree)", mib(peak), "<= 150 MiB",
                    "met" if peak <= 150 * MiB else "MISSED"])  # fmt: skip
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, holds="the image and outputs", kept="the tree and reuse it", keep_dir=KEEP_DIR, retries=3)
    p.add_argument("--size-gb", type=float, default=1.0, help="tree data size in GiB (default 1.0)")
    p.add_argument("--runs", type=int, default=3, help="runs per tool (default 3)")
    p.add_argument("--cold", action="store_true", help="drop caches before every run (default: warm caches)")
    p.add_argument("--rss-gb", type=float, action="append", default=[], metavar="GB",
                   help="also capture a tree of this size once, for imgclone's peak memory (repeatable)")  # fmt: skip
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not is_root("capture.py", "loop devices, mount, drop_caches"):
        return 2
    sigterm_as_interrupt()
    s, created = make_setup(args)
    lock = lock_dir(s.workdir)
    if lock is None or os.path.ismount(s.mnt):
        why = "is in use by another benchmark" if lock is None else "has a filesystem mounted on mnt/"
        print(f"capture.py: workdir {s.workdir} {why}; leaving it alone", file=sys.stderr)
        return 2
    try:
        summary, data_bytes = ensure_tree(s, reuse=args.keep)
        with loop_mounted(s.image, s.mnt, readonly=True):
            if not s.cold:
                warm_up(s)
            results = repeat_interleaved(TOOLS, args.runs, lambda tool, r: one_run(s, tool, r))
            verify: dict[str, list[Measured]] = {t: [] for t in VERIFY}
            if all(r.m.returncode == 0 for r in results["imgclone"]):
                cut_stream(s)
                verify = verify_runs(s, args.runs)
        rss = [rss_run(s, gib, args.keep) for gib in args.rss_gb]
        report(s, summary, results, data_bytes, args.runs)
        report_more(verify, rss)
        write_summary(args.summary, summary_rows(results, verify, rss, args.size_gb))
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        cleanup(s, args.keep, created)
    failed = any(r.m.returncode != 0 for runs in results.values() for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
