-- Ingest bookkeeping: which message ids were already stored, and what could not be read.

-- One row per message id ever committed; a redelivered message finds its id here and adds
-- nothing. Kept for `seen_messages_retention_days` (longer than any gateway holds a message).
CREATE TABLE ingest_messages (
    message_id   uuid PRIMARY KEY,
    gateway_id   text NOT NULL,
    kind         text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ingest_messages_received ON ingest_messages (received_at);

-- Payloads that failed validation: kept with their topic, raw bytes and the reason.
CREATE TABLE dead_letters (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    reason       text NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at DESC);
