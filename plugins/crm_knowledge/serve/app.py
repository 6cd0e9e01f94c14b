"""The customer read service: FastAPI over the warehouse's serving tables (`ckp serve`, compose `serve`).

Endpoints (OpenAPI at ``/openapi.json``; the Swagger UI is left out: it loads from a CDN):

* ``GET /customers/lookup?phone=|email=|national_id=|name=&birth_date=`` -- candidates with match reasons;
* ``GET /customers/{customer_id}`` -- the profile the caller's role may see, next best action on top;
* ``POST /customers/{customer_id}/interactions`` -- record what happened (lands as a contact-centre file);
* ``GET /agent`` -- the agent page (no data without a key); ``GET /healthz``.

Every data request carries an API key (``X-API-Key``, or ``Authorization: Bearer``), is checked against its
role's scopes and its rate limit, and is written to ``audit.api_requests`` (denials too). The logic lives in
the sibling modules (keys, lookup, profile, next_action, interactions), testable without HTTP; this module
only wires them to routes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from crm_knowledge.serve import audit, interactions, lookup, profile, ratelimit
from crm_knowledge.serve.keys import ApiKey, KeyCache
from crm_knowledge.serve.ratelimit import RateLimiter
from crm_knowledge.settings import Settings, get_settings

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("static") / "agent.html"
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="ckp_<key_id>_<secret> from `ckp api-keys create`")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
}


class InteractionIn(BaseModel):
    """What the front line records about one contact."""

    channel: str = Field(description=f"one of {', '.join(interactions.CHANNELS)}", examples=["phone"])
    topic: str = Field(description="what it was about (complaint, delivery, product question, ...)",
                       examples=["delivery"])
    outcome: str = Field(description=f"one of {', '.join(interactions.OUTCOMES)}", examples=["resolved"])
    note: str | None = Field(default=None, description=f"free text, at most {interactions.MAX_NOTE} characters")
    occurred_at: dt.datetime | None = Field(default=None, description="when (with a time zone); default now")


@dataclass
class Answer:
    """What a handler returns: status, JSON body, and for the audit row the customers and fields (or
    ``audited``: the read wrote its audit row in its own statement)."""

    status: int
    body: Any
    customer_ids: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    audited: bool = False


def _presented_key(request: Request, header_key: str | None) -> str | None:
    if header_key:
        return header_key
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def rate_limit_file(settings: Settings) -> Path:
    """The bucket file the workers of the service on ``settings.serve_port`` share (serve/ratelimit.py)."""
    return ratelimit.private_dir() / f"serve-{settings.serve_port}.buckets"


class Service:
    """The running service's state: settings, the connection pool, the key cache, the rate limiter."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.keys = KeyCache(settings.serve_key_cache_s)
        self.limiter: RateLimiter | None = None
        self.pool = None

    def open(self) -> None:
        from crm_knowledge.warehouse.db import connection_pool

        self.limiter = RateLimiter(rate_limit_file(self.settings))
        # Audit rows are committed asynchronously (serve/audit.py says why): a request does not wait for a WAL
        # flush. The service only reads otherwise; the landing file of an interaction is fsynced itself.
        # Generic plans: the service runs a few statements thousands of times with different ids, and
        # planning the profile statement (a dozen relations) costs more than running it.
        self.pool = connection_pool(self.settings.warehouse_url, min_size=self.settings.serve_pool_size,
                                    max_size=self.settings.serve_pool_size, application_name="ckp_serve",
                                    session_sql="set synchronous_commit = off; "
                                                "set plan_cache_mode = force_generic_plan")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.limiter is not None:
            self.limiter.close()

    def handle(self, request: Request, header_key: str | None, scopes: tuple[str, ...],
               work: Callable[[Any, ApiKey, audit.Caller], Answer]) -> JSONResponse:
        """Authenticate, authorise (any of `scopes`), rate-limit, run `work`, audit: one audit row each.

        A read writes its audit row in its own statement (``Answer.audited``); a denial or a write is logged
        here. With the key cached, a lookup or profile is one round trip to the warehouse."""
        started = time.perf_counter()
        route = request.scope.get("route")
        endpoint = getattr(route, "path", request.url.path)
        key: ApiKey | None = None
        with self.pool.connection() as conn:
            presented = _presented_key(request, header_key)
            if presented is None:
                answer = Answer(401, {"detail": "an API key is required (X-API-Key header)"},
                                headers={"WWW-Authenticate": "ApiKey"})
            else:
                key = self.keys.verify(conn, presented)
                if key is None:
                    answer = Answer(401, {"detail": "unknown or revoked API key"},
                                    headers={"WWW-Authenticate": "ApiKey"})
                elif not any(key.may(s) for s in scopes):
                    answer = Answer(403, {"detail": f"the {key.role} role may not do this (needs scope "
                                                    f"{' or '.join(scopes)})"})
                else:
                    wait = self.limiter.acquire(key.key_id,
                                                key.rate_limit_per_minute or self.settings.serve_rate_limit)
                    if wait > 0:
                        answer = Answer(429, {"detail": "rate limit exceeded for this key"},
                                        headers={"Retry-After": str(max(1, round(wait)))})
                    else:
                        caller = audit.Caller(key.key_id, key.role, request.method, endpoint,
                                              (time.perf_counter() - started) * 1000)
                        try:
                            answer = work(conn, key, caller)
                        except lookup.LookupInvalid as exc:
                            answer = Answer(422, {"detail": str(exc)})
                        except interactions.InteractionInvalid as exc:
                            answer = Answer(exc.status, {"detail": str(exc)})
            if not answer.audited:
                audit.log_request(conn, key_id=key.key_id if key else None, role=key.role if key else None,
                                  method=request.method, endpoint=endpoint, status=answer.status,
                                  customer_ids=answer.customer_ids, fields=answer.fields,
                                  duration_ms=(time.perf_counter() - started) * 1000)
        return JSONResponse(answer.body, status_code=answer.status, headers={**SECURITY_HEADERS, **answer.headers})


def _lookup_work(params: dict[str, str | None]) -> Callable[[Any, ApiKey, audit.Caller], Answer]:
    def work(conn, key: ApiKey, caller: audit.Caller) -> Answer:
        keys = lookup.lookup_keys(**params)
        contact = key.may("contact")
        candidates = lookup.find(conn, keys, caller, unit=None if contact else key.unit, contact=contact)
        body = {"ambiguous": len(candidates) > 1, "count": len(candidates),
                "candidates": [{"customer_id": c.customer_id, "match_reasons": c.match_reasons, "score": c.score,
                                **({"contact": c.contact} if contact else {})}
                               for c in candidates]}
        return Answer(200 if candidates else 404, body if candidates else {**body, "detail": "no customer found"},
                      audited=True)
    return work


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI application (uvicorn calls this factory in every worker)."""
    service = Service(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.open()
        log.info("read service connected to %s", service.settings.redacted_url())
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="Customer knowledge read service", version="1.0.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Find a customer, read their profile and next best action, record an interaction. "
                              "Every request needs an API key (`ckp api-keys create`); see README "
                              "'Front line: the read service'.")
    app.state.service = service

    @app.get("/healthz", response_class=PlainTextResponse, include_in_schema=False)
    def healthz() -> PlainTextResponse:
        with service.pool.connection() as conn:
            conn.execute("select 1")
        return PlainTextResponse("ok")

    @app.get("/agent", response_class=HTMLResponse, summary="The agent page (search, customer card, record)")
    def agent_page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers=SECURITY_HEADERS)

    @app.get("/customers/lookup", summary="Find customers by phone, e-mail, national ID, or name + birth date",
             responses={401: {"description": "no or unknown key"}, 404: {"description": "no customer found"},
                        422: {"description": "no usable identifier"}, 429: {"description": "rate limited"}})
    def customers_lookup(request: Request,
                         phone: str | None = Query(None, description="any spelling: 0912…, +98 912 …, ۰۹۱۲…"),
                         email: str | None = Query(None),
                         national_id: str | None = Query(None, description="10 digits, Latin or Persian"),
                         name: str | None = Query(None, description="full name (with birth_date)"),
                         birth_date: str | None = Query(None, description="YYYY-MM-DD or Solar Hijri YYYY/MM/DD"),
                         api_key: str | None = Security(API_KEY_HEADER)) -> JSONResponse:
        params = {"phone": phone, "email": email, "national_id": national_id, "name": name, "birth_date": birth_date}
        return service.handle(request, api_key, ("lookup",), _lookup_work(params))

    @app.get("/customers/{customer_id}", summary="One customer's profile and next best action",
             responses={401: {"description": "no or unknown key"}, 404: {"description": "not found (or forgotten)"},
                        429: {"description": "rate limited"}})
    def customer_profile(request: Request, customer_id: str,
                         api_key: str | None = Security(API_KEY_HEADER)) -> JSONResponse:
        def work(conn, key: ApiKey, caller: audit.Caller) -> Answer:
            body = profile.profile_for(conn, customer_id, key, caller)
            if body is None:
                return Answer(404, {"detail": "customer not found"}, audited=True)
            return Answer(200, body, audited=True)
        # each role has one of these; profile_for gives each its own view
        return service.handle(request, api_key, ("profile:full", "profile:segments"), work)

    @app.post("/customers/{customer_id}/interactions", status_code=202,
              summary="Record an interaction (loaded by the next contact-centre ingestion run)",
              responses={401: {"description": "no or unknown key"}, 403: {"description": "role may not write"},
                         404: {"description": "not found (or forgotten)"}, 409: {"description": "cannot attribute"},
                         422: {"description": "invalid interaction"}})
    def record_interaction(request: Request, customer_id: str, body: InteractionIn,
                           api_key: str | None = Security(API_KEY_HEADER)) -> JSONResponse:
        idem = request.headers.get("idempotency-key")

        def work(conn, key: ApiKey, caller: audit.Caller) -> Answer:
            if profile.live_customer(conn, customer_id) is None:
                return Answer(404, {"detail": "customer not found"})
            item = interactions.validate(body.channel, body.topic, body.outcome, body.note, body.occurred_at,
                                         now=dt.datetime.now(dt.UTC))
            result = interactions.record(conn, service.settings, customer_id, item, key.key_id, idem)
            return Answer(202, result, customer_ids=[customer_id], fields=["interaction.note"] if item.note else [])
        return service.handle(request, api_key, ("interactions:write",), work)

    return app


#: Tables the service reads; `ckp serve` refuses to start without them (the pipeline has not run yet).
SERVING_TABLES = ("marts.customer_360", "marts.customer_identity_map", "marts.customer_knowledge",
                  "marts.fct_orders", "marts.fct_interactions", "pii.pii_customer_profiles",
                  "pii.pii_customer_lookup_keys")


class NotReady(RuntimeError):
    """The warehouse lacks the serving tables: the pipeline has not built them yet."""


def check_ready(url: str) -> None:
    from crm_knowledge.warehouse.db import connect, table_exists

    with connect(url) as conn:
        missing = [t for t in SERVING_TABLES if not table_exists(conn, t)]
    if missing:
        raise NotReady(f"the warehouse has no {', '.join(missing)} yet: run the pipeline first (`make run`, or the "
                       "customer_warehouse and customer_scoring DAGs)")


def serve(settings: Settings, host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    """Run the service with uvicorn until stopped (`ckp serve`)."""
    import uvicorn

    from crm_knowledge.warehouse import server
    from crm_knowledge.warehouse.bootstrap import apply_ddl

    url = server.start(settings)  # the embedded warehouse `make run` left (started again if stopped), or WAREHOUSE_URL
    apply_ddl(url)  # audit.api_keys / api_requests on a warehouse older than the service
    check_ready(url)
    host = host or settings.serve_host
    port = port or settings.serve_port
    # every worker (a process of its own, reading settings from the environment) shares this port's buckets
    os.environ["CKP_SERVE_PORT"] = str(port)
    ratelimit.reset(rate_limit_file(get_settings()))
    log.info("read service on http://%s:%s (agent page /agent, OpenAPI /openapi.json)", host, port)
    uvicorn.run("crm_knowledge.serve.app:create_app", factory=True, host=host, port=port,
                workers=workers or settings.serve_workers, log_level="warning", access_log=False)
