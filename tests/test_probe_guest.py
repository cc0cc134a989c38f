"""probe_guest and bootfacts: the pure parsers, probe_image on a fake handle, and one real appliance."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import pytest

from fixtures import small_image
from fixtures.small_image import GPT_LVM
from imgclone.errors import GuestfsError, ImgcloneError
from imgclone.fs.features import ext_features
from imgclone.guest.appliance import Appliance
from imgclone.model.layout import Disk, Filesystem, FsType, Layout, PartFlag, Partition, TableType, mount_key
from imgclone.probe.bootfacts import (
    BootFacts,
    boot_facts_guest,
    boot_facts_host,
    decide_firmware,
    default_grub_cmdline,
    fstab_root,
    grub_cfg_cmdline,
    is_efi_loader,
    is_systemd_boot,
)
from imgclone.probe.guest import GuestSource, mount_sources, probe_image, used_inodes
from imgclone.probe.guest_parsers import (
    DeviceIndex,
    FstabEntry,
    PartEntry,
    blkid_value,
    canonical_device,
    gpt_flags,
    lvm_uuid,
    mbr_flags,
    mountpoints,
    parse_fstab,
    part_entry,
    resolve_spec,
    split_mapper_name,
    xfs_features,
)
from tests.conftest import shared
from tests.fakes import FakeGuest, FakeRunner, fail

MiB = 1024 * 1024
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


# -- flags ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("guid", "flags"),
    [
        (ESP, (PartFlag.ESP,)),
        (ESP.lower(), (PartFlag.ESP,)),
        ("21686148-6449-6E6F-744E-656564454649", (PartFlag.BIOS_GRUB,)),
        ("E6D6D379-F507-44C2-A23C-238F2A3DF928", (PartFlag.LVM,)),
        ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", (PartFlag.SWAP,)),  # Linux swap (sfdisk --label gpt -T)
        ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", ()),  # Linux filesystem
    ],
)
def test_gpt_flags(guid: str, flags: tuple[PartFlag, ...]) -> None:
    assert gpt_flags(guid) == flags


@pytest.mark.parametrize(
    ("mbr_id", "bootable", "flags"),
    [
        (0x83, False, ()),
        (0x83, True, (PartFlag.BOOT,)),
        (0x8E, False, (PartFlag.LVM,)),
        (0x82, False, (PartFlag.SWAP,)),
        (0xEF, True, (PartFlag.BOOT, PartFlag.ESP)),
    ],
)
def test_mbr_flags(mbr_id: int, bootable: bool, flags: tuple[PartFlag, ...]) -> None:
    assert mbr_flags(mbr_id, bootable) == flags


def test_part_entry_gpt() -> None:
    info = {"PART_ENTRY_SCHEME": "gpt", "PART_ENTRY_TYPE": ESP.lower(), "PART_ENTRY_NAME": "EFI\\ System",
            "PART_ENTRY_UUID": "02B80E0D-D057-4DD2-AB7F-69E0F0B7AC93", "PART_ENTRY_NUMBER": "1"}  # fmt: skip
    assert part_entry(info) == PartEntry((PartFlag.ESP,), "EFI System", "02b80e0d-d057-4dd2-ab7f-69e0f0b7ac93", ESP)


def test_part_entry_dos() -> None:
    info = {"PART_ENTRY_SCHEME": "dos", "PART_ENTRY_TYPE": "0x8e", "PART_ENTRY_FLAGS": "0x80",
            "PART_ENTRY_UUID": "0a1b2c3d-02"}  # fmt: skip
    assert part_entry(info) == PartEntry((PartFlag.BOOT, PartFlag.LVM), uuid="0a1b2c3d-02")
    assert part_entry({"PART_ENTRY_SCHEME": "dos", "PART_ENTRY_TYPE": "0x5"}) == PartEntry((), extended=True)
    assert part_entry({"TYPE": "ext4"}) is None
    assert part_entry({"PART_ENTRY_SCHEME": "dos", "PART_ENTRY_TYPE": "junk"}) is None


def test_lvm_uuid_and_blkid_value() -> None:
    assert lvm_uuid("DcIY3FsFjVBLmzPOfAgABAPACwMIAjmh") == "DcIY3F-sFjV-BLmz-POfA-gABA-PACw-MIAjmh"
    assert lvm_uuid("DcIY3F-sFjV-BLmz-POfA-gABA-PACw-MIAjmh") == "DcIY3F-sFjV-BLmz-POfA-gABA-PACw-MIAjmh"
    assert lvm_uuid("short") == "short"
    assert blkid_value("my\\ label") == "my label"
    assert blkid_value("LVM2\\ 001") == "LVM2 001"


# -- fstab ---------------------------------------------------------------------------------------
FSTAB = """\
# /etc/fstab
  # indented comment
/dev/mapper/rootvg-root  /   ext4  errors=remount-ro 0 1
UUID=8670b5be-62b1-4a6a-819b-1d3906555849 /boot ext4 defaults 0 2
LABEL=My\\040Data  /srv/my\\040data/  xfs  noatime
/dev/vda5 none swap sw 0 0
tmpfs /tmp tmpfs
broken line
"""


def test_parse_fstab() -> None:
    assert parse_fstab(FSTAB) == [
        FstabEntry("/dev/mapper/rootvg-root", "/", "ext4", "errors=remount-ro"),
        FstabEntry("UUID=8670b5be-62b1-4a6a-819b-1d3906555849", "/boot", "ext4", "defaults"),
        FstabEntry("LABEL=My Data", "/srv/my data", "xfs", "noatime"),
        FstabEntry("/dev/vda5", "none", "swap", "sw"),
        FstabEntry("tmpfs", "/tmp", "tmpfs", "defaults"),
    ]
    assert parse_fstab("") == []
    assert parse_fstab("UUID=x // ext4 defaults\n")[0].file == "/"


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("rootvg-root", ("rootvg", "root")),
        ("my--vg-my--lv", ("my-vg", "my-lv")),
        ("a---b", ("a-", "b")),
        ("vg-lv-with-dashes", ("vg", "lv-with-dashes")),
        ("nodash", None),
        ("-lv", None),
        ("vg-", None),
    ],
)
def test_split_mapper_name(name: str, parts: tuple[str, str] | None) -> None:
    assert split_mapper_name(name) == parts


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("/dev/vda1", "/dev/sda1"),
        ("/dev/xvdb", "/dev/sdb"),
        ("/dev/hda3", "/dev/sda3"),
        ("/dev/sdaa12", "/dev/sdaa12"),
        ("/dev/mapper/rootvg-root", "/dev/rootvg/root"),
        ("/dev/mapper/my--vg-lv", "/dev/my-vg/lv"),
        ("/dev/mapper/control", "/dev/mapper/control"),
        ("/dev/rootvg/var", "/dev/rootvg/var"),
        ("/dev/nvme0n1p2", "/dev/nvme0n1p2"),
    ],
)
def test_canonical_device(path: str, canonical: str) -> None:
    assert canonical_device(path) == canonical


INDEX = DeviceIndex(
    devices=frozenset({"/dev/sda", "/dev/sda1", "/dev/sda2", "/dev/sda3", "/dev/rootvg/root", "/dev/rootvg/swap"}),
    uuids={"b752-f2da": "/dev/sda1", "8670b5be-62b1-4a6a-819b-1d3906555849": "/dev/sda2"},
    labels={"root": "/dev/rootvg/root", "my data": "/dev/sda2"},
    partuuids={"02b80e0d-d057-4dd2-ab7f-69e0f0b7ac93": "/dev/sda1"},
    partlabels={"esp": "/dev/sda1"},
)


@pytest.mark.parametrize(
    ("spec", "device"),
    [
        ("UUID=B752-F2DA", "/dev/sda1"),
        ("UUID=b752-f2da", "/dev/sda1"),
        ('UUID="8670b5be-62b1-4a6a-819b-1d3906555849"', "/dev/sda2"),
        ("LABEL=root", "/dev/rootvg/root"),
        ("LABEL=ROOT", None),  # labels are case-sensitive
        ("PARTUUID=02B80E0D-D057-4DD2-AB7F-69E0F0B7AC93", "/dev/sda1"),
        ("PARTLABEL=esp", "/dev/sda1"),
        ("/dev/disk/by-uuid/B752-F2DA", "/dev/sda1"),
        ("/dev/disk/by-label/my\\x20data", "/dev/sda2"),
        ("/dev/disk/by-partuuid/02b80e0d-d057-4dd2-ab7f-69e0f0b7ac93", "/dev/sda1"),
        ("/dev/mapper/rootvg-root", "/dev/rootvg/root"),
        ("/dev/rootvg/swap", "/dev/rootvg/swap"),
        ("/dev/vda3", "/dev/sda3"),
        ("/dev/sda9", None),
        ("UUID=0000-0000", None),
        ("/swapfile", None),
        ("tmpfs", None),
    ],
)
def test_resolve_spec(spec: str, device: str | None) -> None:
    assert resolve_spec(spec, INDEX) == device


# -- filesystem features -------------------------------------------------------------------------
def test_ext_features() -> None:
    tune = {"Filesystem features": "has_journal ext_attr extent 64bit", "Block size": "4096", "Inode size": "256"}
    assert ext_features(tune) == {"ext_features": ["has_journal", "ext_attr", "extent", "64bit"],
                                  "block_size": 4096, "inode_size": 256}  # fmt: skip
    assert ext_features({}) == {"ext_features": [], "block_size": 0, "inode_size": 0}


def _xfs_sb(version: int, features2: int = 0, ro_compat: int = 0, incompat: int = 0) -> bytes:
    sb = bytearray(512)
    sb[0:4] = b"XFSB"
    struct.pack_into(">H", sb, 100, version)
    struct.pack_into(">I", sb, 200, features2)
    struct.pack_into(">II", sb, 212, ro_compat, incompat)
    return bytes(sb)


def test_xfs_features() -> None:
    info = {"xfs_mntpoint": "/var", "xfs_blocksize": 4096, "xfs_inodesize": 512}
    v5 = xfs_features(info, _xfs_sb(0xB4A5, ro_compat=0x1 | 0x4, incompat=0x1 | 0x8))["xfs"]
    assert v5["blocksize"] == 4096 and v5["inodesize"] == 512 and "mntpoint" not in v5
    assert (v5["crc"], v5["ftype"], v5["finobt"], v5["reflink"], v5["bigtime"]) == (1, 1, 1, 1, 1)
    assert (v5["rmapbt"], v5["sparse"], v5["inobtcount"]) == (0, 0, 0)
    v4 = xfs_features({}, _xfs_sb(0xB4A4, features2=0x200))["xfs"]
    assert (v4["crc"], v4["ftype"], v4["finobt"]) == (0, 1, 0)
    assert xfs_features(info, b"\0" * 512) == {"xfs": {"blocksize": 4096, "inodesize": 512}}


def test_mountpoints_are_the_fstab_filesystems_on_the_drives() -> None:
    """What inspect_get_mountpoints answered: the root at /, and each fstab filesystem naming a device of the drives,
    by any spelling; swap, tmpfs, NFS and bind mounts name none."""
    index = DeviceIndex(devices=frozenset({"/dev/sda1", "/dev/sda2", "/dev/rootvg/root", "/dev/rootvg/var"}),
                        uuids={"11-22": "/dev/sda1"}, labels={"EFI": "/dev/sda2"})  # fmt: skip
    fstab = parse_fstab(
        "/dev/mapper/rootvg-root / ext4 defaults 0 1\n"
        "UUID=11-22 /boot ext4 defaults 0 2\n"
        "LABEL=EFI /boot/efi/ vfat umask=0077 0 1\n"
        "/dev/vda9 /data ext4 defaults 0 2\n"  # no such device on the drives
        "/dev/mapper/rootvg-var /var xfs defaults 0 2\n"
        "/dev/rootvg/swap none swap sw 0 0\n"
        "tmpfs /tmp tmpfs defaults 0 0\n"
        "server:/export /mnt/nfs nfs defaults 0 0\n"
        "/srv/a /mnt/bind none bind 0 0\n"
    )
    got = mountpoints("/dev/rootvg/root", fstab, index)
    assert got == {"/": "/dev/rootvg/root", "/boot": "/dev/sda1", "/boot/efi": "/dev/sda2", "/var": "/dev/rootvg/var"}


def test_mount_key_orders_parents_first() -> None:
    mps = ["/var/log", "/boot/efi", "/", "/var", "/boot", "/home"]
    assert sorted(mps, key=mount_key) == ["/", "/boot", "/home", "/var", "/boot/efi", "/var/log"]


# -- probe_image on a fake handle: msdos, extended + logical partitions, no LVM -------------------
MSDOS_PARTS = {1: (MiB, 255 * MiB), 2: (256 * MiB, 768 * MiB), 5: (257 * MiB, 127 * MiB), 6: (385 * MiB, 639 * MiB)}
MSDOS_BLKID = {
    "/dev/sda": {"PTTYPE": "dos", "PTUUID": "0a1b2c3d"},
    "/dev/sda1": {"TYPE": "ext4", "UUID": "1111", "LABEL": "boot", "PART_ENTRY_SCHEME": "dos",
                  "PART_ENTRY_TYPE": "0x83", "PART_ENTRY_FLAGS": "0x80", "PART_ENTRY_UUID": "0a1b2c3d-01"},
    "/dev/sda2": {"PART_ENTRY_SCHEME": "dos", "PART_ENTRY_TYPE": "0x5", "PART_ENTRY_UUID": "0a1b2c3d-02"},
    "/dev/sda5": {"TYPE": "swap", "UUID": "5555", "PART_ENTRY_SCHEME": "dos", "PART_ENTRY_TYPE": "0x82",
                  "PART_ENTRY_UUID": "0a1b2c3d-05"},
    "/dev/sda6": {"TYPE": "ext4", "UUID": "6666", "LABEL": "my\\ root", "PART_ENTRY_SCHEME": "dos",
                  "PART_ENTRY_TYPE": "0x83", "PART_ENTRY_UUID": "0a1b2c3d-06"},
}  # fmt: skip
MSDOS_FSTAB = "LABEL=my\\040root / ext4 errors=remount-ro 0 1\nUUID=1111 /boot ext4 nodev 0 2\n"


def msdos_guest(roots: list[str] | None = None, **replies: Any) -> FakeGuest:
    """Answers the libguestfs calls probe_image makes, for an msdos disk without LVM; `roots` are the filesystems
    that hold a system's root, and `replies` change the others."""
    roots = ["/dev/sda6"] if roots is None else roots
    g = FakeGuest()

    def mount_ro(dev: str, mountpoint: str) -> None:
        assert mountpoint == "/" or "/" in g.mounted, "parents first"

    def at_root() -> bool:
        return g.mounted.get("/", "") in roots

    g.replies = {
        "list_devices": ["/dev/sda"],
        "list_partitions": [f"/dev/sda{n}" for n in MSDOS_PARTS],
        "part_to_dev": "/dev/sda",
        "part_to_partnum": lambda part: int(part.removeprefix("/dev/sda")),
        "part_get_parttype": "msdos",
        "part_list": [{"part_num": n, "part_start": s, "part_size": z, "part_end": s + z - 1}
                      for n, (s, z) in MSDOS_PARTS.items()],
        "blockdev_getsize64": 1024 * MiB,
        "blockdev_getss": 512,
        "blkid": lambda dev: MSDOS_BLKID[dev],
        "mount_ro": mount_ro,
        "is_file": lambda path: path == "/etc/fstab" and at_root(),
        "is_dir": lambda path: path in ("/etc", "/usr/bin") and at_root(),
        "read_file": MSDOS_FSTAB.encode(),
        "statvfs": {"blocks": 1000, "bfree": 400, "frsize": 4096},
        "tune2fs_l": {"Filesystem features": "has_journal extent", "Block size": "4096", "Inode size": "256"},
        **replies,
    }  # fmt: skip
    return g


def test_probe_image_msdos_on_fake_guest() -> None:
    g = msdos_guest()
    layout, sources = probe_image(g, ["disk.img"])
    assert layout.disks == (Disk("disk-sda", "/dev/sda", 1024 * MiB, TableType.MSDOS, 512, "0a1b2c3d"),)
    assert [p.id for p in layout.partitions] == ["part-sda1", "part-sda5", "part-sda6"]  # extended one skipped
    p1 = layout.get("part-sda1")
    assert isinstance(p1, Partition) and p1.flags == (PartFlag.BOOT,) and p1.uuid == "0a1b2c3d-01"
    assert [(s.id, s.device, s.size, s.uuid) for s in layout.swaps] == [("swap-sda5", "part-sda5", 127 * MiB, "5555")]
    root = layout.filesystem_at("/")
    assert root is not None and (root.device, root.label, root.options) == ("part-sda6", "my root", "errors=remount-ro")
    assert (root.size, root.used, root.features["block_size"]) == (4096000, 2457600, 4096)
    boot = layout.filesystem_at("/boot")
    assert boot is not None and boot.options == "nodev"
    assert sources == [GuestSource("fs-root", "/dev/sda6", "/"), GuestSource("fs-boot", "/dev/sda1", "/boot")]
    assert g.mounted == {}


def parted_guest() -> FakeGuest:
    """blkid without PART_ENTRY_* values: the partition facts come from parted's calls."""
    blkid = {d: {k: v for k, v in i.items() if not k.startswith("PART_ENTRY")} for d, i in MSDOS_BLKID.items()}
    mbr = {1: (0x83, True), 2: (0x05, False), 5: (0x82, False), 6: (0x83, False)}
    return msdos_guest(blkid=lambda dev: blkid[dev], part_get_mbr_id=lambda dev, num: mbr[num][0],
                       part_get_bootable=lambda dev, num: mbr[num][1])  # fmt: skip


def test_probe_image_falls_back_to_parted() -> None:
    layout, _ = probe_image(parted_guest(), ["disk.img"])
    assert [(p.id, p.flags, p.uuid) for p in layout.partitions] == [
        ("part-sda1", (PartFlag.BOOT,), "0a1b2c3d-01"),
        ("part-sda5", (PartFlag.SWAP,), "0a1b2c3d-05"),
        ("part-sda6", (), "0a1b2c3d-06"),
    ]


def test_probe_image_unmounts_on_error() -> None:
    g = msdos_guest(statvfs=GuestfsError("statvfs: boom"))
    with pytest.raises(GuestfsError):
        probe_image(g, ["disk.img"])
    assert g.mounted == {}


@pytest.mark.parametrize(
    ("roots", "message"),
    [
        ([], "no operating system found in disk.img"),
        (["/dev/sda1", "/dev/sda6"], "several operating systems found in disk.img: /dev/sda1, /dev/sda6"),
    ],  # fmt: skip
)
def test_probe_image_needs_one_os(roots: list[str], message: str) -> None:
    with pytest.raises(ImgcloneError, match=message):
        probe_image(msdos_guest(roots), ["disk.img"])


def test_mount_sources_parents_first() -> None:
    g = msdos_guest()
    mount_sources(g, [GuestSource("fs-boot", "/dev/sda1", "/boot"), GuestSource("fs-root", "/dev/sda6", "/")])
    assert list(g.mounted) == ["/", "/boot"]


def test_used_inodes_of_the_mounted_sources() -> None:
    # statvfs of mounted filesystems: ext4 at /, vfat (no inode table: files 0) at /boot/efi
    stats = {"/": {"files": 65536, "ffree": 60000}, "/boot/efi": {"files": 0, "ffree": 0}}
    sources = [GuestSource("fs-root", "/dev/sda6", "/"), GuestSource("fs-boot-efi", "/dev/sda1", "/boot/efi")]
    assert used_inodes(FakeGuest({"statvfs": lambda path: stats[path]}), sources) == {"fs-root": 5536}


# -- boot facts ----------------------------------------------------------------------------------
def test_default_grub_cmdline() -> None:
    text = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet splash"\nGRUB_CMDLINE_LINUX="console=ttyS0"  # x\n'
    assert default_grub_cmdline(text) == "console=ttyS0 quiet splash"
    assert default_grub_cmdline("GRUB_CMDLINE_LINUX_DEFAULT='quiet'  # comment\n") == "quiet"
    assert default_grub_cmdline('GRUB_CMDLINE_LINUX=""\n') == ""
    assert default_grub_cmdline("GRUB_TIMEOUT=5\n") is None


def test_grub_cfg_cmdline() -> None:
    cfg = "set root=x\nmenuentry 'D' {\n\tlinux\t/vmlinuz-6.1 root=UUID=abc ro quiet\n\tinitrd /initrd\n}\n"
    assert grub_cfg_cmdline(cfg) == "root=UUID=abc ro quiet"
    assert grub_cfg_cmdline("\tlinuxefi /vmlinuz\n") == ""
    assert grub_cfg_cmdline("menuentry {}\n") is None


def test_fstab_root_and_loader_paths() -> None:
    assert fstab_root(FSTAB) == "/dev/mapper/rootvg-root"
    assert fstab_root("") == ""
    assert is_efi_loader("/EFI/debian/grubx64.efi") and is_efi_loader("/efi/BOOT/shimx64.EFI")
    assert not is_efi_loader("/EFI/debian/mmx64.efi") and not is_efi_loader("/EFI/grubx64.efi")
    assert is_systemd_boot("/EFI/systemd/systemd-bootx64.efi") and not is_systemd_boot("/EFI/debian/grubx64.efi")


@pytest.mark.parametrize(
    ("facts", "firmware"),
    [
        ({"esp": True, "efi_loader": True, "bios_disk": False, "bios_loader": False}, "uefi"),
        ({"esp": True, "efi_loader": True, "bios_disk": True, "bios_loader": False}, "uefi"),
        ({"esp": True, "efi_loader": False, "bios_disk": True, "bios_loader": True}, "bios"),
        ({"esp": True, "efi_loader": True, "bios_disk": True, "bios_loader": True}, "uefi+bios"),
        ({"esp": False, "efi_loader": False, "bios_disk": True, "bios_loader": True}, "bios"),
        ({"esp": True, "efi_loader": False, "bios_disk": False, "bios_loader": False}, "uefi"),
        ({"esp": False, "efi_loader": False, "bios_disk": False, "bios_loader": False}, "bios"),
    ],
)
def test_decide_firmware(facts: dict[str, bool], firmware: str) -> None:
    assert decide_firmware(**facts) == firmware


def boot_guest(files: dict[str, str], dirs: set[str], mbr: bytes = b"") -> FakeGuest:
    """A mounted guest tree for boot_facts_guest: files, directories and the disks' first sectors."""
    return FakeGuest({"pread_device": mbr}, files=files, dirs=dirs)


def _bios_layout() -> Layout:
    disk = Disk("disk-sda", "/dev/sda", 1024 * MiB, TableType.MSDOS)
    part = Partition("part-sda1", "disk-sda", 1, MiB, 1000 * MiB, (PartFlag.BOOT,), path="/dev/sda1")
    return Layout((disk,), (part,), filesystems=(Filesystem("fs-root", "part-sda1", FsType.EXT4, "/", 1000 * MiB),))


def test_boot_facts_guest_bios() -> None:
    files = {"/etc/fstab": "UUID=abc / ext4 defaults 0 1\n",
             "/boot/grub/grub.cfg": "menuentry x {\n linux /vmlinuz root=UUID=abc ro console=ttyS0\n}\n"}  # fmt: skip
    g = boot_guest(files, {"/boot/grub/i386-pc"})
    facts = boot_facts_guest(g, _bios_layout())
    assert facts == BootFacts("bios", "grub2", "root=UUID=abc ro console=ttyS0", "UUID=abc")
    # no i386-pc directory, but GRUB's boot code in the MBR
    facts = boot_facts_guest(boot_guest(files, set(), b"\xeb\x63GRUB \0Geom"), _bios_layout())
    assert (facts.firmware, facts.bootloader) == ("bios", "grub2")
    facts = boot_facts_guest(boot_guest({}, set()), _bios_layout())
    assert facts == BootFacts("bios", "none", "", "")


def test_boot_facts_host(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz root=/dev/sda2 ro quiet\n")
    runner = FakeRunner({("findmnt",): "/dev/sda2[/@]\n"})
    facts = boot_facts_host(runner, sysroot=tmp_path)
    assert facts == BootFacts("bios", "none", "BOOT_IMAGE=/vmlinuz root=/dev/sda2 ro quiet", "/dev/sda2")
    assert runner.calls == [["findmnt", "-n", "-o", "SOURCE", "/"]]
    (tmp_path / "sys/firmware/efi").mkdir(parents=True)
    (tmp_path / "boot/grub").mkdir(parents=True)
    (tmp_path / "boot/grub/grub.cfg").write_text("")
    facts = boot_facts_host(FakeRunner({("findmnt",): fail(1)}), sysroot=tmp_path)
    assert (facts.firmware, facts.bootloader, facts.root_device) == ("uefi", "grub2", "")
    assert facts.to_dict() == {"firmware": "uefi", "bootloader": "grub2", "root_device": "",
                               "cmdline": "BOOT_IMAGE=/vmlinuz root=/dev/sda2 ro quiet"}  # fmt: skip


# -- integration: one real appliance on the GPT + LVM image ---------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="session")
def gpt_lvm_image() -> Path:
    return small_image.gpt_lvm_image()


@pytest.fixture(scope="module")
def probed(gpt_lvm_image: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One appliance's probe of the image, once per run (conftest's shared(): the tests may run on two workers)."""

    def probe(_: Path) -> dict[str, Any]:
        before = _sha256(gpt_lvm_image)
        g = Appliance()
        g.add_drive(str(gpt_lvm_image), readonly=True, format="qcow2")
        with g:
            layout, sources = probe_image(g, [str(gpt_lvm_image)])
            mounted_after_probe = g.mounts()
            mount_sources(g, sources)
            facts = boot_facts_guest(g, layout)
            g.umount_all()
        return {"layout": layout, "sources": sources, "facts": facts, "sha_before": before,
                "mounted_after_probe": mounted_after_probe}  # fmt: skip

    return shared(tmp_path_factory, "gpt-lvm-probe", probe)


@pytest.mark.integration
def test_probe_partitions(probed: dict[str, Any]) -> None:
    layout: Layout = probed["layout"]
    assert [(d.id, d.path, d.table, d.size) for d in layout.disks] == [("disk-sda", "/dev/sda", TableType.GPT, 1 << 30)]
    parts = {p.number: p for p in layout.partitions}
    assert sorted(parts) == [1, 2, 3]
    assert parts[1].flags == (PartFlag.ESP,) and parts[1].type_uuid == ESP
    assert parts[2].flags == ()
    assert parts[3].flags == (PartFlag.LVM,)
    assert (parts[1].start, parts[1].size, parts[2].size) == (MiB, 64 * MiB, 128 * MiB)
    assert [parts[n].name for n in (1, 2, 3)] == ["esp", "boot", "lvm"]
    assert all(p.uuid and p.path == f"/dev/sda{p.number}" for p in parts.values())


@pytest.mark.integration
def test_probe_lvm(probed: dict[str, Any]) -> None:
    layout: Layout = probed["layout"]
    assert [(v.id, v.name, v.pvs, v.extent_size) for v in layout.vgs] == [
        ("vg-rootvg", "rootvg", ("part-sda3",), 4 * MiB)
    ]
    assert len(layout.vgs[0].uuid) == 38
    lvs = {lv.name: lv for lv in layout.lvs}
    assert {n: lv.size // MiB for n, lv in lvs.items()} == GPT_LVM["lvs"]
    assert all(lv.id == f"lv-rootvg-{lv.name}" and lv.vg == "vg-rootvg" and lv.uuid for lv in lvs.values())


@pytest.mark.integration
def test_probe_filesystems(probed: dict[str, Any]) -> None:
    layout: Layout = probed["layout"]
    by_mp = {f.mountpoint: f for f in layout.filesystems}
    assert {mp: str(f.type) for mp, f in by_mp.items()} == GPT_LVM["types"]
    assert {mp: f.label for mp, f in by_mp.items()} == {mp: GPT_LVM["labels"][mp] for mp in by_mp}
    assert {mp: f.device for mp, f in by_mp.items()} == {
        "/": "lv-rootvg-root", "/boot": "part-sda2", "/boot/efi": "part-sda1", "/var": "lv-rootvg-var"}  # fmt: skip
    assert [f.id for f in layout.mount_order()] == ["fs-root", "fs-boot", "fs-var", "fs-boot-efi"]
    for f in by_mp.values():
        assert f.uuid and 0 < f.used < f.size, f
    assert len(by_mp["/"].uuid) == 36 and len(by_mp["/boot/efi"].uuid) == 9  # vfat: XXXX-XXXX
    assert (by_mp["/"].options, by_mp["/var"].options) == ("errors=remount-ro", "defaults,noatime")
    assert by_mp["/boot/efi"].options == "umask=0077"
    assert "has_journal" in by_mp["/"].features["ext_features"]
    assert by_mp["/boot"].features["inode_size"] == 256
    xfs = by_mp["/var"].features["xfs"]
    assert (xfs["crc"], xfs["ftype"], xfs["blocksize"]) == (1, 1, 4096)
    assert probed["sources"] == [
        GuestSource("fs-root", "/dev/rootvg/root", "/"),
        GuestSource("fs-boot", "/dev/sda2", "/boot"),
        GuestSource("fs-var", "/dev/rootvg/var", "/var"),
        GuestSource("fs-boot-efi", "/dev/sda1", "/boot/efi"),
    ]


@pytest.mark.integration
def test_probe_swap_and_json(probed: dict[str, Any]) -> None:
    layout: Layout = probed["layout"]
    [swap] = layout.swaps
    assert (swap.id, swap.device, swap.size, swap.label) == ("swap-rootvg-swap", "lv-rootvg-swap", 64 * MiB, "swap")
    assert len(swap.uuid) == 36
    assert Layout.from_json(layout.to_json()) == layout
    assert probed["mounted_after_probe"] == []


@pytest.mark.integration
def test_boot_facts_of_image(probed: dict[str, Any]) -> None:
    facts: BootFacts = probed["facts"]
    assert facts.firmware.startswith("uefi")
    assert facts.bootloader == "grub2"
    assert facts.cmdline == "splash quiet"
    assert facts.root_device == "/dev/mapper/rootvg-root"


@pytest.mark.integration
def test_image_unchanged_by_probe(probed: dict[str, Any], gpt_lvm_image: Path) -> None:
    assert _sha256(gpt_lvm_image) == probed["sha_before"]
