"""Planning a restore: the archive's layout and the targets in, the exact target layout out (pure)."""
