"""The guard console as a wall screen, in a real browser fed by the real ingest: a tone for every new
alarm once the guard has turned the sound on (one low tone, three high ones for critical and major
alarms; the page's own Web Audio calls, recorded), each severity in its own colour, and panels that
stay where they are while alarms, door events, readings and camera frames pour in."""

import base64
import uuid
from datetime import UTC, datetime

from playwright.sync_api import expect

from contract.access import AccessEvent
from contract.messages import CameraFrame
from tests.cloud.stack import Gateway, running_ingest, settings_for, wait_for
from tests.web.conftest import ServedApp
from tests.web.screens import jpeg, screen
from tests.workflow.conftest import World

#: records the frequency of every oscillator the page starts, then lets it sound as usual
TONE_RECORDER = """
window.__tones = [];
const createOscillator = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () {
  const osc = createOscillator.call(this);
  const start = osc.start.bind(osc);
  osc.start = (when) => { window.__tones.push(osc.frequency.value); start(when); };
  return osc;
};
"""
#: every panel's box, the page's scroll size and the viewport's
LAYOUT = """() => ({
  panels: [...document.querySelectorAll('.console > .panel')].map((p) => {
    const r = p.getBoundingClientRect();
    return [p.className, r.x, r.y, r.width, r.height];
  }),
  scroll: [document.scrollingElement.scrollWidth, document.scrollingElement.scrollHeight],
  viewport: [window.innerWidth, window.innerHeight],
})"""
LOW, HIGH = 660, 1046
DEVICES = [f"pump-{i}" for i in range(1, 9)]


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int]) -> str:
    return base64.b64encode(jpeg(colour, size)).decode()


def test_the_wall_screen_sounds_new_alarms_by_severity_and_its_panels_never_move(
    world: World, served: ServedApp, chromium, screens_dir, mqtt_url: str
) -> None:
    gateway_id = f"gw-wall-{uuid.uuid4().hex[:6]}"
    settings = settings_for(
        world.database_url, mqtt_url, client_id=f"ingest-{gateway_id}", data_dir=world.settings.data_dir
    )
    with running_ingest(settings):
        gateway = Gateway(mqtt_url, "estate-a", gateway_id, timezone="Asia/Shanghai")
        try:
            gateway.birth([(name, "water-pump", "1") for name in DEVICES])
            wait_for(lambda: len(world.sql("SELECT 1 FROM devices WHERE gateway_id = %s", (gateway_id,))) == 8)

            wall = {"width": 1920, "height": 1080}
            with screen(chromium, served.url, world, "guard", "/guard", viewport=wall, init_script=TONE_RECORDER) as s:
                page = s.page
                expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
                expect(page.locator("#board")).to_contain_text("pump-8")

                # sound off (the page starts so: browsers allow audio only after a click): no tone
                gateway.alarm("pump-1", "dry_running", "raise", severity="major", message="Pump 1 runs dry")
                expect(page.locator("li.alarm")).to_have_count(1)
                assert page.evaluate("window.__tones") == []

                toggle = page.locator("[data-testid=sound-toggle]")
                toggle.click()
                expect(toggle).to_have_attribute("aria-pressed", "true")
                page.wait_for_function("window.__tones.length === 1")  # the tone that says the sound is on
                before = page.evaluate(LAYOUT)

                gateway.alarm("pump-2", "pressure_low", "raise", severity="warning", message="Pressure low")
                expect(page.locator("li.alarm")).to_have_count(2)
                page.wait_for_function("window.__tones.length === 2")
                gateway.alarm("pump-3", "dry_running", "raise", severity="critical", message="Pump 3 runs dry")
                expect(page.locator("li.alarm")).to_have_count(3)
                page.wait_for_function("window.__tones.length === 5")
                assert page.evaluate("window.__tones") == [LOW, LOW, HIGH, HIGH, HIGH]

                # a colour per severity, the same for the row's edge and its severity word
                gateway.alarm("pump-4", "pressure_low", "raise", severity="minor", message="Pressure a little low")
                expect(page.locator("li.alarm")).to_have_count(4)
                page.wait_for_function("window.__tones.length === 6")
                colours = {}
                for severity in ("critical", "major", "minor", "warning"):
                    row = page.locator(f"li.alarm.sev-{severity}")
                    expect(row).to_have_count(1)
                    edge = row.evaluate("r => getComputedStyle(r).borderLeftColor")
                    word = row.locator(".sev").evaluate("s => getComputedStyle(s).color")
                    assert edge == word, severity
                    colours[severity] = edge
                assert len(set(colours.values())) == 4, colours

                # a shift's worth of arrivals: more alarms than the list shows, door events with
                # snapshots, new readings for every device and camera frames
                for i, name in enumerate(DEVICES):
                    for rule in ("overheat", "leak", "fault"):
                        gateway.alarm(name, rule, "raise", severity="minor", message=f"{rule} at {name} ({i})")
                    gateway.telemetry(name, {"pressure": 3 + i / 10, "fault_code": i})
                for i in range(12):
                    gateway.send(
                        AccessEvent(
                            ts=datetime.now(UTC),
                            door=f"door-{i % 3}",
                            method="face",
                            granted=False,
                            reason="not_recognised",
                            distance=0.7,
                            snapshot_jpeg=_jpeg((0, 0, 128), (160, 120)),
                        )
                    )
                for camera in ("cam-lobby", "cam-garage", "cam-gate"):
                    gateway.send(CameraFrame(ts=datetime.now(UTC), camera=camera, jpeg=_jpeg((0, 100, 0), (640, 360))))
                # 24 alarms, 12 door events and 8 readings in a burst: given time on a busy machine
                expect(page.locator("li.alarm")).to_have_count(4 + 3 * len(DEVICES), timeout=30_000)
                expect(page.locator("li.door")).to_have_count(12, timeout=30_000)
                # the list of cameras is read again every 5 s; each frame once a second
                expect(page.locator("figure.camera img")).to_have_count(3, timeout=30_000)
                page.wait_for_function(
                    "() => [...document.querySelectorAll('figure.camera img')].every((i) => i.naturalWidth === 640)"
                )
                expect(page.locator("#board")).to_contain_text("pressure 3.7 bar", timeout=30_000)
                page.screenshot(path=screens_dir / "guard-wall-busy.png")

                # more alarms (and camera pictures) than the panel shows: its body scrolls, the panel
                # does not grow
                for body in ("alarm-list", "cameras"):
                    scrolled = page.evaluate(
                        """(id) => { const l = document.getElementById(id); l.scrollTop = l.scrollHeight;
                                     return [l.scrollHeight > l.clientHeight, l.scrollTop > 0]; }""",
                        body,
                    )
                    assert scrolled == [True, True], body
                after = page.evaluate(LAYOUT)
                assert after["panels"] == before["panels"]
                # the screen itself never scrolls: everything stays in view, lists scroll inside
                assert after["scroll"] == after["viewport"] == before["scroll"]
                # every new alarm sounded: the minor one above and 24 more, a low tone each
                page.wait_for_function("window.__tones.length >= 30")
                assert page.evaluate("window.__tones") == [LOW, LOW, HIGH, HIGH, HIGH] + [LOW] * 25
        finally:
            gateway.close()
