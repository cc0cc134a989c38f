"""Planning a restore: the archive's layout and the targets in, the exact target layout out (pure).

planner.py holds the specification and make_plan(); types.py what goes in and comes out; source.py, placement.py,
sizes.py, target.py and report.py the steps, in make_plan's order.
"""
