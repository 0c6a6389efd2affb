"""MPPS fixtures: the catalog tests run against SQLite and a throwaway PostgreSQL (see ``pgserver``)."""

from pgserver import catalog_url, pg_server

__all__ = ["catalog_url", "pg_server"]
