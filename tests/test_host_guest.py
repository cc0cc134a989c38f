"""Host mode's Guest: guest/rootpath.py (the clone's paths under a root, links resolved as in a chroot),
guest/host_tree.py (the file calls on a directory tree), guest/host_disks.py (the device calls as host tools, run
through a recording Runner; LVM held to the drives by --devices), host/reports.py (the tools' outputs parsed: real
outputs of this Debian 12 host) and guest/onhost.py (the /alt_inst claim).

Nothing here mounts or attaches: the tree is a tmp_path, the tools are canned replies and a fake /sys/block, but for
the tests marked integration that run parted, mkfs and tune2fs on a plain sparse file."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import get_type_hints

import pytest

from imgclone.errors import CommandError, GuestfsError
from imgclone.guest.host_disks import HostDisks, partition_node
from imgclone.guest.host_tree import HostTree, mounted_below
from imgclone.guest.interface import LvmLv, LvmPv, LvmVg, StatNs
from imgclone.guest.onhost import HostGuest, claim_root
from imgclone.guest.rootpath import MAX_LINKS, within
from imgclone.host.reports import LVM_ENV, parse_dumpe2fs, parse_lvm_report, parse_parted, parse_xfs_info
from imgclone.host.run import HOST, Argv, Result
from imgclone.model.layout import Disk, Layout, LogicalVolume, Partition, VolumeGroup
from imgclone.storage import build

MIB = 1 << 20

# -- real outputs of this host's tools (Debian 12: parted 3.5, xfsprogs 6.1, e2fsprogs 1.47, lvm 2.03.16), from a
# 300 MiB sparse file attached as /dev/loop0 ----------------------------------------------------------------------

PARTED_MSDOS = (
    "BYT;\n/dev/loop0:314572800B:loopback:512:512:msdos:Loopback device:;\n1:1048576B:105906175B:104857600B:::boot;\n"
    "2:105906176B:314572799B:208666624B:::lba;\n5:106954752B:209715199B:102760448B:::;\n"
)
PARTED_GPT = (
    "BYT;\n/dev/loop0:314572800B:loopback:512:512:gpt:Loopback device:;\n"
    "1:1048576B:105906175B:104857600B::myname:boot, esp;\n2:105906176B:209715199B:103809024B:::;\n"
)
PARTED_GPT_EMPTY = "BYT;\n/dev/loop0:314572800B:loopback:512:512:gpt:Loopback device:;\n"
PARTED_UNKNOWN = "BYT;\n/dev/loop0:314572800B:loopback:512:512:unknown:Loopback device:;\n"  # and exit code 1

XFS_INFO = """\
meta-data=/dev/loop0             isize=512    agcount=4, agsize=19200 blks
         =                       sectsz=512   attr=2, projid32bit=1
         =                       crc=1        finobt=1, sparse=1, rmapbt=0
         =                       reflink=1    bigtime=1 inobtcount=1 nrext64=0
data     =                       bsize=4096   blocks=76800, imaxpct=25
         =                       sunit=0      swidth=0 blks
naming   =version 2              bsize=4096   ascii-ci=0, ftype=1
log      =internal log           bsize=4096   blocks=16384, version=2
         =                       sectsz=512   sunit=0 blks, lazy-count=1
realtime =none                   extsz=4096   blocks=0, rtextents=0
"""
XFS_INFO_FIELDS = {
    "xfs_mntpoint": "/dev/loop0", "xfs_inodesize": 512, "xfs_agcount": 4, "xfs_agsize": 19200, "xfs_sectsize": 512,
    "xfs_attr": 2, "xfs_blocksize": 4096, "xfs_datablocks": 76800, "xfs_imaxpct": 25, "xfs_sunit": 0, "xfs_swidth": 0,
    "xfs_dirversion": 2, "xfs_dirblocksize": 4096, "xfs_cimode": 0, "xfs_logname": "internal log",
    "xfs_logblocksize": 4096, "xfs_logblocks": 16384, "xfs_logversion": 2, "xfs_logsectsize": 512, "xfs_logsunit": 0,
    "xfs_lazycount": 1, "xfs_rtname": "none", "xfs_rtextsize": 4096, "xfs_rtblocks": 0, "xfs_rtextents": 0,
}  # fmt: skip

TUNE2FS_L = """\
tune2fs 1.47.0 (5-Feb-2023)
Filesystem volume name:   lbl
Last mounted on:          <not available>
Filesystem UUID:          4e72cba5-838c-4923-9f6a-b4ed43567b77
Filesystem magic number:  0xEF53
Filesystem revision #:    1 (dynamic)
Filesystem features:      has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super \
large_file huge_file dir_nlink extra_isize metadata_csum
Filesystem flags:         signed_directory_hash\x20
Default mount options:    user_xattr acl
Filesystem state:         clean
Inode count:              76800
Block count:              76800
Reserved block count:     3840
Block size:               4096
Filesystem created:       Mon Dec  7 19:31:55 2026
Last mount time:          n/a
Check interval:           0 (<none>)
Inode size:\t          256
Directory Hash Seed:      f42350ce-7436-4b11-9061-ef7cec48ba59
Checksum type:            crc32c
"""

# `lvm pvs|vgs --reportformat json --units b --nosuffix -o <LvmPv's|LvmVg's fields>` of a VG on that loop device
PVS_JSON = """\
  {
      "report": [
          {
              "pv": [
                  {"pv_name":"/dev/loop7p1", "pv_uuid":"P6COMC-omOE-XYnY-sLte-mDd3-C4Wo-WpevM6", "pv_fmt":"lvm2", \
"pv_size":"310378496", "dev_size":"314572800", "pv_free":"310378496", "pv_used":"0", "pv_attr":"a--", \
"pv_pe_count":"74", "pv_pe_alloc_count":"0", "pv_tags":"", "pe_start":"1048576", "pv_mda_count":"1", \
"pv_mda_free":"520704"}
              ]
          }
      ]
  }
"""
VGS_JSON = """\
  {
      "report": [
          {
              "vg": [
                  {"vg_name":"altinst_rootvg", "vg_uuid":"uFfNfK-x410-qrO4-MaM3-Ihdj-CrLD-C2qfHS", "vg_fmt":"lvm2", \
"vg_attr":"wz--n-", "vg_size":"310378496", "vg_free":"310378496", "vg_sysid":"", "vg_extent_size":"4194304", \
"vg_extent_count":"74", "vg_free_count":"74", "max_lv":"0", "max_pv":"0", "pv_count":"1", "lv_count":"0", \
"snap_count":"0", "vg_seqno":"1", "vg_tags":"", "vg_mda_count":"1", "vg_mda_free":"520704"}
              ]
          }
      ]
  }
"""
# in the same shape (this host's kernel has no device-mapper to make an LV): one active linear LV, one inactive raid1
LVS_JSON = """\
  {
      "report": [
          {
              "lv": [
                  {"lv_name":"alt_root", "lv_uuid":"aB1cD2-eF3g-hI4j-kL5m-nO6p-qR7s-tU8vWx", "lv_attr":"-wi-a-----", \
"lv_major":"-1", "lv_minor":"-1", "lv_kernel_major":"254", "lv_kernel_minor":"0", "lv_size":"104857600", \
"seg_count":"1", "origin":"", "snap_percent":"", "copy_percent":"", "move_pv":"", "lv_tags":"", "mirror_log":"", \
"modules":""},
                  {"lv_name":"alt_mirror", "lv_uuid":"yZ9aB8-cD7e-fG6h-iJ5k-lM4n-oP3q-rS2tUv", "lv_attr":"rwi---r---", \
"lv_major":"-1", "lv_minor":"-1", "lv_kernel_major":"-1", "lv_kernel_minor":"-1", "lv_size":"8388608", \
"seg_count":"1", "origin":"", "snap_percent":"", "copy_percent":"100.00", "move_pv":"", "lv_tags":"t1", \
"mirror_log":"", "modules":"raid"}
              ]
          }
      ]
  }
"""


# -- a recording Runner ---------------------------------------------------------------------------------------------

Reply = str | tuple[str, int] | tuple[str, int, str]


class Tools:
    """A Runner: records each command's argv (and env) and answers from canned replies by the longest matching argv
    prefix: stdout text, or (stdout, exit code[, stderr]). A command no reply is given for succeeds printing
    nothing. As the host's runner does, a failure under check=True raises CommandError."""

    def __init__(self, replies: Mapping[tuple[str, ...], Reply] | None = None) -> None:
        self.replies: dict[tuple[str, ...], Reply] = dict(replies or {})
        self.calls: list[list[str]] = []
        self.envs: list[dict[str, str]] = []

    def run(self, argv: Argv, *, input: bytes | None = None, check: bool = True,
            env: Mapping[str, str] | None = None, timeout: float | None = None) -> Result:  # fmt: skip
        args = [os.fspath(a) for a in argv]
        self.calls.append(args)
        self.envs.append(dict(env or {}))
        matches = [p for p in self.replies if tuple(args[: len(p)]) == p]
        reply = self.replies[max(matches, key=len)] if matches else ""
        out, rc, err = (reply, 0, "") if isinstance(reply, str) else (*reply, "")[:3]
        if check and rc != 0:
            raise CommandError(args, rc, err)
        return Result(args, rc, out.encode(), err)


def make_sys_block(top: Path, parts: Mapping[str, Mapping[int, str]]) -> Path:
    """A /sys/block: each disk's directory, its partitions' directories with their `partition` and `dev` files."""
    for disk, numbered in parts.items():
        (top / disk / "queue").mkdir(parents=True)  # not a partition
        (top / disk / "dev").write_text("7:7\n")
        for number, majmin in numbered.items():
            node = os.path.basename(partition_node(f"/dev/{disk}", number))
            (top / disk / node).mkdir()
            (top / disk / node / "partition").write_text(f"{number}\n")
            (top / disk / node / "dev").write_text(f"{majmin}\n")
    return top


@pytest.fixture
def sys_block(tmp_path: Path) -> Path:
    """loop7 (partitions 1, 2 and 10), sdb (1), sdc (none); sda is the host's own disk, never one of the drives."""
    return make_sys_block(
        tmp_path / "sys_block",
        {"loop7": {1: "259:3", 2: "259:4", 10: "259:5"}, "sdb": {1: "8:17"}, "sdc": {}, "sda": {1: "8:1", 2: "8:2"}},
    )


@pytest.fixture
def nodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """make_nodes recorded instead of run (it would mknod in the host's /dev)."""
    made: list[str] = []
    monkeypatch.setattr(HostDisks, "make_nodes", lambda self, device: made.append(device))
    return made


LOOP = "/dev/loop7"
DRIVES_AND_PARTS = {"/dev/loop7", "/dev/sdb", "/dev/loop7p1", "/dev/loop7p2", "/dev/loop7p10", "/dev/sdb1"}


def disks(sys_block: Path, replies: Mapping[tuple[str, ...], Reply] | None = None) -> tuple[HostDisks, Tools]:
    tools = Tools(replies)
    return HostDisks(tools, [LOOP, "/dev/sdb"], sys_block), tools


# -- rootpath.within --------------------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A clone's tree: /etc, /run, /usr/lib, /lib → usr/lib (relative), /etc/resolv.conf → /run/x (absolute)."""
    top = tmp_path / "root"
    for d in ("etc", "run", "usr/lib", "home"):
        (top / d).mkdir(parents=True)
    (top / "lib").symlink_to("usr/lib")
    (top / "etc" / "resolv.conf").symlink_to("/run/x")
    return top


def test_within_follows_an_absolute_link_from_the_root(root: Path) -> None:
    """/etc/resolv.conf → /run/x is the clone's /run/x, never the host's /run/x."""
    assert within(str(root), "/etc/resolv.conf") == f"{root}/run/x"
    (root / "etc" / "sub").symlink_to("/usr")  # an absolute link in the middle of a path
    assert within(str(root), "/etc/sub/lib/file") == f"{root}/usr/lib/file"


def test_within_follows_relative_links_from_their_directory(root: Path) -> None:
    assert within(str(root), "/lib/modules") == f"{root}/usr/lib/modules"
    (root / "usr" / "lib" / "up").symlink_to("../../etc")
    assert within(str(root), "/lib/up/hosts") == f"{root}/etc/hosts"
    (root / "home" / "dotted").symlink_to("./../etc/./")
    assert within(str(root), "/home/dotted/passwd") == f"{root}/etc/passwd"


def test_within_never_climbs_above_the_root(root: Path) -> None:
    assert within(str(root), "/../../../etc/passwd") == f"{root}/etc/passwd"
    assert within(str(root), "/etc/../../..") == str(root)
    (root / "home" / "escape").symlink_to("../../../../../../../tmp")
    assert within(str(root), "/home/escape/f") == f"{root}/tmp/f"
    (root / "toroot").symlink_to("/")
    assert within(str(root), "/toroot/etc") == f"{root}/etc"


def test_within_follow_false_leaves_the_last_link_alone(root: Path) -> None:
    assert within(str(root), "/etc/resolv.conf", follow=False) == f"{root}/etc/resolv.conf"
    (root / "usr" / "lib" / "link").symlink_to("/etc")
    # the links on the way are followed all the same
    assert within(str(root), "/lib/link", follow=False) == f"{root}/usr/lib/link"
    assert within(str(root), "/lib/link") == f"{root}/etc"


def test_within_gives_up_on_a_link_loop(root: Path) -> None:
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("/a")
    with pytest.raises(GuestfsError, match="too many levels of symbolic links"):
        within(str(root), "/a")
    with pytest.raises(GuestfsError, match="too many levels"):
        within(str(root), "/a/x", follow=False)  # a loop in the middle is followed whatever `follow` says
    (root / "self").symlink_to("self")
    with pytest.raises(GuestfsError):
        within(str(root), "/self")


def test_within_follows_as_many_links_as_the_kernel(root: Path) -> None:
    """A chain of 40 links resolves (the kernel's MAXSYMLINKS), 41 is ELOOP."""
    assert MAX_LINKS == 40
    chain = root / "chain"
    chain.mkdir()
    (chain / "end").write_text("end")
    for n in range(41):
        (chain / f"l{n}").symlink_to(f"l{n + 1}" if n < 40 else "end")
    assert within(str(root), "/chain/l1") == f"{chain}/end"  # l1 → … → l40 → end: 40 links
    with pytest.raises(GuestfsError, match="too many levels"):
        within(str(root), "/chain/l0")  # 41


def test_within_refuses_a_relative_path(root: Path) -> None:
    with pytest.raises(GuestfsError, match="must be absolute"):
        within(str(root), "etc/passwd")


def test_write_and_read_through_an_absolute_link_stay_in_the_clone(root: Path) -> None:
    tree = HostTree(Tools(), str(root))
    host_name = f"/run/imgclone-test-{uuid.uuid4().hex}"
    (root / "etc" / "hostlink").symlink_to(host_name)
    tree.write("/etc/hostlink", b"nameserver 10.0.0.1\n")
    assert (root / host_name.lstrip("/")).read_bytes() == b"nameserver 10.0.0.1\n"
    assert not os.path.lexists(host_name), "wrote to the host's /run"
    assert tree.read_file("/etc/hostlink") == b"nameserver 10.0.0.1\n"
    assert (root / "etc" / "hostlink").is_symlink()  # the link is left as it was


def test_read_file_through_an_absolute_link_reads_the_clones_file(root: Path) -> None:
    """/etc/os-release → /usr/lib/os-release: the clone's, not this host's."""
    (root / "usr" / "lib" / "os-release").write_text("ID=clone\n")
    (root / "etc" / "os-release").symlink_to("/usr/lib/os-release")
    assert HostTree(Tools(), str(root)).read_file("/etc/os-release") == b"ID=clone\n"


def test_ls_find_and_find0(root: Path, tmp_path: Path) -> None:
    tree = HostTree(Tools(), str(root))
    (root / "home" / "u").mkdir()
    (root / "home" / "u" / "b").write_text("")
    (root / "home" / "a").write_text("")
    (root / "home" / "link").symlink_to("/etc")  # listed, not descended into
    (root / "etc" / "passwd").write_text("")
    assert tree.ls("/home") == ["a", "link", "u"]
    assert tree.find("/home") == ["/a", "/link", "/u", "/u/b"]
    assert tree.find("/lib") == []  # through the link, an empty directory
    out = tmp_path / "names"
    tree.find0("/", str(out))
    names = out.read_bytes()
    assert names.endswith(b"\0")
    listed = names[:-1].split(b"\0")
    assert listed == sorted(listed)
    assert {b"etc", b"etc/passwd", b"etc/resolv.conf", b"home/u/b", b"home/link", b"lib", b"usr/lib"} <= set(listed)
    assert not [n for n in listed if n.startswith(b"/") or n.startswith(b"./")]
    assert b"home/link/passwd" not in listed


def test_glob_expand_marks_directories_unless_asked_not_to(root: Path) -> None:
    tree = HostTree(Tools(), str(root))
    for name in ("ssh_host_rsa_key", "ssh_host_rsa_key.pub", "sshd_config"):
        (root / "etc" / name).write_text("")
    (root / "etc" / "ssh_host_dir").mkdir()
    assert tree.glob_expand("/etc/ssh_host_*") == [
        "/etc/ssh_host_dir/",
        "/etc/ssh_host_rsa_key",
        "/etc/ssh_host_rsa_key.pub",
    ]
    assert tree.glob_expand("/etc/ssh_host_*", directoryslash=True) == tree.glob_expand("/etc/ssh_host_*")
    assert "/etc/ssh_host_dir" in tree.glob_expand("/etc/ssh_host_*", directoryslash=False)
    assert tree.glob_expand("/etc/nothing*") == []
    assert tree.glob_expand("/*", directoryslash=False) == ["/etc", "/home", "/lib", "/run", "/usr"]


def test_glob_expand_follows_an_absolute_link_inside_the_clone(root: Path) -> None:
    """An absolute link of the clone (/data → /srv/data) leads to the clone's /srv/data, never the host's: glob_expand
    finds /data/file, as libguestfs chrooted in the clone does."""
    (root / "srv" / "data").mkdir(parents=True)
    (root / "srv" / "data" / "file").write_text("")
    (root / "data").symlink_to("/srv/data")
    assert HostTree(Tools(), str(root)).glob_expand("/data/*") == ["/data/file"]


def test_glob_expand_under_a_root_with_glob_characters(tmp_path: Path) -> None:
    """The root is no pattern: under /alt_inst.<name> of a target named `disk[1].img` the files are found."""
    top = tmp_path / "alt_inst.disk[1].img"
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "hosts").write_text("")
    assert HostTree(Tools(), str(top)).glob_expand("/etc/*") == ["/etc/hosts"]


def test_is_file_is_dir_is_symlink(root: Path) -> None:
    tree = HostTree(Tools(), str(root))
    (root / "etc" / "hosts").write_text("")
    (root / "etc" / "hosts.link").symlink_to("/etc/hosts")  # absolute: the clone's /etc/hosts
    (root / "etc" / "dangling").symlink_to("/nowhere")
    assert tree.is_file("/etc/hosts") and not tree.is_dir("/etc/hosts") and not tree.is_symlink("/etc/hosts")
    assert not tree.is_file("/etc/hosts.link")  # libguestfs: not followed unless asked
    assert tree.is_file("/etc/hosts.link", followsymlinks=True)
    assert not tree.is_file("/etc/hosts.link", followsymlinks=False)
    assert tree.is_symlink("/etc/hosts.link")
    assert tree.is_dir("/usr/lib") and not tree.is_dir("/lib")
    assert tree.is_dir("/lib", followsymlinks=True) and tree.is_symlink("/lib")
    assert tree.is_symlink("/etc/dangling") and not tree.is_file("/etc/dangling", followsymlinks=True)
    assert not tree.is_file("/missing") and not tree.is_dir("/missing") and not tree.is_symlink("/missing")
    assert tree.exists("/etc/hosts.link") and not tree.exists("/etc/dangling") and not tree.exists("/missing")


def test_links_made_and_replaced(root: Path) -> None:
    tree = HostTree(Tools(), str(root))
    wants = "/etc/systemd/system/getty.target.wants"
    tree.mkdir_p(wants)
    tree.ln_s("/lib/systemd/system/getty@.service", f"{wants}/getty@tty1.service")
    assert tree.readlink(f"{wants}/getty@tty1.service") == "/lib/systemd/system/getty@.service"
    with pytest.raises(GuestfsError, match="^ln_s /other: File exists$"):  # ln -s does not replace
        tree.ln_s("/other", f"{wants}/getty@tty1.service")
    tree.ln_sf("/lib/systemd/system/serial-getty@.service", f"{wants}/getty@tty1.service")
    assert os.readlink(root / wants.lstrip("/") / "getty@tty1.service") == "/lib/systemd/system/serial-getty@.service"
    (root / "etc" / "plain").write_text("x")
    tree.ln_sf("/etc/hosts", "/etc/plain")  # a file replaced by a link
    assert tree.readlink("/etc/plain") == "/etc/hosts"
    tree.write("/etc/one", b"1")
    tree.ln("/etc/one", "/etc/two")  # a hard link
    assert os.stat(root / "etc" / "one").st_ino == os.stat(root / "etc" / "two").st_ino


def test_rm_rf_and_rm_f(root: Path) -> None:
    tree = HostTree(Tools(), str(root))
    (root / "var" / "cache" / "pkg" / "sub").mkdir(parents=True)
    (root / "var" / "cache" / "pkg" / "sub" / "a.deb").write_text("")
    tree.rm_rf("/var/cache/pkg")
    assert not (root / "var" / "cache" / "pkg").exists() and (root / "var" / "cache").is_dir()
    tree.rm_rf("/var/cache/pkg")  # gone already: no error
    (root / "usr" / "lib" / "keep").write_text("")
    tree.rm_rf("/lib")  # a link to a directory: the link goes, not what it names
    assert not os.path.lexists(root / "lib") and (root / "usr" / "lib" / "keep").exists()
    tree.rm_f("/etc/no-such-file")  # no error
    tree.rm_f("/etc/resolv.conf")  # the link (to /run/x, which does not exist) goes
    assert not os.path.lexists(root / "etc" / "resolv.conf")
    (root / "run" / "y").write_text("")
    (root / "etc" / "y").symlink_to("/run/y")
    tree.rm_f("/etc/y")
    assert (root / "run" / "y").exists()


def test_chmod_mkdir_p_touch_truncate_mkfifo(root: Path) -> None:
    tree = HostTree(Tools(), str(root))
    tree.mkdir_p("/lib/a/b/c")  # through /lib → usr/lib
    assert (root / "usr" / "lib" / "a" / "b" / "c").is_dir()
    tree.mkdir_p("/lib/a/b/c")  # already there: no error
    tree.write("/usr/lib/a/script", b"#!/bin/sh\n")
    tree.chmod(0o751, "/lib/a/script")
    assert stat.S_IMODE(os.stat(root / "usr" / "lib" / "a" / "script").st_mode) == 0o751
    tree.chmod(0o4755, "/lib/a/script")  # setuid kept (no umask)
    assert stat.S_IMODE(os.stat(root / "usr" / "lib" / "a" / "script").st_mode) == 0o4755
    tree.touch("/etc/new")
    assert (root / "etc" / "new").read_bytes() == b""
    tree.truncate_size("/etc/new", 4096)
    assert (root / "etc" / "new").stat().st_size == 4096
    tree.mkfifo(0o600, "/run/fifo")
    assert stat.S_ISFIFO(os.lstat(root / "run" / "fifo").st_mode)


def test_lstatns_and_statns(root: Path) -> None:
    tree = HostTree(Tools(), str(root))
    (root / "run" / "x").write_bytes(b"12345")
    os.utime(root / "run" / "x", ns=(1_700_000_000_123_456_789, 1_600_000_000_987_654_321))
    st = tree.statns("/etc/resolv.conf")  # followed: the clone's /run/x
    assert stat.S_ISREG(st["st_mode"]) and st["st_size"] == 5
    assert (st["st_mtime_sec"], st["st_mtime_nsec"]) == (1_600_000_000, 987_654_321)
    assert (st["st_atime_sec"], st["st_atime_nsec"]) == (1_700_000_000, 123_456_789)
    assert st["st_ino"] == os.stat(root / "run" / "x").st_ino and st["st_nlink"] == 1
    lst = tree.lstatns("/etc/resolv.conf")  # the link itself
    assert stat.S_ISLNK(lst["st_mode"]) and lst["st_size"] == len("/run/x")
    assert lst["st_ino"] == os.lstat(root / "etc" / "resolv.conf").st_ino != st["st_ino"]
    assert set(st) == set(lst) == set(get_type_hints(StatNs)) and st["st_spare1"] == 0


def test_utimens_sets_a_links_own_times(root: Path) -> None:
    tree = HostTree(Tools(), str(root))
    tree.utimens("/etc/resolv.conf", 1_000, 5, 2_000, 7)
    lst = os.lstat(root / "etc" / "resolv.conf")
    assert (lst.st_atime_ns, lst.st_mtime_ns) == (1_000 * 10**9 + 5, 2_000 * 10**9 + 7)


def test_upload_and_download(root: Path, tmp_path: Path) -> None:
    tree = HostTree(Tools(), str(root))
    local = tmp_path / "resolv"
    local.write_bytes(b"nameserver 192.0.2.1\n")
    tree.upload(str(local), "/etc/resolv.conf")  # through the link: the clone's /run/x
    assert (root / "run" / "x").read_bytes() == b"nameserver 192.0.2.1\n"
    back = tmp_path / "back"
    tree.download("/etc/../run/x", str(back))
    assert back.read_bytes() == b"nameserver 192.0.2.1\n"


def test_a_missing_file_is_a_guestfs_error(root: Path) -> None:
    """A failure is a GuestfsError (as libguestfs's), which callers catch alone (phases/initramfs.py's clone_machine
    reading /bin/sh, probe/bootfacts.py's _guest_text), not the OSError of the host's call."""
    tree = HostTree(Tools(), str(root))
    with pytest.raises(GuestfsError):
        tree.read_file("/bin/sh")
    with pytest.raises(GuestfsError):
        tree.ls("/no/such/dir")


def test_tar_out_and_tar_in_keep_files_modes_and_links(root: Path, tmp_path: Path) -> None:
    """Real GNU tar: the tree out to a file, then into another clone's directory."""
    tree = HostTree(Tools(), str(root))
    tree.write("/etc/hosts", b"127.0.0.1 localhost\n")
    tree.chmod(0o600, "/etc/hosts")
    archive = tmp_path / "etc.tar"
    tree.tar_out("/etc", str(archive), numericowner=True, excludes=["./skip*"])
    (root / "etc" / "skipped").write_text("")  # after the tar: not in it either way
    other = tmp_path / "other"
    (other / "restored").mkdir(parents=True)
    HostTree(Tools(), str(other)).tar_in(str(archive), "/restored")
    assert (other / "restored" / "hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert stat.S_IMODE((other / "restored" / "hosts").stat().st_mode) == 0o600
    assert os.readlink(other / "restored" / "resolv.conf") == "/run/x"
    assert not (other / "restored" / "skipped").exists()
    with pytest.raises(GuestfsError, match="tar failed"):
        HostTree(Tools(), str(other)).tar_in(str(tmp_path / "etc.tar"), "/no-such-dir")
    with pytest.raises(GuestfsError, match="compress=rar"):
        tree.tar_out("/etc", str(archive), compress="rar")


# -- HostTree: mounts, commands, tools ---------------------------------------------------------------------------


def test_mount_calls_name_the_clones_mount_point(root: Path) -> None:
    tools = Tools()
    tree = HostTree(tools, str(root))
    (root / "boot").symlink_to("/usr/lib")  # absurd, but a link: followed inside the clone
    tree.mount("/dev/loop7p2", "/")
    tree.mount_ro("/dev/loop7p1", "/boot")
    assert tools.calls == [
        ["mount", "/dev/loop7p2", str(root)],
        ["mount", "-o", "ro", "/dev/loop7p1", f"{root}/usr/lib"],
    ]


def test_a_failed_mount_is_a_guestfs_error_with_the_tools_message(root: Path) -> None:
    failed = ("", 32, "mount: /x: wrong fs type, bad option, bad superblock on /dev/loop7p2.")
    tree = HostTree(Tools({("mount",): failed}), str(root))
    with pytest.raises(GuestfsError, match=r"mount failed with exit code 32: mount: /x: wrong fs type") as e:
        tree.mount("/dev/loop7p2", "/")
    assert isinstance(e.value.__cause__, CommandError)


def test_command_needs_something_mounted_at_the_clones_root(root: Path) -> None:
    tools = Tools()
    with pytest.raises(GuestfsError, match="nothing is mounted"):
        HostTree(tools, str(root)).command(["/bin/true"])
    assert tools.calls == []  # neither the chroot's /dev nor the program


def test_mounted_below_reads_mountinfo(tmp_path: Path) -> None:
    """The mounts at and below the root in mount order, escapes decoded; /alt_inst.sdb is not below /alt_inst."""
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        "60 22 7:7 / /alt_inst rw,relatime shared:30 - xfs /dev/loop7p2 rw\n"
        "61 60 7:7 / /alt_inst/boot rw,relatime shared:31 - ext4 /dev/loop7p1 rw\n"
        "62 60 0:55 / /alt_inst/my\\040data rw - tmpfs imgclone-run rw\n"
        "63 22 8:17 / /alt_inst.sdb rw,relatime shared:33 - ext4 /dev/sdb1 rw\n"
        "64 22 8:18 / /alt_instx rw - ext4 /dev/sdb2 rw\n"
    )
    assert mounted_below("/alt_inst", str(info)) == [
        ("/alt_inst", "/dev/loop7p2"),
        ("/alt_inst/boot", "/dev/loop7p1"),
        ("/alt_inst/my data", "imgclone-run"),
    ]
    assert mounted_below("/alt_inst.sdb", str(info)) == [("/alt_inst.sdb", "/dev/sdb1")]


def test_xfs_info_of_a_path_and_of_a_device(root: Path) -> None:
    tools = Tools({("xfs_info",): XFS_INFO})
    tree = HostTree(tools, str(root))
    assert tree.xfs_info("/") == XFS_INFO_FIELDS
    tree.xfs_info("/dev/loop7p2")
    assert tools.calls == [["xfs_info", str(root)], ["xfs_info", "/dev/loop7p2"]]


def test_xfs_growfs_and_fstrim_argv(root: Path) -> None:
    tools = Tools()
    tree = HostTree(tools, str(root))
    tree.xfs_growfs("/", datasec=True, logsec=False, maxpct=25)
    tree.fstrim("/", offset=0, minimumfreeextent=4096)
    assert tools.calls == [["xfs_growfs", "-d", "-m", "25", str(root)], ["fstrim", "-o", "0", "-m", "4096", str(root)]]


def test_what_the_host_does_not_do(root: Path) -> None:
    tree = HostTree(Tools(), str(root))
    for call in (lambda: tree.inspect_os(), lambda: tree.mount_local("/mnt"), lambda: tree.debug("ll", ["/"])):
        with pytest.raises(GuestfsError):
            call()


# -- HostDisks: drives and partitions ------------------------------------------------------------------------------


def test_partition_node_names_as_the_kernel_does() -> None:
    assert partition_node("/dev/sda", 1) == "/dev/sda1"
    assert partition_node("/dev/vdb", 12) == "/dev/vdb12"
    assert partition_node("/dev/loop0", 1) == "/dev/loop0p1"
    assert partition_node("/dev/nvme0n1", 3) == "/dev/nvme0n1p3"
    assert partition_node("/dev/mmcblk0", 2) == "/dev/mmcblk0p2"


def test_list_partitions_and_part_to_dev_from_sysfs(sys_block: Path) -> None:
    """Only the drives' partitions, numerically ordered (p2 before p10); the host's sda is not one of them."""
    g, tools = disks(sys_block)
    assert g.list_devices() == [LOOP, "/dev/sdb"]
    assert g.list_partitions() == ["/dev/loop7p1", "/dev/loop7p2", "/dev/loop7p10", "/dev/sdb1"]
    assert (g.part_to_dev("/dev/loop7p10"), g.part_to_partnum("/dev/loop7p10")) == (LOOP, 10)
    assert (g.part_to_dev("/dev/sdb1"), g.part_to_partnum("/dev/sdb1")) == ("/dev/sdb", 1)
    with pytest.raises(GuestfsError, match="not a partition of the drives"):
        g.part_to_dev("/dev/sda1")
    assert HostDisks(tools, ["/dev/sdc"], sys_block).list_partitions() == []
    assert g.drive_path(1) == "/dev/sdb"
    assert tools.calls == []


def test_part_init_and_part_add_argv(sys_block: Path, nodes: list[str]) -> None:
    g, tools = disks(sys_block)
    g.part_init(LOOP, "msdos")
    g.part_add(LOOP, "p", 2048, 206847)
    g.part_add(LOOP, "e", 206848, 614399)
    g.part_add(LOOP, "l", 208896, 409599)
    g.part_add(LOOP, "primary", 614400, 614401)
    assert tools.calls == [
        ["parted", "-s", "--", LOOP, "mklabel", "msdos"],
        ["parted", "-s", "--", LOOP, "mkpart", "primary", "2048s", "206847s"],
        ["parted", "-s", "--", LOOP, "mkpart", "extended", "206848s", "614399s"],
        ["parted", "-s", "--", LOOP, "mkpart", "logical", "208896s", "409599s"],
        ["parted", "-s", "--", LOOP, "mkpart", "primary", "614400s", "614401s"],
    ]
    assert nodes == [LOOP] * 5  # the new partitions' nodes after each change
    with pytest.raises(GuestfsError, match="expected p, l or e"):
        g.part_add(LOOP, "x", 1, 2)
    assert len(tools.calls) == 5


def test_part_disk_ends_before_a_gpt_backup(sys_block: Path, nodes: list[str]) -> None:
    g, tools = disks(sys_block)
    g.part_disk(LOOP, "gpt")
    g.part_disk("/dev/sdb", "msdos")
    assert [c[4:] for c in tools.calls] == [
        ["mklabel", "gpt"], ["mkpart", "primary", "2048s", "-34s"], ["mklabel", "msdos"],
        ["mkpart", "primary", "2048s", "-1s"],
    ]  # fmt: skip


def test_part_set_calls_use_sfdisk_then_tell_the_kernel(sys_block: Path, nodes: list[str]) -> None:
    """Each setter: one sfdisk, then `partx --update` first among the partx runs that tell the kernel (whose failure
    is tolerated: the table is written), then the partitions' nodes."""
    g, tools = disks(sys_block, {("partx",): ("", 1, "partx: /dev/loop7: failed to read partition table")})
    esp = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    g.part_set_gpt_type(LOOP, 1, esp)
    g.part_set_name(LOOP, 2, "root fs")
    g.part_set_mbr_id("/dev/sdb", 1, 0x0B)
    g.part_set_mbr_id("/dev/sdb", 1, 0xEF)
    runs: list[list[list[str]]] = []
    for call in tools.calls:
        if call[0] == "sfdisk":
            runs.append([call])
        else:
            runs[-1].append(call)
    assert [run[0] for run in runs] == [
        ["sfdisk", "--part-type", LOOP, "1", esp],
        ["sfdisk", "--part-label", LOOP, "2", "root fs"],
        ["sfdisk", "--part-type", "/dev/sdb", "1", "0b"],
        ["sfdisk", "--part-type", "/dev/sdb", "1", "ef"],
    ]
    for run in runs:
        device = run[0][2]
        assert run[1] == ["partx", "--update", device]
        assert all(c[0] == "partx" and c[-1] == device for c in run[1:])
    assert nodes == [LOOP, LOOP, "/dev/sdb", "/dev/sdb"]


def test_part_get_calls_read_sfdisk(sys_block: Path) -> None:
    g, tools = disks(
        sys_block,
        {
            ("sfdisk", "--part-type", "/dev/sdb"): "ef\n",
            ("sfdisk", "--part-type", LOOP): "c12a7328-f81f-11d2-ba4b-00a0c93ec93b\n",
            ("sfdisk", "--part-uuid"): "0e7f5f4b-3a1d-4d0e-9d8a-6f1d1b0f2a11\n",
            ("sfdisk", "--part-label"): "myname\n",
        },
    )
    assert g.part_get_mbr_id("/dev/sdb", 1) == 0xEF
    assert g.part_get_gpt_type(LOOP, 1) == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    assert g.part_get_gpt_guid(LOOP, 1) == "0E7F5F4B-3A1D-4D0E-9D8A-6F1D1B0F2A11"
    assert g.part_get_name(LOOP, 1) == "myname"
    assert tools.calls[0] == ["sfdisk", "--part-type", "/dev/sdb", "1"]


def test_part_list_and_parttype_from_parted(sys_block: Path) -> None:
    g, tools = disks(sys_block, {("parted", "-m", "-s", "--", LOOP): PARTED_MSDOS})
    assert g.part_get_parttype(LOOP) == "msdos"
    assert g.part_list(LOOP) == [
        {"part_num": 1, "part_start": 1048576, "part_end": 105906175, "part_size": 104857600},
        {"part_num": 2, "part_start": 105906176, "part_end": 314572799, "part_size": 208666624},
        {"part_num": 5, "part_start": 106954752, "part_end": 209715199, "part_size": 102760448},
    ]
    assert g.part_get_bootable(LOOP, 1) and not g.part_get_bootable(LOOP, 2) and not g.part_get_bootable(LOOP, 9)
    assert tools.calls[0] == ["parted", "-m", "-s", "--", LOOP, "unit", "b", "print"]
    gpt, _ = disks(sys_block, {("parted", "-m"): PARTED_GPT})
    assert gpt.part_get_parttype(LOOP) == "gpt"
    assert [p["part_num"] for p in gpt.part_list(LOOP)] == [1, 2]
    assert gpt.part_get_bootable(LOOP, 1)
    empty, _ = disks(sys_block, {("parted", "-m"): PARTED_GPT_EMPTY})
    assert empty.part_list(LOOP) == [] and empty.part_get_parttype(LOOP) == "gpt"


def test_a_disk_without_a_table_is_a_guestfs_error(sys_block: Path) -> None:
    g, _ = disks(sys_block, {("parted", "-m"): PARTED_UNKNOWN})
    with pytest.raises(GuestfsError, match="unrecognised disk label"):
        g.part_get_parttype(LOOP)
    with pytest.raises(GuestfsError):
        g.part_list(LOOP)
    # as parted really answers: the same lines, and exit code 1
    g, _ = disks(sys_block, {("parted", "-m"): (PARTED_UNKNOWN, 1, "Error: /dev/loop7: unrecognised disk label")})
    with pytest.raises(GuestfsError, match="parted failed with exit code 1: Error: /dev/loop7: unrecognised disk"):
        g.part_get_parttype(LOOP)


def test_a_failing_tool_is_a_guestfs_error_naming_it(sys_block: Path) -> None:
    g, _ = disks(sys_block, {("wipefs",): ("", 1, "wipefs: error: /dev/loop7: probing initialization failed: busy")})
    with pytest.raises(GuestfsError) as e:
        g.wipefs(LOOP)
    assert e.value.message == "wipefs failed with exit code 1: wipefs: error: /dev/loop7: probing initialization " \
        "failed: busy"  # fmt: skip
    g, tools = disks(sys_block, {("blockdev",): "314572800\n"})
    assert g.blockdev_getsize64(LOOP) == 314572800
    assert tools.calls == [["blockdev", "--getsize64", LOOP]]


# -- HostDisks: LVM -------------------------------------------------------------------------------------------------


def lvm_devices(call: list[str]) -> set[str]:
    assert call[0] == "lvm" and call[2] == "--devices", call
    return set(call[3].split(","))


def test_lvm_calls_are_held_to_the_drives_and_their_partitions(sys_block: Path) -> None:
    """pvcreate, vgcreate, lvcreate, vgchange: each with --devices naming the drives and their partitions, no
    other (not the host's sda), and LVM's warnings of inherited descriptors silenced."""
    g, tools = disks(sys_block)
    g.pvcreate("/dev/loop7p2")
    g.vgcreate("altinst_rootvg", ["/dev/loop7p2", "/dev/sdb1"])
    g.lvcreate("alt_root", "altinst_rootvg", 1024)
    g.vg_activate(True, ["altinst_rootvg"])
    g.vg_activate_all(False)
    g.pvremove("/dev/sdb1")
    assert [c[:2] + c[4:] for c in tools.calls] == [
        ["lvm", "pvcreate", "--force", "--force", "--yes", "/dev/loop7p2"],
        ["lvm", "vgcreate", "--yes", "altinst_rootvg", "/dev/loop7p2", "/dev/sdb1"],
        ["lvm", "lvcreate", "--yes", "-L", "1024m", "-n", "alt_root", "altinst_rootvg"],
        ["lvm", "vgchange", "--activate", "y", "altinst_rootvg"],
        ["lvm", "vgchange", "--activate", "n"],
        ["lvm", "pvremove", "--force", "--force", "--yes", "/dev/sdb1"],
    ]
    for call in tools.calls:
        assert lvm_devices(call) == DRIVES_AND_PARTS
    assert all(env == LVM_ENV for env in tools.envs)


def test_lvm_devices_of_a_drive_without_partitions(sys_block: Path) -> None:
    tools = Tools()
    HostDisks(tools, ["/dev/sdc"], sys_block).vgs()
    assert tools.calls == [["lvm", "vgs", "--devices", "/dev/sdc", "--noheadings", "-o", "vg_name"]]


def test_lvm_names_and_uuids(sys_block: Path) -> None:
    g, tools = disks(
        sys_block,
        {
            ("lvm", "vgs"): "  altinst_rootvg\n  altinst_datavg\n",
            ("lvm", "lvs"): "  altinst_rootvg alt_root\n  altinst_rootvg alt_var\n",
            ("lvm", "pvs"): "  P6COMC-omOE-XYnY-sLte-mDd3-C4Wo-WpevM6\n",
        },
    )
    assert g.vgs() == ["altinst_rootvg", "altinst_datavg"]
    assert g.lvs() == ["/dev/altinst_rootvg/alt_root", "/dev/altinst_rootvg/alt_var"]
    assert g.pvuuid("/dev/loop7p2") == "P6COMComOEXYnYsLtemDd3C4WoWpevM6"
    assert g.vgpvuuids("altinst_rootvg") == ["P6COMComOEXYnYsLtemDd3C4WoWpevM6"]
    assert tools.calls[2][4:] == ["--noheadings", "-o", "pv_uuid", "/dev/loop7p2"]
    assert tools.calls[3][4:] == ["--noheadings", "-o", "pv_uuid", "--select", "vg_name=altinst_rootvg"]


def report_fields(call: list[str]) -> list[str]:
    assert call[4:10] == ["--reportformat", "json", "--units", "b", "--nosuffix", "-o"], call
    return call[10].split(",")


def test_pvs_full_and_vgs_full_convert_lvms_json(sys_block: Path) -> None:
    g, tools = disks(sys_block, {("lvm", "pvs"): PVS_JSON, ("lvm", "vgs"): VGS_JSON})
    (pv,) = g.pvs_full()
    assert pv == {
        "pv_name": "/dev/loop7p1", "pv_uuid": "P6COMComOEXYnYsLtemDd3C4WoWpevM6", "pv_fmt": "lvm2",
        "pv_size": 310378496, "dev_size": 314572800, "pv_free": 310378496, "pv_used": 0, "pv_attr": "a--",
        "pv_pe_count": 74, "pv_pe_alloc_count": 0, "pv_tags": "", "pe_start": 1048576, "pv_mda_count": 1,
        "pv_mda_free": 520704,
    }  # fmt: skip
    (vg,) = g.vgs_full()
    assert vg["vg_uuid"] == "uFfNfKx410qrO4MaM3IhdjCrLDC2qfHS" and len(vg["vg_uuid"]) == 32
    assert (vg["vg_name"], vg["vg_extent_size"], vg["vg_extent_count"], vg["vg_sysid"]) == (
        "altinst_rootvg", 4194304, 74, "")  # fmt: skip
    assert set(vg) == set(get_type_hints(LvmVg))
    assert report_fields(tools.calls[0]) == list(get_type_hints(LvmPv))
    assert report_fields(tools.calls[1]) == list(get_type_hints(LvmVg))
    assert all(lvm_devices(c) == DRIVES_AND_PARTS for c in tools.calls)


def test_lvs_full_converts_numbers_uuids_and_percents(sys_block: Path) -> None:
    g, tools = disks(sys_block, {("lvm", "lvs"): LVS_JSON})
    root, mirror = g.lvs_full()
    assert root["lv_uuid"] == "aB1cD2eF3ghI4jkL5mnO6pqR7stU8vWx"
    assert (root["lv_major"], root["lv_kernel_major"], root["lv_kernel_minor"]) == (-1, 254, 0)
    assert (root["lv_size"], root["seg_count"]) == (104857600, 1)
    assert root["snap_percent"] is None and root["copy_percent"] is None
    assert mirror["copy_percent"] == 100.0 and mirror["snap_percent"] is None
    assert (mirror["lv_tags"], mirror["modules"], mirror["lv_kernel_major"]) == ("t1", "raid", -1)
    assert set(root) == set(get_type_hints(LvmLv))
    assert report_fields(tools.calls[0]) == list(get_type_hints(LvmLv))


def test_a_report_that_is_not_json_is_no_rows(sys_block: Path) -> None:
    g, _ = disks(sys_block, {("lvm", "pvs"): "  WARNING: something\n"})
    assert g.pvs_full() == []
    assert parse_lvm_report(PVS_JSON, "vg") == []
    assert parse_lvm_report(VGS_JSON, "vg")[0]["vg_name"] == "altinst_rootvg"


def test_list_filesystems_of_the_drives(sys_block: Path) -> None:
    """Whole drives without partitions, partitions, then LVs; a device blkid finds nothing on (exit code 2) is
    "unknown"; a failing lvm leaves the LVs out."""
    tools = Tools({
        ("blkid",): ("", 2),
        ("blkid", "-c", "/dev/null", "-o", "value", "-s", "TYPE", "/dev/loop7p1"): "vfat\n",
        ("blkid", "-c", "/dev/null", "-o", "value", "-s", "TYPE", "/dev/loop7p2"): "LVM2_member\n",
        ("blkid", "-c", "/dev/null", "-o", "value", "-s", "TYPE", "/dev/altinst_rootvg/alt_root"): "ext4\n",
        ("lvm", "lvs"): "  altinst_rootvg alt_root\n",
    })  # fmt: skip
    g = HostDisks(tools, [LOOP, "/dev/sdc"], sys_block)
    assert g.list_filesystems() == {
        "/dev/sdc": "unknown", "/dev/loop7p1": "vfat", "/dev/loop7p2": "LVM2_member", "/dev/loop7p10": "unknown",
        "/dev/altinst_rootvg/alt_root": "ext4",
    }  # fmt: skip
    tools.replies[("lvm", "lvs")] = ("", 5, "  Volume group not found")
    assert "/dev/altinst_rootvg/alt_root" not in g.list_filesystems()


def test_create_lvm_with_the_sources_extent_size_is_held_to_the_drives(tmp_path: Path, sys_block: Path) -> None:
    """storage/build.py's create_lvm makes a VG whose extent size is not 4 MiB (and an LV of extents below 1 MiB)
    with appliance_command(["lvm", "vgcreate", ...]): on the host it gets --devices too, as every LVM call there
    (else LVM would scan every disk of the host)."""
    tools = Tools()
    g = HostGuest([], tools, str(tmp_path / "alt_inst"), sys_block)
    g._devices.append(LOOP)  # as launch() does for a block device
    disk = Disk("disk-a", "/dev/sda", 1024 * MIB)
    part = Partition("p1", "disk-a", 1, MIB, 1000 * MIB)
    vg = VolumeGroup("vg-a", "altinst_a", ("p1",), 32 * MIB)
    layout = Layout((disk,), (part,), (vg,), (LogicalVolume("lv-a", "alt_a", "vg-a", 4 * 32 * MIB),))
    build.create_lvm(g, build.Devices(layout, {"disk-a": LOOP}))
    assert [c[1] for c in tools.calls] == ["pvcreate", "vgcreate", "lvcreate"]
    for call in tools.calls:
        assert call[2:4] == ["--devices", f"{LOOP},{LOOP}p1,{LOOP}p2,{LOOP}p10"], f"lvm without --devices: {call}"
    g.close()


# -- HostDisks: filesystems -----------------------------------------------------------------------------------------


def test_mkfs_argv_per_type(sys_block: Path) -> None:
    g, tools = disks(sys_block)
    g.mkfs("ext4", "/dev/loop7p2", blocksize=4096, features="^metadata_csum,^64bit", inode=256, label="root")
    g.mkfs("ext3", "/dev/loop7p2")
    g.mkfs("xfs", "/dev/loop7p2", blocksize=4096, sectorsize=4096, label="var")
    g.mkfs("xfs", "/dev/loop7p2", inode=512)  # xfs takes no inode size here
    g.mkfs("vfat", "/dev/loop7p1", label="ESP")
    g.mkfs("btrfs", "/dev/sdb1", sectorsize=4096, label="data")
    g.mkswap("/dev/sdb1", label="swap0", uuid="0e7f5f4b-3a1d-4d0e-9d8a-6f1d1b0f2a11")
    g.mkswap("/dev/sdb1")
    assert tools.calls == [
        ["mkfs", "-t", "ext4", "-F", "-b", "4096", "-O", "^metadata_csum,^64bit", "-I", "256", "-L", "root",
         "/dev/loop7p2"],
        ["mkfs", "-t", "ext3", "-F", "/dev/loop7p2"],
        ["mkfs", "-t", "xfs", "-f", "-b", "size=4096", "-s", "size=4096", "-L", "var", "/dev/loop7p2"],
        ["mkfs", "-t", "xfs", "-f", "/dev/loop7p2"],
        ["mkfs", "-t", "vfat", "-I", "-n", "ESP", "/dev/loop7p1"],
        ["mkfs", "-t", "btrfs", "-f", "-s", "4096", "-L", "data", "/dev/sdb1"],
        ["mkswap", "-f", "-L", "swap0", "-U", "0e7f5f4b-3a1d-4d0e-9d8a-6f1d1b0f2a11", "/dev/sdb1"],
        ["mkswap", "-f", "/dev/sdb1"],
    ]  # fmt: skip


def test_vfs_type_and_uuid_from_blkid(sys_block: Path) -> None:
    g, tools = disks(
        sys_block,
        {
            ("blkid", "-c", "/dev/null", "-o", "value", "-s", "TYPE", "/dev/loop7p1"): "ext4\n",
            ("blkid", "-c", "/dev/null", "-o", "value", "-s", "TYPE", "/dev/loop7p2"): ("", 2),
            ("blkid", "-c", "/dev/null", "-o", "value", "-s", "UUID"): "4e72cba5-838c-4923-9f6a-b4ed43567b77\n",
            ("blkid", "-c", "/dev/null", "-o", "value", "-s", "TYPE", "/dev/sdb1"): ("", 4, "blkid: bad usage"),
        },
    )
    assert g.vfs_type("/dev/loop7p1") == "ext4"
    assert g.vfs_type("/dev/loop7p2") == ""  # nothing on it
    assert g.vfs_uuid("/dev/loop7p1") == "4e72cba5-838c-4923-9f6a-b4ed43567b77"
    with pytest.raises(GuestfsError, match="blkid /dev/sdb1: blkid: bad usage"):
        g.vfs_type("/dev/sdb1")
    assert tools.calls[0] == ["blkid", "-c", "/dev/null", "-o", "value", "-s", "TYPE", "/dev/loop7p1"]


def test_blkid_export(sys_block: Path) -> None:
    g, tools = disks(sys_block, {("blkid",): "DEVNAME=/dev/loop7p1\nUUID=4e72cba5\nTYPE=ext4\nPART_ENTRY_NAME=a=b\n"})
    assert g.blkid("/dev/loop7p1") == {"DEVNAME": "/dev/loop7p1", "UUID": "4e72cba5", "TYPE": "ext4",
                                       "PART_ENTRY_NAME": "a=b"}  # fmt: skip
    assert tools.calls == [["blkid", "-c", "/dev/null", "-p", "-i", "-o", "export", "/dev/loop7p1"]]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("ext4", ["tune2fs", "-f", "-U", "0e7f5f4b-3a1d-4d0e-9d8a-6f1d1b0f2a11", "/dev/loop7p1"]),
        ("xfs", ["xfs_admin", "-U", "0e7f5f4b-3a1d-4d0e-9d8a-6f1d1b0f2a11", "/dev/loop7p1"]),
        ("swap", ["swaplabel", "-U", "0e7f5f4b-3a1d-4d0e-9d8a-6f1d1b0f2a11", "/dev/loop7p1"]),
        ("btrfs", ["btrfstune", "-f", "-U", "0e7f5f4b-3a1d-4d0e-9d8a-6f1d1b0f2a11", "/dev/loop7p1"]),
        ("vfat", ["fatlabel", "-i", "/dev/loop7p1", "0e7f5f4b3a1d4d0e9d8a6f1d1b0f2a11"]),
    ],
)
def test_set_uuid_runs_the_types_tool(sys_block: Path, kind: str, expected: list[str]) -> None:
    g, tools = disks(sys_block, {("blkid",): f"{kind}\n"})
    g.set_uuid("/dev/loop7p1", "0e7f5f4b-3a1d-4d0e-9d8a-6f1d1b0f2a11")
    assert tools.calls[-1] == expected


def test_set_uuid_of_a_blank_device_is_refused(sys_block: Path) -> None:
    g, tools = disks(sys_block, {("blkid",): ("", 2)})
    with pytest.raises(GuestfsError, match="a blank device has no UUID"):
        g.set_uuid("/dev/loop7p1", "0e7f5f4b-3a1d-4d0e-9d8a-6f1d1b0f2a11")
    assert [c[0] for c in tools.calls] == ["blkid"]


def test_set_uuid_random(sys_block: Path) -> None:
    g, tools = disks(sys_block, {("blkid",): "ext4\n"})
    g.set_uuid_random("/dev/loop7p1")
    assert tools.calls[-1] == ["tune2fs", "-f", "-U", "random", "/dev/loop7p1"]
    g, tools = disks(sys_block, {("blkid",): "vfat\n"})
    g.set_uuid_random("/dev/loop7p1")
    serial = tools.calls[-1][-1]
    assert tools.calls[-1][:3] == ["fatlabel", "-i", "/dev/loop7p1"] and len(serial) == 8 and int(serial, 16) % 2


def test_e2fsck_tolerates_corrected_errors(sys_block: Path) -> None:
    g, tools = disks(sys_block, {("e2fsck",): ("", 1)})
    g.e2fsck("/dev/loop7p1", correct=True)
    g.e2fsck("/dev/loop7p1", forceall=True)
    g.e2fsck("/dev/loop7p1")
    assert [c[2] for c in tools.calls] == ["-p", "-y", "-n"]
    g, _ = disks(sys_block, {("e2fsck",): ("", 4, "/dev/loop7p1: UNEXPECTED INCONSISTENCY")})
    with pytest.raises(GuestfsError, match="exit code 4: /dev/loop7p1: UNEXPECTED INCONSISTENCY"):
        g.e2fsck("/dev/loop7p1", correct=True)


def test_tune2fs_l(sys_block: Path) -> None:
    g, tools = disks(sys_block, {("tune2fs", "-l"): TUNE2FS_L})
    got = g.tune2fs_l("/dev/loop7p1")
    assert got["Filesystem UUID"] == "4e72cba5-838c-4923-9f6a-b4ed43567b77"
    assert tools.calls == [["tune2fs", "-l", "/dev/loop7p1"]]


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_make_nodes_makes_missing_and_stale_partition_nodes(tmp_path: Path, sys_block: Path) -> None:
    """In a /dev of tmp_path: loop7p1 (right already) kept; loop7p2 (a stale file) and loop7p10 (a block node of
    another device) replaced."""
    dev = tmp_path / "dev"
    dev.mkdir()
    os.mknod(dev / "loop7p1", 0o600 | stat.S_IFBLK, os.makedev(259, 3))
    (dev / "loop7p2").write_text("stale")
    os.mknod(dev / "loop7p10", 0o600 | stat.S_IFBLK, os.makedev(259, 99))
    g = HostDisks(Tools(), [str(dev / "loop7")], sys_block)
    g.make_nodes(str(dev / "loop7"))
    assert g.made_nodes == [str(dev / "loop7p2"), str(dev / "loop7p10")]
    for name, (major, minor) in {"loop7p1": (259, 3), "loop7p2": (259, 4), "loop7p10": (259, 5)}.items():
        st = os.lstat(dev / name)
        assert stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (major, minor), name
    g.make_nodes(str(dev / "loop7"))  # all right now: none made again
    assert len(g.made_nodes) == 2


# -- host/reports.py ----------------------------------------------------------------------------------------------


def test_parse_parted_msdos_and_gpt() -> None:
    msdos = parse_parted(PARTED_MSDOS)
    assert (msdos.table, msdos.sector_size) == ("msdos", 512)
    assert [(p.number, p.start, p.end, p.size, p.name, p.flags) for p in msdos.partitions] == [
        (1, 1048576, 105906175, 104857600, "", ("boot",)),
        (2, 105906176, 314572799, 208666624, "", ("lba",)),
        (5, 106954752, 209715199, 102760448, "", ()),
    ]
    gpt = parse_parted(PARTED_GPT)
    assert gpt.table == "gpt"
    assert [(p.number, p.name, p.flags) for p in gpt.partitions] == [(1, "myname", ("boot", "esp")), (2, "", ())]
    assert all(p.end == p.start + p.size - 1 for p in (*gpt.partitions, *msdos.partitions))
    assert parse_parted(PARTED_UNKNOWN).table == "unknown"
    with pytest.raises(ValueError, match="not parted's machine output"):
        parse_parted("Error: /dev/loop0: unrecognised disk label\n")


def test_parse_xfs_info() -> None:
    assert parse_xfs_info(XFS_INFO) == XFS_INFO_FIELDS
    mounted = XFS_INFO.replace("meta-data=/dev/loop0      ", "meta-data=/alt_inst/var    ")
    assert parse_xfs_info(mounted)["xfs_mntpoint"] == "/alt_inst/var"
    assert parse_xfs_info("")["xfs_agcount"] == -1


def test_parse_dumpe2fs() -> None:
    got = parse_dumpe2fs(TUNE2FS_L)
    assert got["Filesystem volume name"] == "lbl"
    assert got["Filesystem features"].split()[:3] == ["has_journal", "ext_attr", "resize_inode"]
    assert got["Filesystem flags"] == "signed_directory_hash"
    assert got["Inode size"] == "256"  # a tab after the colon
    assert got["Block size"] == "4096" and got["Check interval"] == "0 (<none>)"
    assert got["Filesystem created"] == "Mon Dec  7 19:31:55 2026"  # the value's own colons kept
    assert not [k for k in got if k.startswith("tune2fs")]


# -- the real tools, on a plain sparse file (no loop device) -----------------------------------------------------


def sparse(tmp_path: Path, mib: int, name: str = "disk.img") -> Path:
    image = tmp_path / name
    with image.open("wb") as f:
        f.truncate(mib * MIB)
    return image


@pytest.mark.integration
@pytest.mark.skipif(not shutil.which("parted"), reason="needs parted")
def test_part_list_of_a_real_parted_table(tmp_path: Path) -> None:
    image = str(sparse(tmp_path, 300))
    HOST.run(["parted", "-s", image, "mklabel", "gpt", "mkpart", "myname", "2048s", "206847s", "set", "1", "esp", "on",
              "mkpart", "two", "206848s", "409599s"])  # fmt: skip
    g = HostDisks(HOST, [image], tmp_path / "no-sys-block")
    assert g.part_get_parttype(image) == "gpt"
    assert g.part_list(image) == [
        {"part_num": 1, "part_start": 2048 * 512, "part_end": 206848 * 512 - 1, "part_size": 204800 * 512},
        {"part_num": 2, "part_start": 206848 * 512, "part_end": 409600 * 512 - 1, "part_size": 202752 * 512},
    ]
    assert g.part_get_bootable(image, 1) and not g.part_get_bootable(image, 2)
    blank = str(sparse(tmp_path, 1, "blank.img"))  # parted: "unrecognised disk label", exit code 1
    with pytest.raises(GuestfsError, match="parted failed with exit code 1: .*unrecognised disk label"):
        g.part_list(blank)


@pytest.mark.integration
@pytest.mark.skipif(not shutil.which("mkfs.xfs") or not shutil.which("xfs_info"), reason="needs xfsprogs")
def test_parse_xfs_info_of_a_real_filesystem(tmp_path: Path) -> None:
    image = sparse(tmp_path, 300)
    HOST.run(["mkfs.xfs", "-q", "-f", "-b", "size=4096", image])
    got = parse_xfs_info(HOST.run(["xfs_info", image]).text)
    assert got["xfs_mntpoint"] == str(image) or got["xfs_mntpoint"].endswith("disk.img")
    assert got["xfs_blocksize"] == 4096 and got["xfs_datablocks"] == 300 * MIB // 4096
    assert got["xfs_agcount"] * got["xfs_agsize"] == got["xfs_datablocks"]
    assert got["xfs_logname"].startswith("internal") and got["xfs_rtname"] == "none"
    assert -1 not in got.values()


@pytest.mark.integration
@pytest.mark.skipif(not shutil.which("mkfs.ext4") or not shutil.which("tune2fs"), reason="needs e2fsprogs")
def test_tune2fs_l_of_a_real_filesystem(tmp_path: Path) -> None:
    image = str(sparse(tmp_path, 64))
    HOST.run(["mkfs.ext4", "-q", "-F", "-L", "imgclone", "-b", "4096", "-U", "4e72cba5-838c-4923-9f6a-b4ed43567b77",
              image])  # fmt: skip
    got = HostDisks(HOST, [image], tmp_path).tune2fs_l(image)
    assert got["Filesystem volume name"] == "imgclone"
    assert got["Filesystem UUID"] == "4e72cba5-838c-4923-9f6a-b4ed43567b77"
    assert got["Block count"] == str(64 * MIB // 4096) and got["Block size"] == "4096"
    assert "has_journal" in got["Filesystem features"].split()


# -- onhost.claim_root and HostGuest ------------------------------------------------------------------------------


@pytest.fixture
def held() -> Iterator[list[int]]:
    """The claims' lock descriptors, closed after the test."""
    fds: list[int] = []
    yield fds
    for fd in fds:
        os.close(fd)


def test_claim_root_takes_the_base_then_a_named_one(tmp_path: Path, held: list[int]) -> None:
    base = str(tmp_path / "alt_inst")
    first, fd1 = claim_root(["/dev/sdb"], base)
    held.append(fd1)
    assert first == base and os.path.isdir(base)
    second, fd2 = claim_root(["/dev/sdc", "/dev/sdd"], base)  # while the first is held
    held.append(fd2)
    assert second == f"{base}.sdc"
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(GuestfsError, match=r"alt_inst is in use by another imgclone run; .*alt_inst.sdc is in use"):
        claim_root(["/dev/sdc"], base)
    assert len(os.listdir("/proc/self/fd")) == open_before, "a refused claim leaves no descriptor open"
    # the lock is what holds it: a lock taken by another process shows as held
    probe = subprocess.run(["flock", "-n", base, "true"], check=False)
    assert probe.returncode == 1


def test_claim_root_is_free_again_once_released(tmp_path: Path) -> None:
    base = str(tmp_path / "alt_inst")
    _, fd = claim_root(["/dev/sdb"], base)
    os.close(fd)
    again, fd = claim_root(["/dev/sdb"], base)
    os.close(fd)
    assert again == base


def test_claim_root_passes_a_base_with_something_in_it(tmp_path: Path, held: list[int]) -> None:
    """Something at /alt_inst (a clone `alt wake` mounted there): the clone goes to /alt_inst.<name>; with something
    there too, a GuestfsError names both."""
    base = tmp_path / "alt_inst"
    (base / "leftover").mkdir(parents=True)
    root, fd = claim_root(["/dev/sdb"], str(base))
    held.append(fd)
    assert root == f"{base}.sdb"
    # the base's lock was let go: flock -n takes it
    assert subprocess.run(["flock", "-n", str(base), "true"], check=False).returncode == 0
    os.close(held.pop())
    (tmp_path / "alt_inst.sdb" / "more").mkdir()
    with pytest.raises(GuestfsError, match=r"alt_inst is not empty; .*alt_inst.sdb is not empty"):
        claim_root(["/dev/sdb"], str(base))


def test_claim_root_without_names(tmp_path: Path, held: list[int]) -> None:
    """Without names the second root is /alt_inst.clone; when both are held, a GuestfsError says so."""
    base = str(tmp_path / "alt_inst")
    for want in (base, f"{base}.clone"):
        got, fd = claim_root([], base)
        held.append(fd)
        assert got == want
    with pytest.raises(GuestfsError, match="in use"):
        claim_root([], base)


def test_host_guest_close_removes_only_its_own_named_root(tmp_path: Path) -> None:
    """The named root (/alt_inst.sdc) is the run's own and goes at close, and its lock with it."""
    base = str(tmp_path / "alt_inst")
    _, fd = claim_root(["/dev/sdb"], base)
    try:
        g = HostGuest([("/dev/sdc", "raw")], Tools(), base=base)
        assert g.root == g.sysroot == f"{base}.sdc"
        g.close()
        assert not os.path.exists(f"{base}.sdc") and os.path.isdir(base)
        g.close()  # twice: nothing more
    finally:
        os.close(fd)


def test_host_guest_close_keeps_the_base(tmp_path: Path) -> None:
    """HostGuest.close keeps the base it was given (only a named /alt_inst.<name> is the run's own to remove)."""
    base = str(tmp_path / "alt_inst")
    g = HostGuest([("/dev/sdb", "raw")], Tools(), base=base)
    assert g.root == base
    g.close()
    assert os.path.isdir(base)


def test_host_guest_refuses_a_qcow2_image_before_running_anything(tmp_path: Path) -> None:
    image = tmp_path / "t.qcow2"
    image.write_bytes(b"QFI\xfb")
    tools = Tools()
    g = HostGuest([(str(image), "qcow2")], tools, base=str(tmp_path / "alt_inst"))
    try:
        with pytest.raises(GuestfsError, match="a qcow2 image cannot be attached on the host"):
            g.launch()
        assert tools.calls == [] and g.list_devices() == []
    finally:
        g.close()


def test_the_lock_is_an_flock_on_the_directory(tmp_path: Path, held: list[int]) -> None:
    base = str(tmp_path / "alt_inst")
    _, fd = claim_root(["/dev/sdb"], base)
    held.append(fd)
    other = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)
