"""Phase 3, finalize: final names, a bootable clone (initramfs, GRUB), on this host or through one appliance.

Reads what Phase 1 recorded (model/journal.py), renames altinst_<vg> → <vg> and alt_<lv> → <lv>,
mounts the clone under its final names, checks that it can boot (unless -g), regenerates
the initramfs only when the one in place lacks what the clone needs (a module for a
converted root filesystem), installs GRUB for the firmware the source booted with (BIOS
i386-pc into the first target's MBR; UEFI x86_64-efi at the removable path of the ESP)
and regenerates grub.cfg, which names the clone's new UUIDs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from imgclone.errors import ImgcloneError
from imgclone.guest import session
from imgclone.guest.steps import Context, run_phase, steps
from imgclone.model import journal as state
from imgclone.model import names
from imgclone.model.layout import Layout, LvKind, PartFlag, TableType
from imgclone.phases import initramfs, oldvg
from imgclone.phases.phase import Phase
from imgclone.storage import build

log = logging.getLogger("imgclone")
PLACES = {"host": "on this host, in a copy of the clone", "clone": "on this host, in the clone",
          "appliance": "in the appliance"}  # fmt: skip


@dataclass(kw_only=True)
class Finalize(Context):
    """One Phase 3 run: the alternate's journal and the names Phase 3 gives its volumes."""

    journal: state.Journal
    layout: Layout  # the names Phase 3 gives: final, or altinst_<vg> kept with deferred_vgs
    skip_checks: bool = False
    deferred_vgs: dict[str, str] = field(default_factory=dict)  # altinst_<vg> → <vg>, renamed on first boot
    devs: build.Devices | None = None

    @property
    def devices(self) -> build.Devices:
        """Layout ids → the guest's device names (its drives are the journal's targets, in order)."""
        if self.devs is None:
            self.devs = build.devices(self.g, self.layout)
        return self.devs


def load(targets: tuple[str, ...]) -> Finalize:
    """Phase 1 must have run on exactly these targets."""
    journal = state.load_alternate(targets)
    if "3" in journal.phases:
        log.info("Phase 3 already ran on these targets; running it again")
    return Finalize(targets=targets, journal=journal, layout=names.final_layout(journal.built))


def finalize(targets: tuple[str, ...], *, skip_checks: bool = False, beside_source: bool = False,
             debug: bool = False, shared: session.Session | None = None) -> Finalize:  # fmt: skip
    """Run Phase 3 on the targets of an earlier Phase 1 (on the `shared` session's clone when the command has one)."""
    ctx = load(targets)
    ctx.skip_checks = skip_checks
    if beside_source or _meets_host_vg(ctx):
        alt = ctx.journal.built
        ctx.deferred_vgs = {vg.name: names.final_name(vg.name) for vg in alt.vgs}
        ctx.layout = names.deferred_layout(alt)
    clone = session.opened(ctx.journal.drives, shared, layout=ctx.journal.current_layout(), debug=debug)
    run_phase(Phase.FINALIZE.value, ctx, STEPS, clone)
    state.mark_phase(targets, "3", state.PhaseRecord(state.now(), ctx.timings, tuple(ctx.actions),
                                                     deferred_vgs=ctx.deferred_vgs))  # fmt: skip
    return ctx


def _meets_host_vg(ctx: Finalize) -> bool:
    """A clone on a disk of this host whose VG name this host uses already: the rename waits for its first boot."""
    if not any(t.kind == "device" for t in ctx.journal.targets):
        return False
    clash = oldvg.host_vg_names() & {vg.name for vg in ctx.layout.vgs}
    if clash:
        log.info("this host has volume group(s) %s: the clone keeps altinst_ names until its first boot",
                 ", ".join(sorted(clash)))  # fmt: skip
    return bool(clash)


def rename_volumes(ctx: Finalize) -> None:
    """altinst_<vg> → <vg>, alt_<lv> → <lv> (idempotent: a rerun finds them renamed)."""
    g = ctx.g
    existing = set(g.vgs())
    for vg in ctx.layout.vgs if not ctx.deferred_vgs else ():
        alt = names.alt_vg(vg.name)
        if alt in existing:
            if vg.name in existing:
                raise ImgcloneError(f"both {alt} and {vg.name} exist on the targets", "clean up the stale one first")
            g.vgrename(alt, vg.name)
            ctx.actions.append(f"renamed volume group {alt} → {vg.name}")
    g.vg_activate(True, [vg.name for vg in ctx.layout.vgs])
    present = set(g.lvs())
    vg_names = {vg.id: vg.name for vg in ctx.layout.vgs}
    if any(lv.kind == LvKind.THIN_POOL for lv in ctx.layout.lvs):  # libguestfs's lvs lists no thin pool
        out = g.appliance_command(["lvm", "lvs", "--noheadings", "-o", "vg_name,lv_name", *vg_names.values()])
        present |= {f"/dev/{vg}/{lv}" for vg, lv in (line.split() for line in out.splitlines() if line.strip())}
    for lv in ctx.layout.lvs:
        vgname = vg_names[lv.vg]
        old = f"/dev/{vgname}/{names.alt_lv(lv.name)}"
        if old in present:
            g.lvrename(old, f"/dev/{vgname}/{lv.name}")
            ctx.actions.append(f"renamed logical volume {vgname}/{names.alt_lv(lv.name)} → {lv.name}")


def mount_clone(ctx: Finalize) -> None:
    build.mount_tree(ctx.g, ctx.devices)


def firmware(ctx: Finalize) -> str:
    """bios, uefi or uefi+bios: what the source booted with."""
    return ctx.journal.firmware


def check_bootable(ctx: Finalize) -> None:
    """-g skips: /boot holds a kernel and an initramfs; the disk suits the firmware."""
    if ctx.skip_checks:
        return
    g = ctx.g
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


def install_vg_rename(ctx: Finalize) -> None:
    """Deferred names: the initramfs script that renames the source's VG old_<vg> and the clone's <vg> on first boot."""
    if not ctx.deferred_vgs:
        return
    g = ctx.g
    uuids = {oldvg.lvm_uuid(g.vguuid(alt)): final for alt, final in ctx.deferred_vgs.items()}
    g.mkdir_p(oldvg.SCRIPT.rsplit("/", 1)[0])
    g.write(oldvg.SCRIPT, oldvg.script_text(uuids).encode())
    g.chmod(0o755, oldvg.SCRIPT)
    log.info("regenerating the clone's initramfs with %s", oldvg.SCRIPT)
    place = initramfs.regenerate(g, None)
    log.info("the clone's update-initramfs ran %s", PLACES[place])
    for alt, final in ctx.deferred_vgs.items():
        ctx.actions.append(f"kept volume group {alt}: on its first boot the clone renames it {final}, and the "
                           f"source's {final} old_{final}")  # fmt: skip
    ctx.actions.append(f"regenerated the initramfs with {oldvg.SCRIPT}")


def root_as_source(ctx: Finalize) -> bool:
    """The clone's / has the source's filesystem type on the same kind of device (LV or partition).

    The source booted with the initramfs the clone carries, so it holds what such a root needs; reading it
    (lsinitramfs unpacks it all: 30–50 s under TCG) would only confirm that.
    """
    source = ctx.journal.source_layout
    root = ctx.layout.filesystem_at("/")
    if source is None or root is None:
        return False
    src_root = source.filesystem_at("/")
    if src_root is None:
        return False
    on_lv = {lv.id for lv in ctx.layout.lvs}, {lv.id for lv in source.lvs}
    return src_root.type == root.type and (root.device in on_lv[0]) == (src_root.device in on_lv[1])


def ensure_initramfs(ctx: Finalize) -> None:
    """Regenerate only when an initramfs lacks the root filesystem's module (costly under TCG)."""
    g = ctx.g
    root = ctx.layout.filesystem_at("/")
    if root is None:
        return
    if root_as_source(ctx):
        log.info("/ is %s as on the source: the clone's initramfs boots it as it booted the source", root.type)
        return
    module = ROOT_MODULES.get(str(root.type))
    for initrd in (f for f in g.ls("/boot") if f.startswith("initrd.img-")):
        listing = g.command(["lsinitramfs", f"/boot/{initrd}"])
        if module and f"/{module}" not in listing:
            version = initrd.removeprefix("initrd.img-")
            log.info("initramfs %s lacks %s: regenerating it", initrd, module)
            initramfs.regenerate(g, [version])
            ctx.actions.append(f"regenerated /boot/{initrd} for {root.type}")


def install_grub(ctx: Finalize) -> None:
    """GRUB into the clone's first disk (BIOS) and/or its ESP's removable path (UEFI)."""
    g = ctx.g
    fw = firmware(ctx)
    disk0 = g.drive_path(0)
    if "bios" in fw:
        g.command(["grub-install", "--target=i386-pc", disk0])
        ctx.actions.append("installed GRUB for BIOS (i386-pc) on the first target")
    if "uefi" in fw:
        g.command(["grub-install", "--target=x86_64-efi", "--efi-directory=/boot/efi", "--removable",
                   "--no-nvram"])  # fmt: skip
        ctx.actions.append("installed GRUB for UEFI at EFI/BOOT/BOOTX64.EFI")


def update_grub(ctx: Finalize) -> None:
    """grub.cfg for the clone; with deferred names, its root= names the VG the clone will have after the rename."""
    g = ctx.g
    g.command(["update-grub"])
    ctx.actions.append("regenerated /boot/grub/grub.cfg")
    if ctx.deferred_vgs:
        cfg = g.read_file("/boot/grub/grub.cfg").decode("utf-8", "surrogateescape")
        g.write("/boot/grub/grub.cfg", oldvg.final_root_names(cfg, ctx.deferred_vgs).encode("utf-8", "surrogateescape"))


def unmount(ctx: Finalize) -> None:
    g = ctx.g
    g.sync()
    g.umount_all()


STEPS = steps(rename_volumes, mount_clone, check_bootable, install_vg_rename, ensure_initramfs,
              install_grub, update_grub, unmount)  # fmt: skip
