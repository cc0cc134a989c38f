"""LVM thin pools cloned through the real tools: the thin fixture (fixtures/stacks.py: VG rootvg with a thin pool
of 2 GiB, 64 KiB chunks, 4 MiB metadata; / on a thin LV of 3 GiB virtual; swap on a plain LV) copied by files
into a new image, keeping the archive: the clone's pool has the source's data, chunk and metadata sizes and its
final name, / is a thin LV in it, `archive verify --against` finds every file, and the clone boots."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgclone.guest.appliance import Appliance

pytestmark = pytest.mark.integration
Run = Callable[..., subprocess.CompletedProcess[bytes]]


def _ok(r: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert r.returncode == 0, r.stderr.decode()[-4000:]
    return dict(json.loads(r.stdout)) if r.stdout.strip() else {}


def _lvs(image: Path) -> dict[str, dict[str, str]]:
    """LVM's own report of the image's LVs (name → segtype, pool, chunk and metadata sizes), read in an appliance."""
    g = Appliance()
    g.add_drive(str(image), readonly=True, format="qcow2")
    with g:
        out = g.appliance_command(["lvm", "lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
                                   "vg_name,lv_name,segtype,pool_lv,chunk_size,lv_metadata_size,lv_size"])  # fmt: skip
    rows = json.loads(out)["report"][0]["lv"]
    return {f"{r['vg_name']}/{r['lv_name']}": r for r in rows}


def test_thin_fixture_copied_keeps_its_pool_verified_and_boots(tmp_path: Path, imgclone: Run) -> None:
    from fixtures.stacks import fixture_path

    clone, archive = tmp_path / "clone.qcow2", tmp_path / "thin.mksysb"
    _ok(imgclone("copy", "--source", str(fixture_path("thin")), "-d", str(clone), "--archive", str(archive),
                 "--no-progress", "--json"))  # fmt: skip
    lvs = _lvs(clone)
    assert set(lvs) == {"rootvg/pool", "rootvg/root", "rootvg/swap"}, "final names, the pool's too"
    pool, root, swap = lvs["rootvg/pool"], lvs["rootvg/root"], lvs["rootvg/swap"]
    assert (pool["segtype"], pool["chunk_size"], pool["lv_metadata_size"], pool["lv_size"]) == (
        "thin-pool",
        "65536",
        str(4 << 20),
        str(2 << 30),
    )
    assert (root["segtype"], root["pool_lv"], root["lv_size"]) == ("thin", "pool", str(3 << 30))
    assert swap["segtype"] == "linear"
    r = imgclone("archive", "verify", str(archive), "--against", str(clone), "--json")
    report = json.loads(r.stdout)
    errors = [d for f in report["filesystems"] for d in f["differences"] if not d["rule"]]
    assert r.returncode == 0 and report["ok"], (errors[:50], report["notes"])
    assert report["summary"]["compared"] > 10000 and report["summary"]["missing"] == 0
    boot = _ok(imgclone("boot-test", str(clone), "--timeout", "600", "--json"))
    assert boot["ok"] and boot["marker_line"].startswith("IMGCLONE-BOOT-OK "), boot["log_tail"]
