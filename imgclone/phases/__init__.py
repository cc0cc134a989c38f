"""The three phases of a restore or copy (1 restore, 2 customize, 3 finalize) and the alternate they work on."""
