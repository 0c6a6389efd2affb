"""HL7 fixtures (see ``hl7support``) and the SQLite/PostgreSQL catalog URLs (see ``pgserver``)."""

from hl7support import hl7_factory, hl7_node, mllp
from pgserver import catalog_url, pg_server

__all__ = ["catalog_url", "hl7_factory", "hl7_node", "mllp", "pg_server"]
