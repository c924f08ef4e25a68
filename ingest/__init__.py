"""MQTT -> TimescaleDB ingest: owns the database schema and the wire contract's decoding."""
