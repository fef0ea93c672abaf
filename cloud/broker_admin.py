"""Gateways' broker logins, managed in Mosquitto's dynamic-security plugin.

The cloud logs in as the plugin's admin client and publishes JSON commands to
`$CONTROL/dynamic-security/v1`; the broker answers on `$CONTROL/dynamic-security/v1/response`.
This works across containers and hosts (no shared files), and a change applies at once.

Each gateway gets a client (username = gateway id) with a role of its own that lets it publish
only its uplink topics and subscribe to / receive only its own `cmd` and `config`. Passwords
are generated here, handed to the caller once and never stored by the cloud; the broker keeps
only a salted PBKDF2-SHA512 hash.

`python -m cloud.broker_admin init FILE` writes a first dynamic-security.json (an admin
client, and a client for the cloud's ingest and API) for a new broker.
"""

import argparse
import base64
import getpass
import hashlib
import json
import logging
import os
import queue
import secrets
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from cloud.mqtt_link import make_client
from cloud.settings import CloudSettings
from contract import topics
from contract.urls import parse_mqtt_url

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"
#: Iterations of PBKDF2-SHA512 Mosquitto 2.0's dynamic-security plugin uses for its own hashes.
PBKDF2_ITERATIONS = 101


class BrokerAdminError(RuntimeError):
    """The broker could not be reached, refused the admin login, or refused a command."""


def new_password() -> str:
    """A fresh gateway password: 32 random bytes, URL-safe text."""
    return secrets.token_urlsafe(32)


def role_name(gateway: str) -> str:
    return f"gateway-{gateway}"


def gateway_acls(site: str, gateway: str) -> list[dict[str, Any]]:
    """The gateway's role: publish its uplink kinds, subscribe to and receive its downlink kinds, nothing else."""
    acls: list[dict[str, Any]] = []
    for kind in topics.UPLINK_KINDS:
        acls.append({"acltype": "publishClientSend", "topic": topics.topic(site, gateway, kind), "allow": True})
    for kind in topics.DOWNLINK_KINDS:
        own = topics.topic(site, gateway, kind)
        acls.append({"acltype": "subscribeLiteral", "topic": own, "allow": True})
        acls.append({"acltype": "publishClientReceive", "topic": own, "allow": True})
    # whatever the broker's default access: nothing else, at a lower priority than the grants
    for acltype in ("publishClientSend", "publishClientReceive", "subscribePattern"):
        acls.append({"acltype": acltype, "topic": "#", "allow": False, "priority": 0})
    for acl in acls:
        acl.setdefault("priority", 10)
    return acls


class DynsecAdmin:
    """Sends dynamic-security commands as the plugin's admin client, one short connection per call."""

    def __init__(
        self,
        *,
        url: str,
        username: str,
        password: str,
        ca_file: Path | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.endpoint = parse_mqtt_url(url)
        self.username = username
        self.password = password
        self.ca_file = ca_file
        self.timeout = timeout

    def execute(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run commands in order; returns the broker's responses (each may carry an `error`)."""
        for cmd in commands:
            cmd.setdefault("correlationData", uuid.uuid4().hex)
        client = make_client(
            self.endpoint,
            client_id=f"community-broker-admin-{uuid.uuid4().hex[:8]}",
            username=self.username,
            password=self.password,
            ca_file=self.ca_file,
        )
        connected: queue.Queue[Any] = queue.Queue()
        subscribed = threading.Event()
        responses: queue.Queue[bytes] = queue.Queue()
        client.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
        client.on_subscribe = lambda *_a: subscribed.set()
        client.on_message = lambda _c, _u, msg: responses.put(msg.payload)
        where = f"{self.endpoint.host}:{self.endpoint.port}"
        try:
            client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
        except OSError as exc:
            raise BrokerAdminError(f"broker {where} unreachable: {exc}") from None
        client.loop_start()
        try:
            try:
                reason = connected.get(timeout=self.timeout)
            except queue.Empty:
                raise BrokerAdminError(f"broker {where} did not answer the admin login") from None
            if getattr(reason, "is_failure", False):
                raise BrokerAdminError(f"broker {where} refused the admin login {self.username!r}: {reason}")
            client.subscribe(RESPONSE_TOPIC, qos=1)
            if not subscribed.wait(self.timeout):
                raise BrokerAdminError(f"broker {where} did not confirm the subscription to {RESPONSE_TOPIC}")
            client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
            wanted = {c["correlationData"] for c in commands}
            while True:
                try:
                    payload = responses.get(timeout=self.timeout)
                except queue.Empty:
                    raise BrokerAdminError(
                        f"no answer on {RESPONSE_TOPIC} within {self.timeout:g}s: is the dynamic-security plugin "
                        f"loaded, and may {self.username!r} use {CONTROL_TOPIC}?"
                    ) from None
                answer = json.loads(payload).get("responses", [])
                if {r.get("correlationData") for r in answer} & wanted:
                    by_id = {r.get("correlationData"): r for r in answer}
                    return [by_id.get(c["correlationData"], {"error": "no response"}) for c in commands]
        finally:
            client.disconnect()
            client.loop_stop()

    def set_gateway(self, *, site: str, gateway: str, password: str) -> None:
        """Create (or re-create) the gateway's client and role with this password.

        Re-creating also disconnects a gateway still logged in with an old password.
        """
        role = role_name(gateway)
        commands = [
            {"command": "deleteClient", "username": gateway},
            {"command": "deleteRole", "rolename": role},
            {"command": "createRole", "rolename": role, "textname": f"gateway {gateway} of site {site}",
             "acls": gateway_acls(site, gateway)},
            {"command": "createClient", "username": gateway, "password": password,
             "textname": f"gateway {gateway} of site {site}", "roles": [{"rolename": role, "priority": 1}]},
        ]  # fmt: skip
        responses = self.execute(commands)
        for cmd, response in zip(commands, responses, strict=True):
            error = response.get("error")
            if not error:
                continue
            if cmd["command"].startswith("delete") and "not found" in str(error).lower():
                continue  # nothing to remove: a first registration
            raise BrokerAdminError(f"broker refused {cmd['command']} for gateway {gateway}: {error}")

    def remove_gateway(self, gateway: str) -> None:
        self.execute(
            [
                {"command": "deleteClient", "username": gateway},
                {"command": "deleteRole", "rolename": role_name(gateway)},
            ]
        )


def broker_admin_from(settings: CloudSettings) -> DynsecAdmin | None:
    """The broker admin the settings ask for; None when the broker's logins are managed elsewhere."""
    if settings.broker_admin != "dynsec":
        return None
    if settings.broker_admin_password is None:
        raise RuntimeError("COMMUNITY_BROKER_ADMIN=dynsec needs COMMUNITY_BROKER_ADMIN_PASSWORD")
    return DynsecAdmin(
        url=settings.mqtt_url,
        username=settings.broker_admin_username,
        password=settings.broker_admin_password.get_secret_value(),
        ca_file=settings.mqtt_ca_file,
        timeout=settings.broker_admin_timeout_seconds,
    )


# --- a first dynamic-security.json --------------------------------------------------------


def hashed_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> dict[str, Any]:
    """The plugin's stored form of a password: base64 PBKDF2-SHA512 hash, base64 salt, iterations."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


def cloud_acls() -> list[dict[str, Any]]:
    """The cloud's role: read what gateways send, publish their commands and (retained) configurations."""
    acls: list[dict[str, Any]] = []
    for kind in topics.UPLINK_KINDS:
        pattern = topics.cloud_subscription(kind)
        acls.append({"acltype": "subscribeLiteral", "topic": pattern, "priority": 1, "allow": True})
        acls.append({"acltype": "publishClientReceive", "topic": pattern, "priority": 1, "allow": True})
    for kind in topics.DOWNLINK_KINDS:
        acls.append(
            {"acltype": "publishClientSend", "topic": topics.cloud_subscription(kind), "priority": 1, "allow": True}
        )
    return acls


def initial_config(*, admin_username: str, admin_password: str, cloud_username: str, cloud_password: str) -> dict:
    """A dynamic-security.json with no defaults granted, the admin client and the cloud's client."""
    control = "$CONTROL/dynamic-security/#"
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [
            {
                "username": admin_username,
                "textname": "community cloud: broker admin",
                "roles": [{"rolename": "dynsec-admin"}],
                **hashed_password(admin_password),
            },
            {
                "username": cloud_username,
                "textname": "community cloud: ingest and API",
                "roles": [{"rolename": "community-cloud"}],
                **hashed_password(cloud_password),
            },
        ],
        "groups": [],
        "roles": [
            {
                "rolename": "dynsec-admin",
                "textname": "manages the broker's clients and roles",
                "acls": [
                    {"acltype": "publishClientSend", "topic": control, "priority": 0, "allow": True},
                    {"acltype": "publishClientReceive", "topic": control, "priority": 0, "allow": True},
                    {"acltype": "subscribePattern", "topic": control, "priority": 0, "allow": True},
                ],
            },
            {"rolename": "community-cloud", "textname": "the community cloud", "acls": cloud_acls()},
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloud.broker_admin", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    init = sub.add_parser("init", help="write a first dynamic-security.json (refuses to overwrite one)")
    init.add_argument("file", type=Path)
    init.add_argument("--admin-user", default="cloud-admin")
    init.add_argument("--cloud-user", default="cloud")
    args = parser.parse_args(argv)
    if args.file.exists():
        print(f"{args.file}: exists; not overwritten", file=sys.stderr)
        return 1
    config = initial_config(
        admin_username=args.admin_user,
        admin_password=getpass.getpass(f"password for {args.admin_user}: "),
        cloud_username=args.cloud_user,
        cloud_password=getpass.getpass(f"password for {args.cloud_user}: "),
    )
    args.file.write_text(json.dumps(config, indent=2))
    args.file.chmod(0o600)
    print(f"{args.file}: written; load it with the plugin's plugin_opt_config_file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
