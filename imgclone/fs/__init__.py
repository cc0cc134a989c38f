"""Filesystem types: what each costs and allows, per-file limits, the features mkfs is given."""
