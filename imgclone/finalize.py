"""Phase 3, finalize: final names, a bootable clone (initramfs, GRUB), through one appliance.

Reads what Phase 1 recorded (state.py), renames altinst_<vg> → <vg> and alt_<lv> → <lv>,
mounts the clone under its final names, checks that it can boot (unless -g), regenerates
the initramfs only when the one in place lacks what the clone needs (a module for a
converted root filesystem), installs GRUB for the firmware the source booted with (BIOS
i386-pc into the first target's MBR; UEFI x86_64-efi at the removable path of the ESP)
and regenerates grub.cfg, which names the clone's new UUIDs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import alternate, build, names, state
from .errors import ImgcloneError
from .guest import Guest
from .layout import Layout, PartFlag, TableType

log = logging.getLogger("imgclone")


@dataclass
class Finalize:
    """State of one Phase 3 run."""

    targets: tuple[str, ...]
    doc: dict[str, Any]
    layout: Layout  # with final names
    skip_checks: bool = False
    g: Guest | None = None
    devs: build.Devices | None = None
    timings: dict[str, float] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)

    @property
    def guest(self) -> Guest:
        assert self.g is not None
        return self.g


def load(targets: tuple[str, ...]) -> Finalize:
    """Phase 1 must have run on exactly these targets."""
    doc = alternate.load(targets)
    if "3" in doc.get("phases", {}):
        log.info("Phase 3 already ran on these targets; running it again")
    return Finalize(targets=targets, doc=doc, layout=alternate.final_layout(Layout.from_dict(doc["layout"])))


def finalize(targets: tuple[str, ...], *, skip_checks: bool = False, debug: bool = False) -> Finalize:
    """Run Phase 3 on the targets of an earlier Phase 1."""
    ctx = load(targets)
    ctx.skip_checks = skip_checks
    steps: list[Callable[[Finalize], None]] = [rename_volumes, mount_clone, check_bootable, ensure_initramfs,
                                               install_grub, update_grub, unmount]  # fmt: skip
    with alternate.guest(ctx.doc, debug=debug) as g:
        ctx.g = g
        ctx.devs = alternate.devices(g, ctx.layout)
        for step in steps:
            t0 = time.monotonic()
            step(ctx)
            ctx.timings[step.__name__] = round(time.monotonic() - t0, 1)
    state.mark_phase(targets, "3", {"timings": ctx.timings, "actions": ctx.actions})
    return ctx


def rename_volumes(ctx: Finalize) -> None:
    """altinst_<vg> → <vg>, alt_<lv> → <lv> (idempotent: a rerun finds them renamed)."""
    g = ctx.guest
    existing = set(g.vgs())
    for vg in ctx.layout.vgs:
        alt = names.alt_vg(vg.name)
        if alt in existing:
            if vg.name in existing:
                raise ImgcloneError(f"both {alt} and {vg.name} exist on the targets", "clean up the stale one first")
            g.vgrename(alt, vg.name)
            ctx.actions.append(f"renamed volume group {alt} → {vg.name}")
    g.vg_activate(True, [vg.name for vg in ctx.layout.vgs])
    present = set(g.lvs())
    vg_names = {vg.id: vg.name for vg in ctx.layout.vgs}
    for lv in ctx.layout.lvs:
        vgname = vg_names[lv.vg]
        old = f"/dev/{vgname}/{names.alt_lv(lv.name)}"
        if old in present:
            g.lvrename(old, f"/dev/{vgname}/{lv.name}")
            ctx.actions.append(f"renamed logical volume {vgname}/{names.alt_lv(lv.name)} → {lv.name}")


def mount_clone(ctx: Finalize) -> None:
    assert ctx.devs is not None
    build.mount_tree(ctx.guest, ctx.devs)


def firmware(ctx: Finalize) -> str:
    """bios, uefi or uefi+bios: what the source booted with."""
    return str(ctx.doc.get("boot", {}).get("firmware") or "bios")


def check_bootable(ctx: Finalize) -> None:
    """-g skips: /boot holds a kernel and an initramfs; the disk suits the firmware."""
    if ctx.skip_checks:
        return
    g = ctx.guest
    kernels = [f for f in g.ls("/boot") if f.startswith("vmlinuz-")]
    initrds = [f for f in g.ls("/boot") if f.startswith("initrd.img-")]
    if not kernels or not initrds:
        raise ImgcloneError("the clone has no kernel or initramfs in /boot", "-g skips this check")
    fw = firmware(ctx)
    disk0 = ctx.layout.disks[0]
    flags = {f for p in ctx.layout.partitions if p.disk == disk0.id for f in p.flags}
    if "uefi" in fw and PartFlag.ESP not in flags:
        raise ImgcloneError("the source booted with UEFI but the clone has no ESP", "-g skips this check")
    if fw == "bios" and disk0.table is TableType.GPT and PartFlag.BIOS_GRUB not in flags:
        raise ImgcloneError("BIOS boot from GPT needs a bios_grub partition", "-g skips this check")


ROOT_MODULES = {"xfs": "xfs.ko", "btrfs": "btrfs.ko", "ext4": "ext4.ko", "ext3": "ext4.ko", "ext2": "ext4.ko"}


def ensure_initramfs(ctx: Finalize) -> None:
    """Regenerate only when an initramfs lacks the root filesystem's module (costly under TCG)."""
    g = ctx.guest
    root = ctx.layout.filesystem_at("/")
    if root is None:
        return
    module = ROOT_MODULES.get(str(root.type))
    for initrd in (f for f in g.ls("/boot") if f.startswith("initrd.img-")):
        listing = g.command(["lsinitramfs", f"/boot/{initrd}"])
        if module and f"/{module}" not in listing:
            version = initrd.removeprefix("initrd.img-")
            log.info("initramfs %s lacks %s: regenerating it (minutes under TCG)", initrd, module)
            g.command(["update-initramfs", "-u", "-k", version])
            ctx.actions.append(f"regenerated /boot/{initrd} for {root.type}")


def install_grub(ctx: Finalize) -> None:
    """GRUB into the clone's first disk (BIOS) and/or its ESP's removable path (UEFI)."""
    g = ctx.guest
    assert ctx.devs is not None
    fw = firmware(ctx)
    disk0 = f"/dev/disk/guestfs/{alternate.disk_label(0)}"
    if "bios" in fw:
        g.command(["grub-install", "--target=i386-pc", disk0])
        ctx.actions.append("installed GRUB for BIOS (i386-pc) on the first target")
    if "uefi" in fw:
        g.command(["grub-install", "--target=x86_64-efi", "--efi-directory=/boot/efi", "--removable",
                   "--no-nvram"])  # fmt: skip
        ctx.actions.append("installed GRUB for UEFI at EFI/BOOT/BOOTX64.EFI")


def update_grub(ctx: Finalize) -> None:
    ctx.guest.command(["update-grub"])
    ctx.actions.append("regenerated /boot/grub/grub.cfg")


def unmount(ctx: Finalize) -> None:
    g = ctx.guest
    g.sync()
    g.umount_all()
