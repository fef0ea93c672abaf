"""The edge agent: reads building devices on site and sends what it sees to the cloud over MQTT.

Nothing here imports the cloud, FastAPI or a database driver; the edge needs only the contract,
paho-mqtt and pymodbus.
"""
