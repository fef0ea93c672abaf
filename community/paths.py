"""Where the repository's own files are, for commands run from a checkout (`make demo`)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO_CONF = REPO_ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
DEVICE_PROFILES = REPO_ROOT / "device_profiles"
EXAMPLES = REPO_ROOT / "examples"
VAR = REPO_ROOT / "var"
