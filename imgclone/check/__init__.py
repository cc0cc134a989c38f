"""Proof that a clone is right: archive verify --against (file by file) and boot-test (it boots)."""
