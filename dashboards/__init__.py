"""Grafana dashboards: `build.py` writes `community/*.json` from the SQL texts of cloud/storage/queries.py."""
