"""MQTT ingest: validate, store, acknowledge only after commit."""
