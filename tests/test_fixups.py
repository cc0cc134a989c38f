"""The clone's fstab and friends follow the new UUIDs and converted types."""

from __future__ import annotations

from imgclone.model.layout import (
    Disk,
    Filesystem,
    FsType,
    Layout,
    LogicalVolume,
    Partition,
    Swap,
    TableType,
    VolumeGroup,
)
from imgclone.phases.fixups import partuuid_map, replace_uuids, rewrite_fstab, rewrite_references
from imgclone.plan.types import Plan
from tests.fakes import FakeGuest

FSTAB = """\
# /etc/fstab: static file system information.
UUID=1111-aaaa  /          ext4  errors=remount-ro,noatime  0 1
UUID=2222-BBBB  /boot      ext4  defaults                   0 2
/dev/mapper/rootvg-var  /var  ext4  data=ordered,nodev,x-systemd.automount  0 2
UUID=3333       none       swap  sw                         0 0
proc            /proc      proc  defaults                   0 0
"""


def test_uuids_replaced_and_comments_kept() -> None:
    out = rewrite_fstab(FSTAB, {"1111-aaaa": "new-root", "2222-bbbb": "new-boot", "3333": "new-swap"}, {})
    assert out.startswith("# /etc/fstab: static file system information.\n")
    assert "UUID=new-root\t/\text4\terrors=remount-ro,noatime\t0\t1" in out
    assert "UUID=new-boot\t/boot" in out, "upper-case UUIDs in fstab must match too"
    assert "UUID=new-swap\tnone\tswap" in out
    assert "1111-aaaa" not in out and "proc\t/proc\tproc" in out


def test_converted_type_drops_options_it_rejects() -> None:
    out = rewrite_fstab(FSTAB, {}, {"/var": "xfs", "/": "xfs"})
    assert "/dev/mapper/rootvg-var\t/var\txfs\tnodev,x-systemd.automount\t0\t0" in out
    assert "UUID=1111-aaaa\t/\txfs\tnoatime\t0\t0" in out
    assert "/boot\text4\tdefaults\t0\t2" in out


def test_all_options_rejected_become_defaults() -> None:
    out = rewrite_fstab("UUID=x / ext4 errors=remount-ro 0 1\n", {}, {"/": "btrfs"})
    assert out == "UUID=x\t/\tbtrfs\tdefaults\t0\t1\n"


def test_ext_upgrade_keeps_every_option() -> None:
    """-T: ext3 → ext4 keeps errors=remount-ro and data=, as the plan (space.convert_filesystem) says."""
    out = rewrite_fstab("UUID=x / ext3 errors=remount-ro,data=journal 0 1\n", {}, {"/": "ext4"})
    assert out == "UUID=x\t/\text4\terrors=remount-ro,data=journal\t0\t1\n"


def test_replace_uuids_in_resume_and_grub() -> None:
    text = 'GRUB_CMDLINE_LINUX="resume=UUID=ABCD-1234 quiet"\n'
    assert replace_uuids(text, {"abcd-1234": "9999"}) == 'GRUB_CMDLINE_LINUX="resume=UUID=9999 quiet"\n'


def test_conversion_keeps_the_options_every_filesystem_takes_and_only_those() -> None:
    """One list for the fstab rewrite and the space/conversion checks (space.portable_options)."""
    line = "UUID=x /srv ext4 noatime,dirsync,context=system_u:object_r:var_t:s0,x-systemd.automount,user_xattr 0 2\n"
    out = rewrite_fstab(line, {}, {"/srv": "xfs"})
    assert out.split()[3] == "noatime,dirsync,context=system_u:object_r:var_t:s0,x-systemd.automount"


def _plan_with_partuuids() -> Plan:
    """A BIOS-like source (MBR: /boot on p1, a PV on p2 holding /, swap on p3) and its clone's renumbered table."""
    disk = Disk("disk-0", "/dev/sda", 4 << 30, TableType.MSDOS)
    src_parts = tuple(Partition(f"part-{n}", "disk-0", n, n << 20, 1 << 28, uuid=f"1234ABCD-0{n}") for n in (1, 2, 3))
    dst_disk = Disk("disk-t0", "/dev/sda", 8 << 30, TableType.MSDOS)
    dst_parts = tuple(Partition(f"part-t0-{n}", "disk-t0", n, n << 20, 1 << 29) for n in (1, 2, 3))
    vg = VolumeGroup("vg-rootvg", "rootvg", ("part-2",))
    lv = LogicalVolume("lv-root", "vg-rootvg", "root", 1 << 27)

    def layout(parts: tuple[Partition, ...], d: Disk, prefix: str) -> Layout:
        fss = (Filesystem("fs-boot", f"{prefix}1", FsType.EXT4, "/boot", 1 << 28),
               Filesystem("fs-root", "lv-root", FsType.EXT4, "/", 1 << 27))  # fmt: skip
        return Layout((d,), parts, (vg,), (lv,), fss, (Swap("swap-0", f"{prefix}3", 1 << 28),))

    return Plan(layout(src_parts, disk, "part-"), layout(dst_parts, dst_disk, "part-t0-"), (), (), ())


def test_partuuids_follow_the_new_table_through_the_filesystems_and_swaps_on_them() -> None:
    new = {"part-t0-1": "99998888-01", "part-t0-2": "99998888-02", "part-t0-3": "99998888-03"}
    mapping = partuuid_map(_plan_with_partuuids(), new)
    assert mapping == {"1234ABCD-01": "99998888-01", "1234ABCD-03": "99998888-03"}, "the PV's holds no filesystem"
    fstab = "PARTUUID=1234abcd-01 /boot ext4 defaults 0 2\nPARTUUID=1234abcd-03 none swap sw 0 0\n"
    out = rewrite_fstab(fstab, mapping, {})
    assert out == "PARTUUID=99998888-01\t/boot\text4\tdefaults\t0\t2\nPARTUUID=99998888-03\tnone\tswap\tsw\t0\t0\n"
    assert partuuid_map(_plan_with_partuuids(), {}) == {}, "no new PARTUUID read: nothing to rewrite"
    same = {"part-t0-1": "1234abcd-01"}
    assert partuuid_map(_plan_with_partuuids(), same) == {}, "an unchanged PARTUUID is left alone"


def test_the_clone_s_fstab_and_kernel_command_line_name_the_new_partuuids() -> None:
    clone = FakeGuest(files={"/etc/fstab": "PARTUUID=1234abcd-01 /boot ext4 defaults 0 2\n",
                             "/etc/default/grub": 'GRUB_CMDLINE_LINUX="resume=PARTUUID=1234ABCD-03"\n'})  # fmt: skip
    new = {"part-t0-1": "99998888-01", "part-t0-3": "99998888-03"}
    rewrite_references(clone, _plan_with_partuuids(), {}, new)
    assert clone.text("/etc/fstab") == "PARTUUID=99998888-01\t/boot\text4\tdefaults\t0\t2\n"
    assert clone.text("/etc/default/grub") == 'GRUB_CMDLINE_LINUX="resume=PARTUUID=99998888-03"\n'
