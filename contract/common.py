"""Small types shared by the messages, the device profiles and the gateway config."""

from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from contract.topics import SLUG_PATTERN

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
#: Device names: unique per gateway; letters, digits, '_', '.', '-'.
DeviceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
#: Metric and rule names inside a profile.
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Text = Annotated[str, StringConstraints(max_length=500)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
#: A telemetry value as it travels: a number, a flag or a short text.
Value = bool | int | FiniteFloat | Annotated[str, StringConstraints(max_length=1000)]


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"


class TicketKind(StrEnum):
    """What ticket an alarm rule opens: the ticket types a device can cause, or none."""

    REPAIR = "repair"
    SAFETY = "safety"
    NONE = "none"


class Category(StrEnum):
    """Complaint categories from the brief."""

    SERVICE = "service"
    FACILITY = "facility"
    ENVIRONMENT = "environment"
    SAFETY = "safety"
    OTHER = "other"


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as 'Asia/Shanghai')") from exc
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]


class Strict(BaseModel):
    """Base for every contract model: unknown fields are an error, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(Strict):
    building: Annotated[str, StringConstraints(max_length=100)] | None = None
    floor: Annotated[str, StringConstraints(max_length=20)] | None = None
    room: Annotated[str, StringConstraints(max_length=200)] | None = None


class SiteInfo(Strict):
    id: Slug
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    timezone: TimeZoneName = "UTC"


def format_validation_errors(errors: list[dict], *, drop_union_tags: tuple[str, ...] = ()) -> str:
    """Pydantic errors as `field.path: message; ...`, the form every error message here uses."""
    parts = []
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p not in drop_union_tags]
        path = ""
        for p in loc:
            path += f"[{p}]" if isinstance(p, int) else (f".{p}" if path else str(p))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        # a check across fields has no location; its message names the fields itself
        parts.append(f"{path}: {msg}" if path else msg)
    return "; ".join(parts)
