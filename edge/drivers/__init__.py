"""Device drivers, one package per device family (Modbus TCP, devices that speak MQTT)."""
