"""Query fixtures: catalog URLs on SQLite and the throwaway PostgreSQL (see ``pgserver``)."""

from pgserver import catalog_url, pg_server

__all__ = ["catalog_url", "pg_server"]
