"""Service fixtures: ingest and maintenance tests run against SQLite and a throwaway PostgreSQL."""

from pgserver import catalog_url, pg_server

__all__ = ["catalog_url", "pg_server"]
