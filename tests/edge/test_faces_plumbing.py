"""The photo set's plumbing: skipped with the path when missing, a failure under .ci/run."""

import os
import subprocess
import sys
from pathlib import Path


def _pytest(repo_root: Path, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    test = "tests/edge/test_faces.py::test_both_people_in_the_two_person_photo_are_found"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            test,
            "--basetemp",
            str(tmp_path / "t"),
        ],
        cwd=repo_root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_the_photo_set_the_photo_tests_are_skipped_naming_the_path(repo_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-faces-here"
    run = _pytest(repo_root, {"FACES_DIR": str(missing), "REQUIRE_FACES": ""}, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout and str(missing) in run.stdout, run.stdout


def test_with_require_faces_a_missing_photo_set_fails(repo_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-faces-here"
    run = _pytest(repo_root, {"FACES_DIR": str(missing), "REQUIRE_FACES": "1"}, tmp_path)
    assert run.returncode != 0
    assert "1 error" in run.stdout and str(missing) in run.stdout, run.stdout


def _ci_run(repo_root: Path, tmp_path: Path, faces: Path) -> subprocess.CompletedProcess[str]:
    """.ci/run with a stand-in `make` that only says it ran (and what REQUIRE_FACES was)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "make"
    fake.write_text('#!/bin/sh\necho "make ran: $* REQUIRE_FACES=$REQUIRE_FACES FACES_DIR=$FACES_DIR"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FACES_DIR": str(faces), "DATABASE_URL": "x"}
    return subprocess.run(
        ["bash", str(repo_root / ".ci" / "run")], cwd=repo_root, env=env, capture_output=True, text=True, timeout=120
    )


def test_ci_run_fails_before_the_tests_when_the_photo_set_is_missing(repo_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-faces-here"
    run = _ci_run(repo_root, tmp_path, missing)
    assert run.returncode != 0
    assert "make ran" not in run.stdout
    assert f"the face photo set is missing: {missing}" in run.stderr


def test_ci_run_requires_the_photo_set_in_the_tests(repo_root: Path, tmp_path: Path) -> None:
    faces = tmp_path / "faces"
    (faces / "enroll").mkdir(parents=True)
    (faces / "probes").mkdir()
    run = _ci_run(repo_root, tmp_path, faces)
    assert run.returncode == 0, run.stderr
    assert f"make ran: test REQUIRE_FACES=1 FACES_DIR={faces}" in run.stdout
