"""Dependencies every router shares: a database connection and the acting person.

Authentication arrives with the complaint-workflow issue: `current_actor` is the one place
it slots in (a JWT bearer check returning the user and their roles); every router already
depends on it.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import psycopg
from fastapi import Depends, Header, Request

from contract.clock import Clock


@dataclass(frozen=True)
class Actor:
    name: str


def get_conn(request: Request) -> Iterator[psycopg.Connection]:
    """A pooled connection for one request; committed when the handler returns normally."""
    pool = request.app.state.pool
    with pool.connection() as conn:
        yield conn


def get_clock(request: Request) -> Clock:
    return request.app.state.clock


def current_actor(
    x_actor: Annotated[str | None, Header(max_length=100, description="Who acts (until login arrives)")] = None,
) -> Actor:
    return Actor(name=x_actor or "anonymous")


Conn = Annotated[psycopg.Connection, Depends(get_conn)]
ClockDep = Annotated[Clock, Depends(get_clock)]
ActorDep = Annotated[Actor, Depends(current_actor)]
