//! Spans straight from the bytes of an OTLP `ExportTraceServiceRequest`: the
//! protobuf wire format is walked once and every string and id is borrowed
//! from the request buffer on its way into the Arrow builders. Decoding with
//! prost first would allocate a `String` per attribute key and value and a
//! `Vec` per id, only to copy them again.
//!
//! The walk takes the forms that OTLP exporters write. When it meets anything
//! else (a field of the wrong wire type, a group, a message field given twice,
//! an array or key-value list value, a resource entity, bytes prost would
//! reject) it gives up with `None`, and the caller decodes with prost, whose
//! answer, rows or error, then stands. So whenever this returns rows they are
//! the rows prost's decoding would give; `collector/tests/decoders.rs`
//! checks that on mutated requests.

use arrow::error::ArrowError;

use super::Converted;
use super::keys::{Slot, known};
use super::spans::{EventRef, LinkRef, MIN_SPAN_BYTES, ResourceRef, Rows, SpanRef};
use super::values::{Attr, ValueRef};

/// Something the walk leaves to prost.
struct Unsupported;

type Walk<T> = Result<T, Unsupported>;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A cursor over one message's fields.
#[derive(Clone, Copy)]
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes }
    }

    /// The next field's number and wire type, or `None` at the end.
    fn next_key(&mut self) -> Walk<Option<(u32, u8)>> {
        Ok(self.next_tag()?.map(|tag| (tag >> 3, (tag & 7) as u8)))
    }

    /// The next field's tag, its number and wire type in one as they are
    /// encoded, or `None` at the end: for a loop that matches whole tags.
    #[inline]
    fn next_tag(&mut self) -> Walk<Option<u32>> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        // prost refuses a key beyond 32 bits even when its field number
        // would fit.
        let tag = u32::try_from(self.varint()?).map_err(|_| Unsupported)?;
        if tag >> 3 == 0 {
            return Err(Unsupported);
        }
        Ok(Some(tag))
    }

    /// A varint as prost reads it: at most ten bytes, the tenth at most 1.
    #[inline]
    fn varint(&mut self) -> Walk<u64> {
        // Keys, lengths and small numbers: one byte.
        if let Some((&byte, rest)) = self.bytes.split_first()
            && byte < 0x80
        {
            self.bytes = rest;
            return Ok(u64::from(byte));
        }
        self.long_varint()
    }

    fn long_varint(&mut self) -> Walk<u64> {
        // Two bytes: ports, status codes, sizes.
        if let [low @ 0x80..=0xff, high @ ..0x80, ..] = *self.bytes {
            self.bytes = &self.bytes[2..];
            return Ok(u64::from(low & 0x7f) | u64::from(high) << 7);
        }
        let mut value = 0u64;
        for (i, &byte) in self.bytes.iter().enumerate().take(10) {
            if i == 9 && byte > 1 {
                return Err(Unsupported);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.bytes = &self.bytes[i + 1..];
                return Ok(value);
            }
        }
        Err(Unsupported)
    }

    fn take(&mut self, n: usize) -> Walk<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(Unsupported);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn fixed64(&mut self) -> Walk<u64> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    fn fixed32(&mut self) -> Walk<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn len_delimited(&mut self) -> Walk<&'a [u8]> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| Unsupported)?)
    }

    fn str(&mut self) -> Walk<&'a str> {
        utf8(self.len_delimited()?)
    }

    /// Skips a field this walk does not read, as prost skips unknown fields.
    fn skip(&mut self, wire_type: u8) -> Walk<()> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.take(4).map(drop),
            // Groups and invalid wire types.
            _ => Err(Unsupported),
        }
    }
}

/// A string field's bytes as prost takes them: UTF-8 only.
fn utf8(bytes: &[u8]) -> Walk<&str> {
    std::str::from_utf8(bytes).map_err(|_| Unsupported)
}

/// Reads a field of the expected wire type, or gives up.
fn expect(wire_type: u8, expected: u8) -> Walk<()> {
    if wire_type == expected {
        Ok(())
    } else {
        Err(Unsupported)
    }
}

/// Converts an encoded `ExportTraceServiceRequest`, or `None` when prost has to.
pub(crate) fn convert_traces(bytes: &[u8]) -> Option<Result<Converted, ArrowError>> {
    let mut rows = Rows::default();
    let mut walk = Spans::default();
    walk_request(bytes, &mut rows, &mut walk).ok()?;
    Some(rows.finish())
}

/// What walking one request's spans keeps from span to span: the span
/// being read, whose lists keep their room, and what its spans repeat.
#[derive(Default)]
struct Spans<'a> {
    span: SpanRef<'a>,
    names: Seen<'a, &'a str>,
    /// Attributes by their position in a span.
    attributes: [Seen<'a, Attr<'a>>; SEEN_POSITIONS],
}

/// The first positions of a span's attributes whose values are kept:
/// more than exporters and loadlens's generator put on a span.
const SEEN_POSITIONS: usize = 16;

/// Distinct values kept at each place: the few routes, methods or
/// statuses a load run or a service sends through one request.
const SEEN_VALUES: usize = 4;

/// Values a request's spans repeat, by their encoded bytes, with what
/// reading them gave: a span's name, or its attribute at one position.
///
/// A request's spans mostly carry the same attributes in the same order,
/// and many with the same values: a load run's method, route, server and
/// step. Where a span holds the very bytes met at the same place before,
/// what was read from them then is handed out again, so a key is looked up
/// and a string checked as UTF-8 once a request instead of once a span:
/// some 150 to 250 instructions an attribute where the comparison takes
/// 10 to 30. Each place keeps the first [`SEEN_VALUES`] distinct values it
/// meets; a place that has kept four and meets a fifth stops comparing, as
/// one whose values vary (a URL, a request id) would compare each in vain.
struct Seen<'a, T> {
    /// The values kept, each with what reading it gave, first met first.
    values: [Option<(&'a [u8], T)>; SEEN_VALUES],
    /// A value past those kept came: every value is read from now on.
    varies: bool,
}

impl<T: Copy> Default for Seen<'_, T> {
    fn default() -> Self {
        Seen {
            values: [None; SEEN_VALUES],
            varies: false,
        }
    }
}

impl<'a, T: Copy> Seen<'a, T> {
    /// What `read` gives for `bytes`, read again only if these bytes are
    /// new here. `read` must give the same for the same bytes.
    #[inline]
    fn get(&mut self, bytes: &'a [u8], read: impl FnOnce(&'a [u8]) -> Walk<T>) -> Walk<T> {
        if self.varies {
            return read(bytes);
        }
        let mut kept = 0;
        for (seen, value) in self.values.iter().map_while(Option::as_ref) {
            if crate::short::eq(seen, bytes) {
                return Ok(*value);
            }
            kept += 1;
        }
        let value = read(bytes)?;
        match self.values.get_mut(kept) {
            Some(free) => *free = Some((bytes, value)),
            None => self.varies = true,
        }
        Ok(value)
    }
}

fn walk_request<'a>(bytes: &'a [u8], rows: &mut Rows, walk: &mut Spans<'a>) -> Walk<()> {
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        match number {
            1 => {
                expect(wire_type, LEN)?;
                walk_resource_spans(fields.len_delimited()?, rows, walk)?;
            }
            _ => fields.skip(wire_type)?,
        }
    }
    Ok(())
}

/// `ResourceSpans`: the resource first (it may come after the scopes on the
/// wire), then each `ScopeSpans`.
fn walk_resource_spans<'a>(bytes: &'a [u8], rows: &mut Rows, walk: &mut Spans<'a>) -> Walk<()> {
    let mut resource = None;
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        match number {
            1 => {
                expect(wire_type, LEN)?;
                if resource.is_some() {
                    return Err(Unsupported);
                }
                resource = Some(fields.len_delimited()?);
            }
            2 => {
                expect(wire_type, LEN)?;
                fields.len_delimited()?;
            }
            3 => {
                expect(wire_type, LEN)?;
                fields.str()?;
            }
            _ => fields.skip(wire_type)?,
        }
    }
    let mut attributes = Vec::new();
    if let Some(resource) = resource {
        walk_resource(resource, &mut attributes)?;
    }
    let resource = ResourceRef::new(attributes);
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        match number {
            2 => walk_scope_spans(fields.len_delimited()?, &resource, rows, walk)?,
            _ => fields.skip(wire_type)?,
        }
    }
    Ok(())
}

fn walk_resource<'a>(bytes: &'a [u8], attributes: &mut Vec<Attr<'a>>) -> Walk<()> {
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        match number {
            1 => {
                expect(wire_type, LEN)?;
                attributes.push(walk_key_value(fields.len_delimited()?)?);
            }
            2 => {
                expect(wire_type, VARINT)?;
                fields.varint()?;
            }
            // Entity references: rare, and prost checks their strings.
            3 => return Err(Unsupported),
            _ => fields.skip(wire_type)?,
        }
    }
    Ok(())
}

/// `ScopeSpans`: the scope first, then each span.
fn walk_scope_spans<'a>(
    bytes: &'a [u8],
    resource: &ResourceRef<'_>,
    rows: &mut Rows,
    walk: &mut Spans<'a>,
) -> Walk<()> {
    let mut scope = None;
    let (mut spans, mut span_bytes) = (0, 0);
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        match number {
            1 => {
                expect(wire_type, LEN)?;
                if scope.is_some() {
                    return Err(Unsupported);
                }
                scope = Some(walk_scope(fields.len_delimited()?)?);
            }
            2 => {
                expect(wire_type, LEN)?;
                let span = fields.len_delimited()?.len();
                if span >= MIN_SPAN_BYTES {
                    (spans, span_bytes) = (spans + 1, span_bytes + span);
                }
            }
            3 => {
                expect(wire_type, LEN)?;
                fields.str()?;
            }
            _ => fields.skip(wire_type)?,
        }
    }
    rows.expect(spans, span_bytes);
    let scope = scope.unwrap_or(("", ""));
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        match number {
            2 => {
                walk_span(fields.len_delimited()?, walk)?;
                rows.add(&walk.span, resource, scope);
            }
            _ => fields.skip(wire_type)?,
        }
    }
    Ok(())
}

/// `InstrumentationScope`: name and version. Its attributes are not stored
/// but are checked as prost would.
fn walk_scope(bytes: &[u8]) -> Walk<(&str, &str)> {
    let (mut name, mut version) = ("", "");
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        match number {
            1 => {
                expect(wire_type, LEN)?;
                name = fields.str()?;
            }
            2 => {
                expect(wire_type, LEN)?;
                version = fields.str()?;
            }
            3 => {
                expect(wire_type, LEN)?;
                walk_key_value(fields.len_delimited()?)?;
            }
            4 => {
                expect(wire_type, VARINT)?;
                fields.varint()?;
            }
            _ => fields.skip(wire_type)?,
        }
    }
    Ok((name, version))
}

fn walk_span<'a>(bytes: &'a [u8], walk: &mut Spans<'a>) -> Walk<()> {
    let Spans {
        span,
        names,
        attributes,
    } = walk;
    span.clear();
    let mut status_seen = false;
    // Whole tags, number and wire type in one: a span has some twenty
    // fields, and one match on the tag costs less than splitting it first
    // (some 50 instructions a span).
    const fn tag(number: u32, wire_type: u8) -> u32 {
        number << 3 | wire_type as u32
    }
    const TRACE_ID: u32 = tag(1, LEN);
    const SPAN_ID: u32 = tag(2, LEN);
    const TRACE_STATE: u32 = tag(3, LEN);
    const PARENT_SPAN_ID: u32 = tag(4, LEN);
    const NAME: u32 = tag(5, LEN);
    const KIND: u32 = tag(6, VARINT);
    const START_TIME: u32 = tag(7, FIXED64);
    const END_TIME: u32 = tag(8, FIXED64);
    const ATTRIBUTE: u32 = tag(9, LEN);
    const DROPPED_ATTRIBUTES: u32 = tag(10, VARINT);
    const EVENT: u32 = tag(11, LEN);
    const DROPPED_EVENTS: u32 = tag(12, VARINT);
    const LINK: u32 = tag(13, LEN);
    const DROPPED_LINKS: u32 = tag(14, VARINT);
    const STATUS: u32 = tag(15, LEN);
    const FLAGS: u32 = tag(16, FIXED32);
    let mut fields = Fields::new(bytes);
    while let Some(tag) = fields.next_tag()? {
        match tag {
            TRACE_ID => span.trace_id = fields.len_delimited()?,
            SPAN_ID => span.span_id = fields.len_delimited()?,
            TRACE_STATE => span.trace_state = fields.str()?,
            PARENT_SPAN_ID => span.parent_span_id = fields.len_delimited()?,
            NAME => span.name = names.get(fields.len_delimited()?, utf8)?,
            KIND => span.kind = fields.varint()? as i32,
            START_TIME => span.start_time = fields.fixed64()?,
            END_TIME => span.end_time = fields.fixed64()?,
            ATTRIBUTE => {
                let bytes = fields.len_delimited()?;
                let attr = match attributes.get_mut(span.attributes.len()) {
                    Some(seen) => seen.get(bytes, walk_key_value)?,
                    None => walk_key_value(bytes)?,
                };
                span.attributes.push(attr);
            }
            EVENT => span.events.push(walk_event(fields.len_delimited()?)?),
            LINK => span.links.push(walk_link(fields.len_delimited()?)?),
            STATUS => {
                if status_seen {
                    return Err(Unsupported);
                }
                status_seen = true;
                walk_status(fields.len_delimited()?, span)?;
            }
            FLAGS => span.flags = fields.fixed32()?,
            DROPPED_ATTRIBUTES | DROPPED_EVENTS | DROPPED_LINKS => {
                fields.varint()?;
            }
            // A known field of another wire type.
            _ if tag >> 3 <= 16 => return Err(Unsupported),
            _ => fields.skip((tag & 7) as u8)?,
        }
    }
    Ok(())
}

fn walk_status<'a>(bytes: &'a [u8], span: &mut SpanRef<'a>) -> Walk<()> {
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        match (number, wire_type) {
            (2, LEN) => span.status_message = fields.str()?,
            (3, VARINT) => span.status_code = fields.varint()? as i32,
            (2 | 3, _) => return Err(Unsupported),
            _ => fields.skip(wire_type)?,
        }
    }
    Ok(())
}

fn walk_event(bytes: &[u8]) -> Walk<EventRef<'_>> {
    let mut event = EventRef::default();
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        match (number, wire_type) {
            (1, FIXED64) => event.time = fields.fixed64()?,
            (2, LEN) => event.name = fields.str()?,
            (3, LEN) => event
                .attributes
                .push(walk_key_value(fields.len_delimited()?)?),
            (4, VARINT) => {
                fields.varint()?;
            }
            (1..=4, _) => return Err(Unsupported),
            _ => fields.skip(wire_type)?,
        }
    }
    Ok(event)
}

fn walk_link(bytes: &[u8]) -> Walk<LinkRef<'_>> {
    let mut link = LinkRef::default();
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        match (number, wire_type) {
            (1, LEN) => link.trace_id = fields.len_delimited()?,
            (2, LEN) => link.span_id = fields.len_delimited()?,
            (3, LEN) => link.trace_state = fields.str()?,
            (4, LEN) => link
                .attributes
                .push(walk_key_value(fields.len_delimited()?)?),
            (5, VARINT) => {
                fields.varint()?;
            }
            (6, FIXED32) => {
                fields.fixed32()?;
            }
            (1..=6, _) => return Err(Unsupported),
            _ => fields.skip(wire_type)?,
        }
    }
    Ok(link)
}

/// `KeyValue`: a key and at most one `AnyValue`.
fn walk_key_value(bytes: &[u8]) -> Walk<Attr<'_>> {
    match usual_key_value(bytes) {
        Some(attr) => Ok(attr),
        None => any_key_value(bytes),
    }
}

/// A `KeyValue` as exporters write nearly every one: the key, then the
/// value holding a string, an integer, a bool or a double, each length a
/// single byte and nothing after. It is read by position instead of by
/// the field loop of [`any_key_value`], which cost some 190 instructions
/// an attribute. `None` for any other layout, and for bytes the loop
/// would refuse, which it then reads; wherever this gives an `Attr`, the
/// loop gives the same one.
#[inline]
fn usual_key_value(bytes: &[u8]) -> Option<Attr<'_>> {
    // Field 1 (key, length-delimited), its length, the key.
    let [0x0a, key_len, rest @ ..] = bytes else {
        return None;
    };
    let key_len = usize::from(*key_len);
    if key_len >= 0x80 || rest.len() < key_len {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    // Field 2 (value, length-delimited), its length, the whole rest.
    let [0x12, value_len, value @ ..] = rest else {
        return None;
    };
    if *value_len >= 0x80 || value.len() != usize::from(*value_len) {
        return None;
    }
    let value = match value {
        // string_value (1, length-delimited).
        [0x0a, len, text @ ..] if *len < 0x80 && text.len() == usize::from(*len) => {
            ValueRef::Str(utf8(text).ok()?)
        }
        // bool_value (2) and int_value (3), varints.
        [tag @ (0x10 | 0x18), varint @ ..] => {
            let mut fields = Fields::new(varint);
            let number = fields.varint().ok()?;
            if !fields.bytes.is_empty() {
                return None;
            }
            if *tag == 0x10 {
                ValueRef::Bool(number != 0)
            } else {
                ValueRef::Int(number as i64)
            }
        }
        // double_value (4), eight bytes.
        [0x21, double @ ..] => {
            ValueRef::Double(f64::from_bits(u64::from_le_bytes(double.try_into().ok()?)))
        }
        _ => return None,
    };
    let (key, slot) = key_of(key).ok()?;
    Some(Attr {
        key,
        value: Some(value),
        slot,
    })
}

/// `KeyValue` in any layout prost reads: fields in any order, repeated,
/// unknown ones skipped.
fn any_key_value(bytes: &[u8]) -> Walk<Attr<'_>> {
    let mut key = "";
    let mut slot = None;
    let mut value = None;
    let mut value_seen = false;
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        match (number, wire_type) {
            (1, LEN) => (key, slot) = key_of(fields.len_delimited()?)?,
            (2, LEN) => {
                if value_seen {
                    return Err(Unsupported);
                }
                value_seen = true;
                value = walk_any_value(fields.len_delimited()?)?;
            }
            // key_strindex (profiles only).
            (3, VARINT) => {
                fields.varint()?;
            }
            (1..=3, _) => return Err(Unsupported),
            _ => fields.skip(wire_type)?,
        }
    }
    Ok(Attr { key, value, slot })
}

/// An attribute's key and its slot if it is a known one. A known key is
/// given as its own `str`, with no UTF-8 check needed.
#[inline]
fn key_of(bytes: &[u8]) -> Walk<(&str, Option<Slot>)> {
    match known(bytes) {
        Some((slot, key)) => Ok((key, Some(slot))),
        None => Ok((utf8(bytes)?, None)),
    }
}

/// `AnyValue`: a oneof, so the last of its fields wins. Arrays and key-value
/// lists are left to prost.
fn walk_any_value(bytes: &[u8]) -> Walk<Option<ValueRef<'_>>> {
    let mut value = None;
    let mut fields = Fields::new(bytes);
    while let Some((number, wire_type)) = fields.next_key()? {
        value = Some(match (number, wire_type) {
            (1, LEN) => ValueRef::Str(fields.str()?),
            (2, VARINT) => ValueRef::Bool(fields.varint()? != 0),
            (3, VARINT) => ValueRef::Int(fields.varint()? as i64),
            (4, FIXED64) => ValueRef::Double(f64::from_bits(fields.fixed64()?)),
            (7, LEN) => ValueRef::Bytes(fields.len_delimited()?),
            (8, VARINT) => ValueRef::Strindex(fields.varint()? as i32),
            (1..=8, _) => return Err(Unsupported),
            _ => {
                fields.skip(wire_type)?;
                continue;
            }
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_read_as_prost_reads_them() {
        for value in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut bytes = Vec::new();
            prost::encoding::encode_varint(value, &mut bytes);
            let mut fields = Fields::new(&bytes);
            assert_eq!(fields.varint().ok(), Some(value));
            assert!(fields.bytes.is_empty());
        }
        // Eleven bytes, or a tenth byte above 1: prost refuses both.
        assert!(Fields::new(&[0xff; 11]).varint().is_err());
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert!(Fields::new(&too_big).varint().is_err());
        // Truncated.
        assert!(Fields::new(&[0x80]).varint().is_err());
    }

    #[test]
    fn the_usual_key_value_reads_as_the_field_loop_does() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
        use prost::Message;
        let kv = |key: &str, value: Option<Value>| {
            KeyValue {
                key: key.into(),
                value: Some(AnyValue { value }),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let usual = [
            kv(
                "http.request.method",
                Some(Value::StringValue("GET".into())),
            ),
            kv("custom", Some(Value::StringValue(String::new()))),
            // A ten-byte varint.
            kv("n", Some(Value::IntValue(-1))),
            kv("n", Some(Value::IntValue(300))),
            kv("b", Some(Value::BoolValue(true))),
            kv("b", Some(Value::BoolValue(false))),
            kv("d", Some(Value::DoubleValue(0.25))),
            vec![0x0a, 1, b'k', 0x12, 9, 0x21, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f],
            // An overlong varint, a bool of 2, an empty key.
            vec![0x0a, 1, b'k', 0x12, 3, 0x18, 0x80, 0x00],
            vec![0x0a, 1, b'k', 0x12, 2, 0x10, 0x02],
            vec![0x0a, 0, 0x12, 3, 0x0a, 1, b'v'],
        ];
        let other = [
            // Lengths of two bytes.
            kv("custom", Some(Value::StringValue("é".repeat(70)))),
            kv(&"k".repeat(200), Some(Value::IntValue(1))),
            // Values the loop reads or leaves to prost.
            kv("x", Some(Value::BytesValue(vec![1, 2]))),
            kv("x", None),
            // Not UTF-8: the key, then the value.
            vec![0x0a, 2, 0xff, 0xfe, 0x12, 3, 0x0a, 1, b'v'],
            vec![0x0a, 1, b'k', 0x12, 3, 0x0a, 1, 0xff],
            // A truncated varint; two ints, the last of which wins; a
            // field after the int within the value; a double one byte
            // short.
            vec![0x0a, 1, b'k', 0x12, 2, 0x18, 0x80],
            vec![0x0a, 1, b'k', 0x12, 4, 0x18, 1, 0x18, 2],
            vec![0x0a, 1, b'k', 0x12, 4, 0x18, 1, 0x1a, 0],
            vec![0x0a, 1, b'k', 0x12, 8, 0x21, 0, 0, 0, 0, 0, 0, 0xf0],
            // After the value field: key_strindex, then a second key.
            vec![0x0a, 1, b'k', 0x12, 3, 0x0a, 1, b'v', 0x18, 5],
            vec![0x0a, 1, b'k', 0x12, 3, 0x0a, 1, b'v', 0x0a, 1, b'j'],
        ];
        for bytes in &usual {
            let attr = usual_key_value(bytes);
            assert!(attr.is_some(), "the usual layout: {bytes:?}");
            assert_eq!(attr, any_key_value(bytes).ok(), "{bytes:?}");
        }
        for bytes in &other {
            assert_eq!(usual_key_value(bytes), None, "left to the loop: {bytes:?}");
        }
        assert_eq!(
            usual_key_value(&usual[0]).map(|attr| (attr.key, attr.slot.is_some())),
            Some(("http.request.method", true))
        );
        // Every truncation, every byte changed to one of a few that
        // matter to the layout, every byte added at the end: wherever
        // the shortcut answers, the loop answers the same.
        let (mut answered, mut tried) = (0, 0);
        for bytes in usual.iter().chain(&other) {
            let mut variants: Vec<Vec<u8>> =
                (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
            for at in 0..bytes.len() {
                for byte in [
                    0x00, 0x01, 0x02, 0x0a, 0x10, 0x12, 0x18, 0x21, 0x7f, 0x80, 0xff,
                ] {
                    let mut changed = bytes.clone();
                    changed[at] = byte;
                    variants.push(changed);
                }
            }
            for byte in [0x00, 0x0a, 0x12, 0x18, 0x80] {
                variants.push([bytes.as_slice(), &[byte]].concat());
            }
            for variant in &variants {
                tried += 1;
                if let Some(attr) = usual_key_value(variant) {
                    answered += 1;
                    assert_eq!(Some(attr), any_key_value(variant).ok(), "{variant:?}");
                }
            }
        }
        // Both outcomes occur, or the check would mean little.
        assert!(answered > 100 && answered < tried, "{answered} of {tried}");
    }

    /// Spans whose attributes repeat, vary, move and break: what the walk
    /// hands out again from [`Seen`] must be what reading the bytes gives,
    /// row for row, as prost's rows show.
    #[test]
    fn values_seen_before_are_handed_out_only_for_the_same_bytes() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
        use opentelemetry_proto::tonic::trace::v1::Span;
        use prost::Message;

        use crate::convert::spans::{request_of, wire_agrees_with_prost};

        let kv = |key: &str, value: Value| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        };
        // Values of one length at each place, so that only their bytes
        // tell them apart.
        let methods = ["GET", "PUT", "DEL", "HEA", "OPT", "PAT"];
        let routes = ["/a/1", "/b/2", "/c/3"];
        let span = |i: usize| {
            let mut attributes = vec![
                // Six values at the first place: past the four it keeps.
                kv(
                    "http.request.method",
                    Value::StringValue(methods[i % 6].into()),
                ),
                // Three at the second, which it keeps.
                kv("http.route", Value::StringValue(routes[i % 3].into())),
                // A key that changes at one place, with the same value.
                kv(
                    if i.is_multiple_of(2) {
                        "custom.a"
                    } else {
                        "custom.b"
                    },
                    Value::IntValue(7),
                ),
                // Five values, and every fifth span leaves it out, so that
                // the next place then holds what this one held before.
                kv("loadlens.step", Value::StringValue(format!("{}", i % 5))),
                // Values of other types.
                kv(
                    "n",
                    if i.is_multiple_of(4) {
                        Value::BoolValue(true)
                    } else {
                        Value::IntValue(1)
                    },
                ),
            ];
            if i % 5 == 4 {
                attributes.remove(3);
            }
            // Two spans with attributes past the places kept.
            if i == 17 || i == 18 {
                attributes.extend(
                    (0..SEEN_POSITIONS)
                        .map(|k| kv(&format!("extra.{k}"), Value::IntValue(k as i64))),
                );
            }
            Span {
                trace_id: vec![1; 16],
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                // Three names, which the walk keeps.
                name: format!("name-{}", i % 3),
                start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                end_time_unix_nano: 1_700_000_000_000_000_100 + i as u64,
                attributes,
                ..Default::default()
            }
        };
        let spans: Vec<Span> = (0..40).map(span).collect();
        let bytes = request_of(spans).encode_to_vec();
        assert_eq!(wire_agrees_with_prost(&bytes), Ok(true));
        let converted = convert_traces(&bytes).unwrap().unwrap();
        assert_eq!(converted.rows(), 40);

        // A value not UTF-8 where the spans before held valid ones of its
        // length, at a place that keeps its values: the route of span 30
        // (the eleventh "/a/1", of spans 0, 3, ..., 30), then the name of
        // span 9 (the fourth "name-0", of spans 0, 3, 6, 9). The walk
        // leaves the request to prost, which refuses it.
        for (text, nth) in [(&b"/a/1"[..], 10), (b"name-0", 3)] {
            let mut broken = bytes.clone();
            let (at, _) = bytes
                .windows(text.len())
                .enumerate()
                .filter(|(_, w)| *w == text)
                .nth(nth)
                .unwrap();
            broken[at + 1] = 0xff;
            assert!(convert_traces(&broken).is_none(), "{text:?}");
            assert!(
                crate::convert::spans::convert_encoded(&broken).is_err(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_place_reads_each_new_value_once_and_stops_keeping_past_four() {
        let values: Vec<Vec<u8>> = (0..6u8).map(|i| vec![b'v', i]).collect();
        let reads = std::cell::Cell::new(0);
        fn get<'a>(
            seen: &mut Seen<'a, usize>,
            bytes: &'a [u8],
            reads: &std::cell::Cell<i32>,
        ) -> Option<usize> {
            seen.get(bytes, |b| {
                reads.set(reads.get() + 1);
                Ok(usize::from(b[1]))
            })
            .ok()
        }
        let mut seen = Seen::<usize>::default();
        // Four values, each read once however often it comes back.
        for round in 0..3 {
            for (i, bytes) in values[..4].iter().enumerate() {
                assert_eq!(get(&mut seen, bytes, &reads), Some(i), "round {round}");
            }
        }
        assert!(!seen.varies);
        // A fifth: read, and the place stops keeping; every value is
        // read from then on, and still right.
        assert_eq!(get(&mut seen, &values[4], &reads), Some(4));
        assert!(seen.varies);
        assert_eq!(get(&mut seen, &values[0], &reads), Some(0));
        assert_eq!(get(&mut seen, &values[5], &reads), Some(5));
        assert_eq!(reads.get(), 4 + 1 + 2);
        // A read that fails keeps nothing.
        let mut seen = Seen::<usize>::default();
        assert!(seen.get(b"x", |_| Err(Unsupported)).is_err());
        assert!(seen.values.iter().all(Option::is_none));
    }

    #[test]
    fn field_zero_and_groups_are_left_to_prost() {
        assert!(Fields::new(&[0x00]).next_key().is_err());
        let mut group = Fields::new(&[0x0b]);
        let (_, wire_type) = group.next_key().ok().flatten().unwrap();
        assert!(group.skip(wire_type).is_err());
    }

    #[test]
    fn keys_beyond_32_bits_are_left_to_prost() {
        // Found by libFuzzer: 13,060,270,032 as a key, field number
        // 1,632,533,754 (fits in u32), which prost refuses.
        let mut key = Vec::new();
        prost::encoding::encode_varint(13_060_270_032, &mut key);
        assert!(Fields::new(&key).next_key().is_err());
        let mut largest = Vec::new();
        prost::encoding::encode_varint(u64::from(u32::MAX), &mut largest);
        assert!(Fields::new(&largest).next_key().is_ok());
    }
}
