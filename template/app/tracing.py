"""OpenTelemetry traces (the `otel` extra): a span per request, and under it one per statement.

Only imported when the OTEL_* environment asks for traces (`app.observability`), so a
project without the extra, or with tracing off, loads none of this. The exporter takes its
endpoint, headers and protocol from the standard OTEL_EXPORTER_OTLP_* variables.
"""

import os

from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from sqlalchemy import Engine


def exporter() -> SpanExporter:
    """OTLP over HTTP (the OTLP default), or the console with OTEL_TRACES_EXPORTER=console."""
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        return ConsoleSpanExporter()
    return OTLPSpanExporter()


def tracer_provider(service_name: str) -> TracerProvider:
    """Spans batched to `exporter()`; OTEL_SERVICE_NAME, when set, names the service."""
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(exporter()))
    return provider


def trace_requests(app: FastAPI, provider: TracerProvider) -> None:
    """A server span per request; `trace_engine` adds the statements under it."""
    # No spans for each chunk of a request or response body: one span per request.
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["receive", "send"]
    )
    app.state.tracer_provider = provider


def trace_engine(engine: Engine, provider: TracerProvider) -> None:
    """A client span per statement this engine sends, under the request's span."""
    tracer = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    # The engine's connection-pool metrics go nowhere: this project exports traces only.
    usage = NoOpMeterProvider().get_meter(__name__).create_up_down_counter("db.client.connections")
    # What SQLAlchemyInstrumentor().instrument(engine=...) does, without its process-wide
    # patches (create_engine, Engine.connect), which would add a span per connect.
    EngineTracer(tracer, engine, usage)  # type: ignore[no-untyped-call]
