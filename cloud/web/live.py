"""The live feed: PostgreSQL notifications fanned out to every connected screen as server-sent events.

One `LiveHub` per API process holds one LISTEN connection on the changes channel
(cloud.domain.changes) and reconnects by itself when PostgreSQL goes away. Every notification is
offered to every subscriber; each keeps only what its user may see (`visible_to`) in a bounded
queue. A subscriber that falls behind (its queue full) loses the queued events and gets one
`resync` instead — the page then reloads its lists from the API — so a slow or stuck client costs
at most `queue_size` events of memory. After the LISTEN connection was lost, every subscriber gets
`resync` too, since notifications sent meanwhile are gone.

Notifications are sent at commit, by whichever process made the change (the API or the ingest),
so the feed carries changes across processes.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from cloud.api.deps import PrincipalDep
from cloud.domain.access import OFFICE, STAFF, Principal, Role
from cloud.domain.changes import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

#: kinds every staff role sees within its sites
_STAFF_KINDS = frozenset(
    {
        "alarm_raised",
        "alarm_acknowledged",
        "alarm_cleared",
        "alarm_snapshot",
        "gateway",
        "device",
        "last_values",
        "command",
        "config_state",
        # the security patrol (cloud.domain.patrol): rounds, checkpoints, scans
        "patrol_round",
        "patrol_checkpoint",
        "patrol_scan",
    }
)
#: door decisions: the office and the guards (a resident's own entries are not on the feed yet)
_ACCESS_ROLES = frozenset({*OFFICE, Role.GUARD})


def visible_to(who: Principal, event: dict[str, Any]) -> bool:
    """Whether this user may hear of this change: the same rules as the API's lists (cloud.domain.access)."""
    kind = event.get("kind")
    site = event.get("site")
    if kind == "ticket":
        return _ticket_visible(who, event)
    if kind in _STAFF_KINDS:
        return who.role in STAFF and who.reaches_site(site)
    if kind == "access_event":
        return who.role in _ACCESS_ROLES and who.reaches_site(site)
    return who.role == Role.ADMIN  # a kind without rules here: only for who sees everything


def _ticket_visible(who: Principal, event: dict[str, Any]) -> bool:
    """cloud.domain.access.ticket_scope, applied to the ids a `ticket` notification carries."""
    if who.role == Role.ADMIN:
        return True
    if who.role == Role.RESIDENT:
        if event.get("visibility") != "shared":
            return False
        return event.get("complainant_id") == who.person_id or event.get("unit_id") in who.unit_ids
    if not who.reaches_site(event.get("site")):
        return False
    if who.role in (Role.MANAGER, Role.SERVICE_DESK):
        return True
    mine = event.get("assignee_id") == who.user_id
    if who.role == Role.TECHNICIAN:
        return mine or (who.department_id is not None and event.get("department_id") == who.department_id)
    return mine or event.get("type") == "safety" or event.get("category") == "safety"


def sse(data: dict[str, Any], event_id: int | None = None) -> str:
    """One server-sent event: unnamed (the JSON's `kind` says what it is), so one handler reads them all."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


@dataclass(eq=False)
class Subscriber:
    """One connected screen: what its user may see, and the events waiting to be written to it."""

    who: Principal
    queue_size: int
    queue: asyncio.Queue[str] = field(init=False)
    #: events dropped because the queue was full (each overflow sends one `resync`)
    overflows: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.queue_size)

    def offer(self, text: str) -> None:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.resync("behind")

    def resync(self, reason: str) -> None:
        """Drop what is queued and say so: the page reloads its state from the API."""
        dropped = 0
        while not self.queue.empty():
            self.queue.get_nowait()
            dropped += 1
        self.overflows += dropped
        self.queue.put_nowait(sse({"kind": "resync", "reason": reason}))


class LiveHub:
    """One LISTEN connection, many subscribers. Runs as a task on the API's event loop."""

    def __init__(self, database_url: str, *, queue_size: int = 200, reconnect_max_seconds: float = 5.0) -> None:
        self._url = database_url
        self._queue_size = queue_size
        self._reconnect_max = reconnect_max_seconds
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        #: set while the LISTEN connection is up (tests and /healthz-like checks wait on it)
        self.listening = asyncio.Event()
        #: the LISTEN connection's server process (the tests end it to see the hub come back)
        self.backend_pid: int | None = None
        self.received = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="live-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self, who: Principal) -> Subscriber:
        sub = Subscriber(who, self._queue_size)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def publish(self, payload: str) -> None:
        """Offer one notification's payload to every subscriber that may see it."""
        try:
            event = json.loads(payload)
        except ValueError:
            log.warning("ignored a notification that is not JSON: %.100r", payload)
            return
        if not isinstance(event, dict):
            return
        self._seq += 1
        text = sse(event, self._seq)
        for sub in list(self._subscribers):
            if visible_to(sub.who, event):
                sub.offer(text)

    async def _run(self) -> None:
        delay = 0.2
        lost = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            except psycopg.OperationalError as exc:
                log.warning("live feed: cannot reach the database (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._reconnect_max)
                continue
            try:
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.backend_pid = conn.info.backend_pid
                    self.listening.set()
                    delay = 0.2
                    if lost:
                        log.info("live feed: listening again; every screen reloads")
                        for sub in list(self._subscribers):
                            sub.resync("reconnected")
                    async for note in conn.notifies():
                        self.received += 1
                        self.publish(note.payload)
            except psycopg.OperationalError as exc:
                log.warning("live feed: lost the database connection (%s); reconnecting", exc)
            except Exception:  # a bug must not end the feed for good: say so, listen again
                log.exception("live feed: listening failed; reconnecting")
            finally:
                self.listening.clear()
            lost = True
            await asyncio.sleep(delay)


async def stream(hub: LiveHub, sub: Subscriber, *, heartbeat_seconds: float, until: float | None) -> AsyncIterator[str]:
    """The text of one client's event stream: hello, then its events, a comment line as heartbeat.

    Ends at `until` (loop time; the token's expiry): the browser's EventSource reconnects by
    itself, and the new request is checked against the login again.
    """
    loop = asyncio.get_running_loop()
    try:
        yield "retry: 2000\n" + sse({"kind": "hello", "role": sub.who.role.value, "sites": sub.who.site_list()})
        while True:
            wait = heartbeat_seconds
            if until is not None:
                wait = min(wait, until - loop.time())
                if wait <= 0:
                    return
            try:
                # asyncio.timeout, not wait_for, which on Python 3.11 can swallow a cancellation
                # (the client gone) when an event arrives at the same moment
                async with asyncio.timeout(wait):
                    text = await sub.queue.get()
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            yield text
    finally:
        hub.unsubscribe(sub)


router = APIRouter(prefix="/api/v1", tags=["live"])


@router.get("/live", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def live_feed(
    request: Request,
    who: PrincipalDep,
    seconds: Annotated[int | None, Query(ge=0, le=86_400, description="end the stream after this long")] = None,
) -> StreamingResponse:
    """Changes as server-sent events, each `data:` a JSON object with `kind`, `site` and ids (docs/web.md).

    First a `hello`; then what the user may see, as it commits; `resync` when events were lost
    (reload from the API); a comment line as heartbeat. The stream ends after
    COMMUNITY_LIVE_STREAM_SECONDS (or `seconds`): EventSource reconnects and the login is checked again.
    """
    settings = request.app.state.settings
    hub: LiveHub = request.app.state.live
    length = settings.live_stream_seconds if seconds is None else min(seconds, settings.live_stream_seconds)
    until = asyncio.get_running_loop().time() + length
    sub = hub.subscribe(who)
    return StreamingResponse(
        stream(hub, sub, heartbeat_seconds=settings.live_heartbeat_seconds, until=until),
        media_type="text/event-stream",
        # no caching, and no buffering by a proxy (nginx honours X-Accel-Buffering)
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
