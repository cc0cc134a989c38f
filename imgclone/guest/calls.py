"""The Guest interface's calls, each forwarded to libguestfs: the Appliance's methods (guest/appliance.py).

One method per call of guest/interface.py, typed as there, in the same order; each hands its arguments to
`_call`, which runs the libguestfs call of that name and turns its failure into a GuestfsError. A keyword argument
left None is one libguestfs does not get (its bindings pass None as "not given").
"""

# Each result is what libguestfs returned, of the type its bindings document (and the interface says): _call gives
# it back as Any, and a cast per method would only repeat the signature.
# mypy: disable-error-code="no-any-return"

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from imgclone.guest.interface import LvmLv, LvmPv, LvmVg, PartEntry, StatNs, StatVfs, XfsInfo


class Calls(ABC):
    """The forwarding half of Appliance: every call of the Guest interface but appliance_command (its own)."""

    @abstractmethod
    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """The libguestfs call `name` with these arguments (Appliance._call)."""

    # -- Commands --

    def command(self, arguments: list[str]) -> str:
        return self._call("command", arguments)

    def sh(self, command: str) -> str:
        return self._call("sh", command)

    def debug(self, subcmd: str, extraargs: list[str]) -> str:
        return self._call("debug", subcmd, extraargs)

    # -- Files --

    def read_file(self, path: str) -> bytes:
        return self._call("read_file", path)

    def write(self, path: str, content: bytes) -> None:
        self._call("write", path, content)

    def upload(self, filename: str, remotefilename: str) -> None:
        self._call("upload", filename, remotefilename)

    def download(self, remotefilename: str, filename: str) -> None:
        self._call("download", remotefilename, filename)

    def mkdir_p(self, path: str) -> None:
        self._call("mkdir_p", path)

    def mkfifo(self, mode: int, path: str) -> None:
        self._call("mkfifo", mode, path)

    def touch(self, path: str) -> None:
        self._call("touch", path)

    def truncate_size(self, path: str, size: int) -> None:
        self._call("truncate_size", path, size)

    def exists(self, path: str) -> bool:
        return self._call("exists", path)

    def is_file(self, path: str, *, followsymlinks: bool | None = None) -> bool:
        return self._call("is_file", path, followsymlinks=followsymlinks)

    def is_dir(self, path: str, *, followsymlinks: bool | None = None) -> bool:
        return self._call("is_dir", path, followsymlinks=followsymlinks)

    def is_symlink(self, path: str) -> bool:
        return self._call("is_symlink", path)

    def ls(self, directory: str) -> list[str]:
        return self._call("ls", directory)

    def find(self, directory: str) -> list[str]:
        return self._call("find", directory)

    def find0(self, directory: str, files: str) -> None:
        self._call("find0", directory, files)

    def glob_expand(self, pattern: str, *, directoryslash: bool | None = None) -> list[str]:
        return self._call("glob_expand", pattern, directoryslash=directoryslash)

    def readlink(self, path: str) -> str:
        return self._call("readlink", path)

    def ln(self, target: str, linkname: str) -> None:
        self._call("ln", target, linkname)

    def ln_s(self, target: str, linkname: str) -> None:
        self._call("ln_s", target, linkname)

    def ln_sf(self, target: str, linkname: str) -> None:
        self._call("ln_sf", target, linkname)

    def rm_f(self, path: str) -> None:
        self._call("rm_f", path)

    def rm_rf(self, path: str) -> None:
        self._call("rm_rf", path)

    def chmod(self, mode: int, path: str) -> None:
        self._call("chmod", mode, path)

    def chown(self, owner: int, group: int, path: str) -> None:
        self._call("chown", owner, group, path)

    def utimens(self, path: str, atsecs: int, atnsecs: int, mtsecs: int, mtnsecs: int) -> None:
        self._call("utimens", path, atsecs, atnsecs, mtsecs, mtnsecs)

    def setxattr(self, xattr: str, val: str, vallen: int, path: str) -> None:
        self._call("setxattr", xattr, val, vallen, path)

    def lstatns(self, path: str) -> StatNs:
        return self._call("lstatns", path)

    def statns(self, path: str) -> StatNs:
        return self._call("statns", path)

    # -- Mounts --

    def mount(self, mountable: str, mountpoint: str) -> None:
        self._call("mount", mountable, mountpoint)

    def mount_ro(self, mountable: str, mountpoint: str) -> None:
        self._call("mount_ro", mountable, mountpoint)

    def mount_options(self, options: str, mountable: str, mountpoint: str) -> None:
        self._call("mount_options", options, mountable, mountpoint)

    def umount_all(self) -> None:
        self._call("umount_all")

    def mounts(self) -> list[str]:
        return self._call("mounts")

    def sync(self) -> None:
        self._call("sync")

    def statvfs(self, path: str) -> StatVfs:
        return self._call("statvfs", path)

    def fstrim(self, mountpoint: str, *, offset: int | None = None, length: int | None = None,
               minimumfreeextent: int | None = None) -> None:  # fmt: skip
        self._call("fstrim", mountpoint, offset=offset, length=length, minimumfreeextent=minimumfreeextent)

    def mount_local(self, localmountpoint: str, *, readonly: bool | None = None, options: str | None = None,
                    cachetimeout: int | None = None, debugcalls: bool | None = None) -> None:  # fmt: skip
        self._call("mount_local", localmountpoint, readonly=readonly, options=options, cachetimeout=cachetimeout,
                   debugcalls=debugcalls)  # fmt: skip

    def mount_local_run(self) -> None:
        self._call("mount_local_run")

    # -- Devices --

    def list_devices(self) -> list[str]:
        return self._call("list_devices")

    def list_partitions(self) -> list[str]:
        return self._call("list_partitions")

    def list_filesystems(self) -> dict[str, str]:
        return self._call("list_filesystems")

    def list_disk_labels(self) -> dict[str, str]:
        return self._call("list_disk_labels")

    def blkid(self, device: str) -> dict[str, str]:
        return self._call("blkid", device)

    def blockdev_getsize64(self, device: str) -> int:
        return self._call("blockdev_getsize64", device)

    def blockdev_getss(self, device: str) -> int:
        return self._call("blockdev_getss", device)

    def blockdev_rereadpt(self, device: str) -> None:
        self._call("blockdev_rereadpt", device)

    def pread_device(self, device: str, count: int, offset: int) -> bytes:
        return self._call("pread_device", device, count, offset)

    def wipefs(self, device: str) -> None:
        self._call("wipefs", device)

    # -- Partitions --

    def part_init(self, device: str, parttype: str) -> None:
        self._call("part_init", device, parttype)

    def part_disk(self, device: str, parttype: str) -> None:
        self._call("part_disk", device, parttype)

    def part_add(self, device: str, prlogex: str, startsect: int, endsect: int) -> None:
        self._call("part_add", device, prlogex, startsect, endsect)

    def part_resize(self, device: str, partnum: int, endsect: int) -> None:
        self._call("part_resize", device, partnum, endsect)

    def part_expand_gpt(self, device: str) -> None:
        self._call("part_expand_gpt", device)

    def part_list(self, device: str) -> list[PartEntry]:
        return self._call("part_list", device)

    def part_get_parttype(self, device: str) -> str:
        return self._call("part_get_parttype", device)

    def part_get_bootable(self, device: str, partnum: int) -> bool:
        return self._call("part_get_bootable", device, partnum)

    def part_set_bootable(self, device: str, partnum: int, bootable: bool) -> None:
        self._call("part_set_bootable", device, partnum, bootable)

    def part_get_mbr_id(self, device: str, partnum: int) -> int:
        return self._call("part_get_mbr_id", device, partnum)

    def part_set_mbr_id(self, device: str, partnum: int, idbyte: int) -> None:
        self._call("part_set_mbr_id", device, partnum, idbyte)

    def part_get_gpt_type(self, device: str, partnum: int) -> str:
        return self._call("part_get_gpt_type", device, partnum)

    def part_set_gpt_type(self, device: str, partnum: int, guid: str) -> None:
        self._call("part_set_gpt_type", device, partnum, guid)

    def part_get_gpt_guid(self, device: str, partnum: int) -> str:
        return self._call("part_get_gpt_guid", device, partnum)

    def part_get_name(self, device: str, partnum: int) -> str:
        return self._call("part_get_name", device, partnum)

    def part_set_name(self, device: str, partnum: int, name: str) -> None:
        self._call("part_set_name", device, partnum, name)

    def part_to_dev(self, partition: str) -> str:
        return self._call("part_to_dev", partition)

    def part_to_partnum(self, partition: str) -> int:
        return self._call("part_to_partnum", partition)

    # -- Volumes --

    def pvcreate(self, device: str) -> None:
        self._call("pvcreate", device)

    def pvremove(self, device: str) -> None:
        self._call("pvremove", device)

    def pvresize(self, device: str) -> None:
        self._call("pvresize", device)

    def pvchange_uuid(self, device: str) -> None:
        self._call("pvchange_uuid", device)

    def pvs(self) -> list[str]:
        return self._call("pvs")

    def pvs_full(self) -> list[LvmPv]:
        return self._call("pvs_full")

    def pvuuid(self, device: str) -> str:
        return self._call("pvuuid", device)

    def vgcreate(self, volgroup: str, physvols: list[str]) -> None:
        self._call("vgcreate", volgroup, physvols)

    def vgremove(self, vgname: str) -> None:
        self._call("vgremove", vgname)

    def vgrename(self, volgroup: str, newvolgroup: str) -> None:
        self._call("vgrename", volgroup, newvolgroup)

    def vgchange_uuid(self, vg: str) -> None:
        self._call("vgchange_uuid", vg)

    def vg_activate(self, activate: bool, volgroups: list[str]) -> None:
        self._call("vg_activate", activate, volgroups)

    def vg_activate_all(self, activate: bool) -> None:
        self._call("vg_activate_all", activate)

    def vgs(self) -> list[str]:
        return self._call("vgs")

    def vgs_full(self) -> list[LvmVg]:
        return self._call("vgs_full")

    def vguuid(self, vgname: str) -> str:
        return self._call("vguuid", vgname)

    def vgpvuuids(self, vgname: str) -> list[str]:
        return self._call("vgpvuuids", vgname)

    def vglvuuids(self, vgname: str) -> list[str]:
        return self._call("vglvuuids", vgname)

    def lvcreate(self, logvol: str, volgroup: str, mbytes: int) -> None:
        self._call("lvcreate", logvol, volgroup, mbytes)

    def lvrename(self, logvol: str, newlogvol: str) -> None:
        self._call("lvrename", logvol, newlogvol)

    def lvs(self) -> list[str]:
        return self._call("lvs")

    def lvs_full(self) -> list[LvmLv]:
        return self._call("lvs_full")

    # -- Filesystems --

    def mkfs(self, fstype: str, device: str, *, blocksize: int | None = None, features: str | None = None,
             inode: int | None = None, sectorsize: int | None = None, label: str | None = None
             ) -> None:  # fmt: skip
        self._call("mkfs", fstype, device, blocksize=blocksize, features=features, inode=inode, sectorsize=sectorsize,
                   label=label)  # fmt: skip

    def mkswap(self, device: str, *, label: str | None = None, uuid: str | None = None) -> None:
        self._call("mkswap", device, label=label, uuid=uuid)

    def vfs_type(self, mountable: str) -> str:
        return self._call("vfs_type", mountable)

    def vfs_uuid(self, mountable: str) -> str:
        return self._call("vfs_uuid", mountable)

    def set_uuid(self, device: str, uuid: str) -> None:
        self._call("set_uuid", device, uuid)

    def set_uuid_random(self, device: str) -> None:
        self._call("set_uuid_random", device)

    def e2fsck(self, device: str, *, correct: bool | None = None, forceall: bool | None = None) -> None:
        self._call("e2fsck", device, correct=correct, forceall=forceall)

    def resize2fs(self, device: str) -> None:
        self._call("resize2fs", device)

    def tune2fs_l(self, device: str) -> dict[str, str]:
        return self._call("tune2fs_l", device)

    def xfs_info(self, pathordevice: str) -> XfsInfo:
        return self._call("xfs_info", pathordevice)

    def xfs_growfs(self, path: str, *, datasec: bool | None = None, logsec: bool | None = None,
                   rtsec: bool | None = None, datasize: int | None = None, logsize: int | None = None,
                   rtsize: int | None = None, rtextsize: int | None = None, maxpct: int | None = None
                   ) -> None:  # fmt: skip
        self._call("xfs_growfs", path, datasec=datasec, logsec=logsec, rtsec=rtsec, datasize=datasize, logsize=logsize,
                   rtsize=rtsize, rtextsize=rtextsize, maxpct=maxpct)  # fmt: skip

    def tar_in(self, tarfile: str, directory: str, *, compress: str | None = None, xattrs: bool | None = None,
               selinux: bool | None = None, acls: bool | None = None) -> None:  # fmt: skip
        self._call("tar_in", tarfile, directory, compress=compress, xattrs=xattrs, selinux=selinux, acls=acls)

    def tar_out(self, directory: str, tarfile: str, *, compress: str | None = None, numericowner: bool | None = None,
                excludes: list[str] | None = None, xattrs: bool | None = None, selinux: bool | None = None,
                acls: bool | None = None) -> None:  # fmt: skip
        self._call("tar_out", directory, tarfile, compress=compress, numericowner=numericowner, excludes=excludes,
                   xattrs=xattrs, selinux=selinux, acls=acls)  # fmt: skip

    # -- Inspection --

    def inspect_os(self) -> list[str]:
        return self._call("inspect_os")

    def inspect_get_mountpoints(self, root: str) -> dict[str, str]:
        return self._call("inspect_get_mountpoints", root)
