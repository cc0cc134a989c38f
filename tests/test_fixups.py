"""The clone's fstab and friends follow the new UUIDs and converted types."""

from __future__ import annotations

from imgclone.fixups import replace_uuids, rewrite_fstab

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
