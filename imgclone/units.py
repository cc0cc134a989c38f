"""Byte units: the binary multiples, and sizes as people read them (1610612736 → "1.5 GiB")."""

from __future__ import annotations

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40


def human(n: float) -> str:
    """1536 → '1.5 KiB': one decimal in the largest unit up to TiB that n reaches; whole bytes below 1 KiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
