//! OTLP metrics export: the caller builds `Metric`s (cumulative sums, gauges,
//! exponential histograms) and sends them with [`MetricsExporter::export`] over
//! the same transports and retries as spans (`MetricsService/Export` or
//! `POST {endpoint}/v1/metrics`).
//!
//! ```text
//!  every second: counters, in-flight, ExpHistogram ─Vec<Metric>─▶ MetricsExporter::export ─▶ collector
//! ```
//!
//! Cumulative temporality makes a lost export harmless: the next one carries
//! the totals again.

pub mod exp_histogram;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use tonic::transport::Channel;

pub use exp_histogram::ExpHistogram;

use crate::export::{resource, scope};
use crate::transport::{Protocol, RetryPolicy, Signal, Transport};
use crate::{ExportError, ExporterConfig};

/// Re-exported so callers build metrics with the same proto types the exporter sends.
pub use opentelemetry_proto::tonic::metrics::v1 as proto;

/// Where and how to export metrics.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Collector URL: `http://127.0.0.1:4317` for gRPC; for OTLP/HTTP the base
    /// URL, e.g. `http://127.0.0.1:4318`, to which `/v1/metrics` is appended.
    pub endpoint: String,
    /// gRPC (the default) or HTTP/protobuf.
    pub protocol: Protocol,
    /// Resource attributes sent with every export (`service.name` ...).
    pub resource: Vec<KeyValue>,
    /// Instrumentation scope name and version.
    pub scope: (String, String),
    /// Attempts per export, the first included.
    pub max_attempts: u32,
    /// Longest one attempt may take, connecting included.
    pub timeout: Duration,
    /// Backoff ceiling before the first retry; doubles with each retry.
    pub initial_backoff: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
    /// Largest wait honoured when the collector names one.
    pub max_retry_delay: Duration,
}

impl MetricsConfig {
    /// The span exporter's defaults: gRPC, 5 attempts, 10 s per attempt,
    /// backoff 50 ms doubling to 2 s, server-requested waits up to 30 s.
    pub fn new(endpoint: impl Into<String>, resource: Vec<KeyValue>) -> Self {
        MetricsConfig::from(&ExporterConfig::new(endpoint, resource))
    }

    /// The same settings over another transport.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            max_server_delay: self.max_retry_delay,
        }
    }
}

impl From<&ExporterConfig> for MetricsConfig {
    /// The span exporter's collector, transport, resource, scope and retries,
    /// so spans and metrics of one process go to one place alike.
    fn from(spans: &ExporterConfig) -> Self {
        MetricsConfig {
            endpoint: spans.endpoint.clone(),
            protocol: spans.protocol,
            resource: spans.resource.clone(),
            scope: spans.scope.clone(),
            max_attempts: spans.max_attempts,
            timeout: spans.timeout,
            initial_backoff: spans.initial_backoff,
            max_backoff: spans.max_backoff,
            max_retry_delay: spans.max_retry_delay,
        }
    }
}

/// What one successful export did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsExported {
    /// Data points the collector refused in a partial success.
    pub rejected_data_points: u64,
    /// Attempts beyond the first.
    pub retries: u32,
}

/// An export that failed: a non-retryable answer, or retryable failures until
/// the attempts ran out.
#[derive(Debug, Clone, thiserror::Error)]
#[error("metrics export to {endpoint} failed after {attempts} attempt(s): {reason}")]
pub struct MetricsExportError {
    /// The collector URL.
    pub endpoint: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure, e.g. `gRPC Unavailable: ...` or `POST ...: HTTP 400 Bad Request`.
    pub reason: String,
}

/// Totals of one metrics exporter's life (all its clones together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsStats {
    /// Export requests the collector accepted.
    pub exports: u64,
    /// Export requests that failed.
    pub failed: u64,
    /// Data points refused in partial successes.
    pub rejected_data_points: u64,
    /// Attempts beyond the first.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    exports: AtomicU64,
    failed: AtomicU64,
    rejected_data_points: AtomicU64,
    retries: AtomicU64,
}

/// Sends metrics to the collector. Cheap to clone; clones share the connection
/// and the totals, so an export can run in its own task.
#[derive(Clone)]
pub struct MetricsExporter {
    config: Arc<MetricsConfig>,
    transport: Transport<Metrics>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for MetricsExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsExporter")
            .field("endpoint", &self.config.endpoint)
            .field("protocol", &self.config.protocol)
            .finish_non_exhaustive()
    }
}

impl MetricsExporter {
    /// Checks the endpoint. Connects lazily, so the collector may start later.
    pub fn start(config: MetricsConfig) -> Result<MetricsExporter, ExportError> {
        let transport = Transport::new(&config.endpoint, config.protocol, config.timeout)?;
        Ok(MetricsExporter {
            config: Arc::new(config),
            transport,
            counters: Arc::default(),
        })
    }

    /// Sends `metrics` in one request under the configured resource and scope,
    /// retrying as spans are retried (the collector's delay when it names one,
    /// backoff otherwise). Returns when the collector accepted the request or
    /// the exporter gave up.
    pub async fn export(
        &self,
        metrics: Vec<Metric>,
    ) -> Result<MetricsExported, MetricsExportError> {
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource(&self.config.resource)),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope(&self.config.scope)),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let delivery = self
            .transport
            .export_with_retries(&request, &self.config.retry_policy())
            .await;
        let counters = &self.counters;
        counters
            .retries
            .fetch_add(u64::from(delivery.retries), Ordering::Relaxed);
        match delivery.result {
            Ok(rejected) => {
                counters.exports.fetch_add(1, Ordering::Relaxed);
                counters
                    .rejected_data_points
                    .fetch_add(rejected, Ordering::Relaxed);
                Ok(MetricsExported {
                    rejected_data_points: rejected,
                    retries: delivery.retries,
                })
            }
            Err(failure) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                Err(MetricsExportError {
                    endpoint: self.config.endpoint.clone(),
                    attempts: delivery.retries + 1,
                    reason: failure.message,
                })
            }
        }
    }

    /// Totals so far.
    pub fn stats(&self) -> MetricsStats {
        let c = &self.counters;
        MetricsStats {
            exports: c.exports.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            rejected_data_points: c.rejected_data_points.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    /// Stops using this handle and returns the totals. Nothing is queued, so
    /// there is nothing to flush: send the final values with
    /// [`MetricsExporter::export`] first. Exports still running on clones
    /// finish on their own.
    pub async fn shutdown(self) -> MetricsStats {
        self.stats()
    }
}

/// The metrics signal: `MetricsService/Export` and `/v1/metrics`.
pub(crate) struct Metrics;

impl Signal for Metrics {
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    const HTTP_PATH: &'static str = "/v1/metrics";

    async fn grpc_export(
        channel: Channel,
        request: ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, tonic::Status> {
        MetricsServiceClient::new(channel)
            .export(request)
            .await
            .map(tonic::Response::into_inner)
    }

    fn rejected(response: &ExportMetricsServiceResponse) -> u64 {
        response
            .partial_success
            .as_ref()
            .map_or(0, |p| u64::try_from(p.rejected_data_points).unwrap_or(0))
    }
}

/// A monotonic cumulative Sum (a counter: requests, errors by `error.type` ...).
pub fn cumulative_sum(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    new_metric(
        name,
        unit,
        metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
    )
}

/// A Gauge (a value at a time: in-flight requests ...).
pub fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    new_metric(
        name,
        unit,
        metric::Data::Gauge(Gauge {
            data_points: points,
        }),
    )
}

/// A cumulative ExponentialHistogram, its points from [`ExpHistogram::to_proto`].
pub fn exp_histogram(name: &str, unit: &str, points: Vec<ExponentialHistogramDataPoint>) -> Metric {
    new_metric(
        name,
        unit,
        metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
    )
}

/// An integer point. For a cumulative Sum, `start_time_unix_nano` is when
/// counting began and stays the same in every export.
pub fn int_point(
    attributes: Vec<KeyValue>,
    start_time_unix_nano: u64,
    time_unix_nano: u64,
    value: i64,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano,
        time_unix_nano,
        value: Some(number_data_point::Value::AsInt(value)),
        ..Default::default()
    }
}

/// A floating-point point; see [`int_point`].
pub fn double_point(
    attributes: Vec<KeyValue>,
    start_time_unix_nano: u64,
    time_unix_nano: u64,
    value: f64,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano,
        time_unix_nano,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn new_metric(name: &str, unit: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.to_string(),
        unit: unit.to_string(),
        data: Some(data),
        ..Default::default()
    }
}
