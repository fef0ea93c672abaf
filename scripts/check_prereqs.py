"""What `make test` needs from the machine, checked first: says what is missing and how to install it."""

import os
import shutil
import sys

missing: list[str] = []
if sys.version_info < (3, 11):
    missing.append(f"Python 3.11 or newer (this is {sys.version.split()[0]})")
if not os.environ.get("MQTT_URL") and shutil.which("mosquitto") is None:
    missing.append("mosquitto (the MQTT broker the tests start): apt-get install mosquitto")

if missing:
    print("make test cannot run; missing:", file=sys.stderr)
    for item in missing:
        print(f"  - {item}", file=sys.stderr)
    print("On Debian, .ci/run installs them (as root) and then runs make test.", file=sys.stderr)
    sys.exit(1)
print("prerequisites: ok")
