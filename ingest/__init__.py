"""MQTT -> TimescaleDB ingest: owns the database schema and the wire contract's decoding."""

# The public modules; other packages import these (tests/test_layers.py checks the
# direction).  Submodules load on first use, so importing the package stays cheap.
__all__ = [
    "bulk_import",
    "columns",
    "custody",
    "custody_review",
    "deadletters",
    "importers",
    "metrics",
    "migrations",
    "patients",
    "pipeline",
    "registry",
    "service",
    "status",
    "storage",
    "validation",
    "writer",
]
