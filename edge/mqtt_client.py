"""Make a paho MQTT client the way every client of the platform connects: MQTT 3.1.1, API v2.

3.1.1 because the demo's fallback broker (amqtt) speaks nothing newer, and nothing here needs 5.
"""

import logging
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.settings import MqttEndpoint


def make_client(
    client_id: str, endpoint: MqttEndpoint, *, clean_session: bool, ca_file: str | None = None
) -> mqtt.Client:
    """A client for `endpoint`, not yet connected, logging to `edge.mqtt.<client id>`.

    Over TLS the broker's certificate is checked against `ca_file` (a private CA), or the
    system's trusted CAs when it is None."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
    )
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
    client.enable_logger(logging.getLogger(f"edge.mqtt.{client_id}"))
    return client
