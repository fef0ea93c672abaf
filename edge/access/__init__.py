"""Door access at the gateway: the whitelist on disk, decisions, readers, doors and their alarms.

`whitelist.py` keeps what the cloud pushed; `decide.py` is the pure decision logic; `readers.py`
turns card readers (local MQTT, serial, keyboard wedge) into inputs; `doors.py` watches door
contacts (forced, held open); `controller.py` ties them to the relay, the outbox and the cameras.
Nothing here waits for the cloud: every decision is made from the whitelist on disk.
"""
