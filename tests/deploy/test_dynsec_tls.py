"""TLS to the broker: every connection of the cloud (ingest, API publisher, broker admin) speaks mqtts://.

A private CA signs the broker's certificate for 127.0.0.1; the cloud trusts it through
COMMUNITY_MQTT_CA_FILE and refuses the broker without it.
"""

import datetime as dt
import ipaddress
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud.broker_admin import BrokerAdminError, DynsecAdmin, initial_config
from community.broker import MosquittoProcess
from contract import topics
from tests.cloud.stack import api_client, running_ingest, settings_for, wait_for
from tests.cloud.test_commands_support import DOOR_COMMANDS, FieldGateway
from tests.deploy.test_dynsec import ADMIN, CLOUD, plugin_path


def _write_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "community test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[MosquittoProcess, Path, dict[str, str]]]:
    ca_file, cert_file, key_file = _write_pki(tmp_path)
    passwords = {ADMIN: uuid.uuid4().hex, CLOUD: uuid.uuid4().hex}
    dynsec_file = tmp_path / "dynamic-security.json"
    dynsec_file.write_text(
        json.dumps(
            initial_config(
                admin_username=ADMIN,
                admin_password=passwords[ADMIN],
                cloud_username=CLOUD,
                cloud_password=passwords[CLOUD],
            )
        )
    )
    auth = [
        f"cafile {ca_file}",
        f"certfile {cert_file}",
        f"keyfile {key_file}",
        "allow_anonymous false",
        f"plugin {plugin_path()}",
        f"plugin_opt_config_file {dynsec_file}",
    ]
    proc = MosquittoProcess(tmp_path / "broker", auth_lines=auth).start()
    try:
        yield proc, ca_file, passwords
    finally:
        proc.stop()


def test_the_cloud_speaks_tls_to_the_broker(tls_broker, database_url, unique_id):
    proc, ca_file, passwords = tls_broker
    url = f"mqtts://{CLOUD}:{passwords[CLOUD]}@127.0.0.1:{proc.port}"
    # without the CA that signed the broker's certificate, the cloud does not talk to it
    untrusting = DynsecAdmin(url=url, username=ADMIN, password=passwords[ADMIN], timeout=5)
    with pytest.raises(BrokerAdminError, match="unreachable"):
        untrusting.set_gateway(site="s", gateway="gw-x", password="x" * 32)

    settings = settings_for(
        database_url,
        url,
        f"ingest-{unique_id}",
        mqtt_ca_file=ca_file,
        broker_admin="dynsec",
        broker_admin_username=ADMIN,
        broker_admin_password=passwords[ADMIN],
    )
    site = f"s{unique_id}"
    with running_ingest(settings), api_client(settings) as admin:  # the ingest subscribed over TLS
        wait_for(lambda: admin.app.state.downlink.connected.is_set())
        admin.post("/api/v1/sites", json={"id": site, "name": "TLS estate"})
        resp = admin.post("/api/v1/gateways", json={"id": "gw-t", "site": site})
        assert resp.status_code == 201, resp.text  # the broker admin spoke TLS
        password = resp.json()["credentials"]["password"]

        gw = FieldGateway(
            f"mqtts://127.0.0.1:{proc.port}", site, "gw-t", username="gw-t", password=password, tls_ca=str(ca_file)
        )
        try:
            gw.birth({"door-t1": DOOR_COMMANDS})
            door = wait_for(lambda: admin.get("/api/v1/devices", params={"site": site}).json())[0]["id"]
            command = admin.post(f"/api/v1/devices/{door}/commands", json={"command": "open_door"}).json()
            msg, _ = gw.next_message(topics.Kind.COMMAND)  # the API's publisher spoke TLS
            assert str(msg.id) == command["id"]
        finally:
            gw.close()
