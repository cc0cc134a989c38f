"""Tiny Debian packages built with dpkg-deb, for Phase 2's -l tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def build_deb(outdir: Path, name: str, version: str, files: dict[str, str] | None = None,
              depends: str | None = None) -> Path:  # fmt: skip
    """NAME_VERSION_all.deb in outdir, holding `files` (path → text; executable under a bin/ directory)."""
    root = outdir / f".build-{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    control = [f"Package: {name}", f"Version: {version}", "Architecture: all", "Maintainer: imgclone tests <t@t>",
               f"Description: imgclone test package {name}"]  # fmt: skip
    if depends:
        control.append(f"Depends: {depends}")
    (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    for path, text in (files or {}).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o755 if "/bin/" in path else 0o644)
    deb = outdir / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run(["rm", "-rf", str(root)], check=True)
    return deb
