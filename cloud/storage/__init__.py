"""PostgreSQL storage: migrations, connections, and the queries of each domain."""
