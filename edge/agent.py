"""The edge agent: read every device of the gateway config, judge alarms locally, send it all up.

Pollers and the MQTT-device listener report to the agent (it is their `DeviceSink`); the agent
evaluates the device's alarm rules on every reading and hands readings, alarms and online/offline
events to the durable outbox (edge/outbox.py), which packs readings into telemetry messages, keeps
everything on disk until the broker has it, and paces the uplink. A health message goes out
every `health_interval` seconds. Everything runs on one asyncio loop; paho's
network threads only hand messages over to it.
"""

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from types import TracebackType

from contract.clock import Clock, SystemClock
from contract.common import TicketKind
from contract.gateway_config import DeviceConfig, DoorConfig, LoadedGatewayConfig, load_gateway_config
from contract.messages import (
    AlarmMessage,
    BirthMessage,
    CommandMessage,
    DeviceHealth,
    EventMessage,
    GatewayInfo,
    HealthMessage,
    Reading,
    encode,
)
from contract.profiles import ModbusProfile, MqttProfile
from contract.topics import Kind
from edge.access.controller import AccessController, covers, snapshot_event
from edge.access.decide import Passback
from edge.access.readers import LineReader, MqttReaders
from edge.access.whitelist import WhitelistStore
from edge.commands import CommandHandler, ModbusTarget
from edge.drivers.modbus.bus import BusPool
from edge.drivers.modbus.poller import ModbusPoller
from edge.drivers.mqtt_device.listener import MqttDeviceListener
from edge.frames import send_frames
from edge.logs import configure_logging
from edge.outbox import DurableOutbox
from edge.patrol import PatrolReaders
from edge.remote_config import ConfigStore, RemoteConfigHandler
from edge.rules import DeviceRules, Transition
from edge.settings import EdgeSettings, parse_mqtt_url
from edge.uplink import Uplink, edge_version

log = logging.getLogger(__name__)


class Agent:
    """One gateway's agent. `async with Agent(settings):` runs it; `run_agent` is the blocking form."""

    def __init__(
        self,
        settings: EdgeSettings,
        *,
        gateway_config: LoadedGatewayConfig | None = None,
        clock: Clock | None = None,
        backoff_cap: float = 30.0,
    ) -> None:
        if gateway_config is None:
            if settings.config is None:
                raise ValueError("no gateway config: pass --config FILE or set COMMUNITY_EDGE_CONFIG")
            gateway_config = load_gateway_config(Path(settings.config))
        self.settings = settings
        self.clock = clock or SystemClock()
        self.backoff_cap = backoff_cap
        #: The cloud's pushed configuration (edge/remote_config.py): the last good one saved on disk
        #: is what the agent starts with; the local file when there is none.
        self.remote = RemoteConfigHandler(
            gateway_config,
            ConfigStore(settings.config_store_file(gateway_config.config.gateway.id)),
            self._reconfigure,
            self.clock,
        )
        self.loaded = self.remote.initial()
        self.config = self.loaded.config
        self.uplink = Uplink(
            settings.uplink_endpoint(),
            self.config.site.id,
            self.config.gateway.id,
            birth=self._birth,
            on_command=self._command_arrived,
            on_config=self._config_arrived,
            on_whitelist=self._whitelist_arrived,
            clock=self.clock,
            # both lanes' windows, birth and status: paho never has to queue a message itself
            max_inflight=2 * settings.outbox_window + 10,
            reconnect_max_delay=settings.reconnect_max_delay,
            ca_file=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
        )
        telemetry = self.config.telemetry
        self.outbox = DurableOutbox(
            settings.outbox_file(self.config.gateway.id),
            self.uplink,
            self.clock,
            max_points=telemetry.max_points,
            max_delay=telemetry.max_delay,
            max_bytes=settings.outbox_max_bytes,
            max_age=settings.outbox_max_age,
            drain_rate=settings.outbox_drain_rate,
            window=settings.outbox_window,
        )
        self.uplink.on_ack = self.outbox.acked
        self.uplink.on_connected = self.outbox.connected
        self.uplink.on_disconnected = self.outbox.disconnected
        self.commands = CommandHandler({}, self.clock)
        self._command_tasks: set[asyncio.Task[None]] = set()
        #: Door access (edge/access/): the whitelist on disk outlives configurations, and so does
        #: anti-passback's memory; the controller, readers and cameras are built per configuration.
        self.whitelist = WhitelistStore(settings.state_dir / f"whitelist-{self.config.gateway.id}.json")
        self._passback = Passback()
        self._matcher: tuple[int | None, object] = (None, None)
        self._build_drivers(self.loaded)
        self._driver_tasks: list[asyncio.Task[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._config_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_at = self.clock.monotonic()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        log.info(
            "agent: site %s gateway %s, %d device(s) from %s",
            self.config.site.id, self.config.gateway.id, len(self.devices), self.loaded.path,
        )  # fmt: skip
        self.outbox.start()
        self.uplink.start()
        if self.access is not None and self.access.doors and self.whitelist.version is None:
            self.access.request_whitelist("no whitelist on disk")
        await self._start_drivers()
        self._tasks.append(asyncio.create_task(self._report_health(), name="health"))
        if self.settings.camera_frame_seconds > 0:
            frames = send_frames(
                lambda: self.cameras,  # type: ignore[arg-type, return-value]
                lambda payload: self.uplink.publish_volatile(Kind.CAMERA_FRAME, payload),
                interval=self.settings.camera_frame_seconds,
                clock=self.clock,
            )
            self._tasks.append(asyncio.create_task(frames, name="camera-frames"))

    async def stop(self, reason: str = "shutdown") -> None:
        """Stop polling, send what is batched, say offline, disconnect."""
        # Commands first: a cancelled pulse still switches its coil off, and its ack goes out.
        for task in self._command_tasks:
            task.cancel()
        await asyncio.gather(*self._command_tasks, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._stop_drivers()
        # staged readings into batches; what the broker has not acknowledged stays on disk
        await asyncio.to_thread(self.outbox.close)
        await asyncio.to_thread(self.uplink.stop, reason)
        log.info("agent: stopped (%s)", reason)

    async def __aenter__(self) -> "Agent":
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- devices: built from a configuration, replaced when the cloud pushes a new one ----------

    def _build_drivers(self, loaded: LoadedGatewayConfig) -> None:
        """Rules, Modbus lines and pollers, the MQTT-device listener and command targets for `loaded`."""
        self.loaded = loaded
        self.config = loaded.config
        self.devices: dict[str, DeviceConfig] = {d.name: d for d in self.config.devices if d.enabled}
        self.rules = {
            name: DeviceRules(
                name,
                loaded.profile_of(dev).alarms,
                self.clock,
                units={m.name: m.unit for m in loaded.profile_of(dev).metrics if m.unit},
            )
            for name, dev in self.devices.items()
        }
        #: One connection per Modbus line (TCP gateway or serial port), shared by the devices on it.
        self.buses = BusPool(backoff_cap=self.backoff_cap)
        self.pollers: dict[str, ModbusPoller] = {}
        mqtt_devices: list[tuple[DeviceConfig, MqttProfile]] = []
        for name, dev in self.devices.items():
            profile = loaded.profile_of(dev)
            if isinstance(profile, ModbusProfile):
                assert dev.modbus is not None
                bus = self.buses.bus_for(dev.modbus)
                self.pollers[name] = ModbusPoller(
                    dev, profile, self, bus=bus, clock=self.clock, backoff_cap=self.backoff_cap
                )
            else:
                mqtt_devices.append((dev, profile))
        # the same handler across configurations: it remembers the command ids it has run
        self.commands.devices = {n: loaded.profile_of(d) for n, d in self.devices.items()}
        self.commands.targets = {n: ModbusTarget(p.profile, p.address, p.bus) for n, p in self.pollers.items()}
        self.listener: MqttDeviceListener | None = None
        if mqtt_devices:
            local = self.config.local_mqtt_url
            endpoint = parse_mqtt_url(local) if local else self.settings.uplink_endpoint()
            self.listener = MqttDeviceListener(
                mqtt_devices, endpoint, f"{self.config.gateway.id}-devices", self, clock=self.clock
            )
        self.outbox.max_points = self.config.telemetry.max_points
        self.outbox.max_delay = self.config.telemetry.max_delay
        self._build_access()
        self._build_patrol()

    def _build_patrol(self) -> None:
        """The patrol's checkpoint readers: each tag read is a `patrol_scan` event (edge/patrol.py)."""
        self.patrol: PatrolReaders | None = None
        readers = self.config.patrol.readers if self.config.patrol is not None else []
        if not readers:
            return
        local = self.config.local_mqtt_url
        endpoint = parse_mqtt_url(local) if local else self.settings.uplink_endpoint()
        self.patrol = PatrolReaders(
            readers,
            emit=self.outbox.put,
            clock=self.clock,
            endpoint=endpoint,
            client_id=f"{self.config.gateway.id}-patrol",
        )

    def _build_access(self) -> None:
        """The door-access controller, its card readers and cameras, when the config has doors."""
        self.access: AccessController | None = None
        self.mqtt_readers: MqttReaders | None = None
        self.line_readers: list[LineReader] = []
        self.cameras: list[object] = []
        access = self.config.access
        if access is None:
            return
        self.access = AccessController(
            access,
            self.whitelist,
            self.clock,
            open_relay=self._open_relay,
            emit=self.outbox.put,
            online=self.uplink.connected.is_set,
            snapshot=self._door_snapshot,
            passback=self._passback,
        )
        mqtt_readers = [r for r in access.readers if r.kind == "mqtt"]
        if mqtt_readers:
            local = self.config.local_mqtt_url
            endpoint = parse_mqtt_url(local) if local else self.settings.uplink_endpoint()
            self.mqtt_readers = MqttReaders(
                mqtt_readers, endpoint, f"{self.config.gateway.id}-readers", self.access.credential
            )
        self.line_readers = [LineReader(r, self.access.credential) for r in access.readers if r.kind != "mqtt"]
        if access.cameras:
            from edge.access.camera import CameraWorker  # OpenCV only on gateways with cameras

            self.cameras = [CameraWorker(c, self._face_matcher, self.access) for c in access.cameras]

    def _face_matcher(self) -> object:
        """The cameras' matcher over the whitelist's faces, rebuilt when the whitelist changes."""
        version = self.whitelist.version
        if version is None:
            return None
        if self._matcher[0] != version:
            from edge.access.faces import FaceMatcher

            self._matcher = (version, FaceMatcher(*self.whitelist.face_index()))
        return self._matcher[1]

    def _door_snapshot(self, door: str) -> bytes | None:
        """The latest frame of a camera at `door`, for the alarms raised there."""
        for worker in self.cameras:
            if getattr(getattr(worker, "camera", None), "door", None) == door:
                jpeg = worker.latest_jpeg()  # type: ignore[attr-defined]
                if jpeg is not None:
                    return jpeg
        return None

    async def _open_relay(self, door: DoorConfig) -> None:
        """Pulse the door's lock relay through the command path (the profile's `open_command`)."""
        assert door.relay is not None
        command = CommandMessage(ts=self.clock.now(), device=door.relay, command=door.open_command)
        ack = await self.commands.execute(encode(command))
        if ack is not None and ack.status != "succeeded":
            raise RuntimeError(f"{door.open_command} on {door.relay} {ack.status}: {ack.reason}")

    def _whitelist_arrived(self, payload: bytes) -> None:
        """On paho's thread: hand the whitelist to the loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._handle_whitelist, payload)

    def _handle_whitelist(self, payload: bytes) -> None:
        """Kept even while no door is configured: a configuration may bring doors later."""
        reason = self.whitelist.receive(payload)
        if reason is not None:
            self.outbox.put(Kind.ACCESS_REQUEST, self.whitelist.request(self.clock, reason))

    async def _start_drivers(self) -> None:
        for name, poller in self.pollers.items():
            self._driver_tasks.append(asyncio.create_task(poller.run(), name=f"poll-{name}"))
        if self.listener is not None:
            await self.listener.start()
        if self.access is not None:
            self._driver_tasks.append(asyncio.create_task(self.access.run(), name="doors"))
        if self.mqtt_readers is not None:
            await self.mqtt_readers.start()
        for reader in self.line_readers:
            self._driver_tasks.append(asyncio.create_task(reader.run(), name=f"reader-{reader.reader.name}"))
        for worker in self.cameras:
            self._driver_tasks.append(asyncio.create_task(worker.run(), name="camera"))  # type: ignore[attr-defined]
        if self.patrol is not None:
            await self.patrol.start()

    async def _stop_drivers(self) -> None:
        if self.patrol is not None:
            await self.patrol.stop()
        if self.mqtt_readers is not None:
            await self.mqtt_readers.stop()
        if self.access is not None:
            await self.access.stop()  # pulses in progress switch their coil off first
        for task in self._driver_tasks:
            task.cancel()
        await asyncio.gather(*self._driver_tasks, return_exceptions=True)
        self._driver_tasks.clear()
        self.buses.close()
        if self.listener is not None:
            await self.listener.stop()

    async def _reconfigure(self, loaded: LoadedGatewayConfig) -> None:
        """Run `loaded` instead of what runs now, without a restart: the uplink, the outbox and
        their backlog stay; the devices' drivers are stopped and built again. Readings already
        taken stay in the outbox; alarm states of devices start afresh (the rules settle again)."""
        await self._stop_drivers()
        self._build_drivers(loaded)
        await self._start_drivers()
        self.uplink.announce()
        if self.access is not None and self.access.doors and self.whitelist.version is None:
            self.access.request_whitelist("doors configured, no whitelist on disk")
        log.info("agent: now serving %d device(s) (configuration version %s)", len(self.devices), loaded.version)

    def _config_arrived(self, payload: bytes) -> None:
        """On paho's thread: hand the configuration to the loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._handle_config, payload)

    def _handle_config(self, payload: bytes) -> None:
        task = asyncio.create_task(self._apply_config(payload), name="config")
        self._tasks.append(task)
        task.add_done_callback(lambda t: t in self._tasks and self._tasks.remove(t))

    async def _apply_config(self, payload: bytes) -> None:
        async with self._config_lock:  # one configuration at a time, in the order they came
            try:
                state = await self.remote.handle(payload)
            except Exception:
                log.exception("agent: a pushed configuration could not be handled")
                return
        if state is not None:
            self.outbox.put(Kind.CONFIG_STATE, state)

    # -- DeviceSink: called by the drivers on the loop -----------------------------------------

    def reading(self, reading: Reading) -> None:
        try:
            for transition in self.rules[reading.device].evaluate(reading.values):
                self._send_alarm(transition, reading)
        except Exception:  # a fault here is ours, not the device's: keep polling, keep the telemetry
            log.exception("device %s: alarm rules failed on a reading", reading.device)
        if self.access is not None:
            try:
                self.access.reading(reading)  # door contacts: forced and held-open doors
            except Exception:
                log.exception("device %s: door watch failed on a reading", reading.device)
        self.outbox.add_reading(reading)

    def state(self, device: str, online: bool, reason: str) -> None:
        kind = "device_online" if online else "device_offline"
        self.outbox.put(Kind.EVENT, EventMessage(ts=self.clock.now(), device=device, kind=kind, detail=reason[:500]))

    # -- messages ------------------------------------------------------------------------------

    def _birth(self) -> BirthMessage:
        gateway = self.config.gateway
        return BirthMessage(
            ts=self.clock.now(),
            site=self.config.site,
            gateway=GatewayInfo(id=gateway.id, name=gateway.name or gateway.id, version=edge_version()),
            devices=[
                info
                for info in self.loaded.device_infos()
                if info.name in self.devices or info.protocol in ("camera", "reader")
            ],
            config_version=self.loaded.version,
        )

    def _send_alarm(self, transition: Transition, reading: Reading) -> None:
        rule = transition.rule
        alarm = AlarmMessage(
            ts=reading.ts,
            device=transition.device,
            rule=rule.id,
            action=transition.action,
            severity=rule.severity,
            ticket=rule.ticket,
            category=rule.ticket_category if rule.ticket != TicketKind.NONE else rule.category,
            value=transition.value,
            message=transition.message,
        )
        self.outbox.put(Kind.ALARM, alarm)
        if transition.action == "raise" and self.cameras:
            self._area_snapshots(transition.device, rule.id)

    def _area_snapshots(self, device: str, rule: str) -> None:
        """The latest frame of every camera whose area holds `device`, attached to its alarm."""
        config = self.devices.get(device)
        if config is None:
            return
        for worker in self.cameras:
            camera = worker.camera  # type: ignore[attr-defined]
            if not covers(camera.location, config.location):
                continue
            try:
                jpeg = worker.latest_jpeg()  # type: ignore[attr-defined]
            except Exception:  # a snapshot is a help, never a reason to lose the alarm
                log.exception("camera %s: no snapshot for the alarm %s of %s", camera.name, rule, device)
                continue
            if jpeg is not None:
                self.outbox.put(Kind.EVENT, snapshot_event(self.clock.now(), camera.name, device, rule, jpeg))

    def health(self) -> HealthMessage:
        """The agent's own health: uptime, the outbox, and how polling each Modbus device goes."""
        devices: list[DeviceHealth] = [poller.health() for poller in self.pollers.values()]
        return HealthMessage(
            ts=self.clock.now(),
            uptime_s=max(0.0, self.clock.monotonic() - self._started_at),
            config_version=self.loaded.version,
            outbox=self.outbox.health(),
            devices=devices,
        )

    async def _report_health(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval)
            try:
                self.outbox.put(Kind.HEALTH, self.health())
            except Exception:  # health is a report, never a reason to stop the agent
                log.exception("agent: health report failed")

    def _command_arrived(self, payload: bytes) -> None:
        """On paho's thread: hand the command to the loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._handle_command, payload)

    def _handle_command(self, payload: bytes) -> None:
        """On the loop: run the command as a task of its own, so a write never holds up polling."""
        task = asyncio.create_task(self._run_command(payload), name="command")
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    async def _run_command(self, payload: bytes) -> None:
        try:
            ack = await self.commands.execute(payload)
        except Exception:  # ours, not the device's: log it; the cloud sees the command stay pending
            log.exception("command failed unexpectedly")
            return
        if ack is not None:
            self.outbox.put(Kind.COMMAND_ACK, ack)


async def _run_until_signalled(settings: EdgeSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with Agent(settings, backoff_cap=settings.reconnect_max_delay):
        await stop.wait()


def run_agent(settings: EdgeSettings) -> None:
    """Run the agent until SIGINT or SIGTERM, then stop cleanly (the CLI's `community edge`).

    Raises ProfileError (naming file and field) when the gateway config or a profile is broken.
    """
    configure_logging(settings.log_level)
    asyncio.run(_run_until_signalled(settings))
