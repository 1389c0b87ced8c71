"""Send spans and every metric type the OpenTelemetry Python SDK makes to a
loadlens collector, with the SDK's own OTLP exporter, and print what was sent.

usage: otel_send.py grpc|http ENDPOINT SERVICE > expected.json
"""

import json
import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode


def exporters(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=True), OTLPMetricExporter(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (
        OTLPSpanExporter(endpoint=endpoint + "/v1/traces"),
        OTLPMetricExporter(endpoint=endpoint + "/v1/metrics"),
    )


def points_of(metrics_data):
    """Every field of each metric's one data point, as the collector should
    store it: no start time (0) is NULL, temporality by name."""
    points = {}
    for resource_metrics in metrics_data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                data = metric.data
                (p,) = data.data_points
                point = {
                    "unit": metric.unit or None,
                    "time": p.time_unix_nano,
                    "start_time": p.start_time_unix_nano or None,
                    "attributes": {k: str(v) for k, v in p.attributes.items()},
                    "temporality": None,
                    "monotonic": None,
                }
                if hasattr(data, "aggregation_temporality"):
                    point["temporality"] = data.aggregation_temporality.name.lower()
                if hasattr(data, "is_monotonic"):
                    point["monotonic"] = data.is_monotonic
                kind = type(data).__name__
                if kind == "Histogram":
                    point.update(
                        count=p.count, sum=p.sum, min=p.min, max=p.max,
                        bucket_counts=list(p.bucket_counts), bounds=list(p.explicit_bounds),
                    )
                elif kind == "ExponentialHistogram":
                    point.update(
                        count=p.count, sum=p.sum, min=p.min, max=p.max, scale=p.scale,
                        zero_count=p.zero_count, flags=p.flags,
                        positive_offset=p.positive.offset, positive=list(p.positive.bucket_counts),
                        negative_offset=p.negative.offset, negative=list(p.negative.bucket_counts),
                    )
                else:
                    point["value"] = float(p.value)
                point["exemplars"] = exemplars_of(p)
                points[metric.name] = point
    return points


def exemplars_of(point):
    """A point's exemplars as the store should keep them, in time order."""
    hex_id = lambda value, width: None if value is None else format(value, f"0{width}x")
    return sorted(
        (
            {
                "time": e.time_unix_nano,
                "value": float(e.value),
                "trace_id": hex_id(e.trace_id, 32),
                "span_id": hex_id(e.span_id, 16),
                "attributes": {k: str(v) for k, v in (e.filtered_attributes or {}).items()},
            }
            for e in point.exemplars or ()
        ),
        key=lambda e: (e["time"], e["value"]),
    )


def main():
    protocol, endpoint, service = sys.argv[1:4]
    resource = Resource.create({"service.name": service, "deployment.environment.name": "production"})
    span_exporter, metric_exporter = exporters(protocol, endpoint)

    # Metrics: every instrument, an exponential histogram through a view.
    reader = InMemoryMetricReader()
    meters = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=[View(instrument_name="interop.latency_exp", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = meters.get_meter("interop", "1.2.3")
    counter = meter.create_counter("interop.requests", unit="1")
    histogram = meter.create_histogram("interop.latency", unit="ms")

    # Spans: collected in memory, then exported in one call whose result we check.
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("interop", "1.2.3")
    with tracer.start_as_current_span("GET /interop", kind=SpanKind.SERVER) as server:
        # Inside a sampled span the SDK's default filter keeps exemplars:
        # the requests and latencies point at this span, which is stored.
        counter.add(5, {"route": "/a"})
        counter.add(2, {"route": "/a"})
        for value in (1.5, 7.0, 30.0):
            histogram.record(value)
        server.set_attributes(
            {
                "http.request.method": "GET",
                "http.response.status_code": 200,
                "http.route": "/interop",
                "custom.str": "x",
                "custom.int": 42,
                "custom.bool": True,
                "custom.float": 0.25,
                "custom.list": ["a", "b"],
            }
        )
        server.add_event("cache.miss", {"key": "k1"})
        other = tracer.start_span("linked")
        other.end()
        with tracer.start_as_current_span("child", links=[Link(other.get_span_context())]) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
    spans = memory.get_finished_spans()
    result = span_exporter.export(spans)
    assert result == SpanExportResult.SUCCESS, f"span export failed: {result}"

    updown = meter.create_up_down_counter("interop.inflight")
    updown.add(3)
    updown.add(-1)
    exp = meter.create_histogram("interop.latency_exp", unit="ms")
    for value in (1.0, 2.0, 4.0, 8.0):
        exp.record(value)
    gauge = meter.create_gauge("interop.temperature")
    gauge.set(21.5)
    metrics_data = reader.get_metrics_data()
    points = points_of(metrics_data)
    server_id = format(server.get_span_context().span_id, "016x")
    for name in ("interop.requests", "interop.latency"):
        exemplars = points[name]["exemplars"]
        assert exemplars, f"the SDK kept no exemplar for {name}"
        assert all(e["span_id"] == server_id for e in exemplars), (name, exemplars)
    result = metric_exporter.export(metrics_data)
    assert result == MetricExportResult.SUCCESS, f"metric export failed: {result}"

    expected = {
        "service": service,
        "spans": [
            {
                "trace_id": format(s.context.trace_id, "032x"),
                "span_id": format(s.context.span_id, "016x"),
                "parent": format(s.parent.span_id, "016x") if s.parent else None,
                "name": s.name,
                "kind": s.kind.name.upper(),
                "status": s.status.status_code.name,
                "events": len(s.events),
                "links": len(s.links),
                "start": s.start_time,
                "end": s.end_time,
                "status_message": s.status.description,
                "event_list": [
                    {"time": e.timestamp, "name": e.name, "attributes": {k: str(v) for k, v in e.attributes.items()}}
                    for e in s.events
                ],
                "link_list": [
                    {"trace_id": format(l.context.trace_id, "032x"), "span_id": format(l.context.span_id, "016x")}
                    for l in s.links
                ],
            }
            for s in spans
        ],
        "points": points,
        "attributes": {"custom.str": "x", "custom.int": "42", "custom.bool": "true", "custom.float": "0.25", "custom.list": '["a","b"]'},
        "metrics": {
            "interop.requests": 7,
            "interop.inflight": 2,
            "interop.temperature": 21.5,
            "interop.latency": {"count": 3, "sum": 38.5},
            "interop.latency_exp": {"count": 4, "sum": 15.0},
        },
    }
    print(json.dumps(expected))


if __name__ == "__main__":
    main()
