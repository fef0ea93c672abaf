"""`community demo`: the whole platform on one machine, on embedded defaults.

PostgreSQL from the embedded wheel (unless DATABASE_URL is set), a broker (Mosquitto when
installed, in-process otherwise, unless MQTT_URL is set), the cloud's API and ingest, one edge
agent for a simulated site, and the simulated devices. It prints where to look, then every
ticket and alarm as it opens. Ctrl-C stops everything it started.
"""

import contextlib
import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from community.broker import free_port, start_local_broker
from community.paths import EXAMPLES, VAR
from community.supervisor import Supervisor

if TYPE_CHECKING:
    from cloud.settings import CloudSettings


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _get(url: str, token: str | None = None) -> object:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=2) as resp:  # our own API on loopback
        return json.loads(resp.read())


def _token(base: str, username: str) -> str:
    form = urllib.parse.urlencode({"username": username, "password": DEMO_PASSWORD}).encode()
    with urllib.request.urlopen(base + "/api/v1/auth/token", data=form, timeout=5) as resp:
        return json.loads(resp.read())["access_token"]


DEMO_PASSWORD = "community-demo"
DEMO_ACCOUNTS = [
    ("administrator", "admin"),
    ("property manager", "manager"),
    ("service desk", "desk"),
    ("technician (plumbing)", "tech1"),
    ("technician (lifts)", "tech2"),
    ("technician (cleaning)", "env1"),
    ("security guard", "guard"),
    ("resident (unit 1-101)", "resident"),
    ("resident (unit 1-102)", "resident2"),
]


def _seed(settings: "CloudSettings") -> list[tuple[str, str]]:
    """The demo estate's people, places, rules and logins (once; later runs find them)."""
    from cloud.security.keys import load_secrets
    from cloud.security.pii import PiiCipher
    from cloud.seed import seed_estate
    from cloud.storage.db import connect
    from contract.clock import SystemClock

    cipher = PiiCipher(load_secrets(settings).data_key)
    with connect(settings.require_database_url()) as conn:
        seed_estate(
            conn,
            cipher,
            site_id="demo-estate",
            site_name="Sunny Gardens",
            timezone="Asia/Shanghai",
            prefix="",
            now=SystemClock().now(),
            password=DEMO_PASSWORD,
        )
        conn.commit()
    return DEMO_ACCOUNTS


def _wait_for_devices(site_config: Path, timeout: float = 20.0) -> None:
    """Let the simulated Modbus devices open their ports before the agent first polls them."""
    from contract.gateway_config import load_gateway_config

    deadline = time.monotonic() + timeout
    for device in load_gateway_config(site_config).config.devices:
        address = device.modbus
        if address is None:
            continue
        while time.monotonic() < deadline:
            if address.serial is not None:
                if Path(address.serial).exists():  # the simulator links the path to its virtual line
                    break
            else:
                assert address.host is not None
                with contextlib.suppress(OSError), socket.create_connection((address.host, address.port), 0.5):
                    break
            time.sleep(0.2)


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(*, http_port: int | None = None, scenario: Path | None = None) -> int:
    from cloud.settings import CloudSettings
    from cloud.storage.migrate import upgrade
    from community.embedded_db import EmbeddedPostgres

    settings = CloudSettings()
    http_port = http_port or settings.http_port

    scenario = scenario or EXAMPLES / "demo-simulation.yaml"
    site_config = EXAMPLES / "demo-site.yaml"
    # the repository's var/ unless COMMUNITY_DATA_DIR says otherwise
    var = settings.data_dir.resolve() if "data_dir" in settings.model_fields_set else VAR
    var.mkdir(parents=True, exist_ok=True)
    log_dir = var / "logs"
    if not _port_free(http_port):
        _say(f"port {http_port} is in use: stop what uses it, or run `community demo --http-port 8001`")
        return 2

    pg = None
    broker = None
    sup = Supervisor(log_dir=log_dir)
    try:
        database_url = settings.database_url
        if database_url:
            _say("database:   DATABASE_URL (your PostgreSQL)")
        else:
            _say(f"database:   starting the embedded PostgreSQL 18 (data in {var / 'pgdata'}) ...")
            pg = EmbeddedPostgres(var / "pgdata").start()
            database_url = pg.ensure_database("community")
        applied = upgrade(database_url)
        _say("schema:     " + (f"applied {', '.join(applied)}" if applied else "up to date"))
        accounts = _seed(settings.model_copy(update={"database_url": database_url, "data_dir": var}))

        mqtt_url = settings.mqtt_url if "mqtt_url" in settings.model_fields_set else None
        if mqtt_url:
            _say(f"broker:     MQTT_URL ({mqtt_url})")
        else:
            port = 1883 if _port_free(1883) else free_port()
            broker = start_local_broker(var / "mosquitto", port)
            mqtt_url = broker.url
            kind = "mosquitto" if type(broker).__name__ == "MosquittoProcess" else "in-process amqtt broker"
            _say(f"broker:     {kind} on {mqtt_url}")

        env = {
            "DATABASE_URL": database_url,
            "MQTT_URL": mqtt_url,
            "COMMUNITY_HTTP_PORT": str(http_port),
            "COMMUNITY_DATA_DIR": str(var),
            "PYTHONUNBUFFERED": "1",
        }
        sup.env.update(env)
        sup.spawn("simulator", ["simulate", "--config", str(scenario)])
        _wait_for_devices(site_config)
        sup.spawn("ingest", ["cloud", "--role", "ingest"])
        sup.spawn("api", ["cloud", "--role", "api"])
        sup.spawn("edge", ["edge", "--config", str(site_config)])

        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 60
        while True:
            dead = sup.dead_child()
            if dead is not None:
                name, code, log_path = dead
                _say(f"{name} stopped at start (exit {code}); its log, {log_path}:")
                if log_path and log_path.exists():
                    _say("".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-25:]))
                return 1
            with contextlib.suppress(OSError, ValueError):
                _get(base + "/healthz")
                break
            if time.monotonic() > deadline:
                _say(f"the API did not answer on {base} within 60 s; see {log_dir}")
                return 1
            time.sleep(0.5)

        _say()
        _say("The platform is running:")
        _say(f"  the screens:        {base}/   (each account lands on its own: /guard, /tech, /resident, /manager)")
        _say(f"  API and its docs:   {base}/docs")
        _say(f"  tickets:            {base}/api/v1/tickets")
        _say(f"  alarms:             {base}/api/v1/alarms?state=open")
        _say(f"  devices:            {base}/api/v1/devices")
        port_text = mqtt_url.rsplit(":", 1)[1]
        _say(f"  MQTT broker:        {mqtt_url}   (watch: mosquitto_sub -p {port_text} -t 'community/#' -v)")
        _say(f"  logs:               {log_dir}/")
        _say(f"Log in (POST {base}/api/v1/auth/token, or the Authorize button in /docs), password {DEMO_PASSWORD!r}:")
        for role, username in accounts:
            _say(f"  {role:<22} {username}")
        _say("Within a minute the simulated pump reports a fault and a repair ticket opens by itself.")
        _say("Ctrl-C stops everything.")
        _say()
        return _watch(sup, base, _token(base, "admin"))
    except KeyboardInterrupt:
        return 0
    finally:
        _say("stopping ...")
        sup.stop_all()
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()
        _say("stopped.")


def _watch(sup: Supervisor, base: str, token: str) -> int:
    """Print what happens to alarms and tickets until Ctrl-C or a child dies."""
    import signal

    stop = {"flag": False}

    def _stop(_sig: int, _frame: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    alarm_states: dict[int, str] = {}
    occurrences: dict[str, int] = {}
    first = True
    while not stop["flag"]:
        dead = sup.dead_child()
        if dead is not None:
            name, code, log_path = dead
            print(f"{name} exited unexpectedly (code {code}); see {log_path}", file=sys.stderr)
            return 1
        try:
            alarms = list(reversed(_get(base + "/api/v1/alarms?limit=50", token)))  # type: ignore[call-overload]
            tickets = list(reversed(_get(base + "/api/v1/tickets?limit=50", token)))  # type: ignore[call-overload]
        except (OSError, ValueError):
            time.sleep(1.0)
            continue
        if first:
            first = False
            if tickets or alarms:
                still_open = sum(1 for a in alarms if a["state"] != "cleared")
                _say(f"(from earlier runs: {len(tickets)} tickets, {still_open} alarms not cleared; news below)")
            alarm_states = {a["id"]: a["state"] for a in alarms}
            occurrences = {t["number"]: t["occurrences"] for t in tickets}
            continue
        for alarm in alarms:
            where = alarm["device_name"] or alarm["gateway_id"]
            text = alarm["message"] or alarm["rule"]
            before = alarm_states.get(alarm["id"])
            if before is None:
                _say(f"alarm   {alarm['severity']:<8} raised   {where}: {text}")
            elif before != "cleared" and alarm["state"] == "cleared":
                _say(f"alarm   {alarm['severity']:<8} cleared  {where}: {text}")
            alarm_states[alarm["id"]] = alarm["state"]
        for ticket in tickets:
            number = ticket["number"]
            if number not in occurrences:
                _say(
                    f"ticket  {number} opened by itself: {ticket['type']}/{ticket['category']}, "
                    f"{ticket['priority']}: {ticket['title']}  ->  {base}/api/v1/tickets/{number}"
                )
            elif ticket["occurrences"] > occurrences[number]:
                _say(f"ticket  {number}: the alarm occurred again ({ticket['occurrences']} times now), same ticket")
            occurrences[number] = ticket["occurrences"]
        time.sleep(1.0)
    return 0
