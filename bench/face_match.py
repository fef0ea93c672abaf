"""1:N face matching at the gateway: `FaceMatcher.match` against 10,000 and 100,000 enrolled encodings,
beside face_recognition.face_distance over the same matrix (the baseline), on one core.

The enrolled matrix: the real encodings of the shared photo set (enroll/<person>/*) plus random
vectors drawn around the real ones' mean and spread (so they are close competitors, not easy
outliers), float32 as the whitelist keeps them. Queries: the probes' real encodings, enrolled rows
plus a little noise (matches), and random vectors (no match), in turn. For every query both give
an answer (person id within 0.6, and the nearest distance); the script fails if they differ once.

    .venv/bin/python bench/face_match.py [--sizes 10000,100000] [--queries 1000] [--faces ../shared/faces]
"""

# ruff: noqa: E402 - the thread limits must be set before numpy loads
import os

# one core: set before numpy loads its BLAS
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edge.access.faces import FaceMatcher, encode_faces, load_rgb

THRESHOLD = 0.6


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def real_encodings(faces: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(ids, encodings) of the enrolment photos, and the encodings of every face in the probes."""
    ids, encs = [], []
    for pid, person in enumerate(sorted(p.name for p in (faces / "enroll").iterdir())):
        for photo in sorted((faces / "enroll" / person).iterdir()):
            for found in encode_faces(load_rgb(str(photo))):
                ids.append(pid)
                encs.append(found.encoding)
    probes = [
        f.encoding
        for photo in sorted((faces / "probes").iterdir())
        if photo.suffix.lower() in (".jpg", ".jpeg", ".png")
        for f in encode_faces(load_rgb(str(photo)))
    ]
    return np.array(ids, np.int64), np.array(encs, np.float32), probes


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000  # ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--faces", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared/faces")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import face_recognition

    if not (args.faces / "enroll").is_dir():
        sys.exit(f"the photo set is not at {args.faces} (--faces)")
    real_ids, real_enc, probes = real_encodings(args.faces)
    log(f"real: {len(real_ids)} enrolment encodings, {len(probes)} probe faces")
    rng = np.random.default_rng(args.seed)
    mean, std = real_enc.mean(axis=0), real_enc.std(axis=0) + 0.02
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        n_random = size - len(real_ids)
        enc = np.concatenate([(mean + rng.normal(size=(n_random, 128)) * std).astype(np.float32), real_enc])
        ids = np.concatenate([np.arange(n_random, dtype=np.int64) + 1000, real_ids])
        order = rng.permutation(size)
        enc, ids = np.ascontiguousarray(enc[order]), ids[order]
        t0 = time.perf_counter()
        matcher = FaceMatcher(ids, enc, threshold=THRESHOLD)
        build = time.perf_counter() - t0
        queries = []
        for i in range(args.queries):
            kind = i % 3
            if kind == 0:
                queries.append(probes[(i // 3) % len(probes)])
            elif kind == 1:
                queries.append(enc[rng.integers(size)].astype(np.float64) + rng.normal(size=128) * 0.01)
            else:
                queries.append(mean + rng.normal(size=128) * std)
        ours, base, matched = [], [], 0
        for q in queries:
            t0 = time.perf_counter()
            got = matcher.match(q)
            t1 = time.perf_counter()
            d = face_recognition.face_distance(enc, q)
            row = int(np.argmin(d))
            want = (int(ids[row]) if d[row] <= THRESHOLD else None), float(d[row])
            t2 = time.perf_counter()
            if got != want:
                sys.exit(f"size {size}: FaceMatcher gave {got}, the exhaustive search {want}")
            ours.append(t1 - t0)
            base.append(t2 - t1)
            matched += got[0] is not None
        row = {
            "enrolled": size,
            "queries": len(queries),
            "matched": matched,
            "same_answer": len(queries),
            "build_ms": round(build * 1000, 1),
            "match_p50_ms": round(pct(ours, 50), 3),
            "match_p99_ms": round(pct(ours, 99), 3),
            "face_distance_p50_ms": round(pct(base, 50), 3),
            "face_distance_p99_ms": round(pct(base, 99), 3),
        }
        results.append(row)
        log(
            f"{size:>7} enrolled: FaceMatcher p50 {row['match_p50_ms']} ms p99 {row['match_p99_ms']} ms; "
            f"face_distance p50 {row['face_distance_p50_ms']} ms p99 {row['face_distance_p99_ms']} ms; "
            f"same answer {len(queries)}/{len(queries)} ({matched} matched); matcher built in {row['build_ms']} ms"
        )
    print(
        json.dumps({"bench": "face_match", "machine": platform.platform(), "numpy": np.__version__, "results": results})
    )


if __name__ == "__main__":
    main()
