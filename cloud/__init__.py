"""The cloud service: API, MQTT ingest, alarms, tickets and storage. Never imports `edge`."""
