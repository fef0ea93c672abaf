-- Whitelist messages go out in the order they were made, even when made at the same instant
-- (a delta and a full of one version): a sequence number of their own.
ALTER TABLE whitelist_messages ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE INDEX whitelist_messages_gateway_seq ON whitelist_messages (gateway_id, seq DESC);
