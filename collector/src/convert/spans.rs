//! OTLP spans to rows of the `spans` table (and the run manifest to `runs`).

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, FixedSizeBinaryBuilder, Int32Builder, Int64Builder, StringBuilder,
    TimestampNanosecondBuilder,
};
use arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType, UInt32Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use schema::spans::{PROMOTED, Promoted};
use schema::{Table, attr};

use super::ids::Ids;
use super::keys;
use super::numbers::Numbers;
use super::repeated::RepeatedStrings;
use super::values::{
    Attr, AttrMapBuilder, ValueRef, append_attr_refs, attr_map_builder_with_capacity, find_str_ref,
};
use super::{Converted, EncodedError, Partitioned, append_non_empty, list_array, list_fields};

/// Converts one decoded export request. Spans with malformed ids are rejected
/// and counted.
pub fn convert(request: &ExportTraceServiceRequest) -> Result<Converted, ArrowError> {
    let mut rows = Rows::default();
    let mut span = SpanRef::default();
    for resource_spans in &request.resource_spans {
        let resource = ResourceRef::new(
            resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .map(Attr::from_kv)
                .collect(),
        );
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            let (spans, bytes) = scope_spans
                .spans
                .iter()
                .map(Message::encoded_len)
                .filter(|len| *len >= MIN_SPAN_BYTES)
                .fold((0, 0), |(n, total), len| (n + 1, total + len));
            rows.expect(spans, bytes);
            for decoded in &scope_spans.spans {
                span.fill_from(decoded);
                rows.add(&span, &resource, scope);
            }
        }
    }
    rows.finish()
}

/// Converts an encoded export request: straight from the protobuf bytes when
/// [`super::wire`] can, else decoded by prost first. Either way the rows are
/// the same; the error is prost's when the bytes are not a valid request.
pub fn convert_encoded(bytes: &[u8]) -> Result<Converted, EncodedError> {
    if let Some(converted) = super::wire::convert_traces(bytes) {
        return converted.map_err(EncodedError::Convert);
    }
    let request = ExportTraceServiceRequest::decode(bytes).map_err(EncodedError::Decode)?;
    convert(&request).map_err(EncodedError::Convert)
}

/// The property that makes the wire walk safe to use: whenever it gives rows
/// for `bytes`, prost decodes `bytes` and [`convert`] gives the same rows,
/// rejections and RED samples. Returns what differs, if anything, and whether
/// the walk handled the bytes itself. For tests and the fuzz targets.
pub fn wire_agrees_with_prost(bytes: &[u8]) -> Result<bool, String> {
    let Some(walked) = super::wire::convert_traces(bytes) else {
        return Ok(false);
    };
    let walked = walked.map_err(|e| format!("the walk could not build rows: {e}"))?;
    let request = ExportTraceServiceRequest::decode(bytes)
        .map_err(|e| format!("the walk gave rows but prost refuses the bytes: {e}"))?;
    let decoded = convert(&request).map_err(|e| format!("prost's rows fail: {e}"))?;
    if walked.batches.len() != decoded.batches.len() {
        return Err(format!(
            "partitions differ: walk {:?}, prost {:?}",
            walked.batches.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            decoded.batches.iter().map(|(k, _)| k).collect::<Vec<_>>()
        ));
    }
    for ((walk_key, walk), (key, batch)) in walked.batches.iter().zip(&decoded.batches) {
        if walk_key != key {
            return Err(format!(
                "partition {walk_key:?} from the walk, {key:?} from prost"
            ));
        }
        for (i, field) in batch.schema().fields().iter().enumerate() {
            if walk.num_rows() != batch.num_rows() || walk.column(i) != batch.column(i) {
                return Err(format!(
                    "{key:?}, column {}: walk {:?}, prost {:?}",
                    field.name(),
                    walk.column(i),
                    batch.column(i)
                ));
            }
        }
    }
    if (walked.rejected, &walked.first_error) != (decoded.rejected, &decoded.first_error) {
        return Err(format!(
            "rejections differ: walk {} {:?}, prost {} {:?}",
            walked.rejected, walked.first_error, decoded.rejected, decoded.first_error
        ));
    }
    if walked.red != decoded.red {
        return Err("RED samples differ".into());
    }
    Ok(true)
}

/// One span, borrowed from a decoded request or straight from the bytes of
/// one. Converters reuse one from span to span, so its lists keep their room.
#[derive(Debug, Default)]
pub(crate) struct SpanRef<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub trace_state: &'a str,
    pub flags: u32,
    pub name: &'a str,
    pub kind: i32,
    pub start_time: u64,
    pub end_time: u64,
    pub status_code: i32,
    pub status_message: &'a str,
    pub attributes: Vec<Attr<'a>>,
    pub events: Vec<EventRef<'a>>,
    pub links: Vec<LinkRef<'a>>,
}

#[derive(Debug, Default)]
pub(crate) struct EventRef<'a> {
    pub time: u64,
    pub name: &'a str,
    pub attributes: Vec<Attr<'a>>,
}

#[derive(Debug, Default)]
pub(crate) struct LinkRef<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a str,
    pub attributes: Vec<Attr<'a>>,
}

impl<'a> SpanRef<'a> {
    /// Back to an empty span, keeping the attribute list's room.
    pub fn clear(&mut self) {
        let mut attributes = std::mem::take(&mut self.attributes);
        attributes.clear();
        *self = SpanRef {
            attributes,
            ..SpanRef::default()
        };
    }

    fn fill_from(&mut self, span: &'a Span) {
        self.clear();
        self.trace_id = &span.trace_id;
        self.span_id = &span.span_id;
        self.parent_span_id = &span.parent_span_id;
        self.trace_state = &span.trace_state;
        self.flags = span.flags;
        self.name = &span.name;
        self.kind = span.kind;
        self.start_time = span.start_time_unix_nano;
        self.end_time = span.end_time_unix_nano;
        if let Some(status) = &span.status {
            self.status_code = status.code;
            self.status_message = &status.message;
        }
        self.attributes
            .extend(span.attributes.iter().map(Attr::from_kv));
        self.events.extend(span.events.iter().map(|e| EventRef {
            time: e.time_unix_nano,
            name: &e.name,
            attributes: e.attributes.iter().map(Attr::from_kv).collect(),
        }));
        self.links.extend(span.links.iter().map(|l| LinkRef {
            trace_id: &l.trace_id,
            span_id: &l.span_id,
            trace_state: &l.trace_state,
            attributes: l.attributes.iter().map(Attr::from_kv).collect(),
        }));
    }
}

/// A resource's attributes: the ones that become columns, and the others,
/// which go to each of its spans' resource attribute map.
pub(crate) struct ResourceRef<'a> {
    others: Vec<Attr<'a>>,
    info: ResourceInfo<'a>,
    /// Bytes of its values each of its spans' rows holds.
    row_bytes: usize,
}

impl<'a> ResourceRef<'a> {
    pub fn new(mut attributes: Vec<Attr<'a>>) -> Self {
        let info = ResourceInfo::new(&attributes);
        attributes.retain(|attr| !ResourceInfo::promotes(attr.key));
        let strings = [info.service_name, info.service_version, info.environment];
        let row_bytes = strings.iter().flatten().map(|s| s.len()).sum::<usize>()
            + attributes
                .iter()
                .map(|attr| attr.key.len() + attr.value.map_or(0, ValueRef::text_len))
                .sum::<usize>();
        ResourceRef {
            others: attributes,
            info,
            row_bytes,
        }
    }
}

/// The most bytes of resource and scope values one request's rows may hold
/// in all. Each span's row holds a copy of its resource's and scope's
/// values, so a long value over many small spans multiplies: a 1 MiB
/// service name over 3,000 spans, a request under the 4 MiB gRPC limit,
/// would make a column of 3 GiB, past what Arrow's offsets can address.
/// Spans past the limit are rejected, and the answer says why.
pub const MAX_REPEATED_BYTES: usize = 64 << 20;

/// The rows of one request, by table and partition, as spans are added.
#[derive(Default)]
pub(crate) struct Rows {
    out: Converted,
    spans: Partitioned<SpansBuilder>,
    runs: Partitioned<RunsBuilder>,
    /// Room the request may still give the builders of a new partition:
    /// the spans announced by [`Rows::expect`], and their size for string
    /// values. A partition's builders take what is left when
    /// they are made, so however many partitions a request holds, the room
    /// made for it in all stays within these.
    room_rows: usize,
    room_string_bytes: usize,
    /// Bytes of resource and scope values the rows hold so far.
    repeated_bytes: usize,
}

/// The fewest bytes an encoded span can take and still be stored: a
/// trace id and a span id, each with its field key and length. Shorter
/// spans are rejected, and are not counted as room to make.
pub(crate) const MIN_SPAN_BYTES: usize = 18 + 10;

/// The most partitions (day, run id) one request's spans may fall in.
/// An exporter's batch holds one run, or two across midnight; each
/// partition costs its builders some kilobytes whatever it holds, so a
/// request of one span per run id would weigh a hundred times its size.
/// Spans past the limit are rejected, and the answer says why.
pub const MAX_PARTITIONS: usize = 64;

/// The most rows one request makes room for: more than exporters put in a
/// batch (512 by the OpenTelemetry SDKs, 2,048 by loadlens), and little
/// memory should its spans fail their checks. A larger request's builders
/// grow past it.
const MAX_ROOM_ROWS: usize = 4096;

impl Rows {
    /// Announces `spans` more spans of `bytes` encoded bytes in all, so that
    /// builders are made with room for them instead of growing (and
    /// copying) as rows arrive. Count only spans of [`MIN_SPAN_BYTES`] or
    /// more: the room is made before any span is checked, and a request of
    /// empty spans must not make room for rows it never adds.
    pub fn expect(&mut self, spans: usize, bytes: usize) {
        self.room_rows = self.room_rows.saturating_add(spans).min(MAX_ROOM_ROWS);
        self.room_string_bytes = self.room_string_bytes.saturating_add(bytes);
    }

    /// The room for a new partition's builders, taken from the request's.
    fn take_room(&mut self) -> Room {
        let rows = std::mem::take(&mut self.room_rows);
        let string_bytes = std::mem::take(&mut self.room_string_bytes);
        Room {
            rows: rows.max(1),
            string_bytes_per_column: (string_bytes / STRING_COLUMNS).min(rows * STRING_ROOM),
        }
    }

    /// Adds one span of `resource` and `scope` (name, version), or counts it
    /// as rejected.
    pub fn add(&mut self, span: &SpanRef<'_>, resource: &ResourceRef<'_>, scope: (&str, &str)) {
        if let Err(reason) = validate(span) {
            self.out.reject(reason);
            return;
        }
        let repeated = resource.row_bytes + scope.0.len() + scope.1.len();
        if self.repeated_bytes + repeated > MAX_REPEATED_BYTES {
            self.out.reject(format!(
                "span '{}': the request's resource and scope attributes, copied into each span's row, pass {} MiB; send fewer spans per request, or shorter resource attributes",
                span.name,
                MAX_REPEATED_BYTES >> 20
            ));
            return;
        }
        self.repeated_bytes += repeated;
        let index = keys::Index::of(&span.attributes);
        let run_id = index
            .first(keys::RUN_ID)
            .and_then(|at| span.attributes[at].value?.as_str())
            .or(resource.info.run_id);
        let start = span.start_time as i64;
        let is_run = span.name == attr::RUN_SPAN_NAME && run_id.is_some();
        let found = if is_run {
            self.runs.position(start, run_id)
        } else {
            self.spans.position(start, run_id)
        };
        if found.is_err() && self.spans.len() + self.runs.len() >= MAX_PARTITIONS {
            self.out.reject(format!(
                "span '{}': the request's spans fall in more than {MAX_PARTITIONS} partitions (day, run id); send them in separate requests",
                span.name
            ));
            return;
        }
        self.out.red.add_span(
            &span.attributes,
            &index,
            span.start_time,
            span.end_time,
            resource.info.run_id,
        );
        match (is_run, found) {
            (true, Ok(at)) => self.runs.at(at).append(span),
            (true, Err(day)) => self
                .runs
                .push(day, run_id, RunsBuilder::default())
                .append(span),
            (false, Ok(at)) => self.spans.at(at).append(span, &index, resource, scope),
            (false, Err(day)) => {
                let room = self.take_room();
                self.spans
                    .push(day, run_id, SpansBuilder::with_capacity(room))
                    .append(span, &index, resource, scope);
            }
        }
    }

    pub fn finish(self) -> Result<Converted, ArrowError> {
        let mut out = self.out;
        self.spans
            .finish(Table::Spans, &mut out, SpansBuilder::finish)?;
        self.runs
            .finish(Table::Runs, &mut out, RunsBuilder::finish)?;
        Ok(out)
    }
}

fn validate(span: &SpanRef<'_>) -> Result<(), String> {
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
    if span.end_time < span.start_time {
        return Err(format!(
            "span '{}': end_time is before start_time",
            span.name
        ));
    }
    if span.start_time > i64::MAX as u64 || span.end_time > i64::MAX as u64 {
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
    fn new(attrs: &[Attr<'a>]) -> Self {
        ResourceInfo {
            service_name: find_str_ref(attrs, attr::SERVICE_NAME),
            service_version: find_str_ref(attrs, attr::SERVICE_VERSION),
            environment: find_str_ref(attrs, attr::DEPLOYMENT_ENVIRONMENT),
            run_id: find_str_ref(attrs, attr::RUN_ID),
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

/// One promoted column: its builder and the rows it holds. Most spans
/// carry a few of the promoted keys, so a column's builder is made at the
/// first row that has its key; the rows before, and later rows without it,
/// are filled in as NULL ([`PromotedColumn::fill_to`]). Counting the rows
/// here, not asking the builder, spares a dispatch on the column's type for
/// each attribute. A column no row fills is NULL throughout.
struct PromotedColumn {
    rows: usize,
    builder: PromotedBuilder,
}

impl PromotedColumn {
    /// NULLs up to `rows` rows: for the rows that lacked the key.
    #[inline]
    fn fill_to(&mut self, rows: usize) {
        if self.rows < rows {
            self.builder.append_nulls(rows - self.rows);
            self.rows = rows;
        }
    }

    /// Appends the value as the next row; false if it does not fit the
    /// column's type ([`PromotedBuilder::append`]).
    #[inline]
    fn append(&mut self, value: Option<ValueRef<'_>>) -> bool {
        self.rows += 1;
        self.builder.append(value)
    }
}

/// A promoted column's builder, by the column's type. String values are
/// counted while they repeat ([`RepeatedStrings`]): a request's spans
/// mostly share their method, server address and step.
enum PromotedBuilder {
    Utf8(RepeatedStrings),
    Int64(Numbers<Int64Type>),
    Int32(Numbers<Int32Type>),
    Timestamp(Numbers<TimestampNanosecondType>),
}

impl PromotedBuilder {
    fn with_capacity(ty: Promoted, room: Room) -> Self {
        let rows = room.rows;
        match ty {
            Promoted::Utf8 => {
                PromotedBuilder::Utf8(RepeatedStrings::new(rows, room.string_bytes_per_column))
            }
            Promoted::Int64 => PromotedBuilder::Int64(Numbers::with_capacity(rows)),
            Promoted::Int32 => PromotedBuilder::Int32(Numbers::with_capacity(rows)),
            Promoted::Timestamp => PromotedBuilder::Timestamp(Numbers::with_capacity(rows)),
        }
    }

    /// Appends the value; false if it does not fit the column's type (then NULL is
    /// appended and the attribute stays in the map instead).
    fn append(&mut self, value: Option<ValueRef<'_>>) -> bool {
        match self {
            PromotedBuilder::Utf8(b) => {
                match value {
                    Some(ValueRef::Str(s)) => b.append_value(s),
                    Some(v) => v.append_to(b.builder()),
                    None => b.append_nulls(1),
                }
                true
            }
            PromotedBuilder::Int64(b) => {
                let parsed = value.and_then(ValueRef::as_i64);
                b.append_option(parsed);
                value.is_none() || parsed.is_some()
            }
            PromotedBuilder::Int32(b) => {
                let parsed = value
                    .and_then(ValueRef::as_i64)
                    .and_then(|v| i32::try_from(v).ok());
                b.append_option(parsed);
                value.is_none() || parsed.is_some()
            }
            PromotedBuilder::Timestamp(b) => {
                let parsed = value.and_then(ValueRef::as_i64);
                b.append_option(parsed);
                value.is_none() || parsed.is_some()
            }
        }
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            PromotedBuilder::Utf8(b) => b.append_nulls(n),
            PromotedBuilder::Int64(b) => b.append_nulls(n),
            PromotedBuilder::Int32(b) => b.append_nulls(n),
            PromotedBuilder::Timestamp(b) => b.append_nulls(n),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            PromotedBuilder::Utf8(b) => b.finish(),
            PromotedBuilder::Int64(b) => Arc::new(b.finish()),
            PromotedBuilder::Int32(b) => Arc::new(b.finish()),
            PromotedBuilder::Timestamp(b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }
}

/// A string column most spans leave empty (trace state, versions, the
/// environment, status messages): no builder until a row has a value, and
/// then one with NULLs for the rows before. A column no row fills is the
/// shared NULL column of [`null_column`]. Appending a NULL to a builder
/// costs an offset and a validity bit, for five such columns a span.
struct SparseStrings {
    builder: Option<StringBuilder>,
    /// The rows the partition's builders were made with room for.
    room_rows: usize,
}

impl SparseStrings {
    fn new(room_rows: usize) -> Self {
        SparseStrings {
            builder: None,
            room_rows,
        }
    }

    /// Appends `value` to the column of `rows` rows so far.
    #[inline]
    fn append_option(&mut self, value: Option<&str>, rows: usize) {
        // The usual case, in line: no value, and none before. Out of line
        // as a whole, this took some 22 instructions a call, five calls a
        // span of the collector's bench (BENCHMARKS.md).
        if value.is_some() || self.builder.is_some() {
            self.append_to_builder(value, rows);
        }
    }

    /// [`Self::append_option`] where there is a value or a builder.
    #[inline(never)]
    fn append_to_builder(&mut self, value: Option<&str>, rows: usize) {
        if let Some(builder) = &mut self.builder {
            builder.append_option(value);
        } else if let Some(value) = value {
            let mut builder =
                StringBuilder::with_capacity(self.room_rows.max(rows + 1), value.len() * 8);
            builder.append_nulls(rows);
            builder.append_value(value);
            self.builder = Some(builder);
        }
    }

    /// Appends `value`, an empty one as NULL.
    #[inline]
    fn append_non_empty(&mut self, value: &str, rows: usize) {
        self.append_option((!value.is_empty()).then_some(value), rows);
    }

    fn finish(self, rows: usize) -> ArrayRef {
        match self.builder {
            Some(mut builder) => {
                builder.append_nulls(rows - builder.len());
                Arc::new(builder.finish())
            }
            None => null_column(Promoted::Utf8, rows),
        }
    }
}

struct SpansBuilder {
    start_time: Numbers<TimestampNanosecondType>,
    end_time: Numbers<TimestampNanosecondType>,
    duration: Numbers<Int64Type>,
    trace_id: Ids<16>,
    span_id: Ids<8>,
    parent_span_id: Ids<8>,
    trace_state: SparseStrings,
    flags: Numbers<UInt32Type>,
    service_name: RepeatedStrings,
    service_version: SparseStrings,
    environment: SparseStrings,
    scope_name: RepeatedStrings,
    scope_version: SparseStrings,
    name: StringBuilder,
    kind: RepeatedStrings,
    status_code: RepeatedStrings,
    status_message: SparseStrings,
    /// By slot; `None` until a row has the key.
    promoted: Vec<Option<PromotedColumn>>,
    attributes: Sparse<AttrMapBuilder>,
    resource_attributes: Sparse<AttrMapBuilder>,
    events: Sparse<ListBuilder<Events>>,
    links: Sparse<ListBuilder<Links>>,
    rows: usize,
    /// The room the builders were made with.
    room: Room,
}

/// Bytes per row a string column is made with room for: most names,
/// routes and addresses fit, and a longer column grows once or twice.
const STRING_ROOM: usize = 16;

/// String columns made with room for their values: the span's five that
/// most spans fill (name, kind, status, service and scope name) and the
/// promoted ones. Together they share the spans' encoded size, so their
/// room is never more than the request; the attribute maps and the sparse
/// columns grow from nothing. All but the name take their room only if
/// their values differ from row to row ([`RepeatedStrings`]).
const STRING_COLUMNS: usize = 5 + promoted_strings();

const fn promoted_strings() -> usize {
    let (mut i, mut n) = (0, 0);
    while i < PROMOTED.len() {
        if matches!(PROMOTED[i].2, Promoted::Utf8) {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The room a partition's builders are made with.
#[derive(Debug, Clone, Copy)]
struct Room {
    rows: usize,
    /// Bytes of values each string column with room gets.
    string_bytes_per_column: usize,
}

impl SpansBuilder {
    /// Builders with room for `room.rows` rows. Columns most spans leave
    /// empty (trace state, versions, status message; attribute maps,
    /// events and links) start with none and allocate at their first
    /// value; columns whose rows repeat a value ([`RepeatedStrings`]) at
    /// the first row that differs.
    fn with_capacity(room: Room) -> Self {
        let rows = room.rows;
        let strings = || StringBuilder::with_capacity(rows, room.string_bytes_per_column);
        let repeated = || RepeatedStrings::new(rows, room.string_bytes_per_column);
        SpansBuilder {
            start_time: Numbers::with_capacity(rows),
            end_time: Numbers::with_capacity(rows),
            duration: Numbers::with_capacity(rows),
            trace_id: Ids::with_capacity(rows),
            span_id: Ids::with_capacity(rows),
            parent_span_id: Ids::with_capacity(rows),
            trace_state: SparseStrings::new(rows),
            flags: Numbers::with_capacity(rows),
            service_name: repeated(),
            service_version: SparseStrings::new(rows),
            environment: SparseStrings::new(rows),
            scope_name: repeated(),
            scope_version: SparseStrings::new(rows),
            name: strings(),
            kind: repeated(),
            status_code: repeated(),
            status_message: SparseStrings::new(rows),
            promoted: PROMOTED.iter().map(|_| None).collect(),
            attributes: Sparse::new(rows),
            resource_attributes: Sparse::new(rows),
            events: Sparse::new(rows),
            links: Sparse::new(rows),
            rows: 0,
            room,
        }
    }

    fn append(
        &mut self,
        span: &SpanRef<'_>,
        index: &keys::Index,
        resource: &ResourceRef<'_>,
        scope: (&str, &str),
    ) {
        let start = span.start_time as i64;
        let end = span.end_time as i64;
        self.start_time.append_value(start);
        self.end_time.append_value(end);
        self.duration.append_value(end - start);
        // Lengths validated (`validate`).
        self.trace_id.append_value(span.trace_id);
        self.span_id.append_value(span.span_id);
        if span.parent_span_id.is_empty() {
            self.parent_span_id.append_null();
        } else {
            self.parent_span_id.append_value(span.parent_span_id);
        }
        self.trace_state
            .append_non_empty(span.trace_state, self.rows);
        self.flags.append_value(span.flags);
        let info = &resource.info;
        self.service_name.append_option(info.service_name);
        self.service_version
            .append_option(info.service_version, self.rows);
        self.environment.append_option(info.environment, self.rows);
        self.scope_name
            .append_option((!scope.0.is_empty()).then_some(scope.0));
        self.scope_version.append_non_empty(scope.1, self.rows);
        self.name.append_value(span.name);
        self.kind.append_value(kind_name(span.kind));
        self.status_code.append_value(status_name(span.status_code));
        self.status_message
            .append_non_empty(span.status_message, self.rows);

        // Promoted attributes: the first occurrence of each key fills its
        // column, and leaves the map if its value fits the column's type.
        let promoted = index.present() & !(1 << keys::RUN_ID);
        let mut moved = 0u64;
        let mut slots = promoted;
        while slots != 0 {
            let slot = slots.trailing_zeros() as usize;
            slots &= slots - 1;
            let at = index.first(slot as keys::Slot).expect("a slot present");
            let room = self.room;
            let column = self.promoted[slot].get_or_insert_with(|| PromotedColumn {
                rows: 0,
                builder: PromotedBuilder::with_capacity(PROMOTED[slot].2, room),
            });
            column.fill_to(self.rows);
            if column.append(span.attributes[at].value) {
                moved |= 1 << slot;
            }
        }
        let rows = self.rows;
        // Unless every attribute went to a column (or is the run id).
        let unmoved = moved != promoted || index.repeated() || index.has_unknown();
        self.attributes.append(rows, unmoved, |map| {
            append_attr_refs(map, &span.attributes, |at, attr| match attr.slot {
                Some(keys::RUN_ID) => true,
                Some(slot) => moved & (1 << slot) != 0 && index.first(slot) == Some(at),
                None => false,
            })
        });
        self.resource_attributes
            .append(rows, !resource.others.is_empty(), |map| {
                append_attr_refs(map, &resource.others, |_, _| false)
            });
        self.events
            .append(rows, !span.events.is_empty(), |list| list.append(span));
        self.links
            .append(rows, !span.links.is_empty(), |list| list.append(span));
        self.rows += 1;
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let rows = self.rows;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.start_time.finish().with_timezone("UTC")),
            Arc::new(self.end_time.finish().with_timezone("UTC")),
            Arc::new(self.duration.finish()),
            Arc::new(self.trace_id.finish()?),
            Arc::new(self.span_id.finish()?),
            Arc::new(self.parent_span_id.finish()?),
            self.trace_state.finish(rows),
            Arc::new(self.flags.finish()),
            self.service_name.finish(),
            self.service_version.finish(rows),
            self.environment.finish(rows),
            self.scope_name.finish(),
            self.scope_version.finish(rows),
            Arc::new(self.name.finish()),
            self.kind.finish(),
            self.status_code.finish(),
            self.status_message.finish(rows),
        ];
        columns.extend(
            self.promoted
                .into_iter()
                .zip(PROMOTED)
                .map(|(column, (_, _, ty))| match column {
                    Some(mut column) => {
                        column.fill_to(rows);
                        column.builder.finish()
                    }
                    None => null_column(*ty, rows),
                }),
        );
        columns.push(self.attributes.finish(rows)?);
        columns.push(self.resource_attributes.finish(rows)?);
        columns.push(self.events.finish(rows)?);
        columns.push(self.links.finish(rows)?);
        RecordBatch::try_new(schema::spans::schema(), columns)
    }
}

/// A column of `rows` NULLs of a promoted column's type, for promoted and
/// sparse columns no row fills. Most spans leave most promoted keys out,
/// and every request's batch needs a column for each; made afresh,
/// their zeroed buffers were a sixth of converting a request, mostly the
/// kernel clearing new pages. So each thread keeps one of each type, the
/// last length asked for, and batches share it.
fn null_column(ty: Promoted, rows: usize) -> ArrayRef {
    kept_column(Kept::Nulls(ty), rows, || {
        arrow::array::new_null_array(&ty.data_type(), rows)
    })
}

/// What a column [`kept_column`] keeps holds in every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// NULLs of a promoted column's type.
    Nulls(Promoted),
    /// Empty rows of a [`Nested`] column's type.
    Empty(&'static str),
}

/// The column of `rows` rows of `kept`, made by `make` unless this thread
/// keeps it: one column of each kind, the last length asked for, which
/// batches share.
fn kept_column(kept: Kept, rows: usize, make: impl FnOnce() -> ArrayRef) -> ArrayRef {
    thread_local! {
        static KEPT: std::cell::RefCell<Vec<(Kept, ArrayRef)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    KEPT.with_borrow_mut(|columns| {
        if let Some((_, column)) = columns
            .iter()
            .find(|(k, column)| *k == kept && column.len() == rows)
        {
            return Arc::clone(column);
        }
        let column = make();
        columns.retain(|(k, _)| *k != kept);
        columns.push((kept, Arc::clone(&column)));
        column
    })
}

/// A map or list column most spans leave empty: the attributes that did
/// not go to columns, the resource's other attributes, events, links. No
/// builder until a row has an entry, and then one with empty rows for the
/// rows before; a column whose rows are all empty is a shared one
/// ([`empty_column`]). Building and checking a map or list array of empty
/// rows for every request took about 2% of the collector's CPU in its
/// bench (BENCHMARKS.md).
struct Sparse<B> {
    builder: Option<B>,
    /// The rows the partition's builders were made with room for.
    room_rows: usize,
}

/// A builder of one of the [`Sparse`] columns.
trait Nested: Sized {
    /// Names the column's type, for [`empty_column`]'s cache: columns of
    /// the same type share a name.
    const TYPE: &'static str;
    /// A builder with room for `rows` rows.
    fn with_rows(rows: usize) -> Self;
    /// A builder with room for `rows` rows and no entries, for a column
    /// kept to share ([`empty_column`]).
    fn for_empty_rows(rows: usize) -> Self {
        Self::with_rows(rows)
    }
    fn append_empty(&mut self);
    fn rows(&self) -> usize;
    fn finish_column(self) -> Result<ArrayRef, ArrowError>;
}

impl<B: Nested> Sparse<B> {
    fn new(room_rows: usize) -> Self {
        Sparse {
            builder: None,
            room_rows,
        }
    }

    /// Adds a row to the column of `rows` rows so far: `append` writes it
    /// when it `may_have_entries`, an empty row otherwise. The builder is
    /// made at the first row written, with empty rows for the rows before.
    #[inline]
    fn append(&mut self, rows: usize, may_have_entries: bool, append: impl FnOnce(&mut B)) {
        match (&mut self.builder, may_have_entries) {
            (None, false) => {}
            (Some(builder), false) => builder.append_empty(),
            (_, true) => {
                let room_rows = self.room_rows;
                let builder = self.builder.get_or_insert_with(|| {
                    let mut builder = B::with_rows(room_rows.max(rows + 1));
                    (0..rows).for_each(|_| builder.append_empty());
                    builder
                });
                append(builder);
            }
        }
    }

    fn finish(self, rows: usize) -> Result<ArrayRef, ArrowError> {
        match self.builder {
            Some(builder) => {
                debug_assert_eq!(builder.rows(), rows, "a row each");
                builder.finish_column()
            }
            None => Ok(empty_column::<B>(rows)),
        }
    }
}

/// A column of `rows` empty rows of `B`'s type, no NULLs, kept and shared
/// as NULL columns are ([`kept_column`]).
fn empty_column<B: Nested>(rows: usize) -> ArrayRef {
    kept_column(Kept::Empty(B::TYPE), rows, || {
        let mut builder = B::for_empty_rows(rows);
        (0..rows).for_each(|_| builder.append_empty());
        builder
            .finish_column()
            .expect("empty rows make a valid column")
    })
}

impl Nested for AttrMapBuilder {
    const TYPE: &'static str = "attribute map";

    /// Room for an entry a row, as the attributes a span has besides the
    /// promoted ones usually are few; their bytes grow from nothing.
    fn with_rows(rows: usize) -> Self {
        attr_map_builder_with_capacity(rows, rows, 0)
    }

    fn for_empty_rows(rows: usize) -> Self {
        attr_map_builder_with_capacity(rows, 0, 0)
    }

    fn append_empty(&mut self) {
        self.append(true).expect("no entries to pair");
    }

    fn rows(&self) -> usize {
        self.len()
    }

    fn finish_column(mut self) -> Result<ArrayRef, ArrowError> {
        Ok(Arc::new(self.finish()))
    }
}

/// A list column of structs, a span's entries a row: its events or links.
struct ListBuilder<E> {
    /// Starts with 0; a row ends at each later one.
    offsets: Vec<i32>,
    entries: E,
}

/// The struct columns of a [`ListBuilder`]'s entries.
trait ListEntries {
    /// The list column's name in the spans table.
    const COLUMN: &'static str;
    /// Builders with no room: most spans have no entries.
    fn empty() -> Self;
    /// Appends `span`'s entries; returns how many.
    fn append(&mut self, span: &SpanRef<'_>) -> i32;
    /// The struct's child columns, in the schema's order.
    fn finish(self) -> Vec<ArrayRef>;
}

impl<E: ListEntries> ListBuilder<E> {
    fn append(&mut self, span: &SpanRef<'_>) {
        let entries = self.entries.append(span);
        self.end_row(entries);
    }

    fn end_row(&mut self, entries: i32) {
        let last = *self.offsets.last().expect("starts with 0");
        self.offsets.push(last + entries);
    }
}

impl<E: ListEntries> Nested for ListBuilder<E> {
    const TYPE: &'static str = E::COLUMN;

    /// Room for the list offsets of `rows` spans; none for the entries.
    fn with_rows(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        ListBuilder {
            offsets,
            entries: E::empty(),
        }
    }

    fn append_empty(&mut self) {
        self.end_row(0);
    }

    fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    fn finish_column(self) -> Result<ArrayRef, ArrowError> {
        list_array(
            list_fields(&schema::spans::schema(), E::COLUMN),
            self.entries.finish(),
            self.offsets,
        )
    }
}

struct Events {
    time: TimestampNanosecondBuilder,
    name: StringBuilder,
    attributes: AttrMapBuilder,
}

impl ListEntries for Events {
    const COLUMN: &'static str = schema::spans::col::EVENTS;

    fn empty() -> Self {
        Events {
            time: TimestampNanosecondBuilder::with_capacity(0),
            name: StringBuilder::with_capacity(0, 0),
            attributes: attr_map_builder_with_capacity(0, 0, 0),
        }
    }

    fn append(&mut self, span: &SpanRef<'_>) -> i32 {
        for event in &span.events {
            self.time
                .append_value(event.time.min(i64::MAX as u64) as i64);
            self.name.append_value(event.name);
            append_attr_refs(&mut self.attributes, &event.attributes, |_, _| false);
        }
        span.events.len() as i32
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.time.finish().with_timezone("UTC")),
            Arc::new(self.name.finish()),
            Arc::new(self.attributes.finish()),
        ]
    }
}

struct Links {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    attributes: AttrMapBuilder,
}

impl ListEntries for Links {
    const COLUMN: &'static str = schema::spans::col::LINKS;

    fn empty() -> Self {
        Links {
            trace_id: FixedSizeBinaryBuilder::with_capacity(0, 16),
            span_id: FixedSizeBinaryBuilder::with_capacity(0, 8),
            trace_state: StringBuilder::with_capacity(0, 0),
            attributes: attr_map_builder_with_capacity(0, 0, 0),
        }
    }

    fn append(&mut self, span: &SpanRef<'_>) -> i32 {
        let mut count = 0;
        for link in &span.links {
            // A link with malformed ids cannot be stored; it is left out rather
            // than failing the whole span.
            if link.trace_id.len() != 16 || link.span_id.len() != 8 {
                continue;
            }
            self.trace_id
                .append_value(link.trace_id)
                .expect("checked length");
            self.span_id
                .append_value(link.span_id)
                .expect("checked length");
            append_non_empty(&mut self.trace_state, link.trace_state);
            append_attr_refs(&mut self.attributes, &link.attributes, |_, _| false);
            count += 1;
        }
        count
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.attributes.finish()),
        ]
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
    fn append(&mut self, span: &SpanRef<'_>) {
        let attrs = &span.attributes;
        let int = |key: &str| {
            attrs
                .iter()
                .find(|a| a.key == key)
                .and_then(|a| a.value?.as_i64())
        };
        self.started_at.append_value(span.start_time as i64);
        self.ended_at.append_value(span.end_time as i64);
        self.scenario
            .append_option(find_str_ref(attrs, attr::SCENARIO));
        self.model
            .append_option(find_str_ref(attrs, attr::run::MODEL));
        self.shard
            .append_option(int(attr::SHARD).and_then(|v| i32::try_from(v).ok()));
        self.shard_count
            .append_option(int(attr::run::SHARD_COUNT).and_then(|v| i32::try_from(v).ok()));
        self.config
            .append_option(find_str_ref(attrs, attr::run::CONFIG));
        self.stages
            .append_option(find_str_ref(attrs, attr::run::STAGES));
        for (builder, key) in self.counts.iter_mut().zip(RUN_COUNTS) {
            builder.append_option(int(key));
        }
        self.generator_version
            .append_option(find_str_ref(attrs, attr::run::GENERATOR_VERSION));
        self.trace_id
            .get_or_insert_with(|| FixedSizeBinaryBuilder::new(16))
            .append_value(span.trace_id)
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

/// One request of `spans`, under an empty resource and scope: for tests,
/// benches and examples that build requests.
pub fn request_of(spans: Vec<Span>) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, MapArray};
    use arrow::datatypes::Int32Type;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use schema::spans::col;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn text(s: &str) -> Value {
        Value::StringValue(s.into())
    }

    /// The request converted from the decoded structs and from its bytes;
    /// the two must agree.
    fn both_paths(request: &ExportTraceServiceRequest) -> [Converted; 2] {
        [
            convert(request).unwrap(),
            convert_encoded(&request.encode_to_vec()).unwrap(),
        ]
    }

    /// The attribute map of row `row` as (key, value) pairs.
    fn map_of(batch: &RecordBatch, row: usize) -> Vec<(String, String)> {
        let map: &MapArray = batch
            .column_by_name(col::ATTRIBUTES)
            .unwrap()
            .as_map_opt()
            .unwrap();
        let entries = map.value(row);
        let keys = entries.column(0).as_string::<i32>();
        let values = entries.column(1).as_string::<i32>();
        (0..entries.len())
            .map(|i| (keys.value(i).to_string(), values.value(i).to_string()))
            .collect()
    }

    #[test]
    fn promoted_columns_fill_from_the_rows_that_have_their_key() {
        let rows = [
            vec![kv("custom", text("a"))],
            vec![kv(attr::HTTP_ROUTE, text("/x")), kv("custom", text("b"))],
            vec![kv(attr::HTTP_RESPONSE_STATUS_CODE, text("abc"))],
            vec![
                kv(attr::HTTP_ROUTE, text("/y")),
                kv(attr::HTTP_ROUTE, text("/z")),
            ],
            vec![
                kv(attr::HTTP_RESPONSE_STATUS_CODE, Value::IntValue(200)),
                kv(attr::HTTP_ROUTE, text("/w")),
            ],
        ];
        let spans = rows
            .into_iter()
            .enumerate()
            .map(|(i, attributes)| Span {
                trace_id: vec![1; 16],
                span_id: vec![i as u8 + 1; 8],
                name: "GET".into(),
                start_time_unix_nano: 1_000 + i as u64,
                end_time_unix_nano: 2_000,
                attributes,
                ..Default::default()
            })
            .collect();
        let request = request_of(spans);
        for converted in both_paths(&request) {
            let [(_, batch)] = &converted.batches[..] else {
                panic!("one partition: {:?}", converted.batches);
            };
            let route = batch.column_by_name(col::HTTP_ROUTE).unwrap();
            let route: Vec<_> = route.as_string::<i32>().iter().collect();
            assert_eq!(route, [None, Some("/x"), None, Some("/y"), Some("/w")]);

            // A value that does not fit the column stays in the map.
            let status = batch
                .column_by_name(col::HTTP_RESPONSE_STATUS_CODE)
                .unwrap();
            assert_eq!(status.null_count(), 4);
            assert_eq!(status.as_primitive::<Int32Type>().value(4), 200);
            assert_eq!(
                map_of(batch, 2),
                [("http.response.status_code".into(), "abc".into())]
            );
            // Only the first of a repeated key moves to the column.
            assert_eq!(map_of(batch, 3), [("http.route".into(), "/z".into())]);
            assert_eq!(map_of(batch, 1), [("custom".into(), "b".into())]);
            assert_eq!(map_of(batch, 0), [("custom".into(), "a".into())]);
            // Every attribute in a column: the map is empty, not NULL.
            assert_eq!(map_of(batch, 4), []);
            assert!(batch.column_by_name(col::ATTRIBUTES).unwrap().is_valid(4));

            // Columns no row fills are NULL, of the schema's type (the
            // batch was built against it).
            for name in [col::RPC_SYSTEM, col::INTENDED_START, col::SHARD] {
                let column = batch.column_by_name(name).unwrap();
                assert_eq!((column.len(), column.null_count()), (5, 5), "{name}");
            }
        }
    }

    #[test]
    fn sparse_string_columns_hold_their_few_values_in_place() {
        use opentelemetry_proto::tonic::trace::v1::Status;
        let span = |i: u8, trace_state: &str, message: &str| Span {
            trace_id: vec![1; 16],
            span_id: vec![i + 1; 8],
            trace_state: trace_state.into(),
            name: "GET".into(),
            start_time_unix_nano: 1_000 + u64::from(i),
            end_time_unix_nano: 2_000,
            status: Some(Status {
                message: message.into(),
                code: 2,
            }),
            ..Default::default()
        };
        let request = request_of(vec![
            span(0, "", ""),
            span(1, "", "timed out"),
            span(2, "k=v", ""),
            span(3, "", ""),
        ]);
        for converted in both_paths(&request) {
            let [(_, batch)] = &converted.batches[..] else {
                panic!("one partition: {:?}", converted.batches);
            };
            let strings = |name: &str| -> Vec<Option<String>> {
                let column = batch.column_by_name(name).unwrap();
                column
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(String::from))
                    .collect()
            };
            // A value after rows without one, and the rows after it NULL.
            assert_eq!(
                strings(col::STATUS_MESSAGE),
                [None, Some("timed out".into()), None, None]
            );
            assert_eq!(
                strings(col::TRACE_STATE),
                [None, None, Some("k=v".into()), None]
            );
            // A column no row fills: NULL in every row.
            assert_eq!(strings(col::SCOPE_VERSION), [None, None, None, None]);
        }
    }

    #[test]
    fn nested_columns_start_at_their_first_entry() {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
        let span = |i: u8| Span {
            trace_id: vec![1; 16],
            span_id: vec![i + 1; 8],
            name: "GET".into(),
            start_time_unix_nano: 1_000 + u64::from(i),
            end_time_unix_nano: 2_000,
            attributes: vec![kv(attr::HTTP_ROUTE, text("/a"))],
            ..Default::default()
        };
        let mut custom = span(1);
        custom.attributes.push(kv("custom.key", text("v")));
        let mut linked = span(3);
        linked.events.push(Event {
            time_unix_nano: 1_500,
            name: "retry".into(),
            ..Default::default()
        });
        linked.links.push(Link {
            trace_id: vec![2; 16],
            span_id: vec![3; 8],
            ..Default::default()
        });
        let request = request_of(vec![span(0), custom, span(2), linked, span(4)]);
        for converted in both_paths(&request) {
            let [(_, batch)] = &converted.batches[..] else {
                panic!("one partition: {:?}", converted.batches);
            };
            // Empty rows before the first entry, and after it.
            let maps: Vec<_> = (0..5).map(|row| map_of(batch, row)).collect();
            let entry = vec![("custom.key".to_string(), "v".to_string())];
            assert_eq!(maps, [vec![], entry, vec![], vec![], vec![]]);
            let lengths = |name: &str| -> Vec<i32> {
                let list = batch.column_by_name(name).unwrap().as_list::<i32>();
                assert_eq!(list.null_count(), 0, "{name}");
                list.offsets().windows(2).map(|w| w[1] - w[0]).collect()
            };
            assert_eq!(lengths(col::EVENTS), [0, 0, 0, 1, 0]);
            assert_eq!(lengths(col::LINKS), [0, 0, 0, 1, 0]);
            let events = batch.column_by_name(col::EVENTS).unwrap().as_list::<i32>();
            let event = events.value(3);
            let names = event.as_struct().column_by_name("name").unwrap();
            assert_eq!(names.as_string::<i32>().value(0), "retry");
            // A column no row fills: an empty map in every row, not NULL.
            let resource = batch.column_by_name(col::RESOURCE_ATTRIBUTES).unwrap();
            let resource = resource.as_map_opt().unwrap();
            assert_eq!((resource.len(), resource.null_count()), (5, 0));
            assert!(resource.value_offsets().iter().all(|&o| o == 0));
        }
        // The resource's other attributes, in every row of its spans.
        let mut request = request_of(vec![span(0), span(1)]);
        request.resource_spans[0].resource = Some(Resource {
            attributes: vec![kv("host.name", text("box-1"))],
            ..Default::default()
        });
        for converted in both_paths(&request) {
            let [(_, batch)] = &converted.batches[..] else {
                panic!("one partition: {:?}", converted.batches);
            };
            let resource = batch.column_by_name(col::RESOURCE_ATTRIBUTES).unwrap();
            let resource = resource.as_map_opt().unwrap();
            for row in 0..2 {
                let entries = resource.value(row);
                let keys = entries.column(0).as_string::<i32>();
                let values = entries.column(1).as_string::<i32>();
                assert_eq!(entries.len(), 1);
                assert_eq!((keys.value(0), values.value(0)), ("host.name", "box-1"));
            }
        }
    }

    #[test]
    fn a_value_every_row_of_a_request_repeats_is_one_shared_column() {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        let span = |i: u8, kind: i32| Span {
            trace_id: vec![1; 16],
            span_id: vec![i + 1; 8],
            name: "GET".into(),
            kind,
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_000,
            attributes: vec![kv(attr::HTTP_REQUEST_METHOD, text("GET"))],
            ..Default::default()
        };
        let batch = |spans: Vec<Span>| -> RecordBatch {
            let mut request = request_of(spans);
            request.resource_spans[0].resource = Some(Resource {
                attributes: vec![kv("service.name", text("checkout"))],
                ..Default::default()
            });
            let converted = convert_encoded(&request.encode_to_vec()).unwrap();
            let [(_, batch)] = &converted.batches[..] else {
                panic!("one partition: {:?}", converted.batches);
            };
            batch.clone()
        };
        let strings = |batch: &RecordBatch, name: &str| -> Vec<Option<String>> {
            let column = batch.column_by_name(name).unwrap().as_string::<i32>();
            column.iter().map(|v| v.map(String::from)).collect()
        };
        let (first, second) = (
            batch(vec![span(0, 2), span(1, 2)]),
            batch(vec![span(2, 2), span(3, 2)]),
        );
        for name in [col::SERVICE_NAME, col::KIND, col::HTTP_REQUEST_METHOD] {
            let (a, b) = (
                first.column_by_name(name).unwrap(),
                second.column_by_name(name).unwrap(),
            );
            assert!(Arc::ptr_eq(a, b), "{name}");
        }
        assert_eq!(
            strings(&first, col::SERVICE_NAME),
            [Some("checkout".into()), Some("checkout".into())]
        );
        assert_eq!(
            strings(&first, col::KIND),
            [Some("SERVER".into()), Some("SERVER".into())]
        );
        // Rows that differ, each its own value.
        let mixed = batch(vec![span(4, 2), span(5, 2), span(6, 3)]);
        assert_eq!(
            strings(&mixed, col::KIND),
            [
                Some("SERVER".into()),
                Some("SERVER".into()),
                Some("CLIENT".into())
            ]
        );
        assert_eq!(
            strings(&mixed, col::HTTP_REQUEST_METHOD),
            vec![Some("GET".to_string()); 3]
        );
    }

    #[test]
    fn a_promoted_string_column_keeps_values_of_other_types_in_their_rows() {
        let span = |i: u8, step: Value| Span {
            trace_id: vec![1; 16],
            span_id: vec![i + 1; 8],
            name: "GET".into(),
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_000,
            attributes: vec![kv(attr::STEP, step)],
            ..Default::default()
        };
        let steps = |spans: Vec<Span>| -> Vec<Vec<Option<String>>> {
            both_paths(&request_of(spans))
                .iter()
                .map(|converted| {
                    let [(_, batch)] = &converted.batches[..] else {
                        panic!("one partition: {:?}", converted.batches);
                    };
                    let column = batch.column_by_name(col::STEP).unwrap();
                    let column = column.as_string::<i32>();
                    column.iter().map(|v| v.map(String::from)).collect()
                })
                .collect()
        };
        let browse = || text("browse");
        for rows in steps(vec![
            span(0, browse()),
            span(1, browse()),
            span(2, Value::IntValue(3)),
            span(3, browse()),
        ]) {
            let expected = ["browse", "browse", "3", "browse"].map(|v| Some(v.to_string()));
            assert_eq!(rows, expected);
        }
        // A number first, then the same text.
        for rows in steps(vec![span(0, Value::IntValue(3)), span(1, text("3"))]) {
            assert_eq!(rows, [Some("3".to_string()), Some("3".to_string())]);
        }
    }

    #[test]
    fn spans_past_the_limit_of_repeated_resource_bytes_are_rejected_with_the_reason() {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        const MIB: usize = 1 << 20;
        let fit = MAX_REPEATED_BYTES / MIB;
        let spans = (0..fit + 3)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                name: "GET".into(),
                start_time_unix_nano: 1_000,
                end_time_unix_nano: 2_000,
                ..Default::default()
            })
            .collect();
        let mut request = request_of(spans);
        // A service name of a MiB, less its share of the other values.
        request.resource_spans[0].resource = Some(Resource {
            attributes: vec![kv("service.name", text(&"x".repeat(MIB)))],
            ..Default::default()
        });
        for converted in both_paths(&request) {
            assert_eq!((converted.rows(), converted.rejected), (fit, 3));
            let reason = converted.first_error.as_deref().unwrap_or_default();
            assert!(reason.contains("resource and scope attributes"), "{reason}");
            let [(_, batch)] = &converted.batches[..] else {
                panic!("one partition: {:?}", converted.batches);
            };
            let names = batch.column_by_name(col::SERVICE_NAME).unwrap();
            assert_eq!(names.as_string::<i32>().value(fit - 1).len(), MIB);
        }
    }

    #[test]
    fn requests_whose_rows_are_all_empty_share_their_nested_columns() {
        let span = |i: u8| Span {
            trace_id: vec![1; 16],
            span_id: vec![i + 1; 8],
            name: "GET".into(),
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_000,
            ..Default::default()
        };
        let columns = |spans: Vec<Span>| -> Vec<ArrayRef> {
            let converted = convert_encoded(&request_of(spans).encode_to_vec()).unwrap();
            let [(_, batch)] = &converted.batches[..] else {
                panic!("one partition: {:?}", converted.batches);
            };
            [
                col::ATTRIBUTES,
                col::RESOURCE_ATTRIBUTES,
                col::EVENTS,
                col::LINKS,
            ]
            .map(|name| Arc::clone(batch.column_by_name(name).unwrap()))
            .into()
        };
        let first = columns(vec![span(0), span(1)]);
        let second = columns(vec![span(2), span(3)]);
        let longer = columns(vec![span(4), span(5), span(6)]);
        for ((a, b), c) in first.iter().zip(&second).zip(&longer) {
            assert!(Arc::ptr_eq(a, b), "{:?}", a.data_type());
            assert_eq!((a.len(), c.len()), (2, 3));
            assert_eq!((a.null_count(), c.null_count()), (0, 0));
            // A column of the type the schema gives it.
            assert_eq!(a.data_type(), c.data_type());
        }
        let schema = schema::spans::schema();
        for (name, column) in [
            col::ATTRIBUTES,
            col::RESOURCE_ATTRIBUTES,
            col::EVENTS,
            col::LINKS,
        ]
        .iter()
        .zip(&longer)
        {
            let field = schema.field_with_name(name).unwrap();
            assert_eq!(field.data_type(), column.data_type(), "{name}");
        }
    }

    /// Pending rows are bounded by the memory their arrays take, so a
    /// request's rows should take about what they hold: builders made with
    /// the default room (1,024 rows each) made a request of a few spans
    /// weigh as much as one of a thousand.
    #[test]
    fn rows_take_the_room_of_the_request_not_a_default() {
        let memory = |n: usize| {
            let spans = (0..n)
                .map(|i| Span {
                    trace_id: vec![1; 16],
                    span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                    name: "GET /api/items".into(),
                    start_time_unix_nano: 1_000 + i as u64,
                    end_time_unix_nano: 2_000 + i as u64,
                    attributes: vec![
                        kv(attr::URL_FULL, text("http://shop.internal/api/items")),
                        kv(attr::REQUEST_ID, Value::IntValue(i as i64)),
                        kv("custom", text("a")),
                    ],
                    ..Default::default()
                })
                .collect();
            let request = request_of(spans);
            let mut sizes = Vec::new();
            for converted in both_paths(&request) {
                let [(_, batch)] = &converted.batches[..] else {
                    panic!("one partition: {:?}", converted.batches);
                };
                assert_eq!(batch.num_rows(), n);
                sizes.push(batch.get_array_memory_size());
            }
            assert_eq!(sizes[0], sizes[1], "both paths make the same room");
            sizes[0]
        };
        let (few, many) = (memory(8), memory(1024));
        assert!(
            few * 20 < many,
            "8 spans take {few} bytes, 1,024 take {many}"
        );
    }

    /// Room is made before spans are checked; spans too short to store
    /// must not make any, or a small request of empty spans after one good
    /// one would make room for a great many rows.
    #[test]
    fn spans_too_short_to_store_make_no_room() {
        let good = Span {
            trace_id: vec![1; 16],
            span_id: vec![1; 8],
            name: "GET /".into(),
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_000,
            ..Default::default()
        };
        let mut spans = vec![good];
        spans.resize(50_001, Span::default());
        let request = request_of(spans);
        assert!(request.encoded_len() < 120_000);
        for converted in both_paths(&request) {
            assert_eq!(converted.rejected, 50_000);
            let [(_, batch)] = &converted.batches[..] else {
                panic!("one partition: {:?}", converted.batches);
            };
            assert_eq!(batch.num_rows(), 1);
            let memory = batch.get_array_memory_size();
            assert!(memory < 64 * 1024, "one row takes {memory} bytes");
        }
    }

    /// The room a request gives its builders: the rows it announced, at
    /// most [`MAX_ROOM_ROWS`], and its size shared by the string columns;
    /// all of it to the first partition made, and none left for the next.
    #[test]
    fn a_request_gives_its_room_once() {
        let mut rows = Rows::default();
        rows.expect(10_000, 480_000);
        let first = rows.take_room();
        assert_eq!(first.rows, MAX_ROOM_ROWS);
        assert!(first.string_bytes_per_column * STRING_COLUMNS <= 480_000);
        assert!(first.string_bytes_per_column > 0);
        let next = rows.take_room();
        assert_eq!((next.rows, next.string_bytes_per_column), (1, 0));

        // Spans of a generator's size: 16 bytes a row for each string column.
        let mut rows = Rows::default();
        rows.expect(10, 10 * 350);
        let room = rows.take_room();
        assert_eq!(
            (room.rows, room.string_bytes_per_column),
            (10, 10 * STRING_ROOM)
        );
        // Spans of ids and times only (48 bytes): less.
        let mut rows = Rows::default();
        rows.expect(10, 10 * 48);
        assert!(rows.take_room().string_bytes_per_column * STRING_COLUMNS <= 480);
    }

    /// However many partitions a request's spans fall in (one per run id
    /// here), the room made for them is the request's, not each one's; and
    /// past [`MAX_PARTITIONS`] spans are rejected with the reason.
    #[test]
    fn partitions_share_the_room_of_their_request() {
        let spans = (0..2_000u64)
            .map(|i| Span {
                trace_id: (i + 1).to_be_bytes().repeat(2),
                span_id: (i + 1).to_be_bytes().to_vec(),
                name: "GET /".into(),
                start_time_unix_nano: 1_795_392_000_000_000_000 + i,
                end_time_unix_nano: 1_795_392_000_000_001_000 + i,
                attributes: vec![kv(attr::RUN_ID, text(&format!("run-{i}")))],
                ..Default::default()
            })
            .collect();
        let request = request_of(spans);
        for converted in both_paths(&request) {
            assert_eq!(converted.batches.len(), MAX_PARTITIONS);
            assert_eq!(converted.rejected as usize, 2_000 - MAX_PARTITIONS);
            let reason = converted.first_error.as_deref().unwrap_or_default();
            assert!(reason.contains("more than 64 partitions"), "{reason}");
            let memory = converted.memory();
            // A partition of one row takes about 13 KB, whatever the request.
            assert!(
                memory < MAX_PARTITIONS * 16 * 1024,
                "{memory} bytes for {MAX_PARTITIONS} partitions of one span"
            );
        }
    }

    #[test]
    fn red_figures_come_from_the_keys_they_name() {
        let start = 1_795_392_000_000_000_000u64;
        let span = |id: u8, attributes: Vec<KeyValue>| Span {
            trace_id: vec![1; 16],
            span_id: vec![id; 8],
            name: "GET".into(),
            start_time_unix_nano: start,
            end_time_unix_nano: start + 250_000_000,
            attributes,
            ..Default::default()
        };
        let request = request_of(vec![
            span(
                1,
                vec![
                    kv(attr::RUN_ID, text("r1")),
                    kv(attr::STEP, text("browse")),
                    kv(attr::REQUEST_ID, Value::IntValue(7)),
                    kv(attr::ERROR_TYPE, text("timeout")),
                    // Latency counts from the intended start.
                    kv(
                        attr::INTENDED_START,
                        Value::IntValue(start as i64 - 250_000_000),
                    ),
                ],
            ),
            span(
                2,
                vec![
                    kv(attr::RUN_ID, text("r1")),
                    kv(attr::STEP, text("browse")),
                    kv(attr::REQUEST_ID, Value::IntValue(8)),
                ],
            ),
            // Not a generator request: no request id.
            span(3, vec![kv(attr::RUN_ID, text("r1"))]),
            // A key given twice: the last value of the right type counts.
            span(
                4,
                vec![
                    kv(attr::STEP, text("browse")),
                    kv(attr::RUN_ID, text("r1")),
                    kv(attr::REQUEST_ID, Value::IntValue(9)),
                    kv(attr::STEP, text("checkout")),
                    kv(attr::STEP, Value::IntValue(3)),
                ],
            ),
            // A value of the wrong type counts as none.
            span(
                5,
                vec![
                    kv(attr::RUN_ID, text("r1")),
                    kv(attr::REQUEST_ID, Value::IntValue(10)),
                    kv(attr::STEP, Value::IntValue(3)),
                ],
            ),
        ]);
        let mut expected = crate::red::Tally::default();
        expected.add("r1", "browse", Some("timeout"), 0.5);
        expected.add("r1", "browse", None, 0.25);
        expected.add("r1", "checkout", None, 0.25);
        expected.add("r1", "", None, 0.25);
        for converted in both_paths(&request) {
            assert_eq!(converted.red, expected);
        }
    }
}
