"""Request ids, one access line per request with its statement count, and opt-in traces.

`install(app, settings)` adds the middlewares when the app is built; `start(...)` runs when
it starts serving, with its engine. Everything a request logs carries its id (`app.logs`).
"""

import logging
import os
import re
import time
from contextvars import ContextVar
from typing import Any
from uuid import uuid4

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import Engine, event
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs
from app.config import Settings

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's request id is kept if it is a short token of these characters (UUIDs, trace
# ids, load balancers' ids); anything else is replaced by a new id and never written out.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")

access_logger = logging.getLogger("app.access")


class StatementCount:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


# The request's counter: a mutable object, so statements sent from a worker thread (sync
# routes) or a SQLAlchemy greenlet (async) count in the copy of the context they run in.
statements: ContextVar[StatementCount | None] = ContextVar("statements", default=None)


def count_statement(*_args: Any) -> None:
    """before_cursor_execute: one more statement sent for the current request."""
    counter = statements.get()
    if counter is not None:
        counter.value += 1


def is_sane_request_id(value: str) -> bool:
    return SANE_REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid4().hex


class AccessLog:
    """One INFO line per HTTP request: method, route template, status, duration in ms, the
    number of SQL statements sent. Never the raw path or query string, nor any header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Full path templates by id of route, built on first use (see `route_template`).
        self.templates: dict[int, str | None] = {}

    def route_template(self, scope: Scope) -> str | None:
        """The template of the route that served the request ("/api/todos/{todo_id}")."""
        route = scope.get("route")
        if route is None:
            return None  # no route matched: a 404, or a 405
        if id(route) not in self.templates:
            # FastAPI includes a router without copying its routes, so a route knows only
            # its own router's prefix; the app's route contexts know the whole path.
            contexts = iter_route_contexts(scope["app"].routes)
            self.templates = {id(context.original_route): context.path for context in contexts}
        return self.templates.get(id(route), getattr(route, "path", None))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        counter = StatementCount()
        token = statements.set(counter)
        status = 500  # unless a response starts: the app raised before answering

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            statements.reset(token)
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            route = self.route_template(scope)
            access_logger.info(
                "%s %s %d in %.2f ms, %d SQL statement%s",
                scope["method"],
                route or "(no route)",
                status,
                duration_ms,
                counter.value,
                "" if counter.value == 1 else "s",
                extra={
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": duration_ms,
                    "db_statements": counter.value,
                },
            )


def tracing_requested() -> bool:
    """Whether the standard OTEL_* variables ask for traces: an OTLP endpoint, or a traces
    exporter other than "none"; OTEL_SDK_DISABLED=true turns them off."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def install(app: FastAPI, settings: Settings) -> None:
    """Request ids and access lines for every request; traces when OTEL_* asks for them."""
    logs.stamp_request_ids()
    app.add_middleware(AccessLog)
    # Added last, so it runs first: the access line and every other line get the id.
    app.add_middleware(
        CorrelationIdMiddleware,
        header_name=REQUEST_ID_HEADER,
        generator=new_request_id,
        validator=is_sane_request_id,
    )
    if tracing_requested():
        from app import tracing  # the `otel` extra: imported only when traces are wanted

        tracing.trace_requests(app, tracing.tracer_provider(settings.project_name))


def start(app: FastAPI, engine: Engine, settings: Settings) -> None:
    """At startup: log as LOG_FORMAT says, count the engine's statements, trace them too."""
    logs.configure(settings)
    if not event.contains(engine, "before_cursor_execute", count_statement):
        event.listen(engine, "before_cursor_execute", count_statement)
    provider = getattr(app.state, "tracer_provider", None)
    if provider is not None:
        from app import tracing

        tracing.trace_engine(engine, provider)
