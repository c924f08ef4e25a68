"""API settings (pydantic-settings): ``HOMEVITALS_API_*`` environment variables.

The JWT signing secret never lives in the repository: pass it in (the CLI generates one
into the state directory), or set ``HOMEVITALS_API_JWT_SECRET`` /
``HOMEVITALS_API_JWT_SECRET_FILE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_BYTES = 32


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEVITALS_API_", extra="ignore")

    database_url: str = Field(description="PostgreSQL+TimescaleDB URL")
    jwt_secret: SecretStr | None = Field(default=None, description="HS256 signing key")
    jwt_secret_file: Path | None = Field(default=None, description="file holding the key")
    access_token_minutes: int = Field(default=15, ge=1, le=60)
    refresh_token_days: int = Field(default=14, ge=1, le=90)
    activation_code_hours: int = Field(default=72, ge=1, le=24 * 30)
    enrollment_code_hours: int = Field(default=24, ge=1, le=24 * 30)
    clinic_timezone: str = "America/New_York"
    mqtt_public_url: str | None = Field(
        default=None, description="broker URL handed to gateways at enrolment"
    )
    public_base_url: str = Field(
        default="http://127.0.0.1:8765",
        description="the URL clients reach this API at (scheme://host[:port][/path]); the"
        " SMART token endpoint, FHIR fullUrls and links are built from it, never from the"
        " request's Host header",
    )
    pool_min_size: int = Field(default=2, ge=1)
    pool_max_size: int = Field(default=16, ge=1)
    login_max_failures: int = Field(default=5, ge=1, description="per username+IP per window")
    login_window_s: int = Field(default=300, ge=1)
    register_max_attempts: int = Field(default=10, ge=1, description="per IP per window")
    cookie_secure: bool | None = Field(
        default=None,
        description="Secure flag on dashboard cookies; default: true when public_base_url is"
        " https (a local http demo could not keep a Secure cookie)",
    )
    trusted_proxies: str = Field(
        default="",
        description="reverse proxies whose X-Forwarded-For/-Proto are believed (comma-separated"
        " IPs or networks, uvicorn's forwarded_allow_ips); empty (default): none, the client"
        " address is the TCP peer",
    )
    stale_sync_hours: int = Field(default=48, ge=1, description="device sync older = stale")

    @field_validator("clinic_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"public_base_url must be an http(s) URL with a host, not {value!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("public_base_url takes no query, fragment or credentials")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _cookie_secure(self) -> Self:
        if self.cookie_secure is None:
            self.cookie_secure = self.public_base_url.startswith("https://")
        return self

    @model_validator(mode="after")
    def _load_secret(self) -> Self:
        if self.jwt_secret is None and self.jwt_secret_file is not None:
            self.jwt_secret = SecretStr(self.jwt_secret_file.read_text().strip())
        if self.jwt_secret is None:
            raise ValueError("set jwt_secret or jwt_secret_file (HOMEVITALS_API_JWT_SECRET[_FILE])")
        if len(self.jwt_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
        return self

    @property
    def secure_cookies(self) -> bool:
        """The dashboard cookies' Secure flag (``cookie_secure``, else the URL's scheme)."""
        return bool(self.cookie_secure)

    @property
    def secret(self) -> bytes:
        assert self.jwt_secret is not None
        return self.jwt_secret.get_secret_value().encode()
