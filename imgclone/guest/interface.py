"""What the phases need of a clone being worked on: the Guest interface, a Protocol.

The steps (probe, build, restore, customize, finalize, check, alt) take a `Guest` and call only what is here. The
libguestfs appliance (guest/appliance.py's Appliance) implements it; so can a host that works on the clone's
filesystems itself (chroot), and the tests' recording fake (tests/fakes.py's FakeGuest).

The names, parameters and results are libguestfs's own, as its Python bindings give them with python_return_dict=True:
paths are inside the clone ("/" is the filesystem mounted at "/"), devices are the API's names (/dev/sda1,
/dev/vg/lv), a hash comes back as a dict, a struct as a dict of its fields (the TypedDicts below), a bool as
the appliance's 0 or 1 (test its truth, never `is True`), and optional arguments are keyword-only, None meaning
"not given". A failure raises GuestfsError.
"""

from __future__ import annotations

from typing import Protocol, TypedDict

# -- the structs some calls return ---------------------------------------------------------------------------------


class StatVfs(TypedDict):
    """statvfs(): the filesystem mounted at a path, as statvfs(2) gives it."""

    bsize: int
    frsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    favail: int
    fsid: int
    flag: int
    namemax: int


class StatNs(TypedDict):
    """lstatns(): a path's inode, as lstat(2) gives it, times in seconds and nanoseconds."""

    st_dev: int
    st_ino: int
    st_mode: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_rdev: int
    st_size: int
    st_blksize: int
    st_blocks: int
    st_atime_sec: int
    st_atime_nsec: int
    st_mtime_sec: int
    st_mtime_nsec: int
    st_ctime_sec: int
    st_ctime_nsec: int
    st_spare1: int
    st_spare2: int
    st_spare3: int
    st_spare4: int
    st_spare5: int
    st_spare6: int


class PartEntry(TypedDict):
    """part_list(): one partition of a disk, in bytes."""

    part_num: int
    part_start: int
    part_end: int
    part_size: int


class LvmPv(TypedDict):
    """pvs_full(): one physical volume, as `pvs` reports it (sizes in bytes)."""

    pv_name: str
    pv_uuid: str
    pv_fmt: str
    pv_size: int
    dev_size: int
    pv_free: int
    pv_used: int
    pv_attr: str
    pv_pe_count: int
    pv_pe_alloc_count: int
    pv_tags: str
    pe_start: int
    pv_mda_count: int
    pv_mda_free: int


class LvmVg(TypedDict):
    """vgs_full(): one volume group, as `vgs` reports it (sizes in bytes)."""

    vg_name: str
    vg_uuid: str
    vg_fmt: str
    vg_attr: str
    vg_size: int
    vg_free: int
    vg_sysid: str
    vg_extent_size: int
    vg_extent_count: int
    vg_free_count: int
    max_lv: int
    max_pv: int
    pv_count: int
    lv_count: int
    snap_count: int
    vg_seqno: int
    vg_tags: str
    vg_mda_count: int
    vg_mda_free: int


class LvmLv(TypedDict):
    """lvs_full(): one logical volume, as `lvs` reports it (size in bytes; a percent is None when not reported)."""

    lv_name: str
    lv_uuid: str
    lv_attr: str
    lv_major: int
    lv_minor: int
    lv_kernel_major: int
    lv_kernel_minor: int
    lv_size: int
    seg_count: int
    origin: str
    snap_percent: float | None
    copy_percent: float | None
    move_pv: str
    lv_tags: str
    mirror_log: str
    modules: str


class XfsInfo(TypedDict):
    """xfs_info(): the geometry of an xfs filesystem."""

    xfs_mntpoint: str
    xfs_inodesize: int
    xfs_agcount: int
    xfs_agsize: int
    xfs_sectsize: int
    xfs_attr: int
    xfs_blocksize: int
    xfs_datablocks: int
    xfs_imaxpct: int
    xfs_sunit: int
    xfs_swidth: int
    xfs_dirversion: int
    xfs_dirblocksize: int
    xfs_cimode: int
    xfs_logname: str
    xfs_logblocksize: int
    xfs_logblocks: int
    xfs_logversion: int
    xfs_logsectsize: int
    xfs_logsunit: int
    xfs_lazycount: int
    xfs_rtname: str
    xfs_rtextsize: int
    xfs_rtblocks: int
    xfs_rtextents: int


# -- the interface, by concern -------------------------------------------------------------------------------------


class Commands(Protocol):
    """Programs run in the clone (command, sh: its own, chrooted) or next to it (appliance_command: the worker's)."""

    @property
    def sysroot(self) -> str: ...  # where the clone's "/" is for a program appliance_command runs
    @property
    def native(self) -> bool: ...  # command() runs on this host's CPU (a chroot), not in a virtual machine

    def command(self, arguments: list[str]) -> str: ...
    def sh(self, command: str) -> str: ...
    # a program of the worker itself, with the clone's "/" at /sysroot and drives named as the API names them
    def appliance_command(self, argv: list[str]) -> str: ...
    def debug(self, subcmd: str, extraargs: list[str]) -> str: ...  # libguestfs's debug commands ("sh": the worker's)


class Files(Protocol):
    """Files, directories and links of the mounted clone."""

    def read_file(self, path: str) -> bytes: ...
    def write(self, path: str, content: bytes) -> None: ...
    def upload(self, filename: str, remotefilename: str) -> None: ...  # a host file into the clone
    def download(self, remotefilename: str, filename: str) -> None: ...  # a clone's file onto the host
    def mkdir_p(self, path: str) -> None: ...
    def mkfifo(self, mode: int, path: str) -> None: ...
    def touch(self, path: str) -> None: ...
    def truncate_size(self, path: str, size: int) -> None: ...
    def exists(self, path: str) -> bool: ...
    def is_file(self, path: str, *, followsymlinks: bool | None = None) -> bool: ...
    def is_dir(self, path: str, *, followsymlinks: bool | None = None) -> bool: ...
    def is_symlink(self, path: str) -> bool: ...
    def ls(self, directory: str) -> list[str]: ...
    # every path below directory, as "/" + its path relative to directory (libguestfs 1.48; its manual has no "/")
    def find(self, directory: str) -> list[str]: ...
    def find0(self, directory: str, files: str) -> None: ...  # the same, NUL-separated, into a host file
    def glob_expand(self, pattern: str, *, directoryslash: bool | None = None) -> list[str]: ...
    def readlink(self, path: str) -> str: ...
    def ln(self, target: str, linkname: str) -> None: ...
    def ln_s(self, target: str, linkname: str) -> None: ...
    def ln_sf(self, target: str, linkname: str) -> None: ...
    def rm_f(self, path: str) -> None: ...
    def rm_rf(self, path: str) -> None: ...
    def chmod(self, mode: int, path: str) -> None: ...
    def chown(self, owner: int, group: int, path: str) -> None: ...
    def utimens(self, path: str, atsecs: int, atnsecs: int, mtsecs: int, mtnsecs: int) -> None: ...
    def setxattr(self, xattr: str, val: str, vallen: int, path: str) -> None: ...
    def lstatns(self, path: str) -> StatNs: ...
    def statns(self, path: str) -> StatNs: ...  # as lstatns, following a symlink


class Mounts(Protocol):
    """Filesystems mounted into the clone's tree, and the tree exported to the host (mount_local)."""

    def mount(self, mountable: str, mountpoint: str) -> None: ...
    def mount_ro(self, mountable: str, mountpoint: str) -> None: ...
    def mount_options(self, options: str, mountable: str, mountpoint: str) -> None: ...  # `mount -o OPTIONS`
    def umount_all(self) -> None: ...
    def mounts(self) -> list[str]: ...  # the devices mounted
    def sync(self) -> None: ...
    def statvfs(self, path: str) -> StatVfs: ...
    def fstrim(self, mountpoint: str, *, offset: int | None = None, length: int | None = None,
               minimumfreeextent: int | None = None) -> None: ...  # fmt: skip
    def mount_local(self, localmountpoint: str, *, readonly: bool | None = None, options: str | None = None,
                    cachetimeout: int | None = None, debugcalls: bool | None = None) -> None: ...  # fmt: skip
    def mount_local_run(self) -> None: ...  # serves mount_local's FUSE mount until it is unmounted


class Devices(Protocol):
    """The drives and what is on them, below any filesystem."""

    def list_devices(self) -> list[str]: ...
    def list_partitions(self) -> list[str]: ...
    def list_filesystems(self) -> dict[str, str]: ...  # device → its filesystem type ("unknown", "swap", ...)
    def list_disk_labels(self) -> dict[str, str]: ...  # the label a drive was added with → its device
    def drive_path(self, index: int) -> str: ...  # the index-th drive added, as a program run by command() names it
    def blkid(self, device: str) -> dict[str, str]: ...
    def blockdev_getsize64(self, device: str) -> int: ...
    def blockdev_getss(self, device: str) -> int: ...
    def blockdev_rereadpt(self, device: str) -> None: ...
    def pread_device(self, device: str, count: int, offset: int) -> bytes: ...
    def wipefs(self, device: str) -> None: ...


class Partitions(Protocol):
    """Partition tables (parted's view): sectors of the disk, partitions by number."""

    def part_init(self, device: str, parttype: str) -> None: ...
    def part_disk(self, device: str, parttype: str) -> None: ...
    def part_add(self, device: str, prlogex: str, startsect: int, endsect: int) -> None: ...
    def part_resize(self, device: str, partnum: int, endsect: int) -> None: ...
    def part_expand_gpt(self, device: str) -> None: ...
    def part_list(self, device: str) -> list[PartEntry]: ...
    def part_get_parttype(self, device: str) -> str: ...
    def part_get_bootable(self, device: str, partnum: int) -> bool: ...
    def part_set_bootable(self, device: str, partnum: int, bootable: bool) -> None: ...
    def part_get_mbr_id(self, device: str, partnum: int) -> int: ...
    def part_set_mbr_id(self, device: str, partnum: int, idbyte: int) -> None: ...
    def part_get_gpt_type(self, device: str, partnum: int) -> str: ...
    def part_set_gpt_type(self, device: str, partnum: int, guid: str) -> None: ...
    def part_get_gpt_guid(self, device: str, partnum: int) -> str: ...
    def part_get_name(self, device: str, partnum: int) -> str: ...
    def part_set_name(self, device: str, partnum: int, name: str) -> None: ...
    def part_to_dev(self, partition: str) -> str: ...
    def part_to_partnum(self, partition: str) -> int: ...


class Volumes(Protocol):
    """LVM: physical volumes, volume groups, logical volumes."""

    def pvcreate(self, device: str) -> None: ...
    def pvremove(self, device: str) -> None: ...
    def pvresize(self, device: str) -> None: ...
    def pvchange_uuid(self, device: str) -> None: ...
    def pvs(self) -> list[str]: ...
    def pvs_full(self) -> list[LvmPv]: ...
    def pvuuid(self, device: str) -> str: ...
    def vgcreate(self, volgroup: str, physvols: list[str]) -> None: ...
    def vgremove(self, vgname: str) -> None: ...
    def vgrename(self, volgroup: str, newvolgroup: str) -> None: ...
    def vgchange_uuid(self, vg: str) -> None: ...
    def vg_activate(self, activate: bool, volgroups: list[str]) -> None: ...
    def vg_activate_all(self, activate: bool) -> None: ...
    def vgs(self) -> list[str]: ...
    def vgs_full(self) -> list[LvmVg]: ...
    def vguuid(self, vgname: str) -> str: ...
    def vgpvuuids(self, vgname: str) -> list[str]: ...
    def vglvuuids(self, vgname: str) -> list[str]: ...
    def lvcreate(self, logvol: str, volgroup: str, mbytes: int) -> None: ...
    def lvrename(self, logvol: str, newlogvol: str) -> None: ...
    def lvs(self) -> list[str]: ...
    def lvs_full(self) -> list[LvmLv]: ...


class Filesystems(Protocol):
    """Filesystems and swap on a device: made, identified, checked, grown, filled and read as tar."""

    def mkfs(self, fstype: str, device: str, *, blocksize: int | None = None, features: str | None = None,
             inode: int | None = None, sectorsize: int | None = None, label: str | None = None
             ) -> None: ...  # fmt: skip
    def mkswap(self, device: str, *, label: str | None = None, uuid: str | None = None) -> None: ...
    def vfs_type(self, mountable: str) -> str: ...
    def vfs_uuid(self, mountable: str) -> str: ...
    def set_uuid(self, device: str, uuid: str) -> None: ...
    def set_uuid_random(self, device: str) -> None: ...
    def e2fsck(self, device: str, *, correct: bool | None = None, forceall: bool | None = None) -> None: ...
    def resize2fs(self, device: str) -> None: ...
    def tune2fs_l(self, device: str) -> dict[str, str]: ...
    def xfs_info(self, pathordevice: str) -> XfsInfo: ...
    def xfs_growfs(self, path: str, *, datasec: bool | None = None, logsec: bool | None = None,
                   rtsec: bool | None = None, datasize: int | None = None, logsize: int | None = None,
                   rtsize: int | None = None, rtextsize: int | None = None, maxpct: int | None = None
                   ) -> None: ...  # fmt: skip
    def tar_in(self, tarfile: str, directory: str, *, compress: str | None = None, xattrs: bool | None = None,
               selinux: bool | None = None, acls: bool | None = None) -> None: ...  # fmt: skip
    def tar_out(self, directory: str, tarfile: str, *, compress: str | None = None, numericowner: bool | None = None,
                excludes: list[str] | None = None, xattrs: bool | None = None, selinux: bool | None = None,
                acls: bool | None = None) -> None: ...  # fmt: skip


class Inspection(Protocol):
    """libguestfs's inspection: the operating systems on the drives and their fstab."""

    def inspect_os(self) -> list[str]: ...  # the root filesystem of each
    def inspect_get_mountpoints(self, root: str) -> dict[str, str]: ...  # mount point → device


class Guest(Commands, Files, Mounts, Devices, Partitions, Volumes, Filesystems, Inspection, Protocol):
    """A clone being worked on: its drives, volumes and filesystems, its mounted tree, programs run in it."""
