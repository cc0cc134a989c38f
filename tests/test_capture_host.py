"""Capture loop-mounted filesystems holding the tricky set, restore by hand with stock tools."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import tricky
from tests.loopfs import loop_fs
from tests.treecmp import describe, diff

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]

RESTORE = ["tar", "-x", "-C", "{dst}", "--format=posix", "--numeric-owner", "--xattrs", "--xattrs-include=*",
           "--acls", "--selinux", "--same-permissions", "--same-owner", "--sparse"]  # fmt: skip


@pytest.fixture(scope="module", params=["ext4", "xfs"])
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp(f"src-{request.param}")
    with loop_fs(work, request.param, name="mnt") as mnt:
        tricky.populate(mnt)
        yield mnt


def restore_by_hand(archive: Path, fs_id: str, dst: Path) -> None:
    """What docs/archive-format.md tells a user to do, with stock tar and zstd only."""
    cmd = (f"tar -xOf {archive} --wildcards 'streams/{fs_id}.tar.zst.*' | zstd -d | "
           + " ".join(a.replace("{dst}", str(dst)) if a != "--xattrs-include=*" else "'--xattrs-include=*'"
                      for a in RESTORE))  # fmt: skip
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True)


def test_capture_restore_by_hand_keeps_everything(source: Path, tmp_path: Path, imgclone: Run) -> None:
    exclude = tmp_path / "exclude.list"
    mp = str(source)
    exclude.write_text(f"^.{mp}/tmp/\n^.{mp}/data/star\\*\\[x\\]$\n")
    out = tmp_path / "t.mksysb"
    r = imgclone("capture", "--mount", mp, "-e", str(exclude), "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    assert b"captured 1 filesystem" in r.stdout
    manifest = json.loads(tarfile.open(out).extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest["complete"] and manifest["streams"][0]["mountpoint"] == mp
    assert_content(manifest, mp)  # the rules need grep: the facts come from the names file
    fs_id = manifest["streams"][0]["fs"]
    dst = tmp_path / "restored"
    dst.mkdir()
    restore_by_hand(out, fs_id, dst)
    want = describe(str(source))
    expected_gone = {b"./tmp/junk", b"./tmp/sub", b"./tmp/sub/junk2", b"./data/star*[x]"}
    assert expected_gone <= want.keys()
    for k in expected_gone:
        del want[k]
    got = describe(str(dst))
    got[b"."] = want[b"."]  # the restore target's root directory is not part of the stream's owner test
    assert diff(want, got) == []
    assert got[b"./data/sparse"]["sparse"], "sparse file was expanded"
    assert tricky.acls(source).replace("junk", "") != "" and _acl_of(dst, "data/with space") == _acl_of(
        source, "data/with space"
    )


def assert_content(manifest: dict[str, object], mp: str) -> None:
    """The stream's content facts: the sparse file at its apparent size, big's two links, no xattr figure."""
    content = manifest["streams"][0]["content"]  # type: ignore[index]
    assert content == {"largest_file": 64 * 1024 * 1024 + 3, "largest_file_path": f"{mp}/data/sparse",
                       "most_links": 2, "most_links_path": content["most_links_path"]}, content  # fmt: skip
    assert content["most_links_path"] in (f"{mp}/data/big", f"{mp}/data/big.hardlink")


def _acl_of(root: Path, rel: str) -> str:
    return subprocess.run(["getfacl", "-n", "-p", rel], cwd=root, capture_output=True, check=True).stdout.decode()


def test_verify_ok_then_one_flipped_byte_fails(source: Path, tmp_path: Path, imgclone: Run) -> None:
    out = tmp_path / "v.mksysb"
    assert imgclone("capture", "--mount", str(source), "-o", str(out)).returncode == 0
    assert_content(json.loads(tarfile.open(out).extractfile("manifest.json").read()), str(source))  # type: ignore[union-attr]
    ok = imgclone("archive", "verify", str(out), "--json")
    assert ok.returncode == 0, ok.stdout.decode() + ok.stderr.decode()
    assert json.loads(ok.stdout)["ok"] is True
    with tarfile.open(out) as t:
        member = next(m for m in t.getmembers() if m.name.startswith("streams/"))
    with open(out, "r+b") as f:
        f.seek(member.offset_data + member.size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x01]))
    bad = imgclone("archive", "verify", str(out))
    assert bad.returncode == 1
    base = member.name.rsplit(".", 1)[0]
    assert f"{base}" in bad.stdout.decode() and "DAMAGED" in bad.stdout.decode()


def test_capture_to_stdout_is_a_valid_archive(source: Path, tmp_path: Path, imgclone: Run) -> None:
    out = tmp_path / "piped.mksysb"
    with open(out, "wb") as f:
        r = imgclone("capture", "--mount", str(source), "-o", "-", stdout=f)
    assert r.returncode == 0, r.stderr.decode()
    names = tarfile.open(out).getnames()
    assert names[0] == names[-1] == "manifest.json"
    v = imgclone("archive", "verify", str(out))
    assert v.returncode == 0, v.stdout.decode()


def _mounts(of: Path) -> list[str]:
    """The mount points of the filesystem mounted at `of` (the read-only views a capture makes are bind mounts of
    it): only these, as other tests mount and unmount theirs meanwhile."""
    dev = os.stat(of).st_dev
    number = f"{os.major(dev)}:{os.minor(dev)}"
    lines = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted(fields[4] for fields in lines if fields[2] == number)


def test_capture_to_a_device_and_no_mount_left_behind(source: Path, imgclone: Run) -> None:
    before = _mounts(source)
    assert before == [str(source)]
    r = imgclone("capture", "--mount", str(source), "-o", "/dev/null")
    assert r.returncode == 0, r.stderr.decode()
    assert not Path("/dev/null.partial").exists()
    assert Path("/dev/null").is_char_device()
    assert _mounts(source) == before, "the read-only view was not unmounted"


def test_a_file_the_converted_type_cannot_hold_is_refused_by_name(tmp_path: Path, imgclone: Run) -> None:
    """End to end: the capture records a 17 TiB sparse file; restore refuses xfs → ext4 before writing anything."""
    out, target = tmp_path / "big.mksysb", tmp_path / "t.img"
    with loop_fs(tmp_path, "xfs", name="big") as mnt:
        with open(mnt / "vm.img", "wb") as f:
            f.truncate(17 << 40)
        r = imgclone("capture", "--mount", str(mnt), "-o", str(out), "--no-progress")
        assert r.returncode == 0, r.stderr.decode()
    restore = ["restore", "-a", str(out), "-d", str(target), "--size", "2G", "--dry-run", "--convert"]
    r = imgclone(*restore, "xfs=ext4")
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"file {mnt}/vm.img is 17.0 TiB; ext4 (4 KiB blocks) holds files up to 16.0 TiB: keep it xfs" in err, err
    assert not target.exists()
    ok = imgclone(*restore, "xfs=btrfs")
    assert ok.returncode == 0 and b"content check" not in ok.stderr, ok.stderr.decode()


def test_a_prescan_finds_the_big_files_the_rules_keep(tmp_path: Path) -> None:
    """copy's prescan from this host (CaptureOptions.prescan): before the first manifest, through a read-only view of
    the mounted filesystem, the files over 1 GiB that the -e rules keep."""
    from imgclone.capture.common import CaptureOptions
    from imgclone.capture.host import capture_host

    rules = tmp_path / "exclude.list"
    rules.write_text("skip\n")
    with loop_fs(tmp_path, "xfs", name="big") as mnt:
        for name, size in (("vm.img", 3 << 30), ("skip.img", 5 << 30), ("small", 1 << 20)):
            with open(mnt / name, "wb") as f:
                f.truncate(size)
        opts = CaptureOptions(output=str(tmp_path / "a.mksysb"), mounts=(str(mnt),), exclude_list=str(rules),
                              progress=False, prescan=True)  # fmt: skip
        manifest = capture_host(opts).to_dict()
    [(fs_id, found)] = manifest["prescan"].items()
    assert found == {
        "largest_file": 3 << 30,
        "largest_file_path": f"{mnt}/vm.img",
        "most_links": 1,
        "most_links_path": f"{mnt}/vm.img",
    }, "skip.img is excluded, small is no candidate"
    [stream] = manifest["streams"]
    assert stream["fs"] == fs_id and stream["content"]["largest_file"] == 3 << 30, "the stream agrees"


def test_an_xattr_the_converted_type_cannot_hold_stops_the_restore(tmp_path: Path, imgclone: Run) -> None:
    """A host capture records no xattr sizes, so the plan only warns; restore then reads the stream's headers as they
    pass and stops at the 5000-byte xattr that ext4 (4 KiB blocks) cannot hold. GNU tar would drop it and exit 0."""
    out, target = tmp_path / "x.mksysb", tmp_path / "t.img"
    with loop_fs(tmp_path, "xfs", name="xa") as mnt:
        (mnt / "plain").write_bytes(b"fits\n")
        (mnt / "tagged").write_bytes(b"its xattr does not fit\n")
        subprocess.run(["setfattr", "-n", "user.big", "-v", "A" * 5000, str(mnt / "tagged")], check=True)
        r = imgclone("capture", "--mount", str(mnt), "-o", str(out), "--no-progress")
        assert r.returncode == 0, r.stderr.decode()
    r = imgclone("restore", "-a", str(out), "-d", str(target), "--size", "2G", "--convert", "xfs=ext4", "-P1",
                 "--no-progress")  # fmt: skip
    err = r.stderr.decode()
    assert "xattr sizes are not known" in err, "the plan's warning"
    assert r.returncode == 1 and "Traceback" not in err, err
    assert f"file {mnt}/tagged has an extended attribute user.big of 5000 bytes" in err, err
    assert "before tar had the file" in err
    assert not target.exists(), "the image it made is removed"
