"""Project-local PostgreSQL+TimescaleDB and Mosquitto, started and stopped by the project."""
