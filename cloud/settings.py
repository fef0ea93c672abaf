"""The cloud's one settings object, from the environment (and a `.env` file when present)."""

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.common import Severity, TicketKind


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
    #: CA certificate file (PEM) that signs the broker's certificate, for `mqtts://` URLs; unset:
    #: the system's trusted CAs.
    mqtt_ca_file: Path | None = None

    # --- commands, remote configuration, broker credentials -----------------------------------
    #: Seconds a device command may wait for its gateway when the request names no `ttl_seconds`.
    command_ttl_seconds: int = Field(default=60, ge=1, le=86_400)
    #: How often the API's MQTT publisher looks for commands and configurations the broker has
    #: not yet acknowledged (after a broker outage), and retries them.
    downlink_retry_seconds: float = Field(default=2.0, gt=0, le=600)
    #: Who manages gateways' broker logins: `dynsec` (Mosquitto's dynamic-security plugin, over
    #: `$CONTROL/dynamic-security/v1`), or `none` (the operator does, e.g. a password file).
    broker_admin: str = Field(default="none", pattern=r"^(dynsec|none)$")
    #: The dynamic-security admin login (a client with a role that may publish to
    #: `$CONTROL/dynamic-security/#`); the broker is that of `mqtt_url`.
    broker_admin_username: str = "cloud-admin"
    #: The admin login's password; required with `dynsec`.
    broker_admin_password: SecretStr | None = None
    #: Seconds to wait for the broker's answer to a dynamic-security command.
    broker_admin_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    #: Database connections of one API process; requests beyond wait their turn.
    api_db_connections: int = Field(default=10, ge=2, le=200)
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    data_dir: Path = Path("var")
    log_level: str = "INFO"

    #: Events queued for one live-feed client (GET /api/v1/live); a client that falls further
    #: behind gets one `resync` event instead, and reloads its screen.
    live_queue_size: int = Field(default=200, ge=10, le=10_000)
    #: Seconds between heartbeats on a quiet live feed, so proxies keep the stream open.
    live_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    #: Seconds one live-feed connection lasts; the browser reconnects by itself and the login is
    #: checked again (a revoked login stops hearing changes within this time).
    live_stream_seconds: int = Field(default=900, ge=10, le=86_400)
    #: Mark the web screens' login cookie `Secure` (sent over HTTPS only): set when served over HTTPS.
    web_cookie_secure: bool = False

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

    # --- security ---------------------------------------------------------------------------
    #: Signs login tokens (HS256). Unset: generated once and kept in `data_dir/secrets.json`.
    jwt_secret: SecretStr | None = None
    #: Minutes a login token is valid (a shift and a bit).
    token_minutes: int = Field(default=600, ge=5, le=7 * 24 * 60)
    #: 32-byte key (base64) that encrypts personal data at rest. Unset: generated once and kept
    #: in `data_dir/secrets.json`; losing it makes stored phone and ID numbers unreadable.
    data_key: SecretStr | None = None

    # --- workflow -----------------------------------------------------------------------------
    #: A resolved ticket without the resident's answer closes by itself after this many days.
    feedback_days: float = Field(default=7.0, gt=0)
    #: A follow-up visit is due this many days after a ticket with a complainant closes.
    followup_days: float = Field(default=14.0, gt=0)
    #: A new ticket on the same unit or device and subcategory within this many days of an
    #: earlier one's resolution is a re-complaint.
    recomplaint_window_days: float = Field(default=30.0, gt=0)
    #: Share of a deadline's time after which the assignee is told it is due soon.
    sla_warn_fraction: float = Field(default=0.8, gt=0, lt=1)
    #: How often the workflow scheduler runs (SLA marks and escalations, auto-close, deliveries).
    scheduler_interval_seconds: float = Field(default=10.0, gt=0)
    #: Run the workflow scheduler in the API process (several may run it: each change happens once).
    scheduler_enabled: bool = True
    #: Largest attachment accepted, in bytes.
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    # --- complaint classification (docs/classification.md) ------------------------------------
    #: A ticket filed without a category takes the classifier's labels when its top subcategory
    #: probability is at least this; below, it goes to the service desk to classify by hand. The
    #: default is the lowest at which the held-out texts at or above it were 90 % right in category.
    classifier_min_confidence: float = Field(default=0.2, ge=0, le=1)
    #: The department that classifies by hand what the classifier is unsure of.
    classifier_desk_department: str = "Customer service"
    #: Retraining replaces the running model unless the new one's held-out subcategory macro-F1
    #: is lower by more than this (or the retrain is forced); one held-out text moves it by about 0.006.
    classifier_retrain_tolerance: float = Field(default=0.02, ge=0, le=1)

    # --- security patrol (docs/patrol.md) -----------------------------------------------------
    #: Severity of the alarm for a missed checkpoint (a route may set its own); it opens a safety ticket.
    patrol_missed_severity: Severity = Severity.MAJOR
    #: Severity of the alarm for a checkpoint scanned late (a route may set its own).
    patrol_late_severity: Severity = Severity.MINOR
    #: A late checkpoint's alarm opens a safety ticket too (a missed one always does).
    patrol_late_opens_ticket: bool = True
    #: The scheduler makes each schedule's rounds this many hours ahead.
    patrol_plan_ahead_hours: float = Field(default=24.0, gt=0, le=24 * 14)
    #: A guard's phone may report a scan at most this many minutes after it read the tag (a phone
    #: that was offline); older scan times are refused, so a round cannot be filled in afterwards.
    patrol_phone_scan_max_age_minutes: float = Field(default=10.0, ge=0, le=24 * 60)

    # --- face and card entry ------------------------------------------------------------------
    #: A face photo larger than this many bytes is refused.
    face_photo_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: A face photo with more pixels than this is refused (decoding and detection time grow with it).
    face_photo_max_pixels: int = Field(default=25_000_000, ge=10_000)
    #: The face found must be at least this many pixels wide and high (smaller: refused as too small).
    face_min_pixels: int = Field(default=80, ge=10)
    #: Largest face distance at which a new face counts as another person's enrolled face (refused).
    face_match_threshold: float = Field(default=0.6, gt=0, le=2)
    #: Keep enrolment photos (under `data_dir/faces`); off: only the encrypted encoding is kept.
    face_keep_photos: bool = False
    #: 32-byte key (base64) that encrypts face encodings; unset: derived from the personal-data key.
    face_key: SecretStr | None = None
    #: Longest time window of a visitor pass, in days.
    pass_max_days: int = Field(default=31, ge=1, le=366)

    # --- notifications ------------------------------------------------------------------------
    #: SMTP server for e-mail notifications; unset: e-mail is not sent (in-app messages still are).
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_from: str = "community@localhost"
    #: SMS provider: `log` writes each message to `sms_log_file` (no gateway on this machine),
    #: `none` sends no SMS.
    sms_provider: str = Field(default="log", pattern=r"^(log|none)$")
    #: Where the `log` SMS provider writes; unset: `data_dir/sms.log`.
    sms_log_file: Path | None = None

    @property
    def attachments_dir(self) -> Path:
        return self.data_dir / "attachments"

    @property
    def frames_dir(self) -> Path:
        """The cameras' latest frames, one file each (written by the ingest, served by the API)."""
        return self.data_dir / "frames"

    @property
    def faces_dir(self) -> Path:
        return self.data_dir / "faces"

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set")
        return self.database_url


@lru_cache
def get_settings() -> CloudSettings:
    return CloudSettings()
