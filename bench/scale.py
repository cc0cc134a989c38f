#!/usr/bin/env python3
"""Scale benchmark: imgclone capture and archive verify on trees of several sizes and file counts, and a fit.

    .venv/bin/python bench/scale.py [--sizes 0.25,1,4] [--small-files 150000] [--runs 2] [--keep]

Trees: capture.py's generated tree at each of --sizes GiB (same generator and seed; its small files are 22 %
of the bytes, so bytes and names grow together), and one tree of small files only (--small-files of 200 B to
2 KiB of text, 100 a directory), which tells the cost of a name from the cost of a byte. Each tree is an ext4
image of its own, mounted read-only from a direct-I/O loop device; with --keep they stay in capture.py's kept
directory (its 1 GiB tree, and its --rss-gb trees are the same files, reused both ways).

Per tree, caches warm (one untimed read first), --runs rounds of `imgclone capture --mount` and `tar --xattrs
--acls | zstd -T0 -3`, then of `imgclone archive verify` and `zstd -t` of the same stream, each pair in
rotating order. Then least-squares fits of each tool's CPU seconds and wall seconds, over every run, against
(1, GiB of data, 100 000 names), and what they predict for a 500 GiB root of 10 M names. Exit status: 0 when
every tool ran, 1 when one failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import capture as cap  # noqa: E402
from common import (  # noqa: E402
    GiB,
    KiB,
    Measured,
    MiB,
    TreeBuilder,
    bench_parser,
    is_root,
    lock_dir,
    loop_mounted,
    make_ext4,
    measure,
    mib,
    note,
    print_header,
    run,
    sigterm_as_interrupt,
    table,
    wait_quiet,
)

PAIRS = (("imgclone capture", "tar|zstd"), ("imgclone verify", "zstd -t"))
TOOLS = tuple(t for pair in PAIRS for t in pair)
PER_DIR = 100  # small files a directory in the small-files tree
TARGET_GIB, TARGET_NAMES = 500, 10_000_000


@dataclass(frozen=True)
class Tree:
    name: str
    setup: cap.Setup
    small_files: int  # 0: capture.py's generated tree of setup.size bytes


@dataclass(frozen=True)
class Result:
    tree: Tree
    summary: str
    data_bytes: int
    names: int  # the names imgclone archived (its manifest's files)
    stream_bytes: int
    runs: dict[str, list[Measured]]


def trees(args: argparse.Namespace, base: Path) -> list[Tree]:
    out = []
    for gib in args.sizes:
        d = base if gib == 1.0 else base / f"rss-{gib:g}g"  # capture.py's own layout: its trees are reused
        out.append(Tree(f"{gib:g} GiB", setup_in(d, int(gib * GiB), args), 0))
    if args.small_files:
        d = base / f"scale-small-{args.small_files}"
        out.append(Tree(f"{args.small_files} small files", setup_in(d, 0, args), args.small_files))
    return out


def setup_in(d: Path, size: int, args: argparse.Namespace) -> cap.Setup:
    (d / "out-scale").mkdir(parents=True, exist_ok=True)
    return cap.Setup(d, d / "tree.img", d / "mnt", d / "out-scale", size=size, nproc=len(os.sched_getaffinity(0)),
                     patience=args.patience, retries=0)  # fmt: skip


def ensure_small_tree(s: cap.Setup, count: int, reuse: bool) -> tuple[str, int]:
    """count text files of 200 B to 2 KiB, PER_DIR a directory (or the kept tree of the same count)."""
    stamp = s.workdir / "tree.json"
    want = {"small_files": count, "seed": cap.SEED, "version": 1}
    kept = cap.kept_tree(s, want, reuse)
    if kept is not None:
        return kept
    make_ext4(s.image, 768 * MiB + count * 24 * KiB)  # ext4 makes an inode per 16 KiB; the files need ~1 KiB each
    with loop_mounted(s.image, s.mnt) as mnt:
        b = TreeBuilder(mnt, 0, cap.SEED)
        note(f"generating {count} small files in {mnt}")
        b.make_dirs(max(1, count // PER_DIR))
        for i in range(count):
            n = b.rng.randint(200, 2048)
            b.write(b.dirs[i % len(b.dirs)] / f"s{i:07d}.conf", b.words.text(b.rng, n))
        summary = f"{count} files of 200 B to 2 KiB ({b.stats.data_bytes / MiB:.0f} MiB of data), {len(b.dirs)} dirs"
    stamp.write_text(json.dumps({**want, "summary": summary, "data_bytes": b.stats.data_bytes}) + "\n")
    return summary, b.stats.data_bytes


def argv(tool: str, s: cap.Setup) -> list[str]:
    if tool == "imgclone capture":
        return cap.command("imgclone", s)
    if tool == "tar|zstd":
        return cap.command("tar|zstd", s)
    return cap.verify_argv("zstd -t" if tool == "zstd -t" else "imgclone verify", s)


def measure_tree(t: Tree, runs: int) -> dict[str, list[Measured]]:
    s = t.setup
    out: dict[str, list[Measured]] = {tool: [] for tool in TOOLS}
    for r in range(runs):
        for pair in PAIRS:
            for tool in pair[r % 2 :] + pair[: r % 2]:
                if tool == "imgclone capture":
                    (s.out / cap.OUTPUTS["imgclone"]).unlink(missing_ok=True)
                if s.patience > 0:
                    wait_quiet(patience=s.patience)
                m = measure(argv(tool, s), cwd=s.out)
                note(f"{t.name}, run {r + 1}: {tool}: {m.wall:.2f} s, cpu {m.cpu:.2f} s, others {m.others:.2f} s, "
                     f"rc {m.returncode}, tree RSS {mib(m.tree_rss)}")  # fmt: skip
                if m.returncode != 0:
                    note(f"{tool} failed (exit {m.returncode}):\n{m.stderr[-3000:]}")
                out[tool].append(m)
                if tool == "imgclone capture" and r == 0 and m.returncode == 0:
                    cap.cut_stream(s)
    return out


def one_tree(t: Tree, args: argparse.Namespace) -> Result:
    s = t.setup
    if lock_dir(s.workdir) is None:
        raise RuntimeError(f"workdir {s.workdir} is in use by another benchmark")
    if t.small_files:
        summary, data_bytes = ensure_small_tree(s, t.small_files, reuse=args.keep)
    else:
        summary, data_bytes = cap.ensure_tree(s, reuse=args.keep)
    try:
        with loop_mounted(s.image, s.mnt, readonly=True):
            cap.warm_up(s)
            runs = measure_tree(t, args.runs)
        archive = s.out / cap.OUTPUTS["imgclone"]
        manifest = json.loads(run(["tar", "-xOf", str(archive), "manifest.json"])) if archive.exists() else {}
        streams = manifest.get("streams", [])
        names = sum(int(x["files"]) for x in streams)
        return Result(t, summary, data_bytes, names, sum(int(x["bytes"]) for x in streams), runs)
    finally:
        shutil.rmtree(s.out, ignore_errors=True)
        if not args.keep:
            for p in (s.image, s.workdir / "tree.json"):
                p.unlink(missing_ok=True)


# -- the fit ----------------------------------------------------------------------------------


def solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (a small, well-posed system)."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(n):
            if r != c and m[c][c]:
                f = m[r][c] / m[c][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[c], strict=True)]
    return [m[i][n] / m[i][i] if m[i][i] else 0.0 for i in range(n)]


def fit(points: list[tuple[float, float, float]]) -> tuple[list[float], float]:
    """y = a + b*GiB + c*(names/1e5), least squares over (GiB, names/1e5, y); and the largest residual."""
    xs = [[1.0, g, n] for g, n, _ in points]
    ys = [y for _, _, y in points]
    ata = [[sum(x[i] * x[j] for x in xs) for j in range(3)] for i in range(3)]
    aty = [sum(x[i] * y for x, y in zip(xs, ys, strict=True)) for i in range(3)]
    coef = solve(ata, aty)
    worst = max(abs(sum(c * v for c, v in zip(coef, x, strict=True)) - y) for x, y in zip(xs, ys, strict=True))
    return coef, worst


def report(results: list[Result], runs: int) -> None:
    print_header("scale", results[0].tree.setup.workdir, cap.tool_versions())
    print(f"method: per tree, caches warm, {runs} rounds of (imgclone capture, tar|zstd) then (imgclone verify,")
    print("  zstd -t), each pair in rotating order; medians; cpu = user+sys of the tool's process tree; others =")
    print("  CPU seconds everything else used meanwhile (2 CPUs: the machine was shared)")
    for x in results:
        print(f"tree {x.tree.name}: {x.summary}; {x.names} names archived, stream {mib(x.stream_bytes)}")
    print()
    header = ["tree", "GiB", "names"] + [f"{t} {k}" for t in TOOLS for k in ("wall", "cpu")]
    header += ["others/wall", "capture RSS"]
    rows = []
    for x in results:
        row = [x.tree.name, f"{x.data_bytes / GiB:.3f}", f"{x.names}"]
        for t in TOOLS:
            ok = [m for m in x.runs[t] if m.returncode == 0]
            row += [f"{statistics.median(m.wall for m in ok):.2f}", f"{statistics.median(m.cpu for m in ok):.2f}"] \
                if ok else ["FAILED", "-"]  # fmt: skip
        every = [m for ms in x.runs.values() for m in ms]
        row.append(f"{statistics.median(m.others / m.wall for m in every if m.wall):.2f}")
        row.append(mib(max((m.tree_rss for m in x.runs["imgclone capture"]), default=0)))
        rows.append(row)
    print(table(header, rows))
    print()
    print("fits over every run: seconds = fixed + per GiB of data x GiB + per 100k names x names/100k; the")
    print(f"  largest residual of a run; and the prediction for {TARGET_GIB} GiB and {TARGET_NAMES / 1e6:g} M names")
    fits = []
    for t in TOOLS:
        for key in ("cpu", "wall"):
            pts = [(x.data_bytes / GiB, x.names / 1e5, getattr(m, key)) for x in results for m in x.runs[t]
                   if m.returncode == 0]  # fmt: skip
            if len(pts) < 3:
                continue
            (a, b, c), worst = fit(pts)
            pred = a + b * TARGET_GIB + c * TARGET_NAMES / 1e5
            fits.append([f"{t} {key}", f"{a:.2f}", f"{b:.2f}", f"{c:.2f}", f"{worst:.2f}", f"{pred / 60:.1f}"])
    print(table(["what", "fixed s", "s per GiB", "s per 100k names", "worst residual s", "500 GiB/10M min"], fits))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, holds="the trees", kept="the trees and reuse them", keep_dir=cap.KEEP_DIR, retries=0)
    p.add_argument("--sizes", type=lambda v: [float(x) for x in v.split(",")], default=[0.25, 1.0, 4.0],
                   help="GiB of the generated trees, comma-separated (default 0.25,1,4)")  # fmt: skip
    p.add_argument("--small-files", type=int, default=150_000, help="files of the small-files tree (0: none)")
    p.add_argument("--runs", type=int, default=2, help="rounds per tree (default 2)")
    args = p.parse_args(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not is_root("scale.py", "loop devices, mount"):
        return 2
    sigterm_as_interrupt()
    base = Path(args.workdir).resolve() if args.workdir else cap.KEEP_DIR
    created = not base.exists()
    base.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for t in trees(args, base):
            results.append(one_tree(t, args))
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        if created and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    report(results, args.runs)
    failed = any(m.returncode != 0 for x in results for ms in x.runs.values() for m in ms)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
