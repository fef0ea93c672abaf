"""The `community` command: one CLI that starts each part of the platform."""
