"""Settings from ``HOMEVITALS_*`` environment variables and an optional TOML file.

Precedence: environment, then the file named by ``HOMEVITALS_CONFIG`` (default
``homevitals.toml`` in the working directory, if present), then defaults that point at
the project-local services started by ``homevitals services up``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_PG_PORT = 55432
DEFAULT_MQTT_PORT = 18883
DEFAULT_API_PORT = 8765


def _config_file() -> Path:
    return Path(os.environ.get("HOMEVITALS_CONFIG", "homevitals.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEVITALS_", extra="ignore")

    state_dir: Path = Field(default=Path(".homevitals"), description="project state directory")
    database_url: str | None = Field(
        default=None, description="PostgreSQL+TimescaleDB URL; unset = the project-local cluster"
    )
    mqtt_url: str | None = Field(
        default=None, description="MQTT 5 broker URL; unset = the project-local Mosquitto"
    )
    pg_port: int = DEFAULT_PG_PORT
    mqtt_port: int = DEFAULT_MQTT_PORT
    mqtt_tls_port: int = DEFAULT_MQTT_PORT + 1
    mqtt_ca_file: Path | None = Field(
        default=None, description="CA to verify an mqtts:// broker (default: the local CA)"
    )
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    clinic_timezone: str = "America/New_York"
    retention_days: int = Field(default=0, description="drop raw chunks older than this; 0 = keep")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @property
    def uses_local_database(self) -> bool:
        return self.database_url is None

    @property
    def uses_local_broker(self) -> bool:
        return self.mqtt_url is None


def load_settings() -> Settings:
    return Settings()
