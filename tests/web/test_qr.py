"""The resident screen's QR encoder (cloud/web/static/js/qr.js), run in chromium: what it draws for
texts filling each of its versions 1 to 6 decodes, with OpenCV's detector, to the text itself.

The detector is QRCodeDetectorAruco, as at the door camera: the classic QRCodeDetector (OpenCV 4.x
and 5.0) fails on about 2 % of random valid codes drawn at a given scale, which made this test flaky
(codes it missed were checked valid: right format bits, every Reed-Solomon block's syndromes zero)."""

import secrets
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

QR_JS = Path(__file__).resolve().parents[2] / "cloud" / "web" / "static" / "js" / "qr.js"
#: the most bytes each version holds at level M in byte mode (versions 1 to 6)
CAPACITY = {1: 14, 2: 26, 3: 42, 4: 62, 5: 84, 6: 106}


@pytest.fixture(scope="module")
def qr_page(chromium: Any) -> Any:
    page = chromium.new_page()
    page.set_content("<!doctype html><html><body></body></html>")
    page.add_script_tag(path=str(QR_JS))
    yield page
    page.close()


def decode(matrix: list[list[bool]]) -> str:
    modules = np.where(np.array(matrix, dtype=bool), 0, 255).astype(np.uint8)
    image = cv2.resize(np.pad(modules, 4, constant_values=255), None, fx=8, fy=8, interpolation=cv2.INTER_NEAREST)
    text, _points, _ = cv2.QRCodeDetectorAruco().detectAndDecode(image)
    return text


@pytest.mark.parametrize("version", sorted(CAPACITY))
def test_each_version_full_and_just_above_the_one_below_decodes_to_its_text(qr_page: Any, version: int) -> None:
    smallest = CAPACITY[version - 1] + 1 if version > 1 else 1
    for length in (smallest, CAPACITY[version]):
        text = secrets.token_urlsafe(length)[:length]
        matrix = qr_page.evaluate("text => QR.matrix(text)", text)
        assert len(matrix) == 17 + 4 * version, (length, len(matrix))
        assert decode(matrix) == text


def test_every_length_up_to_version_6_decodes_twice_over(qr_page: Any) -> None:
    """Each length 1 to 106 with two random texts: every mask and version is drawn many times."""
    for length in [n for n in range(1, CAPACITY[6] + 1) for _ in range(2)]:
        text = secrets.token_urlsafe(length)[:length]
        assert decode(qr_page.evaluate("text => QR.matrix(text)", text)) == text


def test_a_pass_token_and_text_beyond_ascii_decode(qr_page: Any) -> None:
    for text in (secrets.token_urlsafe(24), "访客通行证 Ma Lin"):
        assert decode(qr_page.evaluate("text => QR.matrix(text)", text)) == text


def test_text_longer_than_version_6_is_refused(qr_page: Any) -> None:
    with pytest.raises(Exception, match="too long"):
        qr_page.evaluate("text => QR.matrix(text)", "x" * (CAPACITY[6] + 1))
