"""The Guest interface's calls on the clone's tree, on this host: the clone's filesystems mounted under a root
directory (/alt_inst), its files reached through guest/rootpath.py (links resolved inside the clone), its
programs run in a chroot of it.

A chroot gets a /dev of its own (a tmpfs: the usual character devices, ptys, the clone's drives, partitions and
LVs only, and the /dev/disk/by-uuid links udev would make, which update-grub looks for to name the root by UUID),
the host's /sys (bound) and a /proc of its own, as libguestfs's `command` gives the guest's programs; /run is a
fresh tmpfs, not the host's: a package script that finds the host's /run/systemd would start and stop the host's
services. A program in the chroot sees none of the host's disks. They stay mounted from the first command until
umount_all.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import posixpath
import shutil
import stat
from collections.abc import Callable
from typing import IO, Any, TypeVar, cast

from imgclone.errors import GuestfsError
from imgclone.fs.mounttab import unescape
from imgclone.guest.host_disks import run_tool
from imgclone.guest.interface import StatNs, StatVfs, XfsInfo
from imgclone.guest.rootpath import within
from imgclone.host.reports import parse_xfs_info
from imgclone.host.run import DEVNULL, PIPE, Pipeline, Runner

CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TAR_COMPRESS = {"gzip": "--gzip", "bzip2": "--bzip2", "xz": "--xz", "lzop": "--lzop", "lzma": "--lzma",
                "compress": "--compress", "zstd": "--zstd"}  # fmt: skip
CHAR_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}


F = TypeVar("F", bound=Callable[..., Any])


def os_errors(fn: F) -> F:
    """The call's OSError becomes a GuestfsError naming the call and its first argument (a path of the clone), as a
    libguestfs call's failure does: callers catch GuestfsError."""

    @functools.wraps(fn)
    def call(self: HostTree, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except OSError as e:
            raise GuestfsError(f"{fn.__name__} {args[0] if args else ''}: {e.strerror or e}") from e

    return cast(F, call)


def _tar_options(compress: str | None, xattrs: bool | None, selinux: bool | None, acls: bool | None) -> list[str]:
    if compress is not None and compress not in TAR_COMPRESS:
        raise GuestfsError(f"tar: compress={compress}: not a compression tar knows")
    return [*([TAR_COMPRESS[compress]] if compress else []), *(["--xattrs", "--xattrs-include=*"] if xattrs else []),
            *(["--selinux"] if selinux else []), *(["--acls"] if acls else [])]  # fmt: skip


def _stat(st: os.stat_result) -> StatNs:
    return StatNs(st_dev=st.st_dev, st_ino=st.st_ino, st_mode=st.st_mode, st_nlink=st.st_nlink, st_uid=st.st_uid,
                  st_gid=st.st_gid, st_rdev=st.st_rdev, st_size=st.st_size, st_blksize=st.st_blksize,
                  st_blocks=st.st_blocks, st_atime_sec=st.st_atime_ns // 10**9, st_atime_nsec=st.st_atime_ns % 10**9,
                  st_mtime_sec=st.st_mtime_ns // 10**9, st_mtime_nsec=st.st_mtime_ns % 10**9,
                  st_ctime_sec=st.st_ctime_ns // 10**9, st_ctime_nsec=st.st_ctime_ns % 10**9, st_spare1=0,
                  st_spare2=0, st_spare3=0, st_spare4=0, st_spare5=0, st_spare6=0)  # fmt: skip


def mounted_below(root: str, mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str]]:
    """(mount point, source) of every mount at or below root, in the order they were mounted."""
    found = []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point, source = unescape(fields[4]), unescape(fields[sep + 2])
            if point == root or point.startswith(root.rstrip("/") + "/"):
                found.append((point, source))
    return found


class HostTree:
    """Commands, Files, Mounts and Inspection of the Guest interface, and the calls that take a path of the tree."""

    native = True  # command() runs the clone's programs on this host's CPU

    def __init__(self, runner: Runner, root: str) -> None:
        self.runner = runner
        self.root = root
        self._bound = False

    @property
    def sysroot(self) -> str:
        return self.root

    def _path(self, path: str, follow: bool = True) -> str:
        return within(self.root, path, follow=follow)

    # -- Commands --

    def _bind(self) -> None:
        """The chroot's /dev, /sys, /proc and /run, once."""
        if self._bound:
            return
        self._bound = True  # from here umount_all takes down what was mounted, whatever fails
        dev = self._path("/dev")
        os.makedirs(dev, exist_ok=True)
        run_tool(self.runner, ["mount", "-t", "tmpfs", "-o", "mode=755,nosuid", "imgclone-dev", dev])
        for name, (major, minor) in CHAR_DEVICES.items():
            os.mknod(f"{dev}/{name}", 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        for sub in ("pts", "shm"):
            os.mkdir(f"{dev}/{sub}")
        run_tool(self.runner, ["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts", f"{dev}/pts"])
        os.symlink("pts/ptmx", f"{dev}/ptmx")
        for node in self._chroot_devices():
            self._node(dev, node, os.stat(node).st_rdev)
        for link, node in self._chroot_links().items():
            os.makedirs(os.path.dirname(dev + link.removeprefix("/dev")), exist_ok=True)
            os.symlink(node, dev + link.removeprefix("/dev"))
        sys_dir = self._path("/sys")
        os.makedirs(sys_dir, exist_ok=True)
        run_tool(self.runner, ["mount", "--rbind", "/sys", sys_dir])
        run_tool(self.runner, ["mount", "--make-rslave", sys_dir])  # its unmount stays in the clone
        os.makedirs(self._path("/proc"), exist_ok=True)
        run_tool(self.runner, ["mount", "-t", "proc", "proc", self._path("/proc")])
        os.makedirs(self._path("/run"), exist_ok=True)
        run_tool(self.runner, ["mount", "-t", "tmpfs", "-o", "mode=755", "imgclone-run", self._path("/run")])

    @staticmethod
    def _node(dev: str, node: str, rdev: int) -> None:
        path = dev + node.removeprefix("/dev")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mknod(path, 0o600 | stat.S_IFBLK, rdev)

    def _chroot_devices(self) -> list[str]:
        """The block devices the chroot's /dev has (the host's Guest: the drives, their partitions and LVs)."""
        return []

    def _chroot_links(self) -> dict[str, str]:
        """udev's links in the chroot's /dev (/dev/disk/by-uuid/...) → the device they name."""
        return {}

    def command(self, arguments: list[str]) -> str:
        if not self.mounts():
            raise GuestfsError(f"command {arguments[0]}: nothing is mounted at / of the clone")
        self._bind()
        return run_tool(self.runner, ["chroot", self.root, *arguments], env={"PATH": CHROOT_PATH}).text

    def sh(self, command: str) -> str:
        return self.command(["/bin/sh", "-c", command])

    def appliance_command(self, argv: list[str]) -> str:
        """A program of this host (the appliance's counterpart), the clone's "/" at sysroot."""
        return run_tool(self.runner, argv).text

    def debug(self, subcmd: str, extraargs: list[str]) -> str:
        if subcmd != "sh":
            raise GuestfsError(f"debug {subcmd}: only `debug sh` runs on the host")
        return run_tool(self.runner, ["sh", "-c", " ".join(extraargs)]).text

    # -- Files --

    @os_errors
    def read_file(self, path: str) -> bytes:
        with open(self._path(path), "rb") as f:
            return f.read()

    @os_errors
    def write(self, path: str, content: bytes) -> None:
        with open(self._path(path), "wb") as f:
            f.write(content)

    @os_errors
    def upload(self, filename: str, remotefilename: str) -> None:
        shutil.copyfile(filename, self._path(remotefilename))

    @os_errors
    def download(self, remotefilename: str, filename: str) -> None:
        shutil.copyfile(self._path(remotefilename), filename)

    @os_errors
    def mkdir_p(self, path: str) -> None:
        os.makedirs(self._path(path), exist_ok=True)

    @os_errors
    def mkfifo(self, mode: int, path: str) -> None:
        os.mkfifo(self._path(path, follow=False), mode)

    @os_errors
    def touch(self, path: str) -> None:
        with open(self._path(path), "ab"):
            pass
        os.utime(self._path(path))

    @os_errors
    def truncate_size(self, path: str, size: int) -> None:
        os.truncate(self._path(path), size)

    def exists(self, path: str) -> bool:
        return os.path.exists(self._path(path))

    def _is(self, test: int, path: str, follow: bool | None) -> bool:
        try:
            st = os.lstat(self._path(path, follow=bool(follow)))
        except OSError:
            return False
        return stat.S_IFMT(st.st_mode) == test

    def is_file(self, path: str, *, followsymlinks: bool | None = None) -> bool:
        return self._is(stat.S_IFREG, path, followsymlinks)

    def is_dir(self, path: str, *, followsymlinks: bool | None = None) -> bool:
        return self._is(stat.S_IFDIR, path, followsymlinks)

    def is_symlink(self, path: str) -> bool:
        return self._is(stat.S_IFLNK, path, False)

    @os_errors
    def ls(self, directory: str) -> list[str]:
        return sorted(os.listdir(self._path(directory)))

    def _below(self, directory: str) -> list[str]:
        top = self._path(directory)
        names = []
        for here, dirs, files in os.walk(top):
            rel = os.path.relpath(here, top)
            names += [os.path.normpath(os.path.join(rel, n)) for n in (*dirs, *files)]
        return sorted(names)

    @os_errors
    def find(self, directory: str) -> list[str]:
        return ["/" + n for n in self._below(directory)]

    @os_errors
    def find0(self, directory: str, files: str) -> None:
        with open(files, "wb") as f:
            for name in self._below(directory):
                f.write(os.fsencode(name) + b"\0")

    @os_errors
    def glob_expand(self, pattern: str, *, directoryslash: bool | None = None) -> list[str]:
        """Name by name, each directory reached through within(): the clone's links lead into the clone."""
        found = ["/"]
        for name in pattern.split("/"):
            if name in ("", "."):
                continue
            matched = []
            for base in found:
                here = self._path(base)
                if not any(c in name for c in "*?["):
                    matched += [posixpath.join(base, name)] if os.path.lexists(os.path.join(here, name)) else []
                    continue
                entries = sorted(os.listdir(here)) if os.path.isdir(here) else []
                hidden = name.startswith(".")  # as the shell: * matches no name that starts with "."
                matched += [posixpath.join(base, n) for n in entries
                            if fnmatch.fnmatchcase(n, name) and (hidden or not n.startswith("."))]  # fmt: skip
            found = matched
        slash = directoryslash is not False
        return sorted(p + "/" if slash and p != "/" and os.path.isdir(self._path(p)) else p for p in found)

    @os_errors
    def readlink(self, path: str) -> str:
        return os.readlink(self._path(path, follow=False))

    @os_errors
    def ln(self, target: str, linkname: str) -> None:
        os.link(self._path(target), self._path(linkname, follow=False))

    @os_errors
    def ln_s(self, target: str, linkname: str) -> None:
        os.symlink(target, self._path(linkname, follow=False))

    @os_errors
    def ln_sf(self, target: str, linkname: str) -> None:
        link = self._path(linkname, follow=False)
        if os.path.lexists(link) and not stat.S_ISDIR(os.lstat(link).st_mode):
            os.unlink(link)
        os.symlink(target, link)

    @os_errors
    def rm_f(self, path: str) -> None:
        try:
            os.unlink(self._path(path, follow=False))
        except FileNotFoundError:
            pass

    @os_errors
    def rm_rf(self, path: str) -> None:
        target = self._path(path, follow=False)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.unlink(target)

    @os_errors
    def chmod(self, mode: int, path: str) -> None:
        os.chmod(self._path(path), mode)

    @os_errors
    def chown(self, owner: int, group: int, path: str) -> None:
        os.chown(self._path(path), owner, group)

    @os_errors
    def utimens(self, path: str, atsecs: int, atnsecs: int, mtsecs: int, mtnsecs: int) -> None:
        os.utime(self._path(path, follow=False), ns=(atsecs * 10**9 + atnsecs, mtsecs * 10**9 + mtnsecs),
                 follow_symlinks=False)  # fmt: skip

    @os_errors
    def setxattr(self, xattr: str, val: str, vallen: int, path: str) -> None:
        os.setxattr(self._path(path), xattr, os.fsencode(val)[:vallen])

    @os_errors
    def lstatns(self, path: str) -> StatNs:
        return _stat(os.lstat(self._path(path, follow=False)))

    @os_errors
    def statns(self, path: str) -> StatNs:
        return _stat(os.stat(self._path(path)))

    # -- Mounts --

    def mount(self, mountable: str, mountpoint: str) -> None:
        run_tool(self.runner, ["mount", mountable, self._path(mountpoint)])

    def mount_ro(self, mountable: str, mountpoint: str) -> None:
        run_tool(self.runner, ["mount", "-o", "ro", mountable, self._path(mountpoint)])

    def mount_options(self, options: str, mountable: str, mountpoint: str) -> None:
        run_tool(self.runner, ["mount", *(["-o", options] if options else []), mountable, self._path(mountpoint)])

    def umount_all(self) -> None:
        for point, _ in reversed(mounted_below(self.root)):  # the deepest first
            run_tool(self.runner, ["umount", point])
        self._bound = False

    def mounts(self) -> list[str]:
        """The devices mounted in the clone's tree (not the chroot's /dev, /sys, /proc, /run)."""
        return [source for _, source in mounted_below(self.root) if source.startswith("/dev/")
                and source != "/dev"]  # fmt: skip

    def sync(self) -> None:
        os.sync()

    @os_errors
    def statvfs(self, path: str) -> StatVfs:
        v = os.statvfs(self._path(path))
        return StatVfs(bsize=v.f_bsize, frsize=v.f_frsize, blocks=v.f_blocks, bfree=v.f_bfree, bavail=v.f_bavail,
                       files=v.f_files, ffree=v.f_ffree, favail=v.f_favail, fsid=v.f_fsid, flag=v.f_flag,
                       namemax=v.f_namemax)  # fmt: skip

    def fstrim(self, mountpoint: str, *, offset: int | None = None, length: int | None = None,
               minimumfreeextent: int | None = None) -> None:  # fmt: skip
        given = (("-o", offset), ("-l", length), ("-m", minimumfreeextent))
        options = [a for flag, v in given if v is not None for a in (flag, str(v))]
        run_tool(self.runner, ["fstrim", *options, self._path(mountpoint)])

    def mount_local(self, localmountpoint: str, *, readonly: bool | None = None, options: str | None = None,
                    cachetimeout: int | None = None, debugcalls: bool | None = None) -> None:  # fmt: skip
        raise GuestfsError(f"mount_local: the clone is on this host already, at {self.root}")

    def mount_local_run(self) -> None:
        raise GuestfsError(f"mount_local_run: the clone is on this host already, at {self.root}")

    # -- Filesystems, by a path of the tree --

    def xfs_info(self, pathordevice: str) -> XfsInfo:
        target = pathordevice if pathordevice.startswith("/dev/") else self._path(pathordevice)
        return cast(XfsInfo, parse_xfs_info(run_tool(self.runner, ["xfs_info", target]).text))

    def xfs_growfs(self, path: str, *, datasec: bool | None = None, logsec: bool | None = None,
                   rtsec: bool | None = None, datasize: int | None = None, logsize: int | None = None,
                   rtsize: int | None = None, rtextsize: int | None = None, maxpct: int | None = None
                   ) -> None:  # fmt: skip
        flags = [f for f, on in (("-d", datasec), ("-l", logsec), ("-r", rtsec)) if on]
        sized = [a for f, v in (("-D", datasize), ("-L", logsize), ("-R", rtsize), ("-e", rtextsize), ("-m", maxpct))
                 if v is not None for a in (f, str(v))]  # fmt: skip
        run_tool(self.runner, ["xfs_growfs", *flags, *sized, self._path(path)])

    @os_errors
    def tar_in(self, tarfile: str, directory: str, *, compress: str | None = None, xattrs: bool | None = None,
               selinux: bool | None = None, acls: bool | None = None) -> None:  # fmt: skip
        """GNU tar reads the tar file (a pipe's /dev/fd/N too) itself: the bytes pass through no Python. Owners by
        number: the host's user names are not the clone's."""
        argv = ["tar", "--extract", "--numeric-owner", "--file", "-", "--directory", self._path(directory),
                *_tar_options(compress, xattrs, selinux, acls)]  # fmt: skip
        with open(tarfile, "rb") as src:
            self._tar(argv, src)

    def tar_out(self, directory: str, tarfile: str, *, compress: str | None = None, numericowner: bool | None = None,
                excludes: list[str] | None = None, xattrs: bool | None = None, selinux: bool | None = None,
                acls: bool | None = None) -> None:  # fmt: skip
        argv = ["tar", "--create", "--file", tarfile, "--directory", self._path(directory),
                *(["--numeric-owner"] if numericowner else []), *[f"--exclude={e}" for e in excludes or []],
                *_tar_options(compress, xattrs, selinux, acls), "."]  # fmt: skip
        self._tar(argv, None)

    def _tar(self, argv: list[str], stdin: IO[bytes] | None) -> None:
        with Pipeline([argv], stdin=stdin if stdin is not None else DEVNULL, stdout=DEVNULL, stderr=PIPE) as p:
            [rc] = p.wait()
            err = p.stderr_text()
        if rc != 0:
            raise GuestfsError(f"tar failed with exit code {rc}: {err.strip().splitlines()[-1] if err.strip() else ''}")

    # -- Inspection: libguestfs's, not the host's --

    def inspect_os(self) -> list[str]:
        raise GuestfsError("inspect_os: inspecting an operating system needs the appliance (--via appliance)")

    def inspect_get_mountpoints(self, root: str) -> dict[str, str]:
        raise GuestfsError("inspect_get_mountpoints: inspecting an operating system needs the appliance")
