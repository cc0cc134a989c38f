"""The Guest interface's calls below the filesystem tree, on this host's kernel: drives, partitions, LVM, mkfs.

Each call runs the tool libguestfs's own daemon runs for it (parted, sfdisk, sgdisk, blkid, blockdev, wipefs, lvm,
mke2fs, mkfs.xfs, mkswap, tune2fs, xfs_admin...) with the same options, here on the host's devices, and gives
back what libguestfs gives (guest/interface.py). A tool that fails raises a GuestfsError naming it.

Only the drives the guest was given exist for it: LVM runs with `--devices` naming them and their partitions, so
the host's own volume groups are neither listed nor activated nor touched.
"""

from __future__ import annotations

import os
import secrets
import stat
import uuid
from pathlib import Path
from typing import Any, cast, get_type_hints

from imgclone.errors import CommandError, GuestfsError
from imgclone.guest.interface import LvmLv, LvmPv, LvmVg, PartEntry
from imgclone.host.reports import LVM_ENV, PartedDisk, parse_dumpe2fs, parse_lvm_report, parse_parted
from imgclone.host.run import Argv, Result, Runner

PART_KIND = {"p": "primary", "primary": "primary", "l": "logical", "logical": "logical", "e": "extended",
             "extended": "extended"}  # fmt: skip
NOTHING_FOUND = 2  # blkid's exit code when a device has no signature


def run_tool(runner: Runner, argv: Argv, *, check: bool = True, env: dict[str, str] | None = None) -> Result:
    """A tool's run; its failure is a GuestfsError, as a failed libguestfs call is."""
    try:
        return runner.run(argv, check=check, env=env)
    except CommandError as e:
        raise GuestfsError(e.message) from e


def partition_node(disk: str, number: int) -> str:
    """The kernel's name of a disk's partition: /dev/sda1, /dev/loop0p1, /dev/nvme0n1p1."""
    return f"{disk}{'p' if disk[-1:].isdigit() else ''}{number}"


class HostDisks:
    """Devices, Partitions, Volumes and Filesystems of the Guest interface (guest/onhost.py adds the tree)."""

    def __init__(self, runner: Runner, devices: list[str], sys_block: Path = Path("/sys/block")) -> None:
        self.runner = runner
        self._devices = devices  # the drives, in the order they were given
        self._sys_block = sys_block
        self.made_nodes: list[str] = []  # partition nodes made here (a /dev that udev does not fill)

    def _out(self, *argv: str, env: dict[str, str] | None = None) -> str:
        return run_tool(self.runner, argv, env=env).text

    # -- Devices --

    def list_devices(self) -> list[str]:
        return list(self._devices)

    def _partition_numbers(self, device: str) -> list[int]:
        name = os.path.basename(device)
        found = []
        for entry in (self._sys_block / name).glob(f"{name}*"):
            number = entry / "partition"
            if number.is_file():
                found.append(int(number.read_text().strip()))
        return sorted(found)

    def make_nodes(self, device: str) -> None:
        """A node in /dev for each partition the kernel knows of the device (major:minor from sysfs), where there is
        none or a stale one: on this host /dev is not always filled by udev."""
        name = os.path.basename(device)
        for num in self._partition_numbers(device):
            node = partition_node(device, num)
            major, minor = (
                int(x) for x in (self._sys_block / name / os.path.basename(node) / "dev").read_text().split(":")
            )
            want = os.makedev(major, minor)
            try:
                st = os.stat(node)
                if stat.S_ISBLK(st.st_mode) and st.st_rdev == want:
                    continue
                os.unlink(node)
            except FileNotFoundError:
                pass
            os.mknod(node, 0o600 | stat.S_IFBLK, want)
            self.made_nodes.append(node)

    def list_partitions(self) -> list[str]:
        return [partition_node(d, n) for d in self._devices for n in self._partition_numbers(d)]

    def _lvs_paths(self) -> list[str]:
        try:
            return self.lvs()
        except GuestfsError:
            return []

    def list_filesystems(self) -> dict[str, str]:
        """Whole drives without partitions, partitions, LVs → their filesystem type ("unknown" when none)."""
        parts = self.list_partitions()
        whole = [d for d in self._devices if not self._partition_numbers(d)]
        return {dev: self.vfs_type(dev) or "unknown" for dev in (*whole, *parts, *self._lvs_paths())}

    def list_disk_labels(self) -> dict[str, str]:
        return {}  # drives on the host have no libguestfs labels: their names are the host's

    def drive_path(self, index: int) -> str:
        return self._devices[index]

    def blkid(self, device: str) -> dict[str, str]:
        text = self._out("blkid", "-c", "/dev/null", "-p", "-i", "-o", "export", device)
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def _blkid_value(self, tag: str, device: str) -> str:
        res = run_tool(self.runner, ["blkid", "-c", "/dev/null", "-o", "value", "-s", tag, device], check=False)
        if res.returncode not in (0, NOTHING_FOUND):
            raise GuestfsError(f"blkid {device}: {res.stderr.strip() or res.returncode}")
        return res.text.strip()

    def blockdev_getsize64(self, device: str) -> int:
        return int(self._out("blockdev", "--getsize64", device))

    def blockdev_getss(self, device: str) -> int:
        return int(self._out("blockdev", "--getss", device))

    def blockdev_rereadpt(self, device: str) -> None:
        self._out("blockdev", "--rereadpt", device)
        self.make_nodes(device)

    def pread_device(self, device: str, count: int, offset: int) -> bytes:
        fd = os.open(device, os.O_RDONLY)
        try:
            return os.pread(fd, count, offset)
        finally:
            os.close(fd)

    def wipefs(self, device: str) -> None:
        self._out("wipefs", "--all", "--force", device)

    # -- Partitions --

    def _parted(self, device: str) -> PartedDisk:
        disk = parse_parted(self._out("parted", "-m", "-s", "--", device, "unit", "b", "print"))
        if disk.table == "unknown":
            raise GuestfsError(f"part_get_parttype: {device}: unrecognised disk label")
        return disk

    def _changed(self, device: str) -> None:
        """After sfdisk or sgdisk wrote the table: the kernel's view updated (parted tells the kernel itself);
        `partx --update` misses logical partitions, `--add` then adds them (and says "busy" for the others)."""
        run_tool(self.runner, ["partx", "--update", device], check=False)
        run_tool(self.runner, ["partx", "--add", device], check=False)
        self.make_nodes(device)

    def part_init(self, device: str, parttype: str) -> None:
        self._out("parted", "-s", "--", device, "mklabel", parttype)
        self.make_nodes(device)

    def part_disk(self, device: str, parttype: str) -> None:
        """One partition over the whole disk, from sector 2048 to the last the table allows."""
        self.part_init(device, parttype)
        self._out("parted", "-s", "--", device, "mkpart", "primary", "2048s", "-34s" if parttype == "gpt" else "-1s")
        self.make_nodes(device)

    def part_add(self, device: str, prlogex: str, startsect: int, endsect: int) -> None:
        if prlogex not in PART_KIND:
            raise GuestfsError(f"part_add: {prlogex}: expected p, l or e")
        self._out("parted", "-s", "--", device, "mkpart", PART_KIND[prlogex], f"{startsect}s", f"{endsect}s")
        self.make_nodes(device)

    def part_resize(self, device: str, partnum: int, endsect: int) -> None:
        self._out("parted", "-s", "--", device, "resizepart", str(partnum), f"{endsect}s")

    def part_expand_gpt(self, device: str) -> None:
        self._out("sgdisk", "-e", device)
        self._changed(device)

    def part_list(self, device: str) -> list[PartEntry]:
        return [PartEntry(part_num=p.number, part_start=p.start, part_end=p.end, part_size=p.size)
                for p in self._parted(device).partitions]  # fmt: skip

    def part_get_parttype(self, device: str) -> str:
        return self._parted(device).table

    def part_get_bootable(self, device: str, partnum: int) -> bool:
        return any(p.number == partnum and "boot" in p.flags for p in self._parted(device).partitions)

    def part_set_bootable(self, device: str, partnum: int, bootable: bool) -> None:
        self._out("parted", "-s", "--", device, "set", str(partnum), "boot", "on" if bootable else "off")

    def part_get_mbr_id(self, device: str, partnum: int) -> int:
        return int(self._out("sfdisk", "--part-type", device, str(partnum)).strip(), 16)

    def part_set_mbr_id(self, device: str, partnum: int, idbyte: int) -> None:
        self._out("sfdisk", "--part-type", device, str(partnum), f"{idbyte:02x}")
        self._changed(device)

    def part_get_gpt_type(self, device: str, partnum: int) -> str:
        return self._out("sfdisk", "--part-type", device, str(partnum)).strip().upper()

    def part_set_gpt_type(self, device: str, partnum: int, guid: str) -> None:
        self._out("sfdisk", "--part-type", device, str(partnum), guid)
        self._changed(device)

    def part_get_gpt_guid(self, device: str, partnum: int) -> str:
        return self._out("sfdisk", "--part-uuid", device, str(partnum)).strip().upper()

    def part_get_name(self, device: str, partnum: int) -> str:
        return self._out("sfdisk", "--part-label", device, str(partnum)).strip()

    def part_set_name(self, device: str, partnum: int, name: str) -> None:
        self._out("sfdisk", "--part-label", device, str(partnum), name)
        self._changed(device)

    def part_to_dev(self, partition: str) -> str:
        name = os.path.basename(partition)
        for dev in self._devices:
            if (self._sys_block / os.path.basename(dev) / name / "partition").is_file():
                return dev
        raise GuestfsError(f"part_to_dev: {partition}: not a partition of the drives")

    def part_to_partnum(self, partition: str) -> int:
        dev = self.part_to_dev(partition)
        name = os.path.basename(partition)
        return int((self._sys_block / os.path.basename(dev) / name / "partition").read_text().strip())

    # -- Volumes (LVM, restricted to the drives) --

    def _lvm(self, command: str, *args: str) -> str:
        devices = ",".join([*self._devices, *self.list_partitions()])
        return self._out("lvm", command, "--devices", devices, *args, env=LVM_ENV)

    def _names(self, command: str, field: str, *args: str) -> list[str]:
        text = self._lvm(command, "--noheadings", "-o", field, *args)
        return [line.strip() for line in text.splitlines() if line.strip()]

    def _report(self, command: str, kind: str, fields: type) -> list[dict[str, Any]]:
        hints = get_type_hints(fields)
        text = self._lvm(command, "--reportformat", "json", "--units", "b", "--nosuffix", "-o", ",".join(hints))
        rows = []
        for row in parse_lvm_report(text, kind):
            out: dict[str, Any] = {}
            for name, hint in hints.items():
                value = row.get(name, "")
                if hint is int:
                    out[name] = int(value) if value.lstrip("-").isdigit() else -1
                elif hint is str:
                    out[name] = value.replace("-", "") if name.endswith("_uuid") else value
                else:  # a percent
                    out[name] = float(value) if value else None
            rows.append(out)
        return rows

    def pvcreate(self, device: str) -> None:
        self._lvm("pvcreate", "--force", "--force", "--yes", device)

    def pvremove(self, device: str) -> None:
        self._lvm("pvremove", "--force", "--force", "--yes", device)

    def pvresize(self, device: str) -> None:
        self._lvm("pvresize", device)

    def pvchange_uuid(self, device: str) -> None:
        self._lvm("pvchange", "--uuid", device)

    def pvs(self) -> list[str]:
        return self._names("pvs", "pv_name")

    def pvs_full(self) -> list[LvmPv]:
        return [cast(LvmPv, row) for row in self._report("pvs", "pv", LvmPv)]

    def pvuuid(self, device: str) -> str:
        return self._names("pvs", "pv_uuid", device)[0].replace("-", "")

    def vgcreate(self, volgroup: str, physvols: list[str]) -> None:
        self._lvm("vgcreate", "--yes", volgroup, *physvols)

    def vgremove(self, vgname: str) -> None:
        self._lvm("vgremove", "--force", "--yes", vgname)

    def vgrename(self, volgroup: str, newvolgroup: str) -> None:
        self._lvm("vgrename", volgroup, newvolgroup)

    def vgchange_uuid(self, vg: str) -> None:
        self._lvm("vgchange", "--uuid", vg)

    def vg_activate(self, activate: bool, volgroups: list[str]) -> None:
        self._lvm("vgchange", "--activate", "y" if activate else "n", *volgroups)

    def vg_activate_all(self, activate: bool) -> None:
        self.vg_activate(activate, [])

    def vgs(self) -> list[str]:
        return self._names("vgs", "vg_name")

    def vgs_full(self) -> list[LvmVg]:
        return [cast(LvmVg, row) for row in self._report("vgs", "vg", LvmVg)]

    def vguuid(self, vgname: str) -> str:
        return self._names("vgs", "vg_uuid", vgname)[0].replace("-", "")

    def vgpvuuids(self, vgname: str) -> list[str]:
        return [u.replace("-", "") for u in self._names("pvs", "pv_uuid", "--select", f"vg_name={vgname}")]

    def vglvuuids(self, vgname: str) -> list[str]:
        return [u.replace("-", "") for u in self._names("lvs", "lv_uuid", vgname)]

    def lvcreate(self, logvol: str, volgroup: str, mbytes: int) -> None:
        self._lvm("lvcreate", "--yes", "-L", f"{mbytes}m", "-n", logvol, volgroup)

    def lvrename(self, logvol: str, newlogvol: str) -> None:
        self._lvm("lvrename", logvol, newlogvol)

    def lvs_full(self) -> list[LvmLv]:
        return [cast(LvmLv, row) for row in self._report("lvs", "lv", LvmLv)]

    def lvs(self) -> list[str]:
        rows = self._names("lvs", "vg_name,lv_name")
        return [f"/dev/{vg}/{lv}" for vg, lv in (row.split() for row in rows)]

    # -- Filesystems on a device --

    def mkfs(self, fstype: str, device: str, *, blocksize: int | None = None, features: str | None = None,
             inode: int | None = None, sectorsize: int | None = None, label: str | None = None
             ) -> None:  # fmt: skip
        argv = ["mkfs", "-t", fstype]
        if fstype.startswith("ext"):
            argv += ["-F", *(["-b", str(blocksize)] if blocksize else []), *(["-O", features] if features else []),
                     *(["-I", str(inode)] if inode else []), *(["-L", label] if label else [])]  # fmt: skip
        elif fstype == "xfs":
            argv += ["-f", *(["-b", f"size={blocksize}"] if blocksize else []),
                     *(["-s", f"size={sectorsize}"] if sectorsize else []),
                     *(["-L", label] if label else [])]  # fmt: skip
        elif fstype == "vfat":
            argv += ["-I", *(["-S", str(sectorsize)] if sectorsize else []), *(["-n", label] if label else [])]
        elif fstype == "btrfs":
            argv += ["-f", *(["-s", str(sectorsize)] if sectorsize else []), *(["-L", label] if label else [])]
        elif label:
            argv += ["-L", label]
        self._out(*argv, device)

    def mkswap(self, device: str, *, label: str | None = None, uuid: str | None = None) -> None:
        self._out("mkswap", "-f", *(["-L", label] if label else []), *(["-U", uuid] if uuid else []), device)

    def vfs_type(self, mountable: str) -> str:
        return self._blkid_value("TYPE", mountable)

    def vfs_uuid(self, mountable: str) -> str:
        return self._blkid_value("UUID", mountable)

    def set_uuid(self, device: str, uuid: str) -> None:
        kind = self.vfs_type(device)
        if kind.startswith("ext"):
            self._out("tune2fs", "-f", "-U", uuid, device)
        elif kind == "xfs":
            self._out("xfs_admin", "-U", uuid, device)
        elif kind == "swap":
            self._out("swaplabel", "-U", uuid, device)
        elif kind == "btrfs":
            self._out("btrfstune", "-f", "-U", uuid, device)
        elif kind == "vfat":
            self._out("fatlabel", "-i", device, uuid.replace("-", ""))
        else:
            raise GuestfsError(f"set_uuid: {device}: a {kind or 'blank device'} has no UUID to set")

    def set_uuid_random(self, device: str) -> None:
        kind = self.vfs_type(device)
        if kind.startswith("ext"):
            self._out("tune2fs", "-f", "-U", "random", device)
        elif kind == "xfs":
            self._out("xfs_admin", "-U", "generate", device)
        elif kind == "btrfs":
            self._out("btrfstune", "-f", "-u", device)
        elif kind == "vfat":
            self._out("fatlabel", "-i", device, f"{secrets.randbits(32) | 1:08x}")
        else:
            self.set_uuid(device, str(uuid.uuid4()))

    def e2fsck(self, device: str, *, correct: bool | None = None, forceall: bool | None = None) -> None:
        mode = "-y" if forceall else "-p" if correct else "-n"
        res = run_tool(self.runner, ["e2fsck", "-f", mode, device], check=False)
        if res.returncode not in (0, 1, 2):  # 1, 2: errors corrected
            raise GuestfsError(f"e2fsck {device} failed with exit code {res.returncode}: {res.stderr.strip()}")

    def resize2fs(self, device: str) -> None:
        self._out("resize2fs", device)

    def tune2fs_l(self, device: str) -> dict[str, str]:
        return parse_dumpe2fs(self._out("tune2fs", "-l", device))
