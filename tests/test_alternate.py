"""The appliance a command's phases share (session.Session), with fake appliances that count launches."""

from __future__ import annotations

import pytest

from imgclone.guest import session
from imgclone.model.journal import Journal
from tests.fakes import FakeAppliances


@pytest.fixture(autouse=True)
def appliances(monkeypatch: pytest.MonkeyPatch) -> FakeAppliances:
    made = FakeAppliances()
    monkeypatch.setattr(session, "Appliance", made)
    return made


A = [("/img/a.qcow2", "qcow2"), ("/dev/loop3", "raw")]


def test_phases_with_the_same_targets_share_one_launch(appliances: FakeAppliances) -> None:
    with session.Session() as app:
        with app.use(A) as g1:
            pass
        with app.use(list(A)) as g2:
            assert not g2.closed
    assert g1 is g2 and len(appliances.made) == 1
    assert g1.closed, "closed when the command ends"
    assert g1.drives == [("/img/a.qcow2", {"readonly": False, "format": "qcow2", "label": "targeta"}),
                         ("/dev/loop3", {"readonly": False, "format": "raw", "label": "targetb"})]  # fmt: skip


def test_other_targets_get_a_new_appliance_and_the_old_one_is_shut_down(appliances: FakeAppliances) -> None:
    with session.Session() as app:
        with app.use(A) as g1:
            pass
        with app.use(A[:1]) as g2:
            assert g1.closed and not g2.closed
    assert len(appliances.made) == 2 and g2.closed


def test_a_failed_phase_closes_the_appliance_and_the_next_phase_launches_afresh(appliances: FakeAppliances) -> None:
    with session.Session() as app:
        with pytest.raises(RuntimeError, match="step failed"), app.use(A) as g1:
            raise RuntimeError("step failed")
        assert g1.closed, "what a failed phase left mounted or active is not for the next one"
        with app.use(A) as g2:
            assert g2 is not g1 and g2.launched
    assert len(appliances.made) == 2


def test_opened_without_a_shared_appliance_is_this_phase_own() -> None:
    with session.opened(A, None) as g:
        assert g.launched and not g.closed
    assert g.closed
    shared = session.Session()
    with session.opened(A, shared) as g2:
        pass
    assert not g2.closed, "a shared appliance outlives the phase"
    shared.close()
    assert g2.closed


def test_drives_are_the_journal_targets_in_order() -> None:
    doc = {"targets": [{"path": "/img/a.qcow2", "format": "qcow2", "kind": "image", "size": 1},
                       {"path": "/dev/loop3", "format": "raw", "kind": "device", "size": 2}]}  # fmt: skip
    assert Journal.from_dict(doc).drives == A


def test_phase_3_lets_the_targets_go_before_the_boot_order_and_reboot(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from imgclone.cli.parser import build_parser
    from imgclone.cli.rules import restore_request
    from imgclone.phases import command

    args = build_parser().parse_args(["restore", "-d", "/img/a.qcow2", "-P3", "--no-progress"])
    app = session.Session()
    with app.use(A) as g:
        pass
    closed_then: list[bool] = []
    monkeypatch.setattr(command, "finalize", lambda targets, **kw: SimpleNamespace(actions=[], timings={}))
    monkeypatch.setattr(command, "set_boot_order", lambda *a: closed_then.append(g.closed))
    command.run_held(restore_request(args), lambda outcome: None, app)
    assert closed_then == [True], "the appliance still had the clone's disks open when the boot order ran"
