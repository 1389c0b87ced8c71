//! OTLP metric points to rows of the four metric tables, one per point type.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{Fields, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    SummaryDataPoint, exemplar, metric::Data, number_data_point,
};
use schema::{Table, attr};

use super::values::{AttrMapBuilder, append_attrs, attr_map_builder, find_str};
use super::{Converted, Partitioned, append_non_empty, list_array, list_fields};

/// Converts one export request. Points with no time or inconsistent buckets are
/// rejected and counted.
pub fn convert(request: &ExportMetricsServiceRequest) -> Result<Converted, ArrowError> {
    let mut out = Converted::default();
    let mut number = Partitioned::new();
    let mut histogram = Partitioned::new();
    let mut exp_histogram = Partitioned::new();
    let mut summary = Partitioned::new();
    for resource_metrics in &request.resource_metrics {
        let resource_attrs: &[KeyValue] = resource_metrics
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        let run_id = find_str(resource_attrs, attr::RUN_ID);
        for scope_metrics in &resource_metrics.scope_metrics {
            let scope = scope_metrics
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            for metric in &scope_metrics.metrics {
                let ctx = Context {
                    resource_attrs,
                    scope,
                    metric,
                };
                let run = |attrs: &'_ [KeyValue]| {
                    find_str(attrs, attr::RUN_ID).or(run_id).map(str::to_string)
                };
                match &metric.data {
                    Some(data @ (Data::Gauge(_) | Data::Sum(_))) => {
                        let (points, metric_type, temporality, monotonic) = match data {
                            Data::Sum(s) => (
                                &s.data_points,
                                "sum",
                                temporality(s.aggregation_temporality),
                                Some(s.is_monotonic),
                            ),
                            Data::Gauge(g) => (&g.data_points, "gauge", None, None),
                            _ => unreachable!("matched above"),
                        };
                        for p in points {
                            if let Some(time) = check_time(p.time_unix_nano, metric, &mut out) {
                                number
                                    .get(
                                        time,
                                        run(&p.attributes).as_deref(),
                                        NumberBuilder::default,
                                    )
                                    .append(&ctx, p, metric_type, temporality, monotonic);
                            }
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for p in &h.data_points {
                            if !p.bucket_counts.is_empty()
                                && p.bucket_counts.len() != p.explicit_bounds.len() + 1
                            {
                                out.reject(format!(
                                    "histogram '{}': {} bucket counts for {} bounds (need bounds + 1)",
                                    metric.name,
                                    p.bucket_counts.len(),
                                    p.explicit_bounds.len()
                                ));
                                continue;
                            }
                            if let Some(time) = check_time(p.time_unix_nano, metric, &mut out) {
                                histogram
                                    .get(
                                        time,
                                        run(&p.attributes).as_deref(),
                                        HistogramBuilder::default,
                                    )
                                    .append(&ctx, p, temporality(h.aggregation_temporality));
                            }
                        }
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            if let Some(time) = check_time(p.time_unix_nano, metric, &mut out) {
                                exp_histogram
                                    .get(
                                        time,
                                        run(&p.attributes).as_deref(),
                                        ExpHistogramBuilder::default,
                                    )
                                    .append(&ctx, p, temporality(h.aggregation_temporality));
                            }
                        }
                    }
                    Some(Data::Summary(s)) => {
                        for p in &s.data_points {
                            if let Some(time) = check_time(p.time_unix_nano, metric, &mut out) {
                                summary
                                    .get(
                                        time,
                                        run(&p.attributes).as_deref(),
                                        SummaryBuilder::default,
                                    )
                                    .append(&ctx, p);
                            }
                        }
                    }
                    None => {}
                }
            }
        }
    }
    number.finish(Table::MetricsNumber, &mut out, NumberBuilder::finish)?;
    histogram.finish(Table::MetricsHistogram, &mut out, HistogramBuilder::finish)?;
    exp_histogram.finish(
        Table::MetricsExpHistogram,
        &mut out,
        ExpHistogramBuilder::finish,
    )?;
    summary.finish(Table::MetricsSummary, &mut out, SummaryBuilder::finish)?;
    Ok(out)
}

fn check_time(time: u64, metric: &Metric, out: &mut Converted) -> Option<i64> {
    match i64::try_from(time) {
        Ok(t) if t > 0 => Some(t),
        _ => {
            out.reject(format!(
                "metric '{}': data point has no valid time_unix_nano",
                metric.name
            ));
            None
        }
    }
}

fn temporality(value: i32) -> Option<&'static str> {
    match value {
        1 => Some("delta"),
        2 => Some("cumulative"),
        _ => None,
    }
}

struct Context<'a> {
    resource_attrs: &'a [KeyValue],
    scope: (&'a str, &'a str),
    metric: &'a Metric,
}

/// The columns every metric table starts with.
struct Common {
    time: TimestampNanosecondBuilder,
    start_time: TimestampNanosecondBuilder,
    service_name: StringBuilder,
    environment: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    name: StringBuilder,
    description: StringBuilder,
    unit: StringBuilder,
    attributes: AttrMapBuilder,
    resource_attributes: AttrMapBuilder,
    flags: UInt32Builder,
    exemplars: ExemplarsBuilder,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            time: Default::default(),
            start_time: Default::default(),
            service_name: Default::default(),
            environment: Default::default(),
            scope_name: Default::default(),
            scope_version: Default::default(),
            name: Default::default(),
            description: Default::default(),
            unit: Default::default(),
            attributes: attr_map_builder(),
            resource_attributes: attr_map_builder(),
            flags: Default::default(),
            exemplars: Default::default(),
        }
    }
}

impl Common {
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        ctx: &Context<'_>,
        time: u64,
        start_time: u64,
        attributes: &[KeyValue],
        flags: u32,
        exemplars: &[Exemplar],
    ) {
        self.time.append_value(time as i64);
        self.start_time.append_option(
            (start_time > 0 && start_time <= i64::MAX as u64).then_some(start_time as i64),
        );
        self.service_name
            .append_option(find_str(ctx.resource_attrs, attr::SERVICE_NAME));
        self.environment
            .append_option(find_str(ctx.resource_attrs, attr::DEPLOYMENT_ENVIRONMENT));
        append_non_empty(&mut self.scope_name, ctx.scope.0);
        append_non_empty(&mut self.scope_version, ctx.scope.1);
        self.name.append_value(&ctx.metric.name);
        append_non_empty(&mut self.description, &ctx.metric.description);
        append_non_empty(&mut self.unit, &ctx.metric.unit);
        append_attrs(&mut self.attributes, attributes, |kv| {
            kv.key == attr::RUN_ID
        });
        append_attrs(&mut self.resource_attributes, ctx.resource_attrs, |kv| {
            matches!(
                kv.key.as_str(),
                attr::SERVICE_NAME | attr::DEPLOYMENT_ENVIRONMENT | attr::RUN_ID
            )
        });
        self.flags.append_value(flags);
        self.exemplars.append(exemplars);
    }

    fn finish(mut self, schema: &SchemaRef) -> Result<Vec<ArrayRef>, ArrowError> {
        let exemplar_fields = list_fields(schema, schema::metrics::col::EXEMPLARS);
        Ok(vec![
            Arc::new(self.time.finish().with_timezone("UTC")),
            Arc::new(self.start_time.finish().with_timezone("UTC")),
            Arc::new(self.service_name.finish()),
            Arc::new(self.environment.finish()),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.description.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.resource_attributes.finish()),
            Arc::new(self.flags.finish()),
            self.exemplars.finish(exemplar_fields)?,
        ])
    }
}

struct ExemplarsBuilder {
    offsets: Vec<i32>,
    time: TimestampNanosecondBuilder,
    value: Float64Builder,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    attributes: AttrMapBuilder,
}

impl Default for ExemplarsBuilder {
    fn default() -> Self {
        ExemplarsBuilder {
            offsets: vec![0],
            time: Default::default(),
            value: Default::default(),
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            attributes: attr_map_builder(),
        }
    }
}

impl ExemplarsBuilder {
    fn append(&mut self, exemplars: &[Exemplar]) {
        for e in exemplars {
            self.time
                .append_value(e.time_unix_nano.min(i64::MAX as u64) as i64);
            self.value.append_option(e.value.map(|v| match v {
                exemplar::Value::AsDouble(d) => d,
                exemplar::Value::AsInt(i) => i as f64,
            }));
            match <[u8; 16]>::try_from(e.trace_id.as_slice()) {
                Ok(id) => self.trace_id.append_value(id).expect("16 bytes"),
                Err(_) => self.trace_id.append_null(),
            }
            match <[u8; 8]>::try_from(e.span_id.as_slice()) {
                Ok(id) => self.span_id.append_value(id).expect("8 bytes"),
                Err(_) => self.span_id.append_null(),
            }
            append_attrs(&mut self.attributes, &e.filtered_attributes, |_| false);
        }
        let last = *self.offsets.last().expect("starts with 0");
        self.offsets.push(last + exemplars.len() as i32);
    }

    fn finish(mut self, fields: Fields) -> Result<ArrayRef, ArrowError> {
        list_array(
            fields,
            vec![
                Arc::new(self.time.finish().with_timezone("UTC")),
                Arc::new(self.value.finish()),
                Arc::new(self.trace_id.finish()),
                Arc::new(self.span_id.finish()),
                Arc::new(self.attributes.finish()),
            ],
            self.offsets,
        )
    }
}

#[derive(Default)]
struct NumberBuilder {
    common: Common,
    metric_type: StringBuilder,
    temporality: StringBuilder,
    is_monotonic: BooleanBuilder,
    value: Float64Builder,
    value_int: Int64Builder,
}

impl NumberBuilder {
    fn append(
        &mut self,
        ctx: &Context<'_>,
        p: &NumberDataPoint,
        metric_type: &str,
        temporality: Option<&str>,
        is_monotonic: Option<bool>,
    ) {
        self.common.append(
            ctx,
            p.time_unix_nano,
            p.start_time_unix_nano,
            &p.attributes,
            p.flags,
            &p.exemplars,
        );
        self.metric_type.append_value(metric_type);
        self.temporality.append_option(temporality);
        self.is_monotonic.append_option(is_monotonic);
        match p.value {
            Some(number_data_point::Value::AsDouble(d)) => {
                self.value.append_value(d);
                self.value_int.append_null();
            }
            Some(number_data_point::Value::AsInt(i)) => {
                self.value.append_value(i as f64);
                self.value_int.append_value(i);
            }
            None => {
                self.value.append_null();
                self.value_int.append_null();
            }
        }
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let schema = schema::metrics::number_schema();
        let mut columns = self.common.finish(&schema)?;
        columns.extend([
            Arc::new(self.metric_type.finish()) as ArrayRef,
            Arc::new(self.temporality.finish()),
            Arc::new(self.is_monotonic.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.value_int.finish()),
        ]);
        RecordBatch::try_new(schema, columns)
    }
}

/// count, sum, min, max: the statistics every histogram carries.
#[derive(Default)]
struct Moments {
    temporality: StringBuilder,
    count: UInt64Builder,
    sum: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
}

impl Moments {
    fn append(
        &mut self,
        temporality: Option<&str>,
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
    ) {
        self.temporality.append_option(temporality);
        self.count.append_value(count);
        self.sum.append_option(sum);
        self.min.append_option(min);
        self.max.append_option(max);
    }

    fn finish(mut self) -> [ArrayRef; 5] {
        [
            Arc::new(self.temporality.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.sum.finish()),
            Arc::new(self.min.finish()),
            Arc::new(self.max.finish()),
        ]
    }
}

#[derive(Default)]
struct HistogramBuilder {
    common: Common,
    moments: Moments,
    bucket_counts: ListBuilder<UInt64Builder>,
    explicit_bounds: ListBuilder<Float64Builder>,
}

impl HistogramBuilder {
    fn append(&mut self, ctx: &Context<'_>, p: &HistogramDataPoint, temporality: Option<&str>) {
        self.common.append(
            ctx,
            p.time_unix_nano,
            p.start_time_unix_nano,
            &p.attributes,
            p.flags,
            &p.exemplars,
        );
        self.moments
            .append(temporality, p.count, p.sum, p.min, p.max);
        self.bucket_counts.values().append_slice(&p.bucket_counts);
        self.bucket_counts.append(true);
        self.explicit_bounds
            .values()
            .append_slice(&p.explicit_bounds);
        self.explicit_bounds.append(true);
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let schema = schema::metrics::histogram_schema();
        let mut columns = self.common.finish(&schema)?;
        columns.extend(self.moments.finish());
        columns.push(Arc::new(self.bucket_counts.finish()));
        columns.push(Arc::new(self.explicit_bounds.finish()));
        RecordBatch::try_new(schema, columns)
    }
}

#[derive(Default)]
struct ExpHistogramBuilder {
    common: Common,
    moments: Moments,
    scale: Int32Builder,
    zero_count: UInt64Builder,
    zero_threshold: Float64Builder,
    positive_offset: Int32Builder,
    positive: ListBuilder<UInt64Builder>,
    negative_offset: Int32Builder,
    negative: ListBuilder<UInt64Builder>,
}

impl ExpHistogramBuilder {
    fn append(
        &mut self,
        ctx: &Context<'_>,
        p: &ExponentialHistogramDataPoint,
        temporality: Option<&str>,
    ) {
        self.common.append(
            ctx,
            p.time_unix_nano,
            p.start_time_unix_nano,
            &p.attributes,
            p.flags,
            &p.exemplars,
        );
        self.moments
            .append(temporality, p.count, p.sum, p.min, p.max);
        self.scale.append_value(p.scale);
        self.zero_count.append_value(p.zero_count);
        self.zero_threshold.append_value(p.zero_threshold);
        let positive = p.positive.as_ref();
        self.positive_offset
            .append_value(positive.map_or(0, |b| b.offset));
        self.positive
            .values()
            .append_slice(positive.map_or(&[], |b| b.bucket_counts.as_slice()));
        self.positive.append(true);
        let negative = p.negative.as_ref();
        self.negative_offset
            .append_value(negative.map_or(0, |b| b.offset));
        self.negative
            .values()
            .append_slice(negative.map_or(&[], |b| b.bucket_counts.as_slice()));
        self.negative.append(true);
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let schema = schema::metrics::exp_histogram_schema();
        let mut columns = self.common.finish(&schema)?;
        columns.extend(self.moments.finish());
        columns.extend([
            Arc::new(self.scale.finish()) as ArrayRef,
            Arc::new(self.zero_count.finish()),
            Arc::new(self.zero_threshold.finish()),
            Arc::new(self.positive_offset.finish()),
            Arc::new(self.positive.finish()),
            Arc::new(self.negative_offset.finish()),
            Arc::new(self.negative.finish()),
        ]);
        RecordBatch::try_new(schema, columns)
    }
}

#[derive(Default)]
struct SummaryBuilder {
    common: Common,
    count: UInt64Builder,
    sum: Float64Builder,
    offsets: Vec<i32>,
    quantile: Float64Builder,
    value: Float64Builder,
}

impl SummaryBuilder {
    fn append(&mut self, ctx: &Context<'_>, p: &SummaryDataPoint) {
        self.common.append(
            ctx,
            p.time_unix_nano,
            p.start_time_unix_nano,
            &p.attributes,
            p.flags,
            &[],
        );
        self.count.append_value(p.count);
        self.sum.append_value(p.sum);
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        for q in &p.quantile_values {
            self.quantile.append_value(q.quantile);
            self.value.append_value(q.value);
        }
        let last = *self.offsets.last().expect("starts with 0");
        self.offsets.push(last + p.quantile_values.len() as i32);
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let schema = schema::metrics::summary_schema();
        let mut columns = self.common.finish(&schema)?;
        columns.push(Arc::new(self.count.finish()));
        columns.push(Arc::new(self.sum.finish()));
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        columns.push(list_array(
            list_fields(&schema, schema::metrics::col::QUANTILE_VALUES),
            vec![
                Arc::new(self.quantile.finish()),
                Arc::new(self.value.finish()),
            ],
            self.offsets,
        )?);
        RecordBatch::try_new(schema, columns)
    }
}
