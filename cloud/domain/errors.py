"""The one shape of a refusal by the domain: an HTTP status and a reason a person can act on.

The API answers every `Refused` the same way (`cloud/api/errors.py`), so domain modules raise
their own subclass and routers need not translate it.
"""


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
