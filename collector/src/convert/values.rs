//! Attribute values rendered as strings, and the Arrow map builder for them.

use arrow::array::{MapBuilder, MapFieldNames, StringBuilder};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

/// Builds `Map<Utf8, Utf8>` columns in the layout `schema::attribute_map` declares.
pub type AttrMapBuilder = MapBuilder<StringBuilder, StringBuilder>;

pub fn attr_map_builder() -> AttrMapBuilder {
    MapBuilder::new(
        Some(MapFieldNames {
            entry: "key_value".into(),
            key: "key".into(),
            value: "value".into(),
        }),
        StringBuilder::new(),
        StringBuilder::new(),
    )
}

/// Appends one map of attributes (skipping those `skip` claims).
pub fn append_attrs<'a>(
    builder: &mut AttrMapBuilder,
    attrs: impl IntoIterator<Item = &'a KeyValue>,
    mut skip: impl FnMut(&KeyValue) -> bool,
) {
    for kv in attrs {
        if skip(kv) {
            continue;
        }
        builder.keys().append_value(&kv.key);
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(value) => builder.values().append_value(render(value)),
            None => builder.values().append_null(),
        }
    }
    builder
        .append(true)
        .expect("keys and values are appended in pairs");
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
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// An integer from an int value or an integral string.
pub fn as_i64(value: &AnyValue) -> Option<i64> {
    match value.value.as_ref()? {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s.trim().parse().ok(),
        Value::DoubleValue(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::ArrayValue;

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
