//! Attribute values rendered as strings, and the Arrow map builder for them.

use std::borrow::Cow;
use std::fmt::Write;

use arrow::array::{MapBuilder, MapFieldNames, StringBuilder};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};

use super::keys::{Slot, known};

/// Builds `Map<Utf8, Utf8>` columns in the layout `schema::attribute_map` declares.
pub type AttrMapBuilder = MapBuilder<StringBuilder, StringBuilder>;

pub fn attr_map_builder() -> AttrMapBuilder {
    attr_map_builder_with_capacity(1024, 1024, 1024)
}

/// A map builder with room for `rows` rows and `entries` entries, whose
/// keys and values take `bytes` bytes each before they grow. Room 0
/// allocates nothing until the first entry.
pub fn attr_map_builder_with_capacity(rows: usize, entries: usize, bytes: usize) -> AttrMapBuilder {
    MapBuilder::with_capacity(
        Some(MapFieldNames {
            entry: "key_value".into(),
            key: "key".into(),
            value: "value".into(),
        }),
        StringBuilder::with_capacity(entries, bytes),
        StringBuilder::with_capacity(entries, bytes),
        rows,
    )
}

/// An attribute borrowed from a decoded request or straight from its bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attr<'a> {
    pub key: &'a str,
    /// `None` when the attribute has no value (stored as NULL).
    pub value: Option<ValueRef<'a>>,
    /// Which known key `key` is, if any.
    pub slot: Option<Slot>,
}

impl<'a> Attr<'a> {
    pub fn from_kv(kv: &'a KeyValue) -> Self {
        Attr {
            key: &kv.key,
            slot: known(kv.key.as_bytes()).map(|(slot, _)| slot),
            value: value_of(kv),
        }
    }
}

/// The value of a decoded attribute, if it has one.
fn value_of(kv: &KeyValue) -> Option<ValueRef<'_>> {
    kv.value
        .as_ref()
        .and_then(|v| v.value.as_ref())
        .map(ValueRef::from_value)
}

/// An attribute value without copying it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Strindex(i32),
    /// An array or key-value list, only from a decoded request.
    Nested(&'a Value),
}

impl<'a> ValueRef<'a> {
    pub fn from_value(value: &'a Value) -> Self {
        match value {
            Value::StringValue(s) => ValueRef::Str(s),
            Value::BoolValue(b) => ValueRef::Bool(*b),
            Value::IntValue(i) => ValueRef::Int(*i),
            Value::DoubleValue(d) => ValueRef::Double(*d),
            Value::BytesValue(b) => ValueRef::Bytes(b),
            Value::StringValueStrindex(i) => ValueRef::Strindex(*i),
            nested @ (Value::ArrayValue(_) | Value::KvlistValue(_)) => ValueRef::Nested(nested),
        }
    }

    /// The value as text, exactly as [`render`] gives it; strings are borrowed.
    pub fn render(self) -> Cow<'a, str> {
        match self {
            ValueRef::Str(s) => Cow::Borrowed(s),
            ValueRef::Int(i) => Cow::Owned(i.to_string()),
            ValueRef::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            ValueRef::Double(d) => Cow::Owned(render(&Value::DoubleValue(d))),
            ValueRef::Bytes(b) => Cow::Owned(render(&Value::BytesValue(b.to_vec()))),
            ValueRef::Strindex(i) => Cow::Owned(i.to_string()),
            ValueRef::Nested(value) => Cow::Owned(render(value)),
        }
    }

    /// Appends the value as text, exactly as [`render`] gives it, writing
    /// numbers straight into the builder.
    pub fn append_to(self, builder: &mut StringBuilder) {
        match self {
            ValueRef::Str(s) => builder.append_value(s),
            ValueRef::Int(i) => {
                let _ = write!(builder, "{i}");
                builder.append_value("");
            }
            ValueRef::Bool(b) => builder.append_value(if b { "true" } else { "false" }),
            other => builder.append_value(other.render()),
        }
    }

    /// The length of the value as text ([`ValueRef::render`]); other
    /// than strings, rendered to be measured.
    pub fn text_len(self) -> usize {
        match self {
            ValueRef::Str(s) => s.len(),
            other => other.render().len(),
        }
    }

    /// An integer from an int value or an integral string.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            ValueRef::Int(i) => Some(i),
            ValueRef::Str(s) => s.trim().parse().ok(),
            ValueRef::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(d as i64),
            _ => None,
        }
    }

    pub fn as_str(self) -> Option<&'a str> {
        match self {
            ValueRef::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The string value of `key`, if present and a string.
pub fn find_str_ref<'a>(attrs: &[Attr<'a>], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value?.as_str())
}

/// Appends one map of attributes (skipping those `skip` claims).
pub fn append_attrs<'a>(
    builder: &mut AttrMapBuilder,
    attrs: impl IntoIterator<Item = &'a KeyValue>,
    mut skip: impl FnMut(&KeyValue) -> bool,
) {
    for kv in attrs {
        if !skip(kv) {
            append_attr(builder, &kv.key, value_of(kv));
        }
    }
    builder
        .append(true)
        .expect("keys and values are appended in pairs");
}

/// Appends one map of borrowed attributes (skipping those `skip` claims by index).
pub fn append_attr_refs(
    builder: &mut AttrMapBuilder,
    attrs: &[Attr<'_>],
    mut skip: impl FnMut(usize, &Attr<'_>) -> bool,
) {
    for (i, attr) in attrs.iter().enumerate() {
        if !skip(i, attr) {
            append_attr(builder, attr.key, attr.value);
        }
    }
    builder
        .append(true)
        .expect("keys and values are appended in pairs");
}

fn append_attr(builder: &mut AttrMapBuilder, key: &str, value: Option<ValueRef<'_>>) {
    builder.keys().append_value(key);
    match value {
        Some(value) => value.append_to(builder.values()),
        None => builder.values().append_null(),
    }
}

/// A value as text: strings as they are, everything else as JSON.
pub fn render(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        other => to_json(other).to_string(),
    }
}

fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::StringValue(s) => J::String(s.clone()),
        Value::BoolValue(b) => J::Bool(*b),
        Value::IntValue(i) => J::from(*i),
        Value::DoubleValue(d) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(d.to_string()), J::Number)
        }
        Value::BytesValue(bytes) => J::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        Value::ArrayValue(array) => J::Array(
            array
                .values
                .iter()
                .map(|v| v.value.as_ref().map_or(J::Null, to_json))
                .collect(),
        ),
        Value::KvlistValue(list) => J::Object(
            list.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map_or(J::Null, to_json),
                    )
                })
                .collect(),
        ),
        Value::StringValueStrindex(i) => J::from(*i),
    }
}

/// The string value of `key`, if present and a string.
pub fn find_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| value_of(kv)?.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};

    #[test]
    fn renders_non_strings_as_json() {
        assert_eq!(render(&Value::StringValue("a b".into())), "a b");
        assert_eq!(render(&Value::IntValue(-3)), "-3");
        assert_eq!(render(&Value::BoolValue(true)), "true");
        assert_eq!(render(&Value::DoubleValue(0.25)), "0.25");
        assert_eq!(render(&Value::BytesValue(vec![0xde, 0xad])), "\"dead\"");
        let array = Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(Value::IntValue(1)),
                },
                AnyValue {
                    value: Some(Value::StringValue("x".into())),
                },
            ],
        });
        assert_eq!(render(&array), r#"[1,"x"]"#);
    }
}
