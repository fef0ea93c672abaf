"""Helpers for the technician, resident and manager screen tests: a logged-in browser page, photos,
and the page's own script errors collected so that a test can say there were none."""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from tests.workflow.conftest import World

#: a phone's screen (CSS pixels), as the issue asks the technician's screen to work on
PHONE = {"width": 375, "height": 667}
DESKTOP = {"width": 1366, "height": 900}
#: the smallest touch target (CSS pixels) a finger hits reliably
TOUCH_PX = 44


@dataclass
class Screen:
    page: Any
    #: uncaught exceptions and console errors of the page's scripts
    errors: list[str] = field(default_factory=list)

    def scroll_width(self) -> int:
        return self.page.evaluate("document.documentElement.scrollWidth")


@contextmanager
def screen(
    chromium: Any,
    base_url: str,
    world: World,
    key: str,
    path: str,
    *,
    phone: bool = False,
    viewport: dict[str, int] | None = None,
    init_script: str | None = None,
) -> Iterator[Screen]:
    """A fresh browser context logged in through the login form as estate A's `key`, on `path`;
    `init_script` runs in every page before the page's own scripts."""
    options: dict[str, Any] = {"viewport": PHONE, "is_mobile": True, "has_touch": True} if phone else {}
    viewport = viewport or options.pop("viewport", DESKTOP)
    context = chromium.new_context(base_url=base_url, viewport=viewport, **options)
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    found = Screen(page)
    page.on("pageerror", lambda exc: found.errors.append(f"uncaught: {exc}"))
    page.on(
        "console",
        lambda msg: (
            msg.type == "error"
            and not msg.location.get("url", "").endswith("/favicon.ico")
            and found.errors.append(f"console: {msg.text} at {msg.location.get('url')}")
        ),
    )
    page.goto(f"/login?next={path}")
    page.fill("input[name=username]", world.a.accounts[key][0])
    page.fill("input[name=password]", "community-demo")
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")
    try:
        yield found
    finally:
        context.close()


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (96, 72)) -> bytes:
    """A small real JPEG (the API checks photos by content)."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()
