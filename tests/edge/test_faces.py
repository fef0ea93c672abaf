"""Face matching (always the exhaustive float64 answer) and recognition on the shared photo set."""

from pathlib import Path

import numpy as np
import pytest

from edge.access.faces import FaceMatcher, FaceProcess, encode_faces, exhaustive_match, load_rgb

PEOPLE = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
#: probe file -> who is in it (README of the photo set)
PROBES = {
    "alex-lacamoire.png": "alex_lacamoire",
    "obama3.jpg": "obama",
    "obama_partial_face.jpg": "obama",
}


def _random_encodings(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-ish vectors like dlib's (components around ±0.1, norm near 1)."""
    return (rng.normal(size=(n, 128)) * 0.09).astype(np.float32)


def _assert_same(matcher: FaceMatcher, ids: np.ndarray, encodings: np.ndarray, query: np.ndarray) -> None:
    assert matcher.match(query) == exhaustive_match(ids, encodings, query, matcher.threshold)


@pytest.fixture(scope="module")
def enrolled(faces_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, encodings) of every enrolment photo; a person's id is their index in PEOPLE."""
    ids, encs = [], []
    for pid, person in enumerate(PEOPLE):
        photos = sorted((faces_dir / "enroll" / person).iterdir())
        assert photos, f"no enrolment photos for {person}"
        for photo in photos:
            found = encode_faces(load_rgb(str(photo)))
            assert len(found) == 1, f"{photo}: {len(found)} faces, expected one"
            ids.append(pid)
            encs.append(found[0].encoding)
    return np.array(ids, dtype=np.int64), np.array(encs, dtype=np.float32)


def test_random_queries_match_the_exhaustive_search() -> None:
    rng = np.random.default_rng(5)
    enc = _random_encodings(rng, 10_000)
    ids = rng.permutation(10_000).astype(np.int64) + 1000
    matcher = FaceMatcher(ids, enc)
    hits = 0
    for i in range(300):
        base = enc[rng.integers(len(enc))]
        # near a row (a match), far from every row (no match), or exactly a row (distance 0)
        query = [base + rng.normal(size=128) * 0.01, rng.normal(size=128) * 0.09, base.astype(np.float64)][i % 3]
        _assert_same(matcher, ids, enc, query)
        hits += matcher.match(query)[0] is not None
    assert 0 < hits < 300


def test_near_ties_are_decided_as_the_exhaustive_search_does() -> None:
    """Rows one float32 step apart and exact duplicates: the float32 pass cannot order them, the recheck must."""
    rng = np.random.default_rng(9)
    background = _random_encodings(rng, 2_000)
    base = background[17].copy()
    nudged = np.repeat(base[None, :], 200, axis=0)
    for k in range(200):
        j = rng.integers(128)
        nudged[k, j] = np.nextafter(nudged[k, j], np.float32(np.inf if k % 2 else -np.inf))
    duplicates = np.repeat(base[None, :], 3, axis=0)
    enc = np.concatenate([background, nudged, duplicates])
    ids = np.arange(len(enc), dtype=np.int64)
    rng.shuffle(enc[len(background) :])
    matcher = FaceMatcher(ids, enc)
    for _ in range(200):
        query = base.astype(np.float64) + rng.normal(size=128) * rng.choice([1e-9, 1e-6, 1e-3])
        _assert_same(matcher, ids, enc, query)
    # exact duplicates: the lowest row wins, as np.argmin does
    assert FaceMatcher(np.array([7, 3, 5]), duplicates).match(base) == (7, 0.0)


def test_the_threshold_is_inclusive_and_can_be_given_per_query() -> None:
    enc = np.zeros((1, 128), dtype=np.float32)
    query = np.zeros(128)
    query[0] = 0.5
    matcher = FaceMatcher([42], enc, threshold=0.5)
    assert matcher.match(query) == (42, 0.5)
    assert matcher.match(query, threshold=0.4) == (None, 0.5)


def test_nobody_enrolled_and_bad_input() -> None:
    assert FaceMatcher([], np.zeros((0, 128), dtype=np.float32)).match(np.zeros(128)) == (None, None)
    with pytest.raises(ValueError, match=r"expected shape \[N, 128\]"):
        FaceMatcher([1], np.zeros((1, 64)))
    with pytest.raises(ValueError, match="2 encodings for 1 ids"):
        FaceMatcher([1], np.zeros((2, 128)))
    with pytest.raises(ValueError, match="finite"):
        FaceMatcher([1], np.full((1, 128), np.nan))
    with pytest.raises(ValueError, match="expected 128 values, got 3"):
        FaceMatcher([1], np.zeros((1, 128))).match([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="RGB uint8"):
        encode_faces(np.zeros((10, 10), dtype=np.uint8))


def test_every_enrolled_probe_is_identified_and_the_stranger_is_not(
    faces_dir: Path, enrolled: tuple[np.ndarray, np.ndarray]
) -> None:
    ids, enc = enrolled
    matcher = FaceMatcher(ids, enc, threshold=0.6)
    for name, person in PROBES.items():
        found = encode_faces(load_rgb(str(faces_dir / "probes" / name)))
        assert len(found) == 1, f"{name}: {len(found)} faces"
        pid, distance = matcher.match(found[0].encoding)
        assert pid is not None, f"{name}: not recognised (nearest distance {distance:.3f})"
        assert PEOPLE[pid] == person, f"{name}: taken for {PEOPLE[pid]} at {distance:.3f}"
    stranger = encode_faces(load_rgb(str(faces_dir / "probes" / "lin-manuel-miranda.png")))
    assert len(stranger) == 1
    pid, distance = matcher.match(stranger[0].encoding)
    assert pid is None, f"lin-manuel-miranda taken for {PEOPLE[pid]} at {distance:.3f}"
    assert distance is not None and distance > 0.6


def test_both_people_in_the_two_person_photo_are_found(
    faces_dir: Path, enrolled: tuple[np.ndarray, np.ndarray]
) -> None:
    found = encode_faces(load_rgb(str(faces_dir / "probes" / "two_people.jpg")))
    matcher = FaceMatcher(*enrolled)
    names = sorted(PEOPLE[pid] for pid, _ in (matcher.match(f.encoding) for f in found) if pid is not None)
    assert names == ["biden", "obama"]


def test_real_encodings_among_100000_match_as_the_exhaustive_search_and_face_distance(
    faces_dir: Path, enrolled: tuple[np.ndarray, np.ndarray]
) -> None:
    import face_recognition

    real_ids, real_enc = enrolled
    rng = np.random.default_rng(3)
    # background faces drawn around the real ones' mean and spread, so they are close competitors
    mean, std = real_enc.mean(axis=0), real_enc.std(axis=0) + 0.02
    background = (mean + rng.normal(size=(100_000, 128)) * std).astype(np.float32)
    enc = np.concatenate([background, real_enc])
    ids = np.concatenate([np.arange(100_000, dtype=np.int64) + 100, real_ids])
    matcher = FaceMatcher(ids, enc)
    probes = [
        f.encoding
        for name in [*PROBES, "lin-manuel-miranda.png", "two_people.jpg"]
        for f in encode_faces(load_rgb(str(faces_dir / "probes" / name)))
    ]
    queries = probes + [e.astype(np.float64) + rng.normal(size=128) * 0.005 for e in real_enc]
    for query in queries:
        got = matcher.match(query)
        _assert_same(matcher, ids, enc, query)
        baseline = face_recognition.face_distance(enc, query)
        row = int(np.argmin(baseline))
        assert got[1] == float(baseline[row])
        assert got[0] == (int(ids[row]) if baseline[row] <= 0.6 else None)


def test_the_child_process_finds_the_same_faces_and_comes_back_after_dying(faces_dir: Path) -> None:
    """FaceProcess (dlib out of the event loop's process): same boxes, same encodings to the bit."""
    rgb = load_rgb(str(faces_dir / "probes" / "two_people.jpg"))
    here = encode_faces(rgb)
    child = FaceProcess()
    try:
        there = child.encode(rgb)
        assert [f.box for f in there] == [f.box for f in here]
        assert all(np.array_equal(a.encoding, b.encoding) for a, b in zip(there, here, strict=True))
        assert child._proc is not None
        child._proc.kill()
        child._proc.wait()
        assert [f.box for f in child.encode(rgb)] == [f.box for f in here]  # started again
        with pytest.raises(ValueError, match="RGB uint8"):
            child.encode(np.zeros((4, 4, 2), dtype=np.uint8))
    finally:
        child.close()
    with pytest.raises(RuntimeError, match="closed"):
        child.encode(rgb)
