"""Payloads that cannot be used are kept, with their topic, raw bytes and the reason."""

import logging

import psycopg

log = logging.getLogger(__name__)


def store(conn: psycopg.Connection, *, topic: str, payload: bytes, reason: str) -> None:
    conn.execute("INSERT INTO dead_letters (topic, payload, reason) VALUES (%s, %s, %s)", (topic, payload, reason))
    log.warning("dead-lettered a message on %s: %s", topic, reason)
