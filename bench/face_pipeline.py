"""Face recognition at the gateway: frames per second through detection and recognition at 640x480
on one core, and identification accuracy on the shared photos.

1. Throughput: every frame of probes/short_hamilton_clip.mp4, resized to 640x480, through what a
   camera does on a frame due for detection: BGR->RGB, face_recognition's HOG detector (upsample 0
   and 1), the 128-d encoding of each face, and `FaceMatcher.match` against 10,000 enrolled
   encodings; then once more at the clip's own 640x360. Pinned to one CPU with one thread for
   BLAS, OpenMP and OpenCV.
2. Accuracy: the five people enrolled from enroll/<person>/*; every face in probes/* identified at
   the 0.6 threshold (and at 0.5 and 0.55 for comparison), counted as a true accept (the right
   person), a false accept (a wrong person, or anyone for a face of nobody enrolled), a false
   reject (an enrolled person not recognised) or a true reject. Plus leave-one-out over the
   enrolment photos (each against the others).

    .venv/bin/python bench/face_pipeline.py [--faces ../shared/faces] [--frames 0 (all)]
"""

# ruff: noqa: E402 - the thread limits must be set before numpy and OpenCV load
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from edge.access.faces import FaceMatcher, encode_faces, load_rgb

#: who is in each probe (the photo set's README); None: nobody enrolled
PROBES: dict[str, list[str | None]] = {
    "alex-lacamoire.png": ["alex_lacamoire"],
    "obama3.jpg": ["obama"],
    "obama_partial_face.jpg": ["obama"],
    "two_people.jpg": ["biden", "obama"],
    "lin-manuel-miranda.png": [None],
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def throughput(
    clip: Path, matcher: FaceMatcher, upsample: int, limit: int, seen: list[np.ndarray], size: tuple[int, int] | None
) -> dict:
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok or (limit and len(frames) >= limit):
            break
        frames.append(cv2.resize(frame, size) if size else frame)
    cap.release()
    per_frame, faces = [], 0
    t_all = time.perf_counter()
    for frame in frames:
        t0 = time.perf_counter()
        for face in encode_faces(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), upsample=upsample):
            matcher.match(face.encoding)
            seen.append(face.encoding)
            faces += 1
        per_frame.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    return {
        "size": "x".join(map(str, frames[0].shape[1::-1])),
        "upsample": upsample,
        "frames": len(frames),
        "faces": faces,
        "fps": round(len(frames) / total, 2),
        "frame_p50_ms": round(float(np.percentile(per_frame, 50)) * 1000, 1),
        "frame_p99_ms": round(float(np.percentile(per_frame, 99)) * 1000, 1),
    }


def accuracy(faces: Path, thresholds: list[float], clips: dict[str, list[np.ndarray]]) -> dict:
    people = sorted(p.name for p in (faces / "enroll").iterdir())
    enrolled: list[tuple[str, str, np.ndarray]] = []
    for person in people:
        for photo in sorted((faces / "enroll" / person).iterdir()):
            found = encode_faces(load_rgb(str(photo)))
            if len(found) != 1:
                sys.exit(f"{photo}: {len(found)} faces, the photo set promises one")
            enrolled.append((person, photo.name, found[0].encoding))
    probes: list[tuple[str, list[str | None], list[np.ndarray]]] = [
        (name, truth, [f.encoding for f in encode_faces(load_rgb(str(faces / "probes" / name)))])
        for name, truth in PROBES.items()
    ]
    out: dict = {"enrolled_people": len(people), "enrolled_photos": len(enrolled), "thresholds": {}}
    for threshold in thresholds:
        counts = {"true_accept": 0, "false_accept": 0, "false_reject": 0, "true_reject": 0, "faces_missed": 0}
        detail = []

        def judge(truth: str | None, got: str | None, counts: dict = counts) -> str:
            verdict = (
                ("true_accept" if got == truth else "false_accept")
                if got is not None
                else ("true_reject" if truth is None else "false_reject")
            )
            counts[verdict] += 1
            return verdict

        matcher = FaceMatcher(
            [people.index(p) for p, _, _ in enrolled], np.array([e for *_, e in enrolled], np.float32), threshold
        )
        for name, truth, encs in probes:
            counts["faces_missed"] += max(0, len(truth) - len(encs))
            left = list(truth)
            for enc in encs:
                pid, dist = matcher.match(enc)
                got = people[pid] if pid is not None else None
                expected = got if got in left else (left[0] if left else None)
                if expected in left:
                    left.remove(expected)
                detail.append((name, expected, got, round(dist, 3), judge(expected, got)))
        # leave-one-out: each enrolment photo against the rest (people with one photo become strangers)
        for i, (person, photo, enc) in enumerate(enrolled):
            rest = [e for j, e in enumerate(enrolled) if j != i]
            loo = FaceMatcher(
                [people.index(p) for p, _, _ in rest], np.array([e for *_, e in rest], np.float32), threshold
            )
            pid, dist = loo.match(enc)
            got = people[pid] if pid is not None else None
            truth = person if any(p == person for p, _, _ in rest) else None
            detail.append((f"enroll/{person}/{photo}", truth, got, round(dist, 3), judge(truth, got)))
        # the clip's faces: nobody enrolled is in it (the README: possibly alex_lacamoire), so any match is reported
        for size, clip_faces in clips.items():
            clip = [matcher.match(e) for e in clip_faces]
            counts[f"clip_{size}_faces"] = len(clip)
            counts[f"clip_{size}_matched"] = sum(pid is not None for pid, _ in clip)
            counts[f"clip_{size}_nearest"] = round(min((d for _, d in clip if d is not None), default=float("nan")), 3)
            counts[f"clip_{size}_matched_as"] = sorted({people[pid] for pid, _ in clip if pid is not None})
        out["thresholds"][str(threshold)] = {"counts": counts, "detail": detail}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared/faces")
    parser.add_argument("--frames", type=int, default=0, help="frames of the clip to use (0: all)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    if not (args.faces / "enroll").is_dir():
        sys.exit(f"the photo set is not at {args.faces} (--faces)")
    rng = np.random.default_rng(1)
    matcher = FaceMatcher(np.arange(10_000), (rng.normal(size=(10_000, 128)) * 0.09).astype(np.float32))
    clip = args.faces / "probes" / "short_hamilton_clip.mp4"
    runs = []
    seen: dict[str, list[np.ndarray]] = {}
    for size, upsample in (((640, 480), 0), ((640, 480), 1), (None, 1)):
        faces: list[np.ndarray] = []
        row = throughput(clip, matcher, upsample, args.frames, faces, size)
        if upsample == 1:
            seen[row["size"]] = faces
        runs.append(row)
        log(
            f"{row['size']}, upsample {upsample}: {row['fps']} frames/s over {row['frames']} frames "
            f"({row['faces']} faces); per frame p50 {row['frame_p50_ms']} ms p99 {row['frame_p99_ms']} ms"
        )
    acc = accuracy(args.faces, [0.5, 0.55, 0.6], seen)
    for threshold, result in acc["thresholds"].items():
        log(f"threshold {threshold}: {result['counts']}")
    for line in acc["thresholds"]["0.6"]["detail"]:
        log(f"  {line}")
    print(
        json.dumps(
            {"bench": "face_pipeline", "machine": platform.platform(), "throughput": runs, "accuracy": acc}, default=str
        )
    )


if __name__ == "__main__":
    main()
