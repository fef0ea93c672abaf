"""What `make test` needs from the machine, checked first: says what is missing and how to install it.

Runs with the system Python before the virtual environment exists, so it uses the standard library only.
"""

import os
import shutil
import sys
from pathlib import Path

#: Where distributions put Mosquitto's dynamic-security plugin (Debian's `mosquitto` package ships it).
DYNSEC_PLUGINS = [
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
]

missing: list[str] = []
if sys.version_info < (3, 11):  # noqa: UP036 - this script runs before anything checks the version
    missing.append(f"Python 3.11 or newer (this is {sys.version.split()[0]})")
for binary, package in (("mosquitto", "mosquitto"), ("mosquitto_passwd", "mosquitto")):
    # the tests start their own brokers (private configs, passwords, ACLs) even when MQTT_URL is set
    if shutil.which(binary) is None:
        missing.append(f"{binary}: apt-get install {package}")
# the web screens' tests drive Debian's chromium through Playwright (never `playwright install`)
if shutil.which("chromium") is None:
    missing.append("chromium (the browser tests' headless browser): apt-get install chromium")
if not any(Path(p).exists() for p in DYNSEC_PLUGINS):
    # the gateway-login tests run a broker with it (tests/deploy/test_dynsec.py)
    missing.append("Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so): apt-get install mosquitto")

# The face tests' photo set lives outside the repository: without it they are skipped (a note here),
# unless REQUIRE_FACES=1 (.ci/run) makes it a requirement.
faces = Path(os.environ.get("FACES_DIR") or Path(__file__).resolve().parent.parent.parent / "shared" / "faces")
if not (faces / "enroll").is_dir() or not (faces / "probes").is_dir():
    if os.environ.get("REQUIRE_FACES") == "1":
        missing.append(f"the face photo set at {faces} (enroll/ and probes/; set FACES_DIR)")
    else:
        print(f"note: no face photo set at {faces} (set FACES_DIR): the photo tests will be skipped", file=sys.stderr)

if missing:
    print("make test cannot run; missing:", file=sys.stderr)
    for item in missing:
        print(f"  - {item}", file=sys.stderr)
    print("On Debian, .ci/run installs them (as root) and then runs make test.", file=sys.stderr)
    sys.exit(1)
print("prerequisites: ok")
