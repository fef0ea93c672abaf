"""The contract between edge and cloud: MQTT topics, message schemas, device profiles.

Edge and cloud both import this package and nothing of each other, so the one place that
defines what travels over MQTT is also the one place that validates it on both sides.
"""

SCHEMA_VERSION = 1
