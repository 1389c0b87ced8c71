//! The metric tables: one row per OTLP data point, each point type kept natively
//! (no conversion to Prometheus buckets).

use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::types::{attribute_map, list_of, list_of_primitive, timestamp_ns};

/// Column names of the metric tables.
pub mod col {
    pub const TIME: &str = "time";
    pub const START_TIME: &str = "start_time";
    pub const SERVICE_NAME: &str = "service_name";
    pub const DEPLOYMENT_ENVIRONMENT: &str = "deployment_environment";
    pub const SCOPE_NAME: &str = "scope_name";
    pub const SCOPE_VERSION: &str = "scope_version";
    pub const METRIC_NAME: &str = "metric_name";
    pub const METRIC_DESCRIPTION: &str = "metric_description";
    pub const METRIC_UNIT: &str = "metric_unit";
    pub const ATTRIBUTES: &str = "attributes";
    pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
    pub const FLAGS: &str = "flags";
    pub const EXEMPLARS: &str = "exemplars";
    pub const METRIC_TYPE: &str = "metric_type";
    pub const TEMPORALITY: &str = "temporality";
    pub const IS_MONOTONIC: &str = "is_monotonic";
    pub const VALUE: &str = "value";
    pub const VALUE_INT: &str = "value_int";
    pub const COUNT: &str = "count";
    pub const SUM: &str = "sum";
    pub const MIN: &str = "min";
    pub const MAX: &str = "max";
    pub const BUCKET_COUNTS: &str = "bucket_counts";
    pub const EXPLICIT_BOUNDS: &str = "explicit_bounds";
    pub const SCALE: &str = "scale";
    pub const ZERO_COUNT: &str = "zero_count";
    pub const ZERO_THRESHOLD: &str = "zero_threshold";
    pub const POSITIVE_OFFSET: &str = "positive_offset";
    pub const POSITIVE_BUCKET_COUNTS: &str = "positive_bucket_counts";
    pub const NEGATIVE_OFFSET: &str = "negative_offset";
    pub const NEGATIVE_BUCKET_COUNTS: &str = "negative_bucket_counts";
    pub const QUANTILE_VALUES: &str = "quantile_values";
}

/// Columns every metric table starts with.
fn common() -> Vec<Field> {
    use DataType::*;
    vec![
        // When the point was observed.
        Field::new(col::TIME, timestamp_ns(), false),
        // Start of the aggregation interval (cumulative/delta points); NULL if unset.
        Field::new(col::START_TIME, timestamp_ns(), true),
        // Resource `service.name`.
        Field::new(col::SERVICE_NAME, Utf8, true),
        // Resource `deployment.environment.name`.
        Field::new(col::DEPLOYMENT_ENVIRONMENT, Utf8, true),
        // Instrumentation scope name.
        Field::new(col::SCOPE_NAME, Utf8, true),
        // Instrumentation scope version.
        Field::new(col::SCOPE_VERSION, Utf8, true),
        // Metric name.
        Field::new(col::METRIC_NAME, Utf8, false),
        // Metric description.
        Field::new(col::METRIC_DESCRIPTION, Utf8, true),
        // Metric unit (UCUM).
        Field::new(col::METRIC_UNIT, Utf8, true),
        // Point attributes, values rendered as strings.
        Field::new(col::ATTRIBUTES, attribute_map(), true),
        // Resource attributes, values rendered as strings.
        Field::new(col::RESOURCE_ATTRIBUTES, attribute_map(), true),
        // OTLP data point flags.
        Field::new(col::FLAGS, UInt32, false),
        // Exemplars: time, value, trace and span id, filtered attributes.
        Field::new(
            col::EXEMPLARS,
            list_of(vec![
                Field::new("time", timestamp_ns(), false),
                Field::new("value", Float64, true),
                Field::new("trace_id", FixedSizeBinary(16), true),
                Field::new("span_id", FixedSizeBinary(8), true),
                Field::new("filtered_attributes", attribute_map(), true),
            ]),
            true,
        ),
    ]
}

/// `delta` or `cumulative`; NULL for gauges.
fn temporality() -> Field {
    Field::new(col::TEMPORALITY, DataType::Utf8, true)
}

/// temporality, count, sum, min, max: what every histogram point carries, then `extra`.
fn histogram_columns(extra: Vec<Field>) -> SchemaRef {
    use DataType::*;
    let mut fields = vec![
        temporality(),
        // Number of observations.
        Field::new(col::COUNT, UInt64, false),
        // Sum of observations, if recorded.
        Field::new(col::SUM, Float64, true),
        // Smallest observation, if recorded.
        Field::new(col::MIN, Float64, true),
        // Largest observation, if recorded.
        Field::new(col::MAX, Float64, true),
    ];
    fields.extend(extra);
    schema_of(fields)
}

fn schema_of(extra: Vec<Field>) -> SchemaRef {
    let mut fields = common();
    fields.extend(extra);
    Arc::new(Schema::new(fields))
}

static NUMBER: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema_of(vec![
        // `gauge` or `sum`.
        Field::new(col::METRIC_TYPE, Utf8, false),
        temporality(),
        // For sums: whether the sum only grows; NULL for gauges.
        Field::new(col::IS_MONOTONIC, Boolean, true),
        // The value as a double (integer points converted).
        Field::new(col::VALUE, Float64, true),
        // The exact value of integer points; NULL for double points.
        Field::new(col::VALUE_INT, Int64, true),
    ])
});

static HISTOGRAM: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    histogram_columns(vec![
        // Count per bucket; one more entry than `explicit_bounds`.
        Field::new(col::BUCKET_COUNTS, list_of_primitive(UInt64), false),
        // Upper bounds (inclusive) of all buckets but the last.
        Field::new(col::EXPLICIT_BOUNDS, list_of_primitive(Float64), false),
    ])
});

static EXP_HISTOGRAM: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    histogram_columns(vec![
        // Resolution: bucket boundaries are powers of 2^(2^-scale).
        Field::new(col::SCALE, Int32, false),
        // Observations within `zero_threshold` of zero.
        Field::new(col::ZERO_COUNT, UInt64, false),
        // Width of the zero bucket.
        Field::new(col::ZERO_THRESHOLD, Float64, false),
        // Index of the first positive bucket.
        Field::new(col::POSITIVE_OFFSET, Int32, false),
        // Counts of positive buckets from `positive_offset` on.
        Field::new(
            col::POSITIVE_BUCKET_COUNTS,
            list_of_primitive(UInt64),
            false,
        ),
        // Index of the first negative bucket.
        Field::new(col::NEGATIVE_OFFSET, Int32, false),
        // Counts of negative buckets from `negative_offset` on.
        Field::new(
            col::NEGATIVE_BUCKET_COUNTS,
            list_of_primitive(UInt64),
            false,
        ),
    ])
});

static SUMMARY: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    schema_of(vec![
        // Number of observations.
        Field::new(col::COUNT, UInt64, false),
        // Sum of observations.
        Field::new(col::SUM, Float64, false),
        // Reported quantiles: (quantile in [0, 1], value).
        Field::new(
            col::QUANTILE_VALUES,
            list_of(vec![
                Field::new("quantile", Float64, false),
                Field::new("value", Float64, false),
            ]),
            false,
        ),
    ])
});

/// Schema of `metrics_number`: gauge and sum points.
pub fn number_schema() -> SchemaRef {
    NUMBER.clone()
}

/// Schema of `metrics_histogram`: explicit-bucket histogram points.
pub fn histogram_schema() -> SchemaRef {
    HISTOGRAM.clone()
}

/// Schema of `metrics_exp_histogram`: exponential histogram points.
pub fn exp_histogram_schema() -> SchemaRef {
    EXP_HISTOGRAM.clone()
}

/// Schema of `metrics_summary`: summary points.
pub fn summary_schema() -> SchemaRef {
    SUMMARY.clone()
}
