"""imgclone alt (alt_rootvg_op): query, wake, sleep and clean up the alternates the journals know."""
