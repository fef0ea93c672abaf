"""Devices that publish JSON to a broker themselves (sensors, door readers)."""
