"""Face encodings and 1:N matching against a gateway's whitelist.

Matching is the hot path of a camera at a door: one query against every enrolled encoding.
`FaceMatcher` does it with one float32 matrix-vector product (squared norms precomputed), then
recomputes the few candidates that the float32 rounding could reorder in float64, so its answer is
always the one the exhaustive float64 search (`exhaustive_match`, what
`face_recognition.face_distance` computes) gives: same row, same distance, ties to the lowest row.

`encode_faces` wraps face_recognition (dlib's HOG or CNN detector and its 128-d ResNet encoder);
face_recognition is imported on first use, so the matcher works without the face stack installed.
"""

import contextlib
import json
import os
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.access import FACE_DIMENSIONS

#: float32 unit roundoff.
_U32 = float(np.finfo(np.float32).eps) / 2


@dataclass(frozen=True)
class FaceFound:
    """A face in a picture: its box (top, right, bottom, left in pixels) and its 128-d encoding."""

    box: tuple[int, int, int, int]
    encoding: np.ndarray

    @property
    def height(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def width(self) -> int:
        return self.box[1] - self.box[3]


def _query(encoding: Any) -> np.ndarray:
    q = np.asarray(encoding, dtype=np.float64).reshape(-1)
    if q.shape != (FACE_DIMENSIONS,):
        raise ValueError(f"face encoding: expected {FACE_DIMENSIONS} values, got {q.size}")
    if not np.all(np.isfinite(q)):
        raise ValueError("face encoding: values must be finite")
    return q


def distances64(encodings: np.ndarray, query: Any) -> np.ndarray:
    """Euclidean distances in float64, exactly as face_recognition.face_distance computes them."""
    return np.linalg.norm(np.asarray(encodings, dtype=np.float64) - _query(query), axis=1)


def exhaustive_match(
    ids: np.ndarray, encodings: np.ndarray, query: Any, threshold: float
) -> tuple[int | None, float | None]:
    """The reference answer: every distance in float64, the first row with the smallest one."""
    if len(ids) == 0:
        return None, None
    d = distances64(encodings, query)
    row = int(np.argmin(d))
    best = float(d[row])
    return (int(ids[row]) if best <= threshold else None), best


class FaceMatcher:
    """1:N search of one encoding among N enrolled ones (several rows may belong to one person)."""

    def __init__(self, ids: Any, encodings: Any, threshold: float = 0.6) -> None:
        ids_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        enc = np.asarray(encodings, dtype=np.float32)
        if enc.size == 0:
            enc = enc.reshape(0, FACE_DIMENSIONS)
        if enc.ndim != 2 or enc.shape[1] != FACE_DIMENSIONS:
            raise ValueError(f"face encodings: expected shape [N, {FACE_DIMENSIONS}], got {list(enc.shape)}")
        if enc.shape[0] != ids_arr.shape[0]:
            raise ValueError(f"face encodings: {enc.shape[0]} encodings for {ids_arr.shape[0]} ids")
        if not np.all(np.isfinite(enc)):
            raise ValueError("face encodings: values must be finite")
        if not threshold > 0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        self.ids = ids_arr
        self.encodings = np.ascontiguousarray(enc)
        self.threshold = float(threshold)
        # squared norms from the exact float64 values, then rounded once to float32
        norms64 = np.einsum("ij,ij->i", self.encodings, self.encodings, dtype=np.float64)
        self._norms = norms64.astype(np.float32)
        self._max_norm = float(np.sqrt(norms64.max())) if len(norms64) else 0.0

    def __len__(self) -> int:
        return len(self.ids)

    def match(self, encoding: Any, *, threshold: float | None = None) -> tuple[int | None, float | None]:
        """(person id, distance) of the nearest encoding when within the threshold, else (None, distance).

        (None, None) when nobody is enrolled. The same answer as `exhaustive_match`, always.
        """
        q64 = _query(encoding)
        limit = self.threshold if threshold is None else float(threshold)
        if len(self.ids) == 0:
            return None, None
        q32 = q64.astype(np.float32)
        # |e - q|² = |e|² - 2 e·q + |q|², in float32; |q|² is the same for every row, so left out.
        approx = self._norms - 2.0 * (self.encodings @ q32)
        lowest = float(approx.min())
        # Rigorous bound on the float32 error of each approx value (dot product: γ_n |e||q|, plus
        # the rounding of q and of the norms and the subtraction), doubled for safety. Every row
        # whose exact distance could be the smallest lies within 2 bounds of the lowest approx value.
        qn = float(np.sqrt(q64 @ q64))
        scale = (self._max_norm + qn) ** 2
        bound = 2.0 * (FACE_DIMENSIONS + 8) * _U32 * scale / (1 - (FACE_DIMENSIONS + 8) * _U32)
        rows = np.flatnonzero(approx <= lowest + 2.0 * bound)
        exact = distances64(self.encodings[rows], q64)
        k = int(np.argmin(exact))  # rows are ascending: ties go to the lowest row, as in the exhaustive search
        best = float(exact[k])
        return (int(self.ids[rows[k]]) if best <= limit else None), best


def encode_faces(
    rgb: np.ndarray,
    *,
    model: str = "hog",
    upsample: int = 1,
    min_size: int = 0,
    num_jitters: int = 1,
) -> list[FaceFound]:
    """Every face in an RGB picture (uint8, H x W x 3) at least `min_size` pixels high, with its encoding.

    `model` "hog" (CPU, fast) or "cnn" (dlib's CNN, slow without a GPU); `upsample` enlarges the
    picture that many times before detection, to find small faces.
    """
    import face_recognition  # the face stack: the `faces` extra plus face_recognition (see Makefile)

    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise ValueError(f"picture: expected an RGB uint8 array H x W x 3, got {shape}")
    if model not in ("hog", "cnn"):
        raise ValueError(f"model: 'hog' or 'cnn', got {model!r}")
    rgb = np.ascontiguousarray(rgb)
    boxes = face_recognition.face_locations(rgb, number_of_times_to_upsample=upsample, model=model)
    boxes = [b for b in boxes if b[2] - b[0] >= min_size]
    if not boxes:
        return []
    encodings = face_recognition.face_encodings(rgb, known_face_locations=boxes, num_jitters=num_jitters)
    return [
        FaceFound(tuple(int(v) for v in box), np.asarray(enc, dtype=np.float64))
        for box, enc in zip(boxes, encodings, strict=True)
    ]


def load_rgb(path: str) -> np.ndarray:
    """A picture file as RGB uint8 (face_recognition's loader: Pillow, any format it reads)."""
    import face_recognition

    return face_recognition.load_image_file(path, mode="RGB")


class FaceProcess:
    """`encode_faces` in a child process (`python -m edge.access.faces`), for callers on an event loop.

    dlib holds the GIL while it detects and encodes, so in a thread it stalls the whole process
    (the event loop waited up to 0.5 s per 640x480 frame). The child is a plain interpreter fed
    through a pipe — not multiprocessing, which would re-import the parent's main script. Started
    on first use and again after it died; one call at a time.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def encode(self, rgb: np.ndarray, *, upsample: int = 1, min_size: int = 0) -> list[FaceFound]:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        header = json.dumps({"shape": list(rgb.shape), "upsample": upsample, "min_size": min_size}).encode()
        with self._lock:
            if self._closed:
                raise RuntimeError("the face detection process is closed")
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "edge.access.faces"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(struct.pack("<I", len(header)) + header + rgb.tobytes())
                proc.stdin.flush()
                answer = json.loads(_read_exactly(proc.stdout, struct.unpack("<I", _read_exactly(proc.stdout, 4))[0]))
            except (OSError, EOFError, ValueError) as exc:
                proc.kill()
                self._proc = None
                raise RuntimeError(f"the face detection process failed: {exc!r}") from exc
        if "error" in answer:
            raise ValueError(answer["error"])
        return [FaceFound(tuple(f["box"]), np.array(f["encoding"], dtype=np.float64)) for f in answer["faces"]]

    def close(self) -> None:
        with self._lock:
            proc, self._proc, self._closed = self._proc, None, True
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_exactly(stream: Any, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError(f"the face detection process ended ({len(data)} of {n} bytes)")
    return data


def _serve() -> None:
    """The child's loop: a picture in (length-prefixed JSON header, raw RGB bytes), its faces out as JSON."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the answers
    stdin = sys.stdin.buffer
    while True:
        raw = stdin.read(4)
        if len(raw) < 4:
            return
        header = json.loads(_read_exactly(stdin, struct.unpack("<I", raw)[0]))
        shape = tuple(header["shape"])
        rgb = np.frombuffer(_read_exactly(stdin, int(np.prod(shape))), dtype=np.uint8).reshape(shape)
        try:
            faces = encode_faces(rgb, upsample=header["upsample"], min_size=header["min_size"])
            answer: dict[str, Any] = {"faces": [{"box": f.box, "encoding": f.encoding.tolist()} for f in faces]}
        except ValueError as exc:
            answer = {"error": str(exc)}
        body = json.dumps(answer).encode()
        out.write(struct.pack("<I", len(body)) + body)
        out.flush()


if __name__ == "__main__":
    _serve()
