"""The FastAPI application: ``create_app(settings, provision_gateway)``.

The CLI (``homevitals api run``) builds it with a function that writes a gateway's MQTT
username/password into the broker's password file.  ``app_from_env`` is the factory for
running uvicorn directly, with workers: ``uvicorn --factory api.main:app_from_env
--workers 4`` and ``HOMEVITALS_API_*`` in the environment.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import psycopg
from fastapi import APIRouter, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.core.config import ApiSettings
from api.core.db import get_pool
from api.core.errors import ErrorOut, FieldError
from api.core.throttle import Throttle
from api.dashboard.routes import audit_invalid_form, error_page
from api.dashboard.routes import router as dashboard_router
from api.fhir.resources import operation_outcome_response
from api.fhir.routes import router as fhir_router
from api.routes import (
    audit_log,
    auth,
    billing,
    custody,
    enrollment,
    flags,
    panel,
    patients,
    readings,
    summaries,
    targets,
    users,
)
from api.schemas import HealthOut
from api.smart.config import router as smart_router

log = logging.getLogger("homevitals.api")

API_PREFIX = "/api/v1"
FHIR_PREFIX = "/fhir"
DASHBOARD_PREFIX = "/dashboard"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    get_pool(app)
    try:
        yield
    finally:
        pool: ConnectionPool[psycopg.Connection[Any]] | None = getattr(app.state, "pool", None)
        if pool is not None:
            pool.close()
        app.state.pool = None


def _is_fhir(request: Request) -> bool:
    return request.url.path.startswith(FHIR_PREFIX + "/") or request.url.path == FHIR_PREFIX


def _error(request: Request, status_code: int, detail: str, **extra: Any) -> Response:
    if request.url.path.startswith(DASHBOARD_PREFIX + "/"):
        page = error_page(request, status_code, detail)
        for name, value in (extra.get("headers") or {}).items():
            page.headers[name] = value
        return page
    if _is_fhir(request):
        return operation_outcome_response(status_code, detail, extra.get("headers"))
    body = ErrorOut(detail=detail, errors=extra.get("errors")).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status_code, headers=extra.get("headers"))


def _slash_redirect(request: Request) -> Response | None:
    """Starlette's trailing-slash redirect, built on ``PUBLIC_BASE_URL``: its own
    (``redirect_slashes``, off) builds the ``Location`` from the request's ``Host``
    header, which the client chooses (``Host: evil.example`` on ``/api/v1/patients/``
    answered 307 to ``https://evil.example/api/v1/patients``).  Only for a path no
    route matched (``endpoint`` unset) whose twin with/without the slash one does."""
    if "endpoint" in request.scope:
        return None
    path = request.url.path
    twin = path.rstrip("/") if path.endswith("/") else path + "/"
    if not twin or twin == path or twin.startswith("//"):
        return None
    scope = {**request.scope, "path": twin}
    if not any(route.matches(scope)[0] != Match.NONE for route in request.app.router.routes):
        return None
    settings: ApiSettings = request.app.state.settings
    query = f"?{request.url.query}" if request.url.query else ""
    location = settings.public_base_url + quote(twin, safe="/:@!$&'()*+,;=-._~") + query
    return RedirectResponse(location, status_code=status.HTTP_307_TEMPORARY_REDIRECT)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == status.HTTP_404_NOT_FOUND:
            redirect = _slash_redirect(request)
            if redirect is not None:
                return redirect
        return _error(request, exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            FieldError(
                loc=[p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
                msg=str(e.get("msg", "")),
                type=str(e.get("type", "")),
            )
            for e in exc.errors()
        ]
        summary = (
            "; ".join(f"{'.'.join(str(p) for p in e.loc)}: {e.msg}" for e in errors[:5])
            or "invalid request"
        )
        if request.url.path.startswith(DASHBOARD_PREFIX + "/"):
            # A dashboard form without its CSRF token (or otherwise invalid) is a refusal.
            await run_in_threadpool(
                audit_invalid_form, request, status.HTTP_422_UNPROCESSABLE_CONTENT
            )
        return _error(request, status.HTTP_422_UNPROCESSABLE_CONTENT, summary, errors=errors)

    @app.exception_handler(psycopg.DataError)
    async def data_error(request: Request, exc: psycopg.DataError) -> Response:
        first = str(exc).splitlines()[0] if str(exc) else "invalid value"
        return _error(request, status.HTTP_400_BAD_REQUEST, f"invalid value: {first}")

    @app.exception_handler(psycopg.IntegrityError)
    async def integrity_error(request: Request, exc: psycopg.IntegrityError) -> Response:
        return _error(request, status.HTTP_409_CONFLICT, "conflicts with existing data")

    @app.exception_handler(psycopg.OperationalError)
    async def db_down(request: Request, exc: psycopg.OperationalError) -> Response:
        log.warning("database unavailable: %s", exc)
        return _error(request, status.HTTP_503_SERVICE_UNAVAILABLE, "database unavailable")

    @app.exception_handler(PoolTimeout)
    async def pool_timeout(request: Request, exc: PoolTimeout) -> Response:
        return _error(
            request,
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "database busy; retry shortly",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(PoolClosed)
    async def pool_closed(request: Request, exc: PoolClosed) -> Response:
        return _error(request, status.HTTP_503_SERVICE_UNAVAILABLE, "server shutting down")


def create_app(
    settings: ApiSettings, provision_gateway: Callable[[str, str], None] | None = None
) -> FastAPI:
    """Build the app.  ``provision_gateway(gateway_id, password)`` creates the gateway's
    MQTT account at enrolment (None: no broker provisioning, e.g. in tests)."""
    app = FastAPI(
        title="HomeVitals API",
        version="1.0.0",
        summary="Remote patient monitoring: readings, summaries, flags, FHIR R4",
        description=(
            "Clinicians triage their panel and review flags; patients see their own data; the"
            ' EHR reads FHIR R4 under `/fhir`.  Errors are `{"detail": "..."}` (FHIR:'
            " OperationOutcome).  Sign in at `/api/v1/auth/token` (OAuth2 password flow; EHR"
            " system clients: client_credentials with SMART scopes)."
        ),
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        # Starlette's redirect is built from the Host header: ours (_slash_redirect) is not.
        redirect_slashes=False,
    )
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.pool = None
    app.state.provision_gateway = provision_gateway
    # In the database, so the limits hold across worker processes and restarts.
    app.state.login_throttle = Throttle(
        "login", settings.login_max_failures, settings.login_window_s
    )
    app.state.register_throttle = Throttle(
        "register", settings.register_max_attempts, settings.login_window_s
    )
    _install_error_handlers(app)

    api = APIRouter(prefix=API_PREFIX)

    @api.get("/health", response_model=HealthOut, tags=["health"], summary="Liveness (no DB)")
    def health() -> HealthOut:
        return HealthOut(status="ok")

    for module in (
        auth,
        enrollment,
        users,
        patients,
        panel,
        readings,
        summaries,
        flags,
        targets,
        billing,
        audit_log,
        custody,
    ):
        api.include_router(module.router)
    app.include_router(api)
    _include_optional(app)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (``factory=True``; needed for ``workers`` > 1, where each worker
    process builds its own app): settings from ``HOMEVITALS_API_*``.  No broker
    provisioning: gateways enrolled through this app get no MQTT account unless the
    broker is provisioned otherwise (``homevitals api run`` provisions the local one)."""
    return create_app(ApiSettings())


def _include_optional(app: FastAPI) -> None:
    app.include_router(fhir_router, prefix=FHIR_PREFIX)
    app.include_router(smart_router, prefix=FHIR_PREFIX)
    app.include_router(dashboard_router, prefix=DASHBOARD_PREFIX)
