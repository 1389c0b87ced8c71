//! OTLP spans to rows of the `spans` table (and the run manifest to `runs`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Int32Builder, Int64Builder, StringBuilder,
    TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::datatypes::Fields;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use schema::spans::{PROMOTED, Promoted, promoted};
use schema::{Table, attr};

use super::values::{AttrMapBuilder, append_attrs, as_i64, attr_map_builder, find_str};
use super::{Converted, Partitioned, append_non_empty, list_array, list_fields};

/// Converts one export request. Spans with malformed ids are rejected and counted.
pub fn convert(request: &ExportTraceServiceRequest) -> Result<Converted, ArrowError> {
    let mut out = Converted::default();
    let mut spans = Partitioned::new();
    let mut runs = Partitioned::new();
    for resource_spans in &request.resource_spans {
        let resource_attrs: &[KeyValue] = resource_spans
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        let resource = ResourceInfo::new(resource_attrs);
        for scope_spans in &resource_spans.scope_spans {
            let (scope_name, scope_version) = scope_spans
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            for span in &scope_spans.spans {
                if let Err(reason) = validate(span) {
                    out.reject(reason);
                    continue;
                }
                let run_id = find_str(&span.attributes, attr::RUN_ID).or(resource.run_id);
                if let Some(sample) = crate::red::Sample::from_span(span, resource.run_id) {
                    out.red.push(sample);
                }
                let start = span.start_time_unix_nano as i64;
                if span.name == attr::RUN_SPAN_NAME && run_id.is_some() {
                    runs.get(start, run_id, RunsBuilder::default).append(span);
                } else {
                    spans.get(start, run_id, SpansBuilder::new).append(
                        span,
                        &resource,
                        resource_attrs,
                        scope_name,
                        scope_version,
                    );
                }
            }
        }
    }
    spans.finish(Table::Spans, &mut out, SpansBuilder::finish)?;
    runs.finish(Table::Runs, &mut out, RunsBuilder::finish)?;
    Ok(out)
}

fn validate(span: &Span) -> Result<(), String> {
    if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
        return Err(format!(
            "span '{}': trace_id must be 16 non-zero bytes, got {}",
            span.name,
            span.trace_id.len()
        ));
    }
    if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
        return Err(format!(
            "span '{}': span_id must be 8 non-zero bytes, got {}",
            span.name,
            span.span_id.len()
        ));
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Err(format!(
            "span '{}': parent_span_id must be empty or 8 bytes, got {}",
            span.name,
            span.parent_span_id.len()
        ));
    }
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err(format!(
            "span '{}': end_time is before start_time",
            span.name
        ));
    }
    if span.start_time_unix_nano > i64::MAX as u64 || span.end_time_unix_nano > i64::MAX as u64 {
        return Err(format!("span '{}': time is beyond year 2262", span.name));
    }
    Ok(())
}

/// Resource attributes that become columns.
struct ResourceInfo<'a> {
    service_name: Option<&'a str>,
    service_version: Option<&'a str>,
    environment: Option<&'a str>,
    run_id: Option<&'a str>,
}

impl<'a> ResourceInfo<'a> {
    fn new(attrs: &'a [KeyValue]) -> Self {
        ResourceInfo {
            service_name: find_str(attrs, attr::SERVICE_NAME),
            service_version: find_str(attrs, attr::SERVICE_VERSION),
            environment: find_str(attrs, attr::DEPLOYMENT_ENVIRONMENT),
            run_id: find_str(attrs, attr::RUN_ID),
        }
    }

    fn promotes(key: &str) -> bool {
        matches!(
            key,
            attr::SERVICE_NAME
                | attr::SERVICE_VERSION
                | attr::DEPLOYMENT_ENVIRONMENT
                | attr::RUN_ID
        )
    }
}

/// A builder for one promoted column.
enum PromotedBuilder {
    Utf8(StringBuilder),
    Int64(Int64Builder),
    Int32(Int32Builder),
    Timestamp(TimestampNanosecondBuilder),
}

impl PromotedBuilder {
    fn new(ty: Promoted) -> Self {
        match ty {
            Promoted::Utf8 => PromotedBuilder::Utf8(StringBuilder::new()),
            Promoted::Int64 => PromotedBuilder::Int64(Int64Builder::new()),
            Promoted::Int32 => PromotedBuilder::Int32(Int32Builder::new()),
            Promoted::Timestamp => PromotedBuilder::Timestamp(TimestampNanosecondBuilder::new()),
        }
    }

    /// Appends the value; false if it does not fit the column's type (then NULL is
    /// appended and the attribute stays in the map instead).
    fn append(&mut self, kv: Option<&KeyValue>) -> bool {
        let value = kv.and_then(|kv| kv.value.as_ref());
        match self {
            PromotedBuilder::Utf8(b) => {
                match value.and_then(|v| v.value.as_ref()) {
                    Some(v) => b.append_value(super::values::render(v)),
                    None => b.append_null(),
                }
                true
            }
            PromotedBuilder::Int64(b) => {
                let parsed = value.and_then(as_i64);
                b.append_option(parsed);
                value.is_none() || parsed.is_some()
            }
            PromotedBuilder::Int32(b) => {
                let parsed = value.and_then(as_i64).and_then(|v| i32::try_from(v).ok());
                b.append_option(parsed);
                value.is_none() || parsed.is_some()
            }
            PromotedBuilder::Timestamp(b) => {
                let parsed = value.and_then(as_i64);
                b.append_option(parsed);
                value.is_none() || parsed.is_some()
            }
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            PromotedBuilder::Utf8(mut b) => Arc::new(b.finish()),
            PromotedBuilder::Int64(mut b) => Arc::new(b.finish()),
            PromotedBuilder::Int32(mut b) => Arc::new(b.finish()),
            PromotedBuilder::Timestamp(mut b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }
}

struct SpansBuilder {
    start_time: TimestampNanosecondBuilder,
    end_time: TimestampNanosecondBuilder,
    duration: Int64Builder,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    parent_span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    service_name: StringBuilder,
    service_version: StringBuilder,
    environment: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    name: StringBuilder,
    kind: StringBuilder,
    status_code: StringBuilder,
    status_message: StringBuilder,
    promoted: Vec<PromotedBuilder>,
    attributes: AttrMapBuilder,
    resource_attributes: AttrMapBuilder,
    events: EventsBuilder,
    links: LinksBuilder,
}

impl SpansBuilder {
    fn new() -> Self {
        SpansBuilder {
            start_time: TimestampNanosecondBuilder::new(),
            end_time: TimestampNanosecondBuilder::new(),
            duration: Int64Builder::new(),
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            parent_span_id: FixedSizeBinaryBuilder::new(8),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::new(),
            service_name: StringBuilder::new(),
            service_version: StringBuilder::new(),
            environment: StringBuilder::new(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
            name: StringBuilder::new(),
            kind: StringBuilder::new(),
            status_code: StringBuilder::new(),
            status_message: StringBuilder::new(),
            promoted: PROMOTED.iter().map(|p| PromotedBuilder::new(p.2)).collect(),
            attributes: attr_map_builder(),
            resource_attributes: attr_map_builder(),
            events: EventsBuilder::default(),
            links: LinksBuilder::default(),
        }
    }

    fn append(
        &mut self,
        span: &Span,
        resource: &ResourceInfo<'_>,
        resource_attrs: &[KeyValue],
        scope_name: &str,
        scope_version: &str,
    ) {
        let start = span.start_time_unix_nano as i64;
        let end = span.end_time_unix_nano as i64;
        self.start_time.append_value(start);
        self.end_time.append_value(end);
        self.duration.append_value(end - start);
        self.trace_id
            .append_value(&span.trace_id)
            .expect("validated length");
        self.span_id
            .append_value(&span.span_id)
            .expect("validated length");
        if span.parent_span_id.is_empty() {
            self.parent_span_id.append_null();
        } else {
            self.parent_span_id
                .append_value(&span.parent_span_id)
                .expect("validated length");
        }
        append_non_empty(&mut self.trace_state, &span.trace_state);
        self.flags.append_value(span.flags);
        self.service_name.append_option(resource.service_name);
        self.service_version.append_option(resource.service_version);
        self.environment.append_option(resource.environment);
        append_non_empty(&mut self.scope_name, scope_name);
        append_non_empty(&mut self.scope_version, scope_version);
        self.name.append_value(&span.name);
        self.kind.append_value(kind_name(span.kind));
        let status = span.status.as_ref();
        self.status_code
            .append_value(status_name(status.map_or(0, |s| s.code)));
        append_non_empty(
            &mut self.status_message,
            status.map_or("", |s| s.message.as_str()),
        );

        // Promoted attributes: the first occurrence of each key fills its column.
        let mut found: Vec<Option<&KeyValue>> = vec![None; PROMOTED.len()];
        for kv in &span.attributes {
            if let Some((i, _)) = promoted(&kv.key)
                && found[i].is_none()
            {
                found[i] = Some(kv);
            }
        }
        let mut kept = vec![false; PROMOTED.len()];
        for (i, builder) in self.promoted.iter_mut().enumerate() {
            kept[i] = builder.append(found[i]);
        }
        append_attrs(&mut self.attributes, &span.attributes, |kv| {
            kv.key == attr::RUN_ID
                || promoted(&kv.key)
                    .is_some_and(|(i, _)| kept[i] && found[i].is_some_and(|f| std::ptr::eq(f, kv)))
        });
        append_attrs(&mut self.resource_attributes, resource_attrs, |kv| {
            ResourceInfo::promotes(&kv.key)
        });
        self.events.append(span);
        self.links.append(span);
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.start_time.finish().with_timezone("UTC")),
            Arc::new(self.end_time.finish().with_timezone("UTC")),
            Arc::new(self.duration.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.service_name.finish()),
            Arc::new(self.service_version.finish()),
            Arc::new(self.environment.finish()),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
        ];
        columns.extend(self.promoted.into_iter().map(PromotedBuilder::finish));
        columns.push(Arc::new(self.attributes.finish()));
        columns.push(Arc::new(self.resource_attributes.finish()));
        let schema = schema::spans::schema();
        columns.push(
            self.events
                .finish(list_fields(&schema, schema::spans::col::EVENTS))?,
        );
        columns.push(
            self.links
                .finish(list_fields(&schema, schema::spans::col::LINKS))?,
        );
        RecordBatch::try_new(schema, columns)
    }
}

struct EventsBuilder {
    offsets: Vec<i32>,
    time: TimestampNanosecondBuilder,
    name: StringBuilder,
    attributes: AttrMapBuilder,
}

impl Default for EventsBuilder {
    fn default() -> Self {
        EventsBuilder {
            offsets: vec![0],
            time: TimestampNanosecondBuilder::new(),
            name: StringBuilder::new(),
            attributes: attr_map_builder(),
        }
    }
}

impl EventsBuilder {
    fn append(&mut self, span: &Span) {
        for event in &span.events {
            self.time
                .append_value(event.time_unix_nano.min(i64::MAX as u64) as i64);
            self.name.append_value(&event.name);
            append_attrs(&mut self.attributes, &event.attributes, |_| false);
        }
        let last = *self.offsets.last().expect("starts with 0");
        self.offsets.push(last + span.events.len() as i32);
    }

    fn finish(mut self, fields: Fields) -> Result<ArrayRef, ArrowError> {
        list_array(
            fields,
            vec![
                Arc::new(self.time.finish().with_timezone("UTC")),
                Arc::new(self.name.finish()),
                Arc::new(self.attributes.finish()),
            ],
            self.offsets,
        )
    }
}

struct LinksBuilder {
    offsets: Vec<i32>,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    attributes: AttrMapBuilder,
}

impl Default for LinksBuilder {
    fn default() -> Self {
        LinksBuilder {
            offsets: vec![0],
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            trace_state: StringBuilder::new(),
            attributes: attr_map_builder(),
        }
    }
}

impl LinksBuilder {
    fn append(&mut self, span: &Span) {
        let mut count = 0;
        for link in &span.links {
            // A link with malformed ids cannot be stored; it is left out rather
            // than failing the whole span.
            if link.trace_id.len() != 16 || link.span_id.len() != 8 {
                continue;
            }
            self.trace_id
                .append_value(&link.trace_id)
                .expect("checked length");
            self.span_id
                .append_value(&link.span_id)
                .expect("checked length");
            append_non_empty(&mut self.trace_state, &link.trace_state);
            append_attrs(&mut self.attributes, &link.attributes, |_| false);
            count += 1;
        }
        let last = *self.offsets.last().expect("starts with 0");
        self.offsets.push(last + count);
    }

    fn finish(mut self, fields: Fields) -> Result<ArrayRef, ArrowError> {
        list_array(
            fields,
            vec![
                Arc::new(self.trace_id.finish()),
                Arc::new(self.span_id.finish()),
                Arc::new(self.trace_state.finish()),
                Arc::new(self.attributes.finish()),
            ],
            self.offsets,
        )
    }
}

/// Rows of the `runs` table, from `loadlens.run` spans.
#[derive(Default)]
struct RunsBuilder {
    started_at: TimestampNanosecondBuilder,
    ended_at: TimestampNanosecondBuilder,
    scenario: StringBuilder,
    model: StringBuilder,
    shard: Int32Builder,
    shard_count: Int32Builder,
    config: StringBuilder,
    stages: StringBuilder,
    counts: [Int64Builder; 6],
    generator_version: StringBuilder,
    trace_id: Option<FixedSizeBinaryBuilder>,
}

const RUN_COUNTS: [&str; 6] = [
    attr::run::REQUESTS_SENT,
    attr::run::REQUESTS_OK,
    attr::run::REQUESTS_FAILED,
    attr::run::REQUESTS_DROPPED,
    attr::run::SPANS_EXPORTED,
    attr::run::SPANS_DROPPED,
];

impl RunsBuilder {
    fn append(&mut self, span: &Span) {
        let attrs = &span.attributes;
        let int = |key: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.as_ref())
                .and_then(as_i64)
        };
        self.started_at
            .append_value(span.start_time_unix_nano as i64);
        self.ended_at.append_value(span.end_time_unix_nano as i64);
        self.scenario.append_option(find_str(attrs, attr::SCENARIO));
        self.model.append_option(find_str(attrs, attr::run::MODEL));
        self.shard
            .append_option(int(attr::SHARD).and_then(|v| i32::try_from(v).ok()));
        self.shard_count
            .append_option(int(attr::run::SHARD_COUNT).and_then(|v| i32::try_from(v).ok()));
        self.config
            .append_option(find_str(attrs, attr::run::CONFIG));
        self.stages
            .append_option(find_str(attrs, attr::run::STAGES));
        for (builder, key) in self.counts.iter_mut().zip(RUN_COUNTS) {
            builder.append_option(int(key));
        }
        self.generator_version
            .append_option(find_str(attrs, attr::run::GENERATOR_VERSION));
        self.trace_id
            .get_or_insert_with(|| FixedSizeBinaryBuilder::new(16))
            .append_value(&span.trace_id)
            .expect("validated length");
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.started_at.finish().with_timezone("UTC")),
            Arc::new(self.ended_at.finish().with_timezone("UTC")),
            Arc::new(self.scenario.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.shard.finish()),
            Arc::new(self.shard_count.finish()),
            Arc::new(self.config.finish()),
            Arc::new(self.stages.finish()),
        ];
        columns.extend(
            self.counts
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.generator_version.finish()));
        columns.push(Arc::new(
            self.trace_id
                .unwrap_or_else(|| FixedSizeBinaryBuilder::new(16))
                .finish(),
        ));
        RecordBatch::try_new(schema::runs::schema(), columns)
    }
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "INTERNAL",
        2 => "SERVER",
        3 => "CLIENT",
        4 => "PRODUCER",
        5 => "CONSUMER",
        _ => "UNSPECIFIED",
    }
}

fn status_name(code: i32) -> &'static str {
    match code {
        1 => "OK",
        2 => "ERROR",
        _ => "UNSET",
    }
}
