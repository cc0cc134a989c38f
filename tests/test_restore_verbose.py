"""restore -V: each file of a stream named at its mount point as the compressed bytes pass (real zstd and tar)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from imgclone.archive.streams import zstd_compress
from imgclone.phases.extract import Listing


def stream_of(tree: Path) -> bytes:
    """A filesystem stream as capture writes it: fs-relative names ("./etc/fstab"), tar | zstd."""
    tar = subprocess.run(["tar", "-C", str(tree), "--format=posix", "-cf", "-", "."], capture_output=True, check=True)
    return subprocess.run(zstd_compress(), input=tar.stdout, capture_output=True, check=True).stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "fs"
    (root / "lib" / "dpkg").mkdir(parents=True)
    (root / "lib" / "dpkg" / "status").write_text("x" * 70000)
    (root / "a file\nwith a newline").write_text("")
    (root / "log").symlink_to("lib")
    return root


@pytest.mark.parametrize(("mountpoint", "top"), [("/var", "/var"), ("/", "/")])
def test_names_as_they_pass(tree: Path, mountpoint: str, top: str) -> None:
    said: list[str] = []
    listing = Listing(mountpoint, said.append)
    data = stream_of(tree)
    for i in range(0, len(data), 1000):  # as parts arrive, in pieces
        listing.write(data[i : i + 1000])
    listing.close()
    base = mountpoint.rstrip("/")
    assert sorted(said) == sorted([top, f"{base}/lib", f"{base}/lib/dpkg", f"{base}/lib/dpkg/status", f"{base}/log",
                                   f"{base}/a file\\nwith a newline"])  # fmt: skip


def test_abandoned_listing_stops(tree: Path) -> None:
    said: list[str] = []
    listing = Listing("/", said.append)
    listing.write(stream_of(tree)[:50])
    listing.close(abandon=True)  # returns: no zstd or tar left waiting for input
    assert said == []
