"""Modbus TCP devices: decode registers by the profile, plan reads, poll on a schedule."""
