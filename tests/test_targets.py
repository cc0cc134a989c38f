"""Target resolution and the refusals, with a fake host."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imgclone.errors import UsageError
from imgclone.host import images, targets
from tests.fakes import FakeRunner


def test_split_targets_accepts_aix_quoted_list() -> None:
    assert targets.split_targets(["a.qcow2 b.qcow2", "c.img"]) == ["a.qcow2", "b.qcow2", "c.img"]
    with pytest.raises(UsageError, match="given twice"):
        targets.split_targets(["a.img a.img"])
    with pytest.raises(UsageError, match="no target"):
        targets.split_targets([" "])


def test_new_images_get_their_format_from_the_name(tmp_path: Path) -> None:
    a, b = targets.resolve([str(tmp_path / "x.qcow2"), str(tmp_path / "y.img")], runner=FakeRunner())
    assert (a.format, a.exists, a.size) == ("qcow2", False, 0)
    assert (b.format, b.kind) == ("raw", "image")


def test_existing_image_is_probed(tmp_path: Path) -> None:
    img = tmp_path / "old.img"
    img.write_bytes(b"")
    info = json.dumps({"format": "qcow2", "virtual-size": 1 << 30})
    (t,) = targets.resolve([str(img)], runner=FakeRunner({("qemu-img", "info"): info}))
    assert (t.format, t.size, t.exists) == ("qcow2", 1 << 30, True)


def test_missing_directory_and_odd_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        targets.resolve([str(tmp_path / "no" / "x.img")], runner=FakeRunner())
    with pytest.raises(UsageError, match="neither a disk image file nor a block device"):
        targets.resolve([str(tmp_path)], runner=FakeRunner())
    with pytest.raises(UsageError, match="not a block device"):
        targets.resolve(["/dev/definitely-not-here"], runner=FakeRunner())


def lsblk(children: list[dict[str, object]] | None = None, **dev: object) -> str:
    d: dict[str, object] = {"name": "/dev/loop7", "type": "loop", "size": 1 << 30, "log-sec": 512}
    d.update({"mountpoints": [None], "fstype": None})
    d.update(dev)
    if children:
        d["children"] = children
    return json.dumps({"blockdevices": [d]})


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (lsblk(fstype="LVM2_member"), "holds an LVM physical volume"),
        (lsblk([{"name": "/dev/loop7p1", "type": "part", "mountpoints": [None]}]), "holds partitions"),
    ],
)
def test_occupied_devices_are_refused_unless_forced(reply: str, message: str) -> None:
    fake = FakeRunner({("lsblk",): reply, ("blkid",): ""})
    with pytest.raises(UsageError, match=message):
        targets._device("/dev/loop7", fake, False, {})
    assert targets._device("/dev/loop7", fake, True, {}).size == 1 << 30


def test_device_without_capacity_is_refused_even_with_force() -> None:
    fake = FakeRunner({("lsblk",): lsblk(size=0), ("blkid",): ""})
    for force in (False, True):
        with pytest.raises(UsageError, match=r"-d /dev/loop7: has no capacity \(0 bytes"):
            targets._device("/dev/loop7", fake, force, {})


def test_mounted_devices_are_refused_even_with_force() -> None:
    fake = FakeRunner({("lsblk",): lsblk([{"name": "/dev/loop7p1", "type": "part", "mountpoints": ["/mnt"]}]),
                       ("blkid",): ""})  # fmt: skip
    for force in (False, True):
        with pytest.raises(UsageError, match=r"is mounted \(/dev/loop7p1\).*--force does not override"):
            targets._device("/dev/loop7", fake, force, {})


def test_a_mounted_source_device_is_refused_and_an_image_file_is_not_looked_at(tmp_path: Path) -> None:
    """A capture or copy from a device reads its blocks: a mounted partition of it would be read half-written."""
    fake = FakeRunner({("lsblk",): lsblk([{"name": "/dev/loop7p2", "type": "part", "mountpoints": ["/srv"]}])})
    with pytest.raises(UsageError, match=r"^/dev/loop7: is mounted \(/dev/loop7p2\)") as e:
        targets.refuse_mounted_source("/dev/loop7", fake)
    assert "imgclone capture --mount DIR" in str(e.value.hint)
    targets.refuse_mounted_source("/dev/loop7", FakeRunner({("lsblk",): lsblk([{"name": "/dev/loop7p2",
                                  "type": "part", "mountpoints": [None]}])}))  # fmt: skip
    image = tmp_path / "disk.img"
    image.write_bytes(b"")
    untouched = FakeRunner()
    targets.check_source(str(image), untouched)
    assert untouched.calls == [], "an image file needs no lsblk"


def test_image_backing_a_loop_device_is_found(tmp_path: Path) -> None:
    sys_block = tmp_path / "block"
    (sys_block / "loop3" / "loop").mkdir(parents=True)
    (sys_block / "loop3" / "loop" / "backing_file").write_text(f"{tmp_path / 'disk.img'}\n")
    (sys_block / "loop4").mkdir()  # a loop device with nothing attached has no loop/ directory
    assert targets.loop_devices_of(str(tmp_path / "disk.img"), sys_block) == ["/dev/loop3"]
    assert targets.loop_devices_of(str(tmp_path / "other.img"), sys_block) == []


def test_running_root_is_refused_even_with_force() -> None:
    fake = FakeRunner(
        {("lsblk",): lsblk([{"name": "/dev/loop7p1", "type": "part", "mountpoints": ["/"]}]), ("blkid",): ""}
    )
    with pytest.raises(UsageError, match="holds running root"):
        targets._device("/dev/loop7", fake, True, {"/dev/loop7p1": "running root"})


def test_source_disk_is_refused_without_force() -> None:
    fake = FakeRunner({("lsblk",): lsblk(), ("blkid",): ""})
    with pytest.raises(UsageError, match="holds the source"):
        targets._device("/dev/loop7", fake, False, {"/dev/loop7": "the source"})
    assert targets._device("/dev/loop7", fake, True, {"/dev/loop7": "the source"}).kind == "device"


def test_blkid_signature_without_udev() -> None:
    fake = FakeRunner({("lsblk",): lsblk(), ("blkid",): "DEVNAME=/dev/loop7\nPTUUID=x\nPTTYPE=gpt\n"})
    with pytest.raises(UsageError, match="holds a gpt partition table"):
        targets._device("/dev/loop7", fake, False, {})
    fake = FakeRunner({("lsblk",): lsblk(), ("blkid",): "TYPE=LVM2_member\n"})
    with pytest.raises(UsageError, match="LVM physical volume"):
        targets._device("/dev/loop7", fake, False, {})


def test_an_image_to_read_gets_format_and_size_from_qemu_img(tmp_path: Path) -> None:
    """A source or a clone to verify: qemu-img names the format (a vmdk is refused, not read as raw)."""
    for name, fmt in (("a.qcow2", "qcow2"), ("b.img", "raw"), ("c.vmdk", "vmdk")):
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(tmp_path / name), "64M"], check=True)
    assert images.image_info(str(tmp_path / "a.qcow2")) == ("qcow2", 64 << 20)
    assert images.image_info(str(tmp_path / "b.img")) == ("raw", 64 << 20)
    with pytest.raises(UsageError, match="c.vmdk: image format vmdk is not supported"):
        images.image_info(str(tmp_path / "c.vmdk"))
