"""The guard console's patrol panel: the round in course, kept current by the live feed as
checkpoints are scanned or missed (issue 7: "The guard console shows the round live")."""

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.web.conftest import ServedApp
from tests.web.screens import screen
from tests.workflow.conftest import World
from tests.workflow.test_patrol import at, move_to, run_pass, scan, set_up


def test_the_guard_console_shows_the_round_in_course_live(
    world: World, served: ServedApp, chromium: Any, screens_dir: Path
) -> None:
    set_up(world)  # C1, C2, C3 due at minutes 0, 10 and 20 of a 10:00 round; 5 minutes either side, 10 late
    run_pass(world)
    move_to(world, at(1))
    run_pass(world)  # the round begins
    with screen(chromium, served.url, world, "guard", "/guard") as s:
        panel = s.page.get_by_test_id("patrol")
        expect(panel).to_contain_text("Morning round")
        expect(panel).to_contain_text("0/3 scanned")
        checkpoints = panel.locator("li.checkpoint")
        expect(checkpoints).to_have_count(3)

        # the guard's phone scans C1 (another session): the live feed brings it, no reload
        scan(world, "C1", 2)
        expect(checkpoints.nth(0)).to_have_class(re.compile(r"\bon_time\b"))
        expect(panel).to_contain_text("1/3 scanned")

        # C2's window and its late minutes pass unscanned: the pass marks it missed, the panel follows
        move_to(world, at(26))
        run_pass(world)
        expect(checkpoints.nth(1)).to_have_class(re.compile(r"\bmissed\b"))
        expect(panel).to_contain_text("1 missed")
        s.page.screenshot(path=screens_dir / "guard-patrol.png")
        assert s.errors == []
