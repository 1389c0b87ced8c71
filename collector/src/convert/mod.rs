//! OTLP to Arrow: each export request becomes record batches, grouped by the
//! partition (day, run) their rows belong to.

mod ids;
pub(crate) mod keys;
pub mod metrics;
mod numbers;
mod repeated;
pub mod spans;
pub(crate) mod values;
pub(crate) mod wire;

use std::sync::Arc;

use arrow::array::{ArrayRef, ListArray, StringBuilder, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use schema::Table;

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The partition a group of rows goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub table: Table,
    /// `YYYY-MM-DD` (UTC) of the rows' time.
    pub date: String,
    /// The load run, or `None` for data from no run.
    pub run_id: Option<String>,
}

/// The result of converting one export request.
#[derive(Debug, Default)]
pub struct Converted {
    pub batches: Vec<(PartitionKey, RecordBatch)>,
    /// Items (spans or data points) rejected, with the first reason.
    pub rejected: u64,
    pub first_error: Option<String>,
    /// Generator requests among the spans, for the live RED metrics.
    pub red: crate::red::Tally,
}

impl Converted {
    pub(crate) fn reject(&mut self, reason: String) {
        self.rejected += 1;
        if self.first_error.is_none() {
            self.first_error = Some(reason);
        }
    }

    /// Rows accepted.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|(_, b)| b.num_rows()).sum()
    }

    /// Bytes the rows take as the collector counts pending rows against
    /// its memory bound (`get_array_memory_size`, which counts the columns
    /// batches share, of NULLs, empty rows or one repeated value, in
    /// each).
    pub fn memory(&self) -> usize {
        self.batches
            .iter()
            .map(|(_, b)| b.get_array_memory_size())
            .sum()
    }
}

/// Why an encoded request gave no rows.
#[derive(Debug, thiserror::Error)]
pub enum EncodedError {
    /// Not a valid protobuf request: the client's fault.
    #[error("invalid protobuf: {0}")]
    Decode(prost::DecodeError),
    /// The rows could not be assembled: a bug, not the client's fault.
    #[error("cannot convert: {0}")]
    Convert(ArrowError),
}

/// Builders keyed by partition (UTC day, run), created on first use. A
/// request's rows rarely span more than one or two, so a short list beats a
/// map, and looking one up allocates nothing.
pub(crate) struct Partitioned<B> {
    builders: Vec<(i64, Option<String>, B)>,
}

impl<B> Default for Partitioned<B> {
    fn default() -> Self {
        Partitioned {
            builders: Vec::new(),
        }
    }
}

impl<B> Partitioned<B> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Partitions made.
    pub fn len(&self) -> usize {
        self.builders.len()
    }

    /// Where the partition of a row at `unix_nanos` of `run_id` is: the
    /// index of its builder, or, if none is made yet, its day.
    pub fn position(&self, unix_nanos: i64, run_id: Option<&str>) -> Result<usize, i64> {
        let day = unix_nanos.div_euclid(NANOS_PER_DAY);
        let run_id = run_id.filter(|r| !r.is_empty());
        self.builders
            .iter()
            .position(|(d, r, _)| *d == day && r.as_deref() == run_id)
            .ok_or(day)
    }

    /// The builder at a position [`Partitioned::position`] gave.
    pub fn at(&mut self, position: usize) -> &mut B {
        &mut self.builders[position].2
    }

    /// Adds the builder of a partition [`Partitioned::position`] did not find.
    pub fn push(&mut self, day: i64, run_id: Option<&str>, builder: B) -> &mut B {
        let run_id = run_id.filter(|r| !r.is_empty());
        self.builders
            .push((day, run_id.map(str::to_string), builder));
        &mut self.builders.last_mut().expect("just pushed").2
    }

    pub fn get(
        &mut self,
        unix_nanos: i64,
        run_id: Option<&str>,
        make: impl FnOnce() -> B,
    ) -> &mut B {
        let day = unix_nanos.div_euclid(NANOS_PER_DAY);
        let run_id = run_id.filter(|r| !r.is_empty());
        let at = match self
            .builders
            .iter()
            .position(|(d, r, _)| *d == day && r.as_deref() == run_id)
        {
            Some(at) => at,
            None => {
                self.builders
                    .push((day, run_id.map(str::to_string), make()));
                self.builders.len() - 1
            }
        };
        &mut self.builders[at].2
    }

    pub fn finish(
        self,
        table: Table,
        out: &mut Converted,
        mut finish: impl FnMut(B) -> Result<RecordBatch, arrow::error::ArrowError>,
    ) -> Result<(), arrow::error::ArrowError> {
        for (day, run_id, builder) in self.builders {
            let batch = finish(builder)?;
            let date = schema::layout::utc_day(day * NANOS_PER_DAY);
            if batch.num_rows() > 0 {
                out.batches.push((
                    PartitionKey {
                        table,
                        date,
                        run_id,
                    },
                    batch,
                ));
            }
        }
        Ok(())
    }
}

/// The struct fields of a `List<Struct>` column of a schema.
pub(crate) fn list_fields(schema: &Schema, column: &str) -> Fields {
    match schema.field_with_name(column).map(|f| f.data_type()) {
        Ok(DataType::List(item)) => match item.data_type() {
            DataType::Struct(fields) => fields.clone(),
            _ => unreachable!("{column} is a list of structs"),
        },
        _ => unreachable!("{column} is a list"),
    }
}

/// A `List<Struct>` column from the struct's child columns and per-row offsets.
pub(crate) fn list_array(
    fields: Fields,
    columns: Vec<ArrayRef>,
    offsets: Vec<i32>,
) -> Result<ArrayRef, ArrowError> {
    let values = StructArray::try_new(fields.clone(), columns, None)?;
    let item = Arc::new(Field::new("item", DataType::Struct(fields), true));
    Ok(Arc::new(ListArray::try_new(
        item,
        OffsetBuffer::new(offsets.into()),
        Arc::new(values),
        None,
    )?))
}

/// Appends a string, or NULL for an empty one (OTLP's "unset").
pub(crate) fn append_non_empty(builder: &mut StringBuilder, value: &str) {
    if value.is_empty() {
        builder.append_null();
    } else {
        builder.append_value(value);
    }
}
