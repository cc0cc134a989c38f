"""Build small test disk images through libguestfs, in one appliance launch each.

`build_gpt_lvm_image` makes a qcow2 with GPT (ESP vfat /boot/efi, ext4 /boot, LVM PV),
VG rootvg with LVs root (ext4 /), var (xfs /var) and swap, and a tiny Debian-like root
that libguestfs inspection recognises. `GPT_LVM` describes what it made, for assertions.
A build takes about 30 s under TCG: share one image per session through
`cached_gpt_lvm_image(tmp_path_factory.getbasetemp() / "images")`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgclone.guest import Guest
from imgclone.run import HOST

MiB = 1024 * 1024
GiB = 1024 * MiB
SECTOR = 512

# What build_gpt_lvm_image creates (sizes in MiB, labels), so tests need not repeat them.
GPT_LVM: dict[str, Any] = {
    "vg": "rootvg",
    "partitions": {1: ("esp", 64), 2: ("boot", 128), 3: ("lvm", None)},
    "lvs": {"root": 400, "var": 300, "swap": 64},
    "labels": {"/": "root", "/boot": "boot", "/boot/efi": "EFI", "/var": "var", "swap": "swap"},
    "types": {"/": "ext4", "/boot": "ext4", "/boot/efi": "vfat", "/var": "xfs"},
    "cmdline": "quiet splash",
}

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LVM_TYPE = "E6D6D379-F507-44C2-A23C-238F2A3DF928"

OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""

DEFAULT_GRUB = """\
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX="splash"
"""

GRUB_CFG = """\
menuentry 'Debian GNU/Linux' {
	linux /vmlinuz-6.1.0 root=/dev/mapper/rootvg-root ro quiet
}
"""


def _partition(g: Guest, dev: str, size: int) -> None:
    """GPT: ESP 64 MiB, /boot 128 MiB, the rest an LVM PV (1 MiB free at the end for the backup GPT)."""
    g.part_init(dev, "gpt")
    start = MiB // SECTOR
    for num, (name, mib) in GPT_LVM["partitions"].items():
        end = (size - MiB) // SECTOR - 1 if mib is None else start + mib * MiB // SECTOR - 1
        g.part_add(dev, "p", start, end)
        g.part_set_name(dev, num, name)
        start = end + 1
    g.part_set_gpt_type(dev, 1, ESP_TYPE)
    g.part_set_gpt_type(dev, 3, LVM_TYPE)


def _make_filesystems(g: Guest, dev: str) -> None:
    labels = GPT_LVM["labels"]
    g.mkfs("vfat", f"{dev}1", label=labels["/boot/efi"])
    g.mkfs("ext4", f"{dev}2", label=labels["/boot"])
    g.pvcreate(f"{dev}3")
    g.vgcreate("rootvg", [f"{dev}3"])
    for lv, mib in GPT_LVM["lvs"].items():
        g.lvcreate(lv, "rootvg", mib)
    g.mkfs("ext4", "/dev/rootvg/root", label=labels["/"])
    g.mkfs("xfs", "/dev/rootvg/var", label=labels["/var"])
    g.mkswap("/dev/rootvg/swap", label=labels["swap"])


def _mount(g: Guest, dev: str) -> None:
    g.mount("/dev/rootvg/root", "/")
    g.mkdir_p("/boot")
    g.mount(f"{dev}2", "/boot")
    g.mkdir_p("/boot/efi")
    g.mount(f"{dev}1", "/boot/efi")
    g.mkdir_p("/var")
    g.mount("/dev/rootvg/var", "/var")


def _fstab(g: Guest, dev: str) -> str:
    boot, esp = g.vfs_uuid(f"{dev}2"), g.vfs_uuid(f"{dev}1")
    return (
        "# /etc/fstab: static file system information.\n"
        "/dev/mapper/rootvg-root  /          ext4  errors=remount-ro  0 1\n"
        f"UUID={boot}  /boot  ext4  defaults  0 2\n"
        f"UUID={esp}  /boot/efi  vfat  umask=0077  0 1\n"
        "/dev/mapper/rootvg-var   /var       xfs   defaults,noatime   0 2\n"
        "/dev/mapper/rootvg-swap  none       swap  sw                 0 0\n"
    )


def _populate(g: Guest, dev: str) -> None:
    for d in ("/bin", "/etc/default", "/home/u", "/var/tmp", "/var/log", "/boot/grub/x86_64-efi",
              "/boot/efi/EFI/debian", "/usr/bin", "/tmp"):  # fmt: skip
        g.mkdir_p(d)
    g.write("/etc/fstab", _fstab(g, dev).encode())
    g.write("/etc/os-release", OS_RELEASE.encode())
    g.write("/etc/debian_version", b"12.5\n")
    g.write("/etc/hostname", b"imgclone-test\n")
    g.write("/etc/hosts", b"127.0.0.1 localhost\n")
    g.write("/etc/default/grub", DEFAULT_GRUB.encode())
    g.write("/etc/exclude.rootvg", b"^./var/tmp/\n")
    g.write("/boot/grub/grub.cfg", GRUB_CFG.encode())
    g.write("/boot/efi/EFI/debian/grubx64.efi", b"MZ fake grub\n")
    g.write("/boot/efi/EFI/debian/shimx64.efi", b"MZ fake shim\n")
    g.write("/bin/sh", b"#!fake\n")
    g.chmod(0o755, "/bin/sh")
    g.write("/var/tmp/junk.txt", b"junk\n" * 100)
    g.write("/var/log/app.log", b"started\n" * 1000)
    g.write("/home/u/file with space", b"spaced out\n")
    g.write("/home/u/hard1", b"linked\n")
    g.ln("/home/u/hard1", "/home/u/hard2")
    g.ln_s("hard1", "/home/u/symlink")
    g.mkfifo(0o644, "/home/u/fifo")
    g.write("/home/u/xattr", b"has an xattr\n")
    g.setxattr("user.imgclone", "hello", 5, "/home/u/xattr")
    g.touch("/home/u/sparse")
    g.truncate_size("/home/u/sparse", 64 * MiB)
    g.chown(1000, 1000, "/home/u")


def build_gpt_lvm_image(path: Path, size: int = GiB) -> None:
    """Create the GPT + LVM qcow2 test image at path (described by GPT_LVM)."""
    HOST.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), str(size)])
    with _writable(path) as g:
        dev = "/dev/sda"
        _partition(g, dev, size)
        _make_filesystems(g, dev)
        _mount(g, dev)
        _populate(g, dev)
        g.sync()
        g.umount_all()


def cached_gpt_lvm_image(directory: Path) -> Path:
    """The GPT + LVM image in directory, built on the first call only (pass a session-wide directory).

    Tests must open it read-only (or copy it, e.g. `qemu-img create -b` an overlay) to keep it pristine.
    """
    path = directory / "gpt-lvm.qcow2"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build_gpt_lvm_image(partial)
        partial.rename(path)
    return path


def _writable(path: Path) -> Guest:
    g = Guest()
    g.add_drive(str(path), readonly=False, format="qcow2")
    return g
