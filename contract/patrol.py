"""A patrol checkpoint reader's scan, as the edge sends it: an `event` message of kind `patrol_scan`.

    community/v1/{site}/{gateway}/event
    {"v": 1, "id": "<uuid7>", "ts": "<when the tag was read, UTC>",
     "device": "<the reader, optional>", "kind": "patrol_scan",
     "data": {"tag": "<NFC uid or QR text>", "card": "<the guard's card number, optional>"}}

The message's `ts` is the scan time: a scan that waited in the gateway's outbox still counts
when it happened. The cloud matches the tag to a checkpoint of the gateway's site
(docs/patrol.md).
"""

from typing import Annotated

from pydantic import StringConstraints

from contract.access import CardNumber
from contract.common import Strict

#: the EventMessage kind of a checkpoint reader's scan
PATROL_SCAN_EVENT = "patrol_scan"

#: an NFC uid (hex) or the text of a QR code; printable, at most 200 characters
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]


class PatrolScanData(Strict):
    """The `data` of a `patrol_scan` event."""

    tag: Tag
    #: the number of the card the guard held to the reader, when the reader asks for one
    card: CardNumber | None = None
