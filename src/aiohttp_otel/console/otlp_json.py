"""Finished spans as OTLP/JSON: what an OTLP/HTTP exporter would send, in its JSON encoding.

The shape is ``ExportTraceServiceRequest``: resource spans, then scope spans, then spans, with
the protocol's JSON rules: trace and span ids in hex, enums as integers, 64-bit integers and
timestamps as decimal strings, attribute values as ``AnyValue`` objects.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, StatusCode

# OTLP numbers its enums from an UNSPECIFIED zero; the API's enums do not.
_KINDS = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_STATUS_CODES = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}


def any_value(value: Any) -> dict[str, Any]:
    """An attribute value as an OTLP ``AnyValue`` JSON object."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": key_values(value)}}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [any_value(item) for item in value]}}
    return {"stringValue": str(value)}


def key_values(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value(value)} for key, value in (attributes or {}).items()]


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.context
    out: dict[str, Any] = {
        "traceId": format(context.trace_id, "032x"),
        "spanId": format(context.span_id, "016x"),
    }
    trace_state = context.trace_state.to_header() if context.trace_state else ""
    if trace_state:
        out["traceState"] = trace_state
    if span.parent is not None:
        out["parentSpanId"] = format(span.parent.span_id, "016x")
    out.update(
        {
            "name": span.name,
            "kind": _KINDS.get(span.kind, 0),
            "startTimeUnixNano": str(span.start_time or 0),
            "endTimeUnixNano": str(span.end_time or 0),
            "attributes": key_values(span.attributes),
            "events": [
                {
                    "timeUnixNano": str(event.timestamp),
                    "name": event.name,
                    "attributes": key_values(event.attributes),
                }
                for event in span.events
            ],
            "links": [
                {
                    "traceId": format(link.context.trace_id, "032x"),
                    "spanId": format(link.context.span_id, "016x"),
                    "attributes": key_values(link.attributes),
                }
                for link in span.links
            ],
        }
    )
    for field, dropped in (
        ("droppedAttributesCount", span.dropped_attributes),
        ("droppedEventsCount", span.dropped_events),
        ("droppedLinksCount", span.dropped_links),
    ):
        if dropped:
            out[field] = dropped
    status: dict[str, Any] = {"code": _STATUS_CODES[span.status.status_code]}
    if span.status.description:
        status["message"] = span.status.description
    out["status"] = status
    return out


def _scope(scope: InstrumentationScope | None) -> dict[str, Any]:
    if scope is None:
        return {}
    out: dict[str, Any] = {"name": scope.name}
    if scope.version:
        out["version"] = scope.version
    return out


def spans_to_otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """``spans`` grouped by resource, then by instrumentation scope, in the order given."""
    by_resource: dict[Resource, dict[InstrumentationScope | None, list[ReadableSpan]]] = {}
    for span in spans:
        scopes = by_resource.setdefault(span.resource, {})
        scopes.setdefault(span.instrumentation_scope, []).append(span)
    resource_spans = []
    for resource, scopes in by_resource.items():
        scope_spans = []
        for scope, scoped in scopes.items():
            entry: dict[str, Any] = {"scope": _scope(scope), "spans": [_span(s) for s in scoped]}
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            scope_spans.append(entry)
        resource_entry: dict[str, Any] = {
            "resource": {"attributes": key_values(resource.attributes)},
            "scopeSpans": scope_spans,
        }
        if resource.schema_url:
            resource_entry["schemaUrl"] = resource.schema_url
        resource_spans.append(resource_entry)
    return {"resourceSpans": resource_spans}
