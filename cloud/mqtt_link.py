"""Paho clients for the cloud's own connections (ingest, API publisher, broker admin): one place
that applies the login and TLS settings, so every connection honours `mqtts://` the same way."""

import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract.urls import MqttEndpoint


def make_client(
    endpoint: MqttEndpoint,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
    clean_session: bool = True,
    manual_ack: bool = False,
) -> mqtt.Client:
    """A paho MQTT 3.1.1 client with the login (explicit, else the URL's) and TLS when the URL is mqtts://."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    user = username or endpoint.username
    if user:
        client.username_pw_set(user, password if password is not None else endpoint.password)
    if endpoint.tls:
        client.tls_set(ca_certs=str(ca_file) if ca_file else None, cert_reqs=ssl.CERT_REQUIRED)
    return client
