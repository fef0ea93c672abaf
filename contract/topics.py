"""The MQTT topic tree, one place for both sides.

    community/v1/{site}/{gateway}/telemetry     edge -> cloud  telemetry batches
    community/v1/{site}/{gateway}/event         edge -> cloud  device online/offline and other events
    community/v1/{site}/{gateway}/alarm         edge -> cloud  alarm raise / clear
    community/v1/{site}/{gateway}/birth         edge -> cloud  retained: who the gateway is, its devices
    community/v1/{site}/{gateway}/status        edge -> cloud  retained: online, or offline (last will)
    community/v1/{site}/{gateway}/cmd           cloud -> edge  commands for a device
    community/v1/{site}/{gateway}/cmd/ack       edge -> cloud  command results
    community/v1/{site}/{gateway}/health        edge -> cloud  the agent's own health, every health interval
    community/v1/{site}/{gateway}/config        cloud -> edge  retained: the gateway's configuration, versioned
    community/v1/{site}/{gateway}/config/state  edge -> cloud  which configuration version runs, or why one was refused
    community/v1/{site}/{gateway}/access/whitelist  cloud -> edge  who may enter which doors (versioned, full or delta)
    community/v1/{site}/{gateway}/access/request    edge -> cloud  send me the full whitelist
    community/v1/{site}/{gateway}/access/event      edge -> cloud  every decision at a door

Site and gateway ids are slugs (see SLUG_PATTERN), so they can never contain '/', '+' or '#'.
"""

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "community/v1"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_SLUG = re.compile(SLUG_PATTERN)


class Kind(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    ALARM = "alarm"
    BIRTH = "birth"
    STATUS = "status"
    COMMAND = "cmd"
    COMMAND_ACK = "cmd/ack"
    HEALTH = "health"
    CONFIG = "config"
    CONFIG_STATE = "config/state"
    ACCESS_WHITELIST = "access/whitelist"
    ACCESS_REQUEST = "access/request"
    ACCESS_EVENT = "access/event"
    #: a camera's latest frame, at most once a second, QoS 0: the guard console's live picture
    CAMERA_FRAME = "camera/frame"


#: What the cloud subscribes to: everything gateways send.
UPLINK_KINDS = (
    Kind.TELEMETRY,
    Kind.EVENT,
    Kind.ALARM,
    Kind.BIRTH,
    Kind.STATUS,
    Kind.COMMAND_ACK,
    Kind.HEALTH,
    Kind.CONFIG_STATE,
    Kind.ACCESS_REQUEST,
    Kind.ACCESS_EVENT,
    Kind.CAMERA_FRAME,
)
#: What the cloud sends gateways.
DOWNLINK_KINDS = (Kind.COMMAND, Kind.CONFIG, Kind.ACCESS_WHITELIST)


def is_slug(value: str) -> bool:
    return bool(_SLUG.match(value))


def topic(site: str, gateway: str, kind: Kind) -> str:
    if not (is_slug(site) and is_slug(gateway)):
        raise ValueError(f"site and gateway ids must match {SLUG_PATTERN}: {site!r}, {gateway!r}")
    return f"{ROOT}/{site}/{gateway}/{kind.value}"


def cloud_subscription(kind: Kind) -> str:
    """The topic filter for one kind, all sites and gateways."""
    return f"{ROOT}/+/+/{kind.value}"


def cloud_subscriptions() -> list[str]:
    """Topic filters the cloud ingest subscribes to (one per kind, all sites and gateways)."""
    return [cloud_subscription(kind) for kind in UPLINK_KINDS]


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    site: str
    gateway: str
    kind: Kind


def parse(topic_name: str) -> ParsedTopic | None:
    """The site, gateway and kind of a topic in our tree, or None when it is not one of ours."""
    prefix = ROOT + "/"
    if not topic_name.startswith(prefix):
        return None
    parts = topic_name[len(prefix) :].split("/", 2)
    if len(parts) != 3:
        return None
    site, gateway, rest = parts
    try:
        kind = Kind(rest)
    except ValueError:
        return None
    if not (is_slug(site) and is_slug(gateway)):
        return None
    return ParsedTopic(site, gateway, kind)
