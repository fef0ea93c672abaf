"""The gateway's whitelist on disk: full and delta messages, versions, restarts, the face index."""

from datetime import timedelta
from pathlib import Path

from contract.access import AccessRight, Card
from edge.access.whitelist import WhitelistStore
from tests.edge.test_access_decide import MONDAY_4PM_SHANGHAI, PASS_ID, full_whitelist, person


def delta(version: int, base: int, **fields: object):
    from contract.access import WhitelistMessage

    return WhitelistMessage(
        ts=MONDAY_4PM_SHANGHAI, version=version, base_version=base, timezone="Asia/Shanghai", **fields
    )


def test_a_full_whitelist_is_kept_on_disk_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "whitelist.json"
    store = WhitelistStore(path)
    assert store.version is None and store.current is None
    assert store.apply(full_whitelist(version=3))
    assert store.version == 3 and path.exists() and not path.with_suffix(".json.tmp").exists()
    again = WhitelistStore(path)
    assert again.version == 3 and again.current is not None
    assert again.current.card("04a3b2c1") is not None and len(again.current.people) == 6


def test_a_delta_applies_to_its_base_only(tmp_path: Path) -> None:
    store = WhitelistStore(tmp_path / "wl.json")
    assert not store.apply(delta(2, 1))  # nothing held: ask for a full one
    store.apply(full_whitelist(version=1))
    assert not store.apply(delta(5, 4))  # a gap: ask for a full one
    assert store.version == 1
    changed = person(1, Card(number="04A3B2C1", blocked=True))
    newcomer = person(9, Card(number="99990000"), rights=[AccessRight(doors=["garage"])])
    assert store.apply(delta(2, 1, people=[changed, newcomer], removed_people=[6], removed_passes=[PASS_ID]))
    assert store.current is not None and store.version == 2
    assert store.current.card("04A3B2C1")[1].blocked  # type: ignore[index]
    assert store.current.card("99990000") is not None
    assert store.current.card("66667777") is None and 6 not in store.current.people
    assert PASS_ID not in store.current.passes
    assert store.current.time_profiles.keys() == {"office", "evenings"}  # kept: the delta did not name them
    assert store.apply(delta(3, 2, holidays=[MONDAY_4PM_SHANGHAI.date()], time_profiles=[]))
    assert store.current.holidays == {MONDAY_4PM_SHANGHAI.date()} and store.current.time_profiles == {}
    # a repeat or an older version changes nothing
    assert store.apply(full_whitelist(version=2)) and store.version == 3
    assert WhitelistStore(tmp_path / "wl.json").version == 3


def test_a_new_full_whitelist_replaces_everything(tmp_path: Path) -> None:
    store = WhitelistStore(tmp_path / "wl.json")
    store.apply(full_whitelist(version=1))
    store.apply(full_whitelist(version=7, people=[person(1, Card(number="AAAA0000"))], passes=[]))
    assert store.current is not None and list(store.current.people) == [1]
    assert store.current.card("04A3B2C1") is None


def test_a_broken_file_means_no_whitelist(tmp_path: Path) -> None:
    path = tmp_path / "wl.json"
    path.write_text('{"version": "x"}')
    assert WhitelistStore(path).version is None


def test_face_index_lists_every_encoding_and_follows_changes(tmp_path: Path) -> None:
    store = WhitelistStore(tmp_path / "wl.json")
    ids, encodings = store.face_index()
    assert ids.shape == (0,) and encodings.shape == (0, 128)
    store.apply(full_whitelist())
    ids, encodings = store.face_index()
    assert ids.tolist() == [1, 6, 6] and ids.dtype.name == "int64"
    assert encodings.shape == (3, 128) and encodings.dtype.name == "float32"
    assert abs(float(encodings[2][0]) - 0.3) < 1e-6
    assert store.face_index()[0] is ids  # cached while nothing changes
    store.apply(delta(2, 1, removed_people=[6]))  # consent withdrawn, or moved out
    assert store.face_index()[0].tolist() == [1]


def test_pass_uses_reset_to_the_clouds_count_when_it_sends_the_pass_again(tmp_path: Path) -> None:
    store = WhitelistStore(tmp_path / "wl.json")
    store.apply(full_whitelist())
    assert store.use_pass(PASS_ID) == 1
    assert store.uses_path.exists() and WhitelistStore(store.path).use_pass(PASS_ID) == 0  # kept across restarts
    store = WhitelistStore(store.path)
    assert store.current is not None and store.current.uses_left(store.current.passes[PASS_ID]) == 0
    store.apply(delta(2, 1, passes=[store.current.passes[PASS_ID]]))  # the cloud sends the pass again
    assert store.current is not None and store.current.uses_left(store.current.passes[PASS_ID]) == 2
    store.use_pass(PASS_ID)
    store.apply(full_whitelist(version=3))
    assert store.current is not None and store.current.uses_left(store.current.passes[PASS_ID]) == 2
    assert MONDAY_4PM_SHANGHAI + timedelta(0) == store.current.message.ts


def test_a_large_whitelist_is_taken_out_of_the_garbage_collectors_scans(tmp_path: Path) -> None:
    import gc

    from edge.access.whitelist import FREEZE_FROM

    gc.unfreeze()
    try:
        store = WhitelistStore(tmp_path / "wl.json")
        store.apply(full_whitelist())
        assert gc.get_freeze_count() == 0  # small: left alone
        many = [person(i, Card(number=f"{0x10000000 + i:08X}")) for i in range(FREEZE_FROM)]
        store.apply(full_whitelist(version=2, people=many))
        assert gc.get_freeze_count() > FREEZE_FROM
    finally:
        gc.unfreeze()
