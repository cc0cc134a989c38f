"""The suite's budget (tests/budget.py): the log's lines counted per test file, the table printed at the end."""

from __future__ import annotations

from tests.budget import parse_log, table
from tests.conftest import EXPECTED_SECONDS, ROOT

LOG = (
    "appliance\ttests/test_a.py::test_one (call)\t1\n"
    "boot\ttests/test_a.py::test_one (call)\t2\n"
    "fixture\ttests/test_b.py::test_two (setup)\tbios 300 s\n"
    "shared\ttests/test_b.py::test_two (setup)\tbios-capture 150 s (gw1)\n"
    "appliance\toutside a test\t3\n"
)


def test_the_log_is_counted_per_file() -> None:
    files = parse_log(LOG)
    assert (files["tests/test_a.py"].appliances, files["tests/test_a.py"].boots) == (1, 1)
    assert files["tests/test_b.py"].fixtures == ["bios 300 s"]
    assert files["tests/test_b.py"].shared == ["bios-capture 150 s (gw1)"]
    assert files["outside a test"].appliances == 1


def test_the_table_says_how_the_run_ran() -> None:
    files = parse_log(LOG)
    files["tests/test_a.py"].seconds, files["tests/test_a.py"].tests = 12.0, 1
    lines = table(files, 300.4, workers=2)
    assert lines[-2].startswith("all (test time; wall 300 s, 2 workers)") and lines[-2].endswith("1 built")
    assert lines[-1] == "made once for the run: bios-capture 150 s (gw1)"
    assert table(parse_log(""), 9.0)[-1].startswith("all (test time; wall 9 s, no xdist)")


def test_the_order_of_the_longest_tests_names_tests_that_exist() -> None:
    """conftest's EXPECTED_SECONDS: a test renamed, merged or removed leaves no entry behind (its seconds would
    mislead the dealing out to the workers)."""
    for nodeid in EXPECTED_SECONDS:
        path, _, name = nodeid.partition("::")
        assert f"def {name.split('[')[0]}(" in (ROOT / path).read_text(), f"{nodeid}: no such test"
