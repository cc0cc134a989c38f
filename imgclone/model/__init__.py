"""The data: the storage layout, LVM names, what a filesystem's content needs, the alternate's journal."""
