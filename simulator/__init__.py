"""Simulated devices for the demo and the tests: Modbus TCP servers on loopback and MQTT sensors.

A scenario file says how each metric moves and when faults happen; the simulator serves the
devices of a gateway config exactly as their profiles describe them, so the edge agent reads
them as it would read real ones.
"""
