//! Arrow types shared by several tables.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, TimeUnit};

/// Every time column: nanoseconds since the Unix epoch, UTC.
pub fn timestamp_ns() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// OTLP attributes flattened to strings, in the canonical Parquet map layout
/// (`key_value` entries of `key`, `value`), so DuckDB and pyarrow read a MAP.
/// Non-string values are rendered as JSON (`42`, `true`, `[1,2]`).
pub fn attribute_map() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "key_value",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

/// A list of `item` structs.
pub(crate) fn list_of(fields: Vec<Field>) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(Fields::from(fields)),
        true,
    )))
}

/// A list of primitive values.
pub(crate) fn list_of_primitive(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}
