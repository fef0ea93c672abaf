"""The cloud's one settings object, from the environment (and a `.env` file when present)."""

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.common import TicketKind


class CloudSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMMUNITY_", env_file=".env", extra="ignore")

    #: PostgreSQL (or TimescaleDB). Unset: `community cloud` and `community demo` start the
    #: embedded PostgreSQL with its data under `data_dir/pgdata`.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "COMMUNITY_DATABASE_URL")
    )
    mqtt_url: str = Field(
        default="mqtt://127.0.0.1:1883", validation_alias=AliasChoices("MQTT_URL", "COMMUNITY_MQTT_URL")
    )
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    #: The ingest's MQTT client id (telemetry); the control lane uses this id plus "-control".
    #: Both sessions are persistent: while the cloud is down the broker queues what gateways
    #: send, and the ingest picks it up on return.
    mqtt_client_id: str = "community-cloud-ingest"

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    data_dir: Path = Path("var")
    log_level: str = "INFO"

    #: Telemetry messages committed together in one transaction, at most.
    ingest_batch_messages: int = Field(default=500, ge=1, le=10_000)
    #: Threads that write telemetry batches, each with its own connection: while one waits on
    #: PostgreSQL, another decodes the next batch.
    ingest_telemetry_writers: int = Field(default=2, ge=1, le=16)
    #: How long the ingest waits to fill a batch before it commits what it has.
    ingest_batch_delay_ms: float = Field(default=50.0, ge=0, le=5_000)
    #: Messages held between the MQTT thread and the writers; when full the broker waits.
    ingest_queue_size: int = Field(default=20_000, ge=10)
    #: How often the latest values per device are written to `devices.last_values`.
    last_values_flush_seconds: float = Field(default=1.0, gt=0)

    telemetry_retention_days: int = Field(default=365, ge=1)
    #: Seen message ids are kept this long; a gateway must not hold a message longer.
    seen_messages_retention_days: int = Field(default=30, ge=1)
    #: Dead letters (payloads that failed validation) are kept this long for inspection and replay.
    dead_letters_retention_days: int = Field(default=90, ge=1)
    maintenance_interval_seconds: float = Field(default=3600.0, gt=0)

    #: A gateway offline (last will) longer than this raises a `gateway_offline` alarm.
    gateway_offline_grace_seconds: float = Field(default=60.0, ge=0)
    gateway_offline_ticket: TicketKind = TicketKind.REPAIR
    watchdog_interval_seconds: float = Field(default=5.0, gt=0)

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set")
        return self.database_url


@lru_cache
def get_settings() -> CloudSettings:
    return CloudSettings()
