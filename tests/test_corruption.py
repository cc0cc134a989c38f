"""Corruption sweep: one byte changed at many offsets of an archive; `archive verify` and the reader restore uses.

Each case copies a small archive, XORs one byte with a nonzero value and runs `imgclone archive verify` (in
process, through main()): it must exit 1 and name what is damaged, the manifest or the stream the byte belongs
to (or the padding / end of the archive, which belong to no stream). The reader that restore streams from must
raise an ArchiveError naming the same, or give exactly the original manifest and stream bytes (a byte no reader
uses, such as the terminator of a tar header's checksum field). Offsets are spread over every region of the
archive by a seeded generator, so a failure is reproducible; the counts are printed for docs/reliability.md.
"""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imgclone.archive import container as archive
from imgclone.archive.reader import ArchiveReader, read_manifest_doc
from imgclone.archive.writer import ArchiveWriter
from imgclone.cli.main import main
from imgclone.errors import ArchiveError
from imgclone.model.manifest import StreamInfo
from tests.conftest import Captured
from tests.manifests import manifest_doc

Run = Callable[..., subprocess.CompletedProcess[bytes]]

SEED = 8
FILE_FLIPS = 200
PIPE_FLIPS = 100
PART = 2048  # small parts: every stream of the test archive has several


@dataclass(frozen=True)
class Region:
    """A byte range of the archive and the name a message about damage in it must contain."""

    start: int
    end: int
    names: tuple[str, ...]  # any of these in the message is right
    kind: str  # manifest, stream, padding, end


def _stream_bytes(directory: Path) -> bytes:
    tar = subprocess.run(["tar", "-C", str(directory), "-cf", "-", "."], capture_output=True, check=True).stdout
    return subprocess.run(["zstd", "-q", "-c"], input=tar, capture_output=True, check=True).stdout


def _trees(base: Path) -> dict[str, Path]:
    rng = random.Random(SEED)
    trees = {}
    for fs, files in (("fs-root", 6), ("fs-boot", 2), ("fs-var", 1)):
        d = base / fs
        d.mkdir()
        for i in range(files):
            (d / f"f{i}").write_bytes(rng.randbytes(1500 + 700 * i))  # random: zstd cannot shrink it
        trees[fs] = d
    return trees


def _mountpoint(fs: str) -> str:
    return "/" if fs == "fs-root" else "/" + fs.removeprefix("fs-")


def make_archive(path: Path, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real archive: tar | zstd streams of small trees, parts of PART bytes, a manifest with a layout."""
    monkeypatch.setattr(archive, "PART_SIZE", PART)
    trees = _trees(base)
    # as in a real capture, the layout names a filesystem for each stream (a piped archive's first manifest knows
    # its streams by them: a damaged part header is named after the closest)
    filesystems = [{"id": fs, "device": "disk-a", "type": "ext4", "mountpoint": _mountpoint(fs), "size": 1 << 20}
                   for fs in trees]  # fmt: skip
    disk = {"id": "disk-a", "path": "/dev/sda", "size": 4 << 20, "table": "none"}
    layout = {"version": 1, "disks": [disk], "partitions": [], "vgs": [], "lvs": [], "filesystems": filesystems,
              "swaps": []}  # fmt: skip
    m = manifest_doc(layout=layout, source={"kind": "test"}, boot={"firmware": "bios"})
    w = ArchiveWriter(str(path))
    w.begin(m, len(trees))
    streams = []
    for fs, d in trees.items():
        tmp = base / f"{fs}.zst"
        tmp.write_bytes(_stream_bytes(d))
        with open(tmp, "rb") as src:
            member, parts, size, sha = w.add_stream(fs, src)
        streams.append(
            StreamInfo(fs, _mountpoint(fs), member, parts, size, sha, len(list(d.iterdir())) + 1, 0).to_dict()
        )
    m["streams"] = streams
    w.finish(m)


def regions(path: Path) -> list[Region]:
    """Every byte of the archive, by what it belongs to."""
    with tarfile.open(path) as t:
        members = t.getmembers()
    out = []
    for i, ti in enumerate(members):
        if ti.name == "manifest.json":
            names: tuple[str, ...] = ("manifest.json",)
            kind = "manifest"
        else:
            names = (ti.name.rsplit(".", 1)[0],)
            kind = "stream"
        end = ti.offset_data + ti.size
        out.append(Region(ti.offset, end, names, kind))
        stop = members[i + 1].offset if i + 1 < len(members) else path.stat().st_size
        if stop > end:
            last = i + 1 == len(members)
            out.append(Region(end, stop, ("end of the archive",) if last else (f"padding after {ti.name}",),
                              "end" if last else "padding"))  # fmt: skip
    return out


SHARE = {"manifest": 0.4, "stream": 0.45, "padding": 0.05, "end": 0.1}  # of the flips, by what the bytes are


def offsets(regs: list[Region], count: int) -> list[tuple[int, int, Region]]:
    """About count (offset, xor mask, region): SHARE by kind, by size within a kind, at least 4 per region; seeded."""
    rng = random.Random(SEED)
    kind_size = Counter[str]()
    for r in regs:
        kind_size[r.kind] += r.end - r.start
    out = []
    for r in regs:
        size = r.end - r.start
        k = min(size, max(4, math.ceil(count * SHARE[r.kind] * size / kind_size[r.kind])))
        out += [(o, rng.randrange(1, 256), r) for o in sorted(rng.sample(range(r.start, r.end), k))]
    return out


def flipped(src: Path, dst: Path, offset: int, mask: int) -> Path:
    data = bytearray(src.read_bytes())
    data[offset] ^= mask
    dst.write_bytes(bytes(data))
    return dst


def verify_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(["archive", "verify", str(path)])
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out + out.err


def read_all(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """What restore gets from the archive: the manifest and each stream's bytes (checked by the reader)."""
    with ArchiveReader(str(path)) as r:
        data: dict[str, bytes] = {}
        for p in r.parts():
            chunks = []
            while chunk := p.data.read(4096):
                chunks.append(chunk)
            data[p.member] = data.get(p.member, b"") + b"".join(chunks)
        return r.doc, data


@dataclass
class Tally:
    cases: int = 0
    detected: int = 0
    named: int = 0
    reader_refused: int = 0
    reader_same: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def line(self, what: str) -> str:
        where = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items()))
        return (f"{what}: {self.cases} flips ({where}), verify detected {self.detected} and named the damaged part in "
                f"{self.named}; the reader refused {self.reader_refused} (naming it) and gave the original data "
                f"for the other {self.reader_same}")  # fmt: skip


def sweep(src: Path, work: Path, count: int, capsys: pytest.CaptureFixture[str]) -> tuple[Tally, list[str]]:
    """Flip, verify, read; return the tally and one line per miss."""
    original = read_all(src)
    tally, misses = Tally(), []
    for offset, mask, region in offsets(regions(src), count):
        bad = flipped(src, work / "flipped.mksysb", offset, mask)
        tally.cases += 1
        tally.kinds[region.kind] += 1
        rc, text = verify_cli(bad, capsys)
        where = f"offset {offset} ^{mask:#04x} in {region.kind} {region.names[0]}"
        if rc != 1:
            misses.append(f"verify exit {rc} for {where}")
            continue
        tally.detected += 1
        if not any(n in text for n in region.names):
            misses.append(f"verify did not name {region.names[0]} for {where}: {text.strip()[-300:]}")
            continue
        tally.named += 1
        try:
            got = read_all(bad)
        except ArchiveError as e:
            if region.kind in ("manifest", "stream") and not any(n in str(e) for n in region.names):
                misses.append(f"reader did not name {region.names[0]} for {where}: {e}")
            tally.reader_refused += 1
            continue
        if got != original:
            misses.append(f"reader gave changed data without an error for {where}")
        tally.reader_same += 1
    return tally, misses


@pytest.fixture
def small_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "small.mksysb"
    make_archive(path, tmp_path, monkeypatch)
    monkeypatch.undo()
    yield path


def test_small_archive_is_sound(small_archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, text = verify_cli(small_archive, capsys)
    assert rc == 0, text
    kinds = {r.kind for r in regions(small_archive)}
    assert kinds == {"manifest", "stream", "padding", "end"}
    with tarfile.open(small_archive) as t:
        assert sum(1 for n in t.getnames() if n.startswith("streams/fs-root")) >= 3, "several parts per stream"


def test_sweep_file_archive(small_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            figures: Callable[[str], None]) -> None:  # fmt: skip
    tally, misses = sweep(small_archive, tmp_path, FILE_FLIPS, capsys)
    figures(tally.line(f"file archive ({small_archive.stat().st_size} bytes)"))
    assert misses == [], "\n".join(misses)
    assert tally.cases >= FILE_FLIPS


def test_sweep_piped_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], figures: Callable[[str], None]
) -> None:
    """Written to a pipe: a first (incomplete) manifest, the streams, the final manifest at the end."""
    path = tmp_path / "piped.mksysb"
    with open(path, "wb") as f:
        monkeypatch.setattr("sys.stdout", io.TextIOWrapper(f))
        make_archive(Path("-"), tmp_path, monkeypatch)
        monkeypatch.undo()
    with tarfile.open(path) as t:
        names = t.getnames()
    assert names[0] == names[-1] == "manifest.json"
    tally, misses = sweep(path, tmp_path, PIPE_FLIPS, capsys)
    figures(tally.line(f"piped archive ({path.stat().st_size} bytes)"))
    assert misses == [], "\n".join(misses)


@pytest.mark.parametrize("field", ["layout", "digest_key", "version"])
def test_manifest_edits_that_keep_valid_json_are_found(small_archive: Path, tmp_path: Path, field: str) -> None:
    """The cases a JSON parser cannot see: a changed value, a renamed digest key, an older version claimed."""
    data = small_archive.read_bytes()
    old, new = {
        "layout": (b'"firmware": "bios"', b'"firmware": "uefi"'),
        "digest_key": (b'"manifest_sha256"', b'"manifest_sha257"'),
        "version": (b'"imgclone_version": "0.2.0"', b'"imgclone_version": "0.1.0"'),
    }[field]
    assert data.count(old) == 1
    bad = tmp_path / "edited.mksysb"
    bad.write_bytes(data.replace(old, new))
    with pytest.raises(ArchiveError, match="manifest.json is damaged"):
        read_manifest_doc(bad)


def test_archives_from_before_digests_still_read(tmp_path: Path) -> None:
    """imgclone 0.1.0 wrote no manifest digest: such archives are read (and verified by their streams)."""
    m = manifest_doc(layout={}, imgclone_version="0.1.0", complete=True)
    data = json.dumps(m).encode()
    p = tmp_path / "old.mksysb"
    with tarfile.open(p, "w") as t:
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    assert read_manifest_doc(p)["imgclone_version"] == "0.1.0"


# -- integration: a real capture, and restores from damaged copies -------------------------------------------------


@pytest.mark.integration
def test_sweep_real_capture(gpt_lvm_capture: Captured, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            figures: Callable[[str], None]) -> None:  # fmt: skip
    """The same sweep over the archive of the GPT + LVM image (captured through the appliance)."""
    _, archive_path, _, _ = gpt_lvm_capture
    tally, misses = sweep(archive_path, tmp_path, FILE_FLIPS, capsys)
    figures(tally.line(f"gpt_lvm capture ({archive_path.stat().st_size} bytes)"))
    assert misses == [], "\n".join(misses)


def _damage(archive_path: Path, out: Path, how: str) -> tuple[Path, str]:
    """A copy with one byte changed: in the manifest's layout, in fs-boot's data, or in fs-var's part header."""
    data = bytearray(archive_path.read_bytes())
    members = {ti.name: ti for ti in tarfile.open(archive_path).getmembers()}
    if how == "manifest":
        at = data.index(b'"mountpoint": "/var"') + len(b'"mountpoint": "/va')
        name = "manifest.json"
    elif how == "stream-data":
        ti = members["streams/fs-boot.tar.zst.00000"]
        at, name = ti.offset_data + ti.size // 2, "streams/fs-boot.tar.zst"
    else:
        ti = members["streams/fs-var.tar.zst.00000"]
        at, name = ti.offset + 110, "streams/fs-var.tar.zst"  # the uid field of its tar header
    data[at] ^= 0x20
    out.write_bytes(bytes(data))
    return out, name


@pytest.mark.integration
@pytest.mark.parametrize(("how", "existing"), [("manifest", False), ("stream-data", True), ("part-header", False)])
def test_restore_from_a_damaged_archive_fails_and_says_so(
    how: str, existing: bool, gpt_lvm_capture: Captured, tmp_path: Path, imgclone: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Refused before writing (manifest) or failing while writing (a stream): exit 1, one line naming the damaged
    part; a new image is removed, an existing one is said to be partly written, and the advice cleans it."""
    _, archive_path, _, _ = gpt_lvm_capture
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    bad, name = _damage(archive_path, tmp_path / "bad.mksysb", how)
    target = tmp_path / "clone.qcow2"
    if existing:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(target), "2G"], check=True)
    r = imgclone("restore", "-a", str(bad), "-d", str(target), "-P1", "--no-progress")
    err = r.stderr.decode()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert name in lines[0] and "damaged" in lines[0] and b"restored onto" not in r.stdout, lines[0]
    journals = list((tmp_path / "state").glob("*.json")) if (tmp_path / "state").is_dir() else []
    assert not any("1" in json.loads(j.read_text()).get("phases", {}) for j in journals)
    if not existing:
        assert not target.exists() and journals == [], "a new image is removed with its journal"
        return
    assert "partly written" in lines[0] and "alt cleanup" in lines[0], lines[0]
    r = imgclone("alt", "cleanup", "-d", str(target), "--wipe")
    assert r.returncode == 0, r.stderr.decode()
    r = imgclone("restore", "-a", str(archive_path), "-d", str(target), "-P1", "--no-progress")
    assert r.returncode == 0, r.stderr.decode()


@pytest.mark.integration
def test_restore_failure_under_alt_bak_err_fail_wipes_an_existing_target(
    gpt_lvm_capture: Captured, tmp_path: Path, imgclone: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALT_BAK_ERR_FAIL=1 (AIX's "runs cleanup and stops"): a restore that fails after writing (a damaged byte
    in fs-boot's stream) returns an existing raw image to blank, forgets the alternate and says so in one line."""
    _, archive_path, _, _ = gpt_lvm_capture
    monkeypatch.setenv("IMGCLONE_STATE_DIR", str(tmp_path / "state"))
    bad, name = _damage(archive_path, tmp_path / "bad.mksysb", "stream-data")
    target = tmp_path / "clone.img"
    subprocess.run(["truncate", "-s", "2G", str(target)], check=True)
    r = imgclone("restore", "-a", str(bad), "-d", str(target), "-P1", "--no-progress", env={"ALT_BAK_ERR_FAIL": "1"})
    err = r.stderr.decode()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert name in lines[0] and "ALT_BAK_ERR_FAIL=1: the targets were wiped back to blank" in lines[0], lines[0]
    assert "partly written" not in lines[0]
    assert list((tmp_path / "state").glob("*.json")) == [], "the alternate is forgotten"
    assert target.stat().st_size == 2 << 30, "the image is kept, blank"
    probe = subprocess.run(["wipefs", "--no-act", "--json", str(target)], capture_output=True, check=True).stdout
    assert json.loads(probe or b"{}").get("signatures", []) == [], probe
