"""The command line's parser: every subcommand's options, with help that teaches by example."""

from __future__ import annotations

import argparse
import textwrap
from typing import NoReturn

from imgclone import __version__
from imgclone.archive.streams import DEFAULT_LEVEL, LEVELS
from imgclone.guest.via import VIAS

EPILOG = textwrap.dedent("""\
    examples:
      imgclone capture -o /backup/host.mksysb                  the running system (rootvg analog)
      imgclone capture --mount /srv/data -o data.mksysb         exactly the filesystem at /srv/data
      imgclone capture vm.qcow2 -o vm.mksysb                    an offline image, through libguestfs
      imgclone capture -e /root/exclude.list -o - | ssh backup 'cat > host.mksysb'
      imgclone archive verify host.mksysb                      every byte against its sha256, every stream decoded
      imgclone archive verify --deep host.mksysb               and every stream listed by tar, as restore reads it
      imgclone archive verify host.mksysb --against clone.qcow2  every file of the archive against a restored clone
      imgclone boot-test vm.qcow2 --json                        boot it in QEMU on a throw-away overlay

    exit codes: 0 success, 1 runtime failure, 2 usage or layout error, 130 interrupted,
                141 the reader of stdout went away (`... | head`)
    environment: ALT_BAK_ERR_REPORT=1, ALT_BAK_ERR_FAIL=1 (files that cannot be read),
                 IMGCLONE_ACCEL=kvm|tcg (force the QEMU accelerator),
                 IMGCLONE_LAUNCH_TIMEOUT=S (a libguestfs appliance that has not started
                 by then is stopped; default 180 s under KVM, then TCG is tried, 900 s under TCG)
                 IMGCLONE_INITRAMFS=appliance (Phase 3 runs the clone's update-initramfs inside the
                 appliance, isolated but minutes under TCG, instead of in a chroot on this host)
                 IMGCLONE_VCPUS=N (vCPUs of each appliance and boot-test VM; default 2 under TCG)
    """)


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like imgclone's own (the usage is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(default: object = False) -> argparse.ArgumentParser:
    """-D, -V and --json, taken before the command and after it. The commands' copies default to SUPPRESS: a
    subcommand's default would overwrite what was given before it (`imgclone -D capture` must trace)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-D", "--debug", action="store_true", default=default,
                   help="trace every command; tracebacks on errors")  # fmt: skip
    p.add_argument("-V", "--verbose", action="store_true", default=default,
                   help="list files as they are archived or restored")  # fmt: skip
    p.add_argument("--json", action="store_true", default=default, help="machine-readable output on stdout")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The imgclone parser with its subcommands."""
    common = _common(argparse.SUPPRESS)
    parser: argparse.ArgumentParser = Parser(
        prog="imgclone",
        description="Capture, clone and boot-test Linux system disks: alt_disk_copy and mksysb for Linux.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common()],
    )
    parser.add_argument("--version", action="version", version=f"imgclone {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    cap = sub.add_parser(
        "capture", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="capture mounted filesystems into a portable archive (mksysb)",
        description="Capture the mounted filesystems of this system (every filesystem on the disks or VGs that "
        "hold /), of the given mount points, or of an offline disk image into one archive: a tar holding "
        "manifest.json and one tar.zst stream per filesystem. Files matching the grep patterns in "
        "/etc/exclude.rootvg (the image's own, for an image) and in -e LIST are left out; patterns are matched "
        "against ./-relative paths, e.g. ^./tmp/ drops the contents of /tmp.",
        epilog=EPILOG,
    )  # fmt: skip
    cap.add_argument("source", nargs="?", metavar="SOURCE", help="disk image (qcow2/raw) or unmounted block device")
    cap.add_argument("-o", "--output", required=True, metavar="ARCHIVE", help="archive file, or - for stdout")
    cap.add_argument("-e", "--exclude-list", metavar="EXCLUDELIST", help="grep patterns, one a line (full path)")
    cap.add_argument("--mount", nargs="+", default=[], metavar="MOUNTPOINT",
                     help="capture exactly the filesystems mounted here")  # fmt: skip
    cap.add_argument("--level", type=int, default=DEFAULT_LEVEL, metavar="N",
                     help=f"zstd compression level, {LEVELS[0]} (fastest) to {LEVELS[-1]} (smallest); default "
                     f"{DEFAULT_LEVEL}: about 3 %% bigger than zstd's own default 3, for a third less CPU")  # fmt: skip
    cap.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    cap.add_argument("--snapshots", action="store_true",
                     help="also capture btrfs snapshots (snapper's .snapshots/N/snapshot), each as a subvolume of "
                     "its own; left out by default")  # fmt: skip

    add_restore(sub, common)
    add_copy(sub, common)

    arc = sub.add_parser("archive", help="list, show or verify an archive")
    asub = arc.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("list", "streams with their sizes and file counts"),
        ("show", "the manifest: source, boot facts, layout"),
        ("verify", "check the manifest's and every stream's sha256, and that zstd decodes every stream"),
    ):
        a = asub.add_parser(name, parents=[common], help=text, description=text)
        a.add_argument("archive", metavar="ARCHIVE", help="archive file, or - for stdin")
        if name == "show":
            a.add_argument("--layout", action="store_true", help="print only the layout JSON (for restore -i)")
        if name == "verify":
            a.add_argument("--deep", action="store_true",
                           help="also read every decompressed stream through GNU tar to its end, as restore does, "
                           "and count its members (about 1.5x the CPU: the sha256 already ties every byte to what "
                           "capture wrote)")  # fmt: skip
            a.add_argument("--against", action="append", default=[], metavar="TARGET",
                           help="instead, compare every file of the archive (content, owner, mode, mtime, xattrs, "
                           "ACLs, hardlinks, sparseness, devices, symlinks) with the images or devices a restore "
                           "wrote (its -d TARGETs: repeat, or quote a space-separated list); read-only; "
                           "exit 1 when any differ")  # fmt: skip
    _add_boot_test(sub, common)
    add_alt(sub, common)
    return parser


def _add_boot_test(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    bt = sub.add_parser(
        "boot-test", parents=[common], help="boot an image in QEMU (on a throw-away overlay) and check it comes up",
        description="Boot IMAGE in QEMU on a temporary qcow2 overlay (the image is never written), with a one-shot "
        "systemd unit injected into the overlay that prints IMGCLONE-BOOT-OK <hostname> <uptime> on the serial "
        "console once multi-user.target is reached, then powers off. Exit 0 when the marker (and --expect TEXT) "
        "appeared in the serial log before the timeout, else 1 with the log's last lines on stderr.",
    )  # fmt: skip
    bt.add_argument("image", metavar="IMAGE", help="disk image (qcow2 or raw)")
    bt.add_argument("--uefi", action="store_true", help="boot with OVMF (default: UEFI when the image only has an ESP)")
    bt.add_argument("--disk", action="append", default=[], metavar="IMAGE2",
                    help="attach a further image after IMAGE, on its own overlay (a VG's other disks); "
                    "repeat for more")  # fmt: skip
    bt.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds to wait (default 300)")
    bt.add_argument("--expect", metavar="TEXT", help="also require TEXT anywhere in the serial log")
    bt.add_argument("--keep-log", metavar="PATH", help="copy the serial log to PATH (else it is deleted)")


PHASES = ("1", "2", "3", "12", "23", "all")

RESTORE_EPILOG = textwrap.dedent("""\
    examples:
      imgclone restore -a host.mksysb -d /var/lib/libvirt/images/clone.qcow2        a new image, smallest that fits
      imgclone restore -a host.mksysb -d clone.qcow2 --size 20G                     bigger: filesystems grow
      imgclone restore -a host.mksysb -d "/dev/sdb /dev/sdc"                        the VG spans both disks
      imgclone restore -a host.mksysb -d small.img --resize fit --convert ext4=xfs  shrink to the data, to XFS
      imgclone restore -a host.mksysb -d /dev/sdb -T --dry-run                      show the plan, write nothing
      imgclone archive show --layout host.mksysb > /root/layout.json; edit it; restore ... -i /root/layout.json

    During Phases 1-2 the volume groups are named altinst_<vg> and the logical volumes alt_<lv>, as on AIX.
    Filesystems get new UUIDs (the clone's fstab follows) so the clone can sit next to its source.
    """)


def add_restore(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """The restore subcommand (alt_disk_mksysb)."""
    r = sub.add_parser(
        "restore", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RESTORE_EPILOG,
        help="rebuild partitions, LVM and filesystems from an archive onto disks or images (alt_disk_mksysb)",
        description="Plan a layout on the targets from the archive (or a -i layout file), then partition, create "
        "the LVM volume groups altinst_<vg> with logical volumes alt_<lv>, make the filesystems (optionally "
        "converted), and restore every file with its metadata (Phase 1); customize the clone (Phase 2); give "
        "it its final names and make it bootable (Phase 3).",
    )  # fmt: skip
    r.add_argument("-a", "--archive", metavar="ARCHIVE", help="archive made by imgclone capture (needed for Phase 1)")
    add_target_options(r)
    add_phase_options(r)


COPY_EPILOG = textwrap.dedent("""\
    examples (the AIX spellings work too: alt_disk_copy -d "disk1.qcow2 disk2.qcow2" -P12):
      imgclone copy -d /dev/sdb                                  clone the running system to a second disk
      imgclone copy -d "/dev/sdb /dev/sdc" -b update_all -l /updates   and update from local packages
      imgclone copy --source vm.qcow2 -d clone.qcow2 --size 20G  clone an offline image into a bigger one (by blocks)
      imgclone copy -d /dev/sdb -P1; imgclone copy -d /dev/sdb -P23 -r   stop after Phase 1; later finish, reboot
      imgclone copy -d clone.img -O -c ttyS0,115200 -x /root/firstboot.sh   for another machine
      imgclone copy -B -T -d "/dev/sdb /dev/sdc"                  ext2/3 become ext4; boot order left alone

    From an image into a new image, Phase 1 copies the source's blocks on the host (qemu-img convert), then
    grows, renames, renews UUIDs and removes what the image's /etc/exclude.rootvg excludes, in the appliance;
    unless the copy needs files (-e, -T/--convert, -i, --resize fit, --archive, an existing target; --by files
    asks for files). Otherwise it streams the capture into the restore as it is written (no temporary archive;
    --archive PATH keeps a copy); with -T/--convert the capture first finds the files near the new type's
    limits, and the plan refuses one it cannot hold, by name, before anything is written. Phase 2 customizes;
    Phase 3 renames altinst_<vg> → <vg>, alt_<lv> → <lv> and installs GRUB.
    exit codes: 0 success, 1 failure, 2 usage error; ALT_BAK_ERR_REPORT=1: files that cannot be read make the
    exit code 1 and the boot order is not set; ALT_BAK_ERR_FAIL=1: they stop the copy, and what it made is removed.
    """)


def add_copy(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """The copy subcommand (alt_disk_copy)."""
    c = sub.add_parser(
        "copy", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=COPY_EPILOG,
        help="clone the running system (or an image) onto disks or images in three phases (alt_disk_copy)",
        description="Capture the mounted filesystems of the running system (the disks or VGs that hold /), or "
        "of --source IMAGE, and restore them onto the targets: Phase 1 builds partitions, VG altinst_<vg>, LVs "
        "alt_<lv> and filesystems and restores the data; Phase 2 customizes; Phase 3 gives the final names and "
        "makes the clone bootable.",
    )  # fmt: skip
    c.add_argument("--source", metavar="IMAGE", help="clone this disk image instead of the running system")
    c.add_argument("--archive", metavar="PATH", help="also write the Phase 1 archive here (default: none is written)")
    c.add_argument("-e", "--exclude-list", metavar="EXCLUDELIST", help="grep patterns, one a line (full path)")
    c.add_argument("--by", choices=["auto", "blocks", "files"], default="auto",
                   help="how Phase 1 copies an image source: its blocks on the host, then grown and renamed (fast; "
                   "only into a new image, with nothing that needs files), or every file through the appliance; "
                   "auto (default): blocks when they can do")  # fmt: skip
    c.add_argument("--snapshots", action="store_true",
                 help="also capture btrfs snapshots (snapper's .snapshots/N/snapshot), each as a subvolume of "
                 "its own; left out by default")  # fmt: skip
    add_target_options(c)
    add_phase_options(c)


def add_target_options(r: argparse.ArgumentParser) -> None:
    """Phase 1 options shared by restore and copy."""
    t = r.add_argument_group("targets and Phase 1")
    t.add_argument("-d", "--target", action="append", required=True, metavar="TARGET",
                   help="disk image (created when absent; .qcow2 → qcow2, else raw) or block device; "
                   "repeat, or quote a space-separated list")  # fmt: skip
    t.add_argument("-i", "--layout", metavar="LAYOUT.json", help="edited layout to use (full path), as printed "
                   "by `imgclone archive show --layout`")  # fmt: skip
    t.add_argument("--size", metavar="SIZE", help="size of images created, e.g. 20G, 512M (default: smallest fit)")
    t.add_argument("--resize", choices=["exact", "fit", "grow"], help="sizes: source sizes, shrink to the data, "
                   "or grow into bigger targets (default: grow when the targets are bigger, else exact)")  # fmt: skip
    t.add_argument("-T", dest="upgrade", action="store_true", help="convert ext2/ext3 to ext4 (as JFS to JFS2)")
    t.add_argument("--convert", action="append", default=[], metavar="SRC=DST",
                   help="convert filesystems of type SRC to DST (ext2, ext3, ext4, xfs, btrfs)")  # fmt: skip
    t.add_argument("-S", dest="skip_space", action="store_true", help="skip the space check on the targets")
    t.add_argument("--lv-name-limit", type=int, default=127, metavar="N",
                   help="longest LV name allowed with the alt_ prefix (127: Linux LVM; 15: the AIX rule)")  # fmt: skip
    t.add_argument("--keep-uuids", action="store_true", help="keep the source's filesystem UUIDs")
    t.add_argument("--force", action="store_true", help="overwrite targets that hold partitions, PVs or data")
    t.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    t.add_argument("--via", choices=VIAS, default="auto",
                   help="where the phases work on the clone: host (this host's kernel and tools, the clone "
                   "mounted at /alt_inst as on AIX; block devices, raw images as loop devices), appliance (the "
                   "libguestfs appliance), auto (default: host when every target is a block device and this host "
                   "has what the plan needs, else the appliance; it says which and why)")  # fmt: skip
    t.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    t.add_argument("-P", dest="phases", default="all", choices=PHASES, metavar="PHASES",
                   help="phases to run: 1 (restore), 2 (customize), 3 (final names, initramfs, GRUB), 12, 23 or all; "
                   "a later run with -P23 on the same -d targets continues where -P1 stopped")  # fmt: skip


def add_phase_options(r: argparse.ArgumentParser) -> None:
    """Phase 2 and 3 flags of alt_disk_copy, shared by restore and copy."""
    c = r.add_argument_group("Phase 2: customize the clone (names still altinst_/alt_)")
    c.add_argument("-l", dest="images", metavar="DIR",
                   help="directory (full path) of local packages (.deb/.rpm) to install or update from")  # fmt: skip
    c.add_argument("-w", dest="install", action="append", default=[], metavar="PKGS",
                   help="packages to install from -l (quote a space-separated list, or repeat)")  # fmt: skip
    c.add_argument("-b", dest="bundle", metavar="FILE",
                   help="file listing packages to install from -l; the word update_all updates every package "
                   "installed in the clone for which -l has a newer version")  # fmt: skip
    c.add_argument("-F", dest="fixes", action="append", default=[], metavar="FIXES",
                   help="package updates to apply from -l (the APAR analog), or update_all")  # fmt: skip
    c.add_argument("-f", dest="fix_file", metavar="FIXFILE", help="file listing package updates to apply from -l")
    c.add_argument("-I", dest="install_flags", metavar="FLAGS",
                   help="extra flags for dpkg --install (or rpm -Uvh), e.g. -I='--force-confnew'")  # fmt: skip
    c.add_argument("-s", dest="script", metavar="SCRIPT",
                   help="executable run on this host with the clone's filesystems mounted at /alt_inst (FUSE); "
                   "its exit status counts")  # fmt: skip
    c.add_argument("-R", dest="resolv_conf", metavar="RESOLVCONF", help="file (full path) to become the clone's "
                   "/etc/resolv.conf")  # fmt: skip
    c.add_argument("-x", dest="first_boot", metavar="SCRIPT",
                   help="script run once on the clone's first boot, after all filesystems are mounted")  # fmt: skip
    c.add_argument("-n", dest="managed_client", action="store_true",
                   help="remain a managed client: copy this host's root authorized_keys and Salt/Puppet/Chef "
                   "client identity into the clone (the NIM /.rhosts and /etc/niminfo analog)")  # fmt: skip
    c.add_argument("-O", dest="device_reset", action="store_true",
                   help="device reset, for a clone that becomes another machine: empty machine-id, no ssh host "
                   "keys (new ones on first boot), no MAC-bound network configuration, no random seed")  # fmt: skip
    c.add_argument("-c", dest="console", metavar="CONSOLE",
                   help="with -O: the clone's console, e.g. ttyS0,115200 (console= and a serial getty)")  # fmt: skip
    c.add_argument("-u", dest="wpar", action="store_true",
                   help="accepted for alt_disk_copy compatibility: container filesystems on the root disks "
                   "(the WPAR analog) are always copied")  # fmt: skip
    c.add_argument("--alt-inst", default="/alt_inst", metavar="DIR",
                   help="where -s sees the clone (default /alt_inst)")  # fmt: skip
    f = r.add_argument_group("Phase 3: final names, initramfs, GRUB, boot order")
    f.add_argument("-g", dest="skip_boot_checks", action="store_true",
                   help="skip the bootability checks (kernel, initramfs, firmware vs partitions)")  # fmt: skip
    f.add_argument("--beside-source", action="store_true",
                   help="the clone will boot with its source's disks attached: keep altinst_<vg> until its first "
                   "boot, which renames the source's <vg> old_<vg> (automatic for disks of this host)")  # fmt: skip
    f.add_argument("-B", dest="no_bootlist", action="store_true",
                   help="do not set the boot order (efibootmgr BootNext for a disk of this UEFI host)")  # fmt: skip
    f.add_argument("-r", dest="reboot", action="store_true",
                   help="reboot into the clone when all is done (disks of this host only; not with -B)")  # fmt: skip


ALT_EPILOG = textwrap.dedent("""\
    examples:
      imgclone alt query                                   every alternate the journals know
      imgclone alt query -d clone.qcow2 --json             one, as JSON
      imgclone alt wake -d clone.qcow2                     mount its filesystems read-write at /alt_inst
      imgclone alt wake -d "/dev/sdb /dev/sdc" --mountpoint /mnt/alt
      imgclone alt sleep -d clone.qcow2                    unmount, flush the images, forget the mount
      imgclone alt cleanup -d clone.qcow2                  forget the alternate (the disks keep their data)
      imgclone alt cleanup -d clone.qcow2 --wipe           and blank the disks so restore takes them again
      imgclone alt cleanup --old-vg old_rootvg             say what would be removed from this host
      imgclone alt cleanup --old-vg old_rootvg --yes-wipe  remove it: vgremove, pvremove, wipefs

    The AIX spellings work too: alt_rootvg_op -q -d clone.qcow2, -W -d ..., -S -d ..., -X [old_rootvg].
    An alternate is named by the -d targets its Phase 1 (restore or copy) was given; its journal lives in
    /var/lib/imgclone/alternates (IMGCLONE_STATE_DIR). Until Phase 3 its volume group is altinst_<vg> with
    logical volumes alt_<lv>; after it, <vg> and <lv>.
    """)


def _targets(p: argparse.ArgumentParser, required: bool, text: str) -> None:
    p.add_argument("-d", "--target", action="append", required=required, metavar="TARGETS",
                   help=text + "; repeat, or quote a space-separated list")  # fmt: skip


def add_alt(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """The alt subcommand (alt_rootvg_op): query, wake, sleep, cleanup."""
    raw = argparse.RawDescriptionHelpFormatter
    alt = sub.add_parser(
        "alt", formatter_class=raw, epilog=ALT_EPILOG,
        help="query, wake (mount), sleep (unmount) or clean up an alternate (alt_rootvg_op)",
        description="Operate on the alternates that restore/copy built: list them with their targets, volume "
        "group names and phases; mount one's filesystems read-write on this host (through guestmount, no "
        "device-mapper needed) and unmount it; forget one and optionally wipe its disks; remove the "
        "old_<vg> volume group (AIX's old_rootvg) from this host.",
    )  # fmt: skip
    asub = alt.add_subparsers(dest="alt_action", metavar="ACTION", required=True)
    q = asub.add_parser("query", parents=[common], formatter_class=raw, epilog=ALT_EPILOG,
                        help="alternates: targets, volume groups as named now, phases, archive, mount",
                        description="Show every alternate recorded in the journals (or the one on -d): its "
                        "targets and whether each still exists, its volume groups and logical volumes as named now, "
                        "the phases completed and when, the archive it came from, and where it is woken.")  # fmt: skip
    _targets(q, False, "only the alternate on these targets")
    w = asub.add_parser("wake", parents=[common], formatter_class=raw, epilog=ALT_EPILOG,
                        help="mount the alternate's filesystems read-write at /alt_inst (guestmount)",
                        description="Mount every filesystem of the alternate, parents first, read-write at the "
                        "mount point through libguestfs's guestmount, a FUSE daemon that keeps running after this "
                        "command returns. Changes reach the images when `imgclone alt sleep` unmounts.")  # fmt: skip
    _targets(w, True, "the alternate's targets, as given to restore/copy")
    w.add_argument("--mountpoint", default=None, metavar="DIR",
                   help="an empty directory, made when absent (default /alt_inst)")  # fmt: skip
    s = asub.add_parser("sleep", parents=[common], formatter_class=raw, epilog=ALT_EPILOG,
                        help="unmount a woken alternate (guestunmount) and wait until its images are written",
                        description="Unmount the woken alternate with guestunmount, wait for guestmount to flush "
                        "the images and exit, and clear the wake record (also a stale one).")  # fmt: skip
    _targets(s, False, "the woken alternate's targets (default: the only woken one)")
    c = asub.add_parser("cleanup", parents=[common], formatter_class=raw, epilog=ALT_EPILOG,
                        help="forget an alternate, optionally wiping its disks; or remove old_<vg> from this host",
                        description="-d: forget the alternate (remove its journal); with --wipe first remove its "
                        "volume groups and PVs and wipe filesystem, PV and partition-table signatures on its "
                        "recorded targets (and only those), so restore takes them again without --force. "
                        "--old-vg old_<vg>: a source VG its clone renamed (AIX's old_rootvg): refused while any of its "
                        "logical volumes is active or mounted; --yes-wipe runs vgremove, pvremove and wipefs "
                        "on its PVs.")  # fmt: skip
    _targets(c, False, "the alternate's targets")
    c.add_argument("--wipe", action="store_true", help="also blank the recorded targets (through one appliance)")
    c.add_argument("--old-vg", metavar="old_VG", help="a volume group old_<vg> on this host instead of an alternate")
    c.add_argument("--yes-wipe", action="store_true", help="with --old-vg: really remove it and wipe its PVs")
