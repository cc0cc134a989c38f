"""tar's stderr sorted into progress, verbose listing, read errors and other errors; the compressor's frames."""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
from pathlib import Path

from imgclone.archive.streams import ZSTD_DECOMPRESS, ZSTD_TEST, TarMessages, host_stream, tar_create, zstd_compress


def test_tar_create_argv_keeps_all_metadata() -> None:
    argv = tar_create("/mnt", __import__("pathlib").Path("/w/names"))
    for opt in ("--format=posix", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--selinux",
                "--sparse", "--one-file-system", "--no-recursion", "--null", "--verbatim-files-from",
                "--files-from=/w/names"):  # fmt: skip
        assert opt in argv
    assert "--verbose" not in argv
    assert "--verbose" in tar_create("/mnt", __import__("pathlib").Path("/w/names"), verbose=True)


def test_messages_are_sorted() -> None:
    seen: list[str] = []
    progress: list[int] = []
    m = TarMessages(verbose=True, on_progress=progress.append, on_line=seen.append)
    for line in [
        "tar: @@1 10240000 (9.8MiB, 1GiB/s)",
        "./etc/fstab",
        "tar: @@2 20480000 (20MiB, 1GiB/s)",
        "tar: ./var/log/x: Cannot open: Permission denied",
        "tar: ./var/run.pid: File removed before we read it",
        "tar: ./big: file changed as we read it",
        "tar: Error is not recoverable: exiting now",
        "Total bytes written: 20490240 (20MiB, 1GiB/s)",
    ]:
        m.feed(line)
    assert progress == [10240000, 10240000, 10240]
    assert m.total == 20490240
    assert len(m.read_errors) == 3
    assert m.other_errors == ["tar: Error is not recoverable: exiting now"]
    assert "./etc/fstab" in seen


def test_listing_hidden_without_verbose() -> None:
    seen: list[str] = []
    m = TarMessages(verbose=False, on_line=seen.append)
    m.feed("./etc/fstab")
    assert seen == []


def test_fail_fast_called_on_first_read_error() -> None:
    calls: list[int] = []
    m = TarMessages(on_line=lambda _l: None, fail_fast=lambda: calls.append(1))
    m.feed("tar: ./x: Cannot stat: No such file or directory")
    assert calls == [1]


def test_summary_and_socket_notices_are_not_errors() -> None:
    seen: list[str] = []
    m = TarMessages(on_line=seen.append)
    m.feed("tar: Exiting with failure status due to previous errors")
    m.feed("tar: ./run/sock: socket ignored")
    assert m.other_errors == [] and m.read_errors == []
    assert seen == ["tar: ./run/sock: socket ignored"]


def test_the_compressor_writes_independent_frames_that_zstd_reads() -> None:
    """pzstd's output: frames each announced by a skippable frame (what lets `pzstd -t` use every core), and
    standard zstd that a plain `zstd -d` restores byte for byte."""
    data = os.urandom(1 << 16) * 200  # 12.5 MiB: more than one of pzstd's frames
    packed = subprocess.run(zstd_compress(), input=data, capture_output=True, check=True).stdout
    skippable = (0x184D2A50).to_bytes(4, "little")
    assert packed.startswith(skippable) and packed.count(skippable) >= 2, "one frame: decoded on one core only"
    assert subprocess.run(ZSTD_DECOMPRESS, input=packed, capture_output=True, check=True).stdout == data
    assert subprocess.run(ZSTD_TEST, input=packed, capture_output=True).returncode == 0


def test_the_level_reaches_the_compressor(tmp_path: Path) -> None:
    """A stream of the same files at level 1 and at level 19: the same tar, and level 19's is the smaller."""
    r = random.Random(7)  # ~1 MB of words: 1 and 19 differ by ~13 % (326 and 283 kB)
    words = ["".join(r.choice("abcdefghijklmnop") for _ in range(r.randint(2, 9))) for _ in range(800)]
    (tmp_path / "a.txt").write_text(" ".join(r.choice(words) for _ in range(150_000)))
    (tmp_path / "names").write_bytes(b"./a.txt\0")
    out = {}
    for level in (1, 19):
        with host_stream(str(tmp_path), tmp_path / "names", TarMessages(), level) as pipe:
            assert pipe.out is not None
            out[level] = pipe.out.read()
        pipe.check()
    for packed in out.values():
        tar = subprocess.run(ZSTD_DECOMPRESS, input=packed, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            member = t.extractfile("./a.txt")
            assert member is not None and member.read() == (tmp_path / "a.txt").read_bytes()
    assert len(out[19]) < len(out[1]) * 0.9, {lv: len(b) for lv, b in out.items()}
