"""Phase 2 package selection: -w/-b install, -F/-f fixes, update_all; names checked before the clone is opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.debs import build_deb
from imgclone.errors import UsageError
from imgclone.phases.packages import make_request, parse_installed, read_list, scan, select


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    d = tmp_path / "pkgs"
    d.mkdir()
    build_deb(d, "hello-imgclone", "1.0")
    build_deb(d, "libfoo", "2.0-1")
    build_deb(d, "libfoo", "2.1-1")  # the newest file of a package wins
    build_deb(d, "old-tool", "0.9")
    (d / "README").write_text("not a package\n")
    (d / "bar-1.2-3.x86_64.rpm").write_text("not read: named by convention")
    return d


def test_scan_reads_debs_and_names_rpms(repo: Path) -> None:
    found = scan(repo)
    assert found["libfoo"].version == "2.1-1" and found["libfoo"].path.name == "libfoo_2.1-1_all.deb"
    assert found["hello-imgclone"].kind == "deb"
    assert (found["bar"].version, found["bar"].kind) == ("1.2-3", "rpm")
    assert "README" not in found


def test_install_fixes_and_update_all(repo: Path) -> None:
    installed = {"libfoo": "2.0-1", "old-tool": "1.0", "other": "1"}
    req = make_request(str(repo), install=["hello-imgclone"], fixes=["libfoo", "old-tool"])
    chosen, notes = select(req, scan(repo), installed)
    assert [p.name for p in chosen] == ["hello-imgclone", "libfoo"]
    assert notes == ["old-tool: clone already has 1.0 (directory has 0.9)"]
    chosen, _ = select(make_request(str(repo), fixes=["update_all"]), scan(repo), installed)
    assert [p.name for p in chosen] == ["libfoo"], "update_all: only installed packages with a newer version"


def test_fix_for_a_package_not_installed_is_a_note(repo: Path) -> None:
    chosen, notes = select(make_request(str(repo), fixes=["hello-imgclone"]), scan(repo), {})
    assert chosen == [] and "not installed in the clone" in notes[0]


def test_missing_package_is_named(repo: Path) -> None:
    with pytest.raises(UsageError, match="no package nano, vim there"):
        select(make_request(str(repo), install=["nano", "hello-imgclone", "vim"]), scan(repo), {})


def test_bundle_file_with_comments_and_update_all(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.write_text("# web\nnginx  curl\n\nupdate_all # and the rest\n")
    req = make_request(str(tmp_path), bundle=str(bundle))
    assert req.install == ("nginx", "curl") and req.update_all
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(UsageError, match="lists no package"):
        read_list(str(tmp_path / "empty"), "-b")
    with pytest.raises(UsageError, match="-f /nonexistent: No such file"):
        read_list("/nonexistent", "-f")


def test_broken_deb_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken_1.0_all.deb").write_bytes(b"!<arch>\nnot really")
    with pytest.raises(UsageError, match="is not a readable Debian package"):
        scan(tmp_path)


def test_parse_installed_keeps_installed_only() -> None:
    text = "bash\t5.2.15-2\tinstalled\nrc-pkg\t1.0\tconfig-files\nbroken line\n"
    assert parse_installed(text) == {"bash": "5.2.15-2"}
