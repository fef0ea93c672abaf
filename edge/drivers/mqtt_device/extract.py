"""Take a device's metrics out of the JSON it publishes, by the dotted paths of its profile.

`temp.c` is key `c` of object `temp`; `probes.0.c` is key `c` of the first element of list
`probes`. A payload that is not JSON, or lacks a path, is logged (naming device, topic and path)
and what can be read is still read: a partial reading beats none.
"""

import json
import logging
import math
from typing import Any

from contract.common import Value
from contract.profiles import MqttMetric, MqttProfile

log = logging.getLogger(__name__)

#: The contract carries texts of at most this many characters.
MAX_TEXT = 1000
_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0"}


class PathMissing(LookupError):
    pass


class NotConvertible(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(payload: bytes) -> Any:
    """Strict JSON: NaN and Infinity, which Python's json would accept, are refused."""
    return json.loads(payload, parse_constant=_refuse_constant)


def get_path(document: Any, path: str) -> Any:
    """The value at a dotted path; digits index lists (and are keys in objects that have them)."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PathMissing(part)
    return node


def _number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise NotConvertible(f"{raw!r} is a flag, not a number")
    if isinstance(raw, int | float):
        number = float(raw)
    elif isinstance(raw, str):
        try:
            number = float(raw.strip())
        except ValueError:
            raise NotConvertible(f"{raw!r} is not a number") from None
    else:
        raise NotConvertible(f"a {type(raw).__name__} is not a number")
    if not math.isfinite(number):
        raise NotConvertible(f"{raw!r} is not a finite number")
    return number


def convert(metric: MqttMetric, raw: Any) -> Value:
    """A JSON value as the metric's type, scaled; raises NotConvertible with the reason."""
    if metric.type == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise NotConvertible(f"{raw!r} is not a flag")
    if metric.type == "string":
        if isinstance(raw, dict | list):
            raise NotConvertible(f"a JSON {type(raw).__name__} is not a text")
        text = raw if isinstance(raw, str) else json.dumps(raw)
        if len(text) > MAX_TEXT:
            raise NotConvertible(f"a text of {len(text)} characters; at most {MAX_TEXT} travel")
        return text
    number = _number(raw)
    if metric.type == "integer":
        if not number.is_integer():
            raise NotConvertible(f"{raw!r} is not a whole number")
        if metric.scale == 1.0 and metric.offset == 0.0:
            return int(number)
        return round(number * metric.scale + metric.offset)
    if metric.scale == 1.0 and metric.offset == 0.0:
        return number
    return float(f"{number * metric.scale + metric.offset:.12g}")


class PayloadReader:
    """Reads one device's payloads; warns about a broken path once until it works again."""

    def __init__(self, device: str, topic: str, profile: MqttProfile) -> None:
        self.device = device
        self.topic = topic
        self.profile = profile
        self._warned: set[str] = set()

    def read(self, payload: bytes) -> dict[str, Value]:
        """The metrics found in the payload; empty when it is not JSON or holds none of them."""
        try:
            document = parse_json(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            self._warn("(payload)", f"device {self.device} topic {self.topic}: payload is not JSON ({exc}); skipped")
            return {}
        self._warned.discard("(payload)")
        values: dict[str, Value] = {}
        for metric in self.profile.metrics:
            try:
                values[metric.name] = convert(metric, get_path(document, metric.path))
            except PathMissing as exc:
                self._warn(
                    metric.name,
                    f"device {self.device} topic {self.topic} metric {metric.name}: "
                    f"path {metric.path!r} not in the payload (no {str(exc)!r}); metric skipped",
                )
                continue
            except NotConvertible as exc:
                self._warn(
                    metric.name,
                    f"device {self.device} topic {self.topic} metric {metric.name}: "
                    f"path {metric.path!r}: {exc} (profile says {metric.type}); metric skipped",
                )
                continue
            self._warned.discard(metric.name)
        return values

    def _warn(self, key: str, text: str) -> None:
        if key in self._warned:
            log.debug("%s", text)
        else:
            self._warned.add(key)
            log.warning("%s", text)
