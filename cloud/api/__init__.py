"""The HTTP API (FastAPI): routers by domain, one connection pool, errors as JSON with a reason."""
