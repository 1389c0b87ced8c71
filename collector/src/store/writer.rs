//! One Parquet file per partition flush: sorted by time, zstd (but for random
//! ids, which it cannot shrink), bloom filter on
//! `trace_id`, page-level statistics, `sorting_columns` and key-value metadata;
//! times and the spans' integers as deltas, ids without a dictionary, other
//! columns with one.

use std::fs::{self, File};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ahash::{AHashMap, AHashSet};
use arrow::array::{
    Array, ArrayAccessor, ArrayData, ArrayRef, AsArray, FixedSizeBinaryArray, PrimitiveArray,
    TimestampNanosecondArray, make_array, new_null_array,
};
use arrow::buffer::{MutableBuffer, NullBuffer};
use arrow::compute::interleave;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Int32Type, Int64Type, SchemaRef, TimestampNanosecondType,
    UInt32Type,
};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use schema::Table;

use crate::convert::PartitionKey;
use crate::store::columns::deltas::DeltaColumn;
use crate::store::columns::{Encoder, Refused, Settings};
use crate::store::recent::{RecentSpans, SpanKey, id_columns, span_key};

/// Why a partition could not be written. The rows stay pending.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot encode Parquet for {table}: {source}")]
    Parquet {
        table: Table,
        source: parquet::errors::ParquetError,
    },
    #[error("cannot assemble rows for {table}: {source}")]
    Arrow {
        table: Table,
        source: arrow::error::ArrowError,
    },
    #[error(
        "cannot look for the flush's spans in {path}, to drop those stored already: {source}; the rows stay pending and the next flush tries again"
    )]
    Lookup { path: PathBuf, source: io::Error },
}

/// Parquet key-value metadata key naming the files a compacted file replaced.
pub const COMPACTED_FROM_KEY: &str = "loadlens.compacted_from";

/// Rows per row group: large enough for good compression, small enough that a
/// reader can skip by statistics.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;

/// What one written file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// `None` when every row was a repeat of a span already stored, and no
    /// file was written.
    pub path: Option<PathBuf>,
    pub rows: usize,
    /// Spans dropped because another row had the same (trace_id, span_id).
    pub duplicates: usize,
    /// Spans looked for in older files ([`super::older`]).
    pub looked_up: usize,
    /// Stored rows those files' row groups held, read to look for them.
    pub lookup_rows_read: usize,
    /// Whether the file was written with every span stored before it
    /// dropped (by [`write_partition_after`]), so that compaction need not
    /// compare it with its partition.
    pub settled: bool,
}

/// Writes the batches of one partition as one file and returns its path. The
/// file name records the last WAL segment whose rows it holds
/// (`part-<min time>-w<segment>-<random>.parquet`), so a replay after a crash
/// can tell which rows already reached Parquet.
pub fn write_partition(
    root: &Path,
    key: &PartitionKey,
    batches: &[RecordBatch],
    wal_segment: u64,
) -> Result<Written, WriteError> {
    write_partition_after(root, key, batches, wal_segment, &mut RecentSpans::off())
}

/// [`write_partition`] for a flush: spans stored already are dropped too,
/// so that no span is ever in two files. Those whose ids `recent` holds
/// (written by an earlier flush) are found there; those that started at or
/// before its horizon, whose first copy it may have forgotten, are looked
/// up in the partition's files ([`super::older`]). The ids of the spans
/// written join `recent`, for good once the file is in place.
pub fn write_partition_after(
    root: &Path,
    key: &PartitionKey,
    batches: &[RecordBatch],
    wal_segment: u64,
    recent: &mut RecentSpans,
) -> Result<Written, WriteError> {
    let dir =
        schema::layout::partition_dir_for_day(root, key.table, &key.date, key.run_id.as_deref());
    fs::create_dir_all(&dir).map_err(|source| WriteError::Io {
        path: dir.clone(),
        source,
    })?;
    if key.table != Table::Spans || recent.is_off() {
        let prepared = prepare(key.table, batches, |_| false)?;
        return write_prepared(&dir, key.table, &prepared, wal_segment);
    }
    // One probe per span both drops repeats and adds new ids. Should the
    // write fail, the flush's ids are forgotten: kept, they would make its
    // retry drop its own rows.
    let mut flush = recent.begin(Instant::now());
    let written = recent.horizon(&dir).and_then(|horizon| {
        let mut prepared = prepare_keeping(key.table, batches, |keys, new| {
            recent.claim_all(&mut flush, keys, new)
        })?;
        // Before the lookup drops any: every id claimed counts.
        let latest_start = prepared.max_time;
        let suspects = prepared.spans_until(horizon);
        let looked_up = suspects.len();
        let mut settled = true;
        let mut lookup_rows_read = 0;
        if looked_up > 0 {
            let lookup = recent.footers.held(&dir, suspects)?;
            prepared.drop_spans(&lookup.held);
            lookup_rows_read = lookup.rows_read;
            // A file left out may hold a copy: compaction compares it.
            settled = lookup.every_file_read;
        }
        let written = write_prepared(&dir, key.table, &prepared, wal_segment)?;
        let written = Written {
            looked_up,
            lookup_rows_read,
            settled,
            ..written
        };
        Ok((written, latest_start))
    });
    match written {
        Ok((written, latest_start)) => {
            recent.commit(flush, &dir, latest_start, Instant::now());
            Ok(written)
        }
        Err(e) => {
            recent.abandon(flush);
            Err(e)
        }
    }
}

/// Writes the rows of one flush as a file in `dir`, unless every row was a
/// repeat.
fn write_prepared(
    dir: &Path,
    table: Table,
    prepared: &Prepared,
    wal_segment: u64,
) -> Result<Written, WriteError> {
    let rows = prepared.num_rows();
    if rows == 0 && prepared.duplicates > 0 {
        // Safe to leave no file: should the log be replayed, its rows are
        // repeats again (`recent` is read back from the files at start).
        return Ok(Written {
            rows,
            duplicates: prepared.duplicates,
            ..Written::default()
        });
    }
    let name = file_name(prepared.min_time, wal_segment);
    write_file(dir, &name, table, prepared, &[])?;
    Ok(Written {
        path: Some(dir.join(name)),
        rows,
        duplicates: prepared.duplicates,
        ..Written::default()
    })
}

/// `part-<min time>-w<segment>-<random>.parquet`.
pub(crate) fn file_name(min_time: i64, wal_segment: u64) -> String {
    format!(
        "part-{min_time:020}-w{wal_segment:020}-{:016x}.parquet",
        rand::random::<u64>()
    )
}

/// Rows ready to write: the order of the kept rows by time, duplicates
/// removed, over the batches they are still in.
pub(crate) struct Prepared<'a> {
    sources: Vec<&'a RecordBatch>,
    /// (batch, row) of every row kept, in the file's order.
    order: Vec<(usize, usize)>,
    schema: SchemaRef,
    pub time_index: usize,
    pub min_time: i64,
    pub max_time: i64,
    pub duplicates: usize,
}

impl Prepared<'_> {
    /// The start time and key of each span kept that started at or before
    /// `horizon`: the first rows, in time order.
    fn spans_until(&self, horizon: i64) -> Vec<(i64, SpanKey)> {
        let mut spans = Vec::new();
        // Each batch's id columns, found by name once: rows in time order
        // hop between batches, and finding them per row took some 20 ms of
        // a flush of 200,000 spans all looked up (BENCHMARKS.md).
        let mut ids = vec![None; self.sources.len()];
        for &(b, row) in &self.order {
            let time = self.time(b, row);
            if time > horizon {
                break;
            }
            let (trace_col, span_col) = *ids[b]
                .get_or_insert_with(|| id_columns(self.sources[b]).expect("span batches have ids"));
            spans.push((time, span_key(trace_col, span_col, row)));
        }
        spans
    }

    /// Drops the first rows (those of [`Self::spans_until`]) whose flag in
    /// `held` is set, and counts them as duplicates.
    fn drop_spans(&mut self, held: &[bool]) {
        if !held.contains(&true) {
            return;
        }
        let before = self.order.len();
        let mut held = held.iter();
        self.order
            .retain(|_| !held.next().is_some_and(|&stored| stored));
        self.duplicates += before - self.order.len();
        if let (Some(&(b, row)), Some(&(last_b, last_row))) =
            (self.order.first(), self.order.last())
        {
            (self.min_time, self.max_time) = (self.time(b, row), self.time(last_b, last_row));
        }
    }

    fn time(&self, b: usize, row: usize) -> i64 {
        self.sources[b]
            .column(self.time_index)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .expect("time columns are ns timestamps")
            .value(row)
    }
}

/// Rows gathered at a time when a file is written. Gathering a whole flush
/// at once (200,000 rows by default) made a copy of all of it in memory
/// fresh from the operating system: page faults and the kernel zeroing
/// pages were a quarter of the collector's time (BENCHMARKS.md). A chunk
/// this size is freed before the next is gathered, so its memory is reused.
const GATHER_ROWS: usize = 8 * 1024;

impl Prepared<'_> {
    /// Rows the file will hold.
    pub fn num_rows(&self) -> usize {
        self.order.len()
    }

    /// The rows in the file's order, at most `GATHER_ROWS` to a batch, each
    /// gathered only when the iterator reaches it.
    #[cfg(test)]
    pub fn chunks(&self) -> impl Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>> {
        let mut local = vec![usize::MAX; self.sources.len()];
        self.order
            .chunks(GATHER_ROWS)
            .map(move |rows| self.gather(rows, &mut local).batch(&self.schema))
    }

    /// `rows` over the batches they are in. `local` is scratch space, one
    /// `usize::MAX` per source batch, and is left so.
    fn gather(&self, rows: &[(usize, usize)], local: &mut [usize]) -> Gather<'_> {
        // Hand the gather only the batches these rows draw on: it sets up
        // every source it is given, for every column, and rows sorted by
        // time come from a few neighbouring batches.
        let mut batches = Vec::new();
        let indices = rows
            .iter()
            .map(|&(batch, row)| {
                if local[batch] == usize::MAX {
                    local[batch] = batches.len();
                    batches.push(batch);
                }
                (local[batch], row)
            })
            .collect();
        for (batch, _) in rows {
            local[*batch] = usize::MAX;
        }
        Gather {
            all: &self.sources,
            batches,
            indices,
        }
    }

    /// For string column `c`, the one value of each source batch that holds
    /// one value in every row, and no NULL. A request's spans mostly share
    /// their service, scope, kind, method and step, and requests of the
    /// same value share one array (`convert::repeated`): each distinct
    /// array is read once.
    fn one_values(&self, c: usize) -> Vec<Option<&str>> {
        let mut read: AHashMap<usize, Option<&str>> = AHashMap::new();
        self.sources
            .iter()
            .map(|batch| {
                let column = batch.column(c);
                // The array's address: the key of the arrays batches share.
                let at = Arc::as_ptr(column).cast::<()>() as usize;
                *read.entry(at).or_insert_with(|| one_value(column))
            })
            .collect()
    }
}

/// The value of every row of `array`, if it is a string array of one value
/// and no NULL.
fn one_value(array: &ArrayRef) -> Option<&str> {
    all_the_same(array.as_string_opt::<i32>()?.iter())
}

/// The value every item holds, if none is `None` and all are equal.
fn all_the_same<T: PartialEq + Copy>(mut items: impl Iterator<Item = Option<T>>) -> Option<T> {
    let first = items.next()??;
    items.all(|item| item == Some(first)).then_some(first)
}

/// Some rows of a flush, in the file's order, as (source, row) over the few
/// batches they come from; each column is copied out only when asked for.
struct Gather<'a> {
    /// The flush's batches.
    all: &'a [&'a RecordBatch],
    /// The sources: the index in `all` of each batch these rows draw on.
    batches: Vec<usize>,
    indices: Vec<(usize, usize)>,
}

impl Gather<'_> {
    /// Column `c` of each source.
    fn columns(&self, c: usize) -> impl Iterator<Item = &ArrayRef> {
        self.batches
            .iter()
            .map(move |&batch| self.all[batch].column(c))
    }

    /// The value every row holds, when each source holds only it:
    /// `one_values` as [`Prepared::one_values`] gives them.
    fn one_value<'v>(&self, one_values: &[Option<&'v str>]) -> Option<&'v str> {
        all_the_same(self.batches.iter().map(|&batch| one_values[batch]))
    }

    /// The rows of column `c` as one array.
    fn column(&self, c: usize, field: &Field) -> Result<ArrayRef, arrow::error::ArrowError> {
        let arrays: Vec<&dyn Array> = self.columns(c).map(|a| a.as_ref()).collect();
        // Most spans carry few of the promoted columns, and many leave trace
        // state, versions and status message unset: such a column is NULL in
        // every source, and gathering it row by row would only give NULLs back.
        if arrays.iter().all(|a| a.null_count() == a.len()) {
            Ok(new_null_array(field.data_type(), self.indices.len()))
        } else if let Some(empty) = all_empty(&arrays, self.indices.len()) {
            Ok(empty)
        } else if let DataType::FixedSizeBinary(width) = field.data_type() {
            gather_fixed(&arrays, &self.indices, *width)
        } else {
            interleave(&arrays, &self.indices)
        }
    }

    #[cfg(test)]
    fn batch(&self, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(c, field)| self.column(c, field))
            .collect::<Result<Vec<_>, _>>()?;
        // The file's schema exactly, whatever metadata the inputs carried.
        RecordBatch::try_new(schema.clone(), columns)
    }

    /// Hands the values of column `c` to `encoder`, row by row, straight
    /// from the sources; or, to a dictionary, as one run when every source
    /// holds one value, the same (`one_values`, as
    /// [`Prepared::one_values`] gives them for the column).
    fn encode(
        &self,
        c: usize,
        encoder: &mut Encoder,
        one_values: Option<&[Option<&str>]>,
    ) -> Result<Result<(), Refused>, arrow::error::ArrowError> {
        let columns: Vec<&ArrayRef> = self.columns(c).collect();
        // Many of the promoted columns are NULL in every source.
        if columns.iter().all(|a| a.null_count() == a.len()) {
            return Ok(encoder.push_nulls(self.indices.len()));
        }
        let wrong = |a: &ArrayRef| {
            arrow::error::ArrowError::SchemaError(format!(
                "column {c}, written here, holds {}",
                a.data_type()
            ))
        };
        let strings = || {
            columns
                .iter()
                .map(|a| a.as_string_opt::<i32>().ok_or_else(|| wrong(a)))
                .collect::<Result<Vec<_>, _>>()
        };
        let ids = || {
            columns
                .iter()
                .map(|a| a.as_fixed_size_binary_opt().ok_or_else(|| wrong(a)))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(match encoder {
            Encoder::Strings(encoder) => match one_values.and_then(|v| self.one_value(v)) {
                Some(value) => encoder.push_run(value.as_bytes(), self.indices.len()),
                None => self.push(&strings()?, |v| encoder.push(v.map(str::as_bytes))),
            },
            Encoder::PlainStrings(encoder) => {
                self.push(&strings()?, |v| encoder.push(v.map(str::as_bytes)))
            }
            Encoder::Ids(encoder) => self.push(&ids()?, |v| encoder.push(v)),
            // As `DeltaColumn::push` takes them: 32-bit values widened.
            Encoder::Ints(encoder) => match columns[0].data_type() {
                DataType::Int64 => {
                    self.push_ints(&numbers::<Int64Type>(&columns, wrong)?, encoder, |v| v)
                }
                DataType::Timestamp(..) => self.push_ints(
                    &numbers::<TimestampNanosecondType>(&columns, wrong)?,
                    encoder,
                    |v| v,
                ),
                DataType::Int32 => {
                    self.push_ints(&numbers::<Int32Type>(&columns, wrong)?, encoder, i64::from)
                }
                DataType::UInt32 => {
                    self.push_ints(&numbers::<UInt32Type>(&columns, wrong)?, encoder, i64::from)
                }
                _ => return Err(wrong(columns[0])),
            },
        })
    }

    /// Hands `encoder` the value of each row, from `arrays` (one per
    /// source), `widen`ed. Where no source holds a NULL, as in most
    /// batches, values are read straight from the sources' buffers.
    fn push_ints<T: ArrowPrimitiveType>(
        &self,
        arrays: &[&PrimitiveArray<T>],
        encoder: &mut DeltaColumn,
        widen: impl Fn(T::Native) -> i64,
    ) -> Result<(), Refused> {
        if arrays.iter().any(|a| a.null_count() > 0) {
            return self.push(arrays, |v| encoder.push(v.map(&widen)));
        }
        let values: Vec<&[T::Native]> = arrays.iter().map(|a| a.values().as_ref()).collect();
        encoder.extend(
            self.indices
                .iter()
                .map(|&(source, row)| widen(values[source][row])),
        );
        Ok(())
    }

    /// Hands `push` the value of each row, from `arrays` (one per source),
    /// until it refuses one.
    #[inline]
    fn push<A: ArrayAccessor>(
        &self,
        arrays: &[A],
        mut push: impl FnMut(Option<A::Item>) -> Result<(), Refused>,
    ) -> Result<(), Refused> {
        for &(source, row) in &self.indices {
            let array = &arrays[source];
            push(array.is_valid(row).then(|| array.value(row)))?;
        }
        Ok(())
    }
}

/// `columns` (one per source) as arrays of `T`, or the error `wrong` makes.
fn numbers<'a, T: ArrowPrimitiveType>(
    columns: &[&'a ArrayRef],
    wrong: impl Fn(&ArrayRef) -> arrow::error::ArrowError,
) -> Result<Vec<&'a PrimitiveArray<T>>, arrow::error::ArrowError> {
    columns
        .iter()
        .map(|a| a.as_primitive_opt::<T>().ok_or_else(|| wrong(a)))
        .collect()
}

/// `rows` empty lists or maps when every source holds only empty ones, with
/// no NULLs: the attribute maps of spans whose attributes all went to
/// columns, and the events and links most spans lack. Gathering them row
/// by row would only copy zero offsets.
fn all_empty(arrays: &[&dyn Array], rows: usize) -> Option<ArrayRef> {
    let first = arrays.first()?;
    if !matches!(first.data_type(), DataType::List(_) | DataType::Map(..)) {
        return None;
    }
    // Asked of each source of each gather: the arrays' own accessors, not
    // an `ArrayData` built for each.
    let empty = |a: &&dyn Array| {
        a.null_count() == 0
            && match a.data_type() {
                DataType::List(_) => a
                    .as_list_opt::<i32>()
                    .is_some_and(|l| l.values().is_empty()),
                DataType::Map(..) => a.as_map_opt().is_some_and(|m| m.entries().is_empty()),
                _ => false,
            }
    };
    if !arrays.iter().all(empty) {
        return None;
    }
    let data = first.to_data();
    let offsets = MutableBuffer::from_len_zeroed((rows + 1) * std::mem::size_of::<i32>());
    let empty = ArrayData::builder(first.data_type().clone())
        .len(rows)
        .add_buffer(offsets.into())
        .child_data(vec![data.child_data()[0].slice(0, 0)])
        .build()
        .ok()?;
    Some(make_array(empty))
}

/// `interleave` for ids: arrow gathers fixed-size binary values through its
/// generic path, a call per row; this copies each id's bytes.
fn gather_fixed(
    arrays: &[&dyn Array],
    indices: &[(usize, usize)],
    width: i32,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let arrays = arrays
        .iter()
        .map(|a| {
            a.as_any()
                .downcast_ref::<FixedSizeBinaryArray>()
                .ok_or_else(|| {
                    arrow::error::ArrowError::SchemaError(format!(
                        "a FixedSizeBinary({width}) column holds {}",
                        a.data_type()
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut values = MutableBuffer::with_capacity(indices.len() * width as usize);
    for &(array, row) in indices {
        values.extend_from_slice(arrays[array].value(row));
    }
    let nulls = arrays
        .iter()
        .any(|a| a.null_count() > 0)
        .then(|| NullBuffer::from_iter(indices.iter().map(|&(a, row)| arrays[a].is_valid(row))));
    Ok(Arc::new(FixedSizeBinaryArray::try_new(
        width,
        values.into(),
        nulls,
    )?))
}

/// Orders the rows of `batches` by time and, for spans, keeps one row per
/// (trace_id, span_id): client retries resend spans already accepted, and
/// the first to arrive is kept. Spans for which `stored` is true (their ids
/// are in a file already) are dropped as repeats. No row is copied here:
/// [`Prepared::chunks`] gathers them from the batches as they are, in their
/// final order, while the file is written.
pub(crate) fn prepare<'a>(
    table: Table,
    batches: &'a [RecordBatch],
    stored: impl Fn(&SpanKey) -> bool,
) -> Result<Prepared<'a>, WriteError> {
    prepare_keeping(table, batches, |keys, keep| {
        let mut seen = AHashSet::with_capacity(keys.len());
        for (key, keep) in keys.iter().zip(keep) {
            *keep = !stored(key) && seen.insert(*key);
        }
    })
}

/// [`prepare`], keeping the spans that `keep` marks: it is given the keys
/// of all the spans in arrival order, and a flag to set for each.
fn prepare_keeping<'a>(
    table: Table,
    batches: &'a [RecordBatch],
    keep: impl FnOnce(&[SpanKey], &mut [bool]),
) -> Result<Prepared<'a>, WriteError> {
    let arrow_err = |source| WriteError::Arrow { table, source };
    let schema = table.file_schema();
    let time_index = schema.index_of(table.time_column()).map_err(arrow_err)?;
    let times = batches
        .iter()
        .map(|batch| {
            batch
                .column(time_index)
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .ok_or_else(|| {
                    arrow_err(arrow::error::ArrowError::SchemaError(
                        "time columns are ns timestamps".into(),
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // (time, batch, row) of every row kept, in arrival order: the time read
    // once here, not at each comparison of the sort.
    let mut rows: Vec<(i64, usize, usize)> =
        Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    let mut duplicates = 0;
    if table == Table::Spans {
        let mut keys = Vec::with_capacity(rows.capacity());
        for batch in batches {
            let (traces, spans) = id_columns(batch).map_err(arrow_err)?;
            keys.extend((0..batch.num_rows()).map(|row| span_key(traces, spans, row)));
        }
        let mut kept = vec![false; keys.len()];
        keep(&keys, &mut kept);
        let mut kept = kept.into_iter();
        for (b, batch) in batches.iter().enumerate() {
            for (row, keep) in (0..batch.num_rows()).zip(kept.by_ref()) {
                if keep {
                    rows.push((times[b].value(row), b, row));
                } else {
                    duplicates += 1;
                }
            }
        }
    } else {
        for (b, batch) in batches.iter().enumerate() {
            rows.extend((0..batch.num_rows()).map(|row| (times[b].value(row), b, row)));
        }
    }
    // Stable, so rows of equal time keep their arrival order.
    rows.sort_by_key(|&(time, ..)| time);
    let (min_time, max_time) = match (rows.first(), rows.last()) {
        (Some(first), Some(last)) => (first.0, last.0),
        _ => (0, 0),
    };
    let rows = rows.into_iter().map(|(_, b, row)| (b, row)).collect();
    Ok(Prepared {
        sources: batches.iter().collect(),
        order: rows,
        schema,
        time_index,
        min_time,
        max_time,
        duplicates,
    })
}

/// Bytes a file is written in at a time. `parquet` copies each column
/// chunk made here into the file 8 KiB at a time, and its own buffer is no
/// larger: unbuffered, that was a `write` call per 8 KiB, and the page
/// cache zeroing the part of each page a write left out, about 3.6% of the
/// collector's CPU in its bench (BENCHMARKS.md).
const WRITE_BUFFER: usize = 512 * 1024;

/// Writes `prepared` as `dir/name`: temporary name, fsync, rename, fsync of
/// the folder. `compacted_from` names the files it replaces (metadata only).
pub(crate) fn write_file(
    dir: &Path,
    name: &str,
    table: Table,
    prepared: &Prepared,
    compacted_from: &[String],
) -> Result<(), WriteError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Io { path, source }
    };
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let write = || -> Result<(), WriteError> {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let file = encode(
            io::BufWriter::with_capacity(WRITE_BUFFER, file),
            table,
            prepared,
            properties(table, prepared, compacted_from),
        )?;
        let file = file
            .into_inner()
            .map_err(|e| io_err(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp))
    };
    if let Err(e) = write() {
        // Not data; left behind it would wait for the next start's sweep.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    if let Err(e) = sync_dir(dir) {
        // Not known to last: the caller fails and writes the rows again
        // (a flush) or keeps its inputs (a merge), so this copy must go.
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(())
}

/// Writes `prepared` to `out` as one Parquet file, as `ArrowWriter` would,
/// one row group per [`ROW_GROUP_ROWS`] rows. The columns that
/// [`Settings::for_column`] takes (strings, ids, and integers and times
/// written as deltas) are encoded here, straight from the source batches
/// ([`super::columns`]); the rest are gathered `GATHER_ROWS` rows at a
/// time and encoded by `parquet`.
fn encode<W: io::Write + Send>(
    out: W,
    table: Table,
    prepared: &Prepared,
    mut props: WriterProperties,
) -> Result<W, WriteError> {
    let parquet_err = |source| WriteError::Parquet { table, source };
    let arrow_err = |source| WriteError::Arrow { table, source };
    let schema = &prepared.schema;
    // What building each gathered chunk as a batch of the file's schema
    // checked, when every column went through parquet's writer: each
    // source holds the file's types, and no NULL where the schema has none
    // (parquet's writer would store one as an empty value).
    for batch in &prepared.sources {
        let mismatch = (batch.num_columns() != schema.fields().len())
            .then(|| {
                format!(
                    "{} columns, not {}",
                    batch.num_columns(),
                    schema.fields().len()
                )
            })
            .or_else(|| {
                schema
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .find_map(|(field, column)| {
                        if column.data_type() != field.data_type() {
                            Some(format!(
                                "column {} holds {}, not {}",
                                field.name(),
                                column.data_type(),
                                field.data_type()
                            ))
                        } else if !field.is_nullable() && column.null_count() > 0 {
                            Some(format!(
                                "column {} holds NULLs, which its schema does not allow",
                                field.name()
                            ))
                        } else {
                            None
                        }
                    })
            });
        if let Some(mismatch) = mismatch {
            return Err(arrow_err(arrow::error::ArrowError::SchemaError(mismatch)));
        }
    }
    let descr = ArrowSchemaConverter::new()
        .with_coerce_types(props.coerce_types())
        .convert(schema)
        .map_err(parquet_err)?;
    add_encoded_arrow_schema_to_metadata(schema, &mut props);
    // The leaves of each field, in order: a map or a list of structs has
    // several, a string one.
    let mut leaves: Vec<Range<usize>> = vec![0..0; schema.fields().len()];
    for leaf in 0..descr.num_columns() {
        let field = descr.get_column_root_idx(leaf);
        if leaves[field].is_empty() {
            leaves[field] = leaf..leaf;
        }
        leaves[field].end = leaf + 1;
    }
    let ours: Vec<Option<Settings>> = schema
        .fields()
        .iter()
        .zip(&leaves)
        .map(|(field, leaves)| {
            Settings::for_column(&props, &descr.column(leaves.start), field.data_type())
        })
        .collect();
    // The one value of each source, for the string columns encoded here.
    let one_values: Vec<Option<Vec<Option<&str>>>> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(c, field)| {
            (ours[c].is_some() && field.data_type() == &DataType::Utf8)
                .then(|| prepared.one_values(c))
        })
        .collect();
    let writers_props = props.clone();
    let mut writer = SerializedFileWriter::new(out, descr.root_schema_ptr(), Arc::new(props))
        .map_err(parquet_err)?;
    let writers_for = |group: usize, compressed: &dyn Fn(usize) -> bool| {
        column_writers(&descr, &writers_props, schema, &leaves, group, compressed)
    };
    // How each column's next row group is written.
    let mut ways: Vec<Way> = ours
        .iter()
        .map(|settings| match settings {
            Some(_) => Way::Ours,
            None => Way::Parquet,
        })
        .collect();
    let mut local = vec![usize::MAX; prepared.sources.len()];
    for (group, rows) in prepared.order.chunks(ROW_GROUP_ROWS).enumerate() {
        let new_encoder = |c: usize, way: Way| -> Result<Option<Encoder>, WriteError> {
            let Some(settings) = &ours[c] else {
                return Ok(None);
            };
            let descr = descr.column(leaves[c].start);
            Ok(match way {
                Way::Ours => {
                    Some(Encoder::new(descr, settings.clone(), rows.len()).map_err(parquet_err)?)
                }
                Way::Plain => Some(Encoder::plain(descr, settings.clone())),
                Way::Parquet => None,
            })
        };
        let mut encoders: Vec<Option<Encoder>> = ways
            .iter()
            .enumerate()
            .map(|(c, &way)| new_encoder(c, way))
            .collect::<Result<_, _>>()?;
        let mut writers = writers_for(group, &|c| encoders[c].is_none()).map_err(parquet_err)?;
        for (n, chunk) in rows.chunks(GATHER_ROWS).enumerate() {
            let gather = prepared.gather(chunk, &mut local);
            for (c, field) in schema.fields().iter().enumerate() {
                let earlier = || rows[..n * GATHER_ROWS].chunks(GATHER_ROWS);
                if let Some(encoder) = &mut encoders[c] {
                    let one_values = one_values[c].as_deref();
                    let refused = match gather.encode(c, encoder, one_values).map_err(arrow_err)? {
                        Ok(()) => continue,
                        Err(refused) => refused,
                    };
                    // A string column refused its dictionary is written
                    // PLAIN here, from the start of the row group. Later
                    // row groups are PLAIN too when PLAIN was measured
                    // smaller, or every value so far was distinct (URLs
                    // with their query strings); else they try the
                    // dictionary again. `Some(rest_of_file)` if PLAIN.
                    let plain = match (refused, &encoder) {
                        (Refused::PlainIsSmaller, _) => Some(true),
                        (Refused::TooManyValues, Encoder::Strings(strings)) => {
                            Some(strings.all_distinct())
                        }
                        _ => None,
                    };
                    if let Some(rest_of_file) = plain {
                        if rest_of_file {
                            ways[c] = Way::Plain;
                        }
                        let mut plain = new_encoder(c, Way::Plain)?.expect("a string column");
                        let mut taken = Ok(());
                        for earlier in earlier().chain([chunk]) {
                            taken = prepared
                                .gather(earlier, &mut local)
                                .encode(c, &mut plain, None)
                                .map_err(arrow_err)?;
                            if taken.is_err() {
                                break;
                            }
                        }
                        encoders[c] = Some(plain);
                        if taken.is_ok() {
                            continue;
                        }
                    }
                    // Otherwise parquet's writer takes the column over from
                    // the start of the row group, with a writer that
                    // compresses.
                    encoders[c] = None;
                    ways[c] = Way::Parquet;
                    let mut own = writers_for(group, &|other| other == c)
                        .map_err(parquet_err)?
                        .into_iter()
                        .skip(leaves[c].start)
                        .take(leaves[c].len());
                    for writer in &mut writers[leaves[c].clone()] {
                        *writer = own.next().expect("a writer for each leaf");
                    }
                    for earlier in earlier() {
                        let column = prepared
                            .gather(earlier, &mut local)
                            .column(c, field)
                            .map_err(arrow_err)?;
                        write_leaves(field, &column, &mut writers[leaves[c].clone()])
                            .map_err(parquet_err)?;
                    }
                }
                let column = gather.column(c, field).map_err(arrow_err)?;
                write_leaves(field, &column, &mut writers[leaves[c].clone()])
                    .map_err(parquet_err)?;
            }
        }
        let mut group_writer = writer.next_row_group().map_err(parquet_err)?;
        let mut writers = writers.into_iter();
        for (encoder, leaves) in encoders.into_iter().zip(&leaves) {
            // Taken either way: an encoded column's own writer goes unused.
            let writers: Vec<_> = writers.by_ref().take(leaves.len()).collect();
            match encoder {
                Some(encoder) => {
                    let (bytes, close) = encoder.finish().map_err(parquet_err)?;
                    group_writer
                        .append_column(&bytes, close)
                        .map_err(parquet_err)?;
                }
                None => {
                    for writer in writers {
                        writer
                            .close()
                            .and_then(|chunk| chunk.append_to_row_group(&mut group_writer))
                            .map_err(parquet_err)?;
                    }
                }
            }
        }
        group_writer.close().map_err(parquet_err)?;
    }
    writer.into_inner().map_err(parquet_err)
}

/// How [`encode`] begins a row group of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// With an encoder of [`super::columns`]: a dictionary for strings.
    Ours,
    /// Strings PLAIN: an earlier row group measured PLAIN smaller
    /// ([`Refused::PlainIsSmaller`]), or passed the dictionary's limit with
    /// every value distinct ([`Refused::TooManyValues`]).
    Plain,
    /// With `parquet`'s writer, for the rest of the file.
    Parquet,
}

/// Column writers for row group `group` of a file of `schema`, in which
/// only the columns `compressed` names get the codec `props` gives them.
/// A writer makes a zstd compression and decompression context whether or
/// not it writes anything, and the columns encoded here leave theirs idle:
/// making contexts was about 1.3% of the collector's CPU in its bench
/// (BENCHMARKS.md). The rest are made UNCOMPRESSED, which makes none.
fn column_writers(
    descr: &parquet::schema::types::SchemaDescriptor,
    props: &WriterProperties,
    schema: &arrow::datatypes::SchemaRef,
    leaves: &[Range<usize>],
    group: usize,
    compressed: &dyn Fn(usize) -> bool,
) -> Result<Vec<ArrowColumnWriter>, parquet::errors::ParquetError> {
    let mut builder = props.clone().into_builder();
    for (c, leaves) in leaves.iter().enumerate() {
        if !compressed(c) {
            for leaf in leaves.clone() {
                builder = builder.set_column_compression(
                    descr.column(leaf).path().clone(),
                    Compression::UNCOMPRESSED,
                );
            }
        }
    }
    // The factory takes its properties from a file writer: this one, given
    // the same schema, writes nowhere.
    let sink = SerializedFileWriter::new(
        io::sink(),
        descr.root_schema_ptr(),
        Arc::new(builder.build()),
    )?;
    ArrowRowGroupWriterFactory::new(&sink, schema.clone()).create_column_writers(group)
}

/// Writes one column's array through the writers of its leaves.
fn write_leaves(
    field: &Field,
    column: &ArrayRef,
    writers: &mut [ArrowColumnWriter],
) -> Result<(), parquet::errors::ParquetError> {
    for (leaf, writer) in compute_leaves(field, column)?.iter().zip(writers) {
        writer.write(leaf)?;
    }
    Ok(())
}

/// fsync of a folder, so renames and deletions in it survive a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| WriteError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Integer columns besides the times that are written as deltas: distinct,
/// and close to their neighbours in time order. Every integer column of
/// the spans table is too (see [`properties`]).
const DELTAS: &[(Table, &str)] = &[(Table::Ledger, schema::ledger::col::REQUEST_ID)];

/// Times that keep their dictionary: a metric point's start time repeats
/// for every point of its series and is not in time order.
const REPEATED_TIMES: &[(Table, &str)] = &[
    (Table::MetricsNumber, schema::metrics::col::START_TIME),
    (Table::MetricsHistogram, schema::metrics::col::START_TIME),
    (Table::MetricsExpHistogram, schema::metrics::col::START_TIME),
    (Table::MetricsSummary, schema::metrics::col::START_TIME),
];

/// zstd's fastest level. Against level 3, a quickstart run's spans came out
/// 0.8% larger and the analyzer bench's 0.03% (`cargo run --release -p
/// collector --example rewrite`), for less CPU per flush (BENCHMARKS.md):
/// most of a span's bytes are ids and times, which no level shrinks much.
const ZSTD_LEVEL: i32 = 1;

fn properties(table: Table, prepared: &Prepared, compacted_from: &[String]) -> WriterProperties {
    let rows = prepared.num_rows();
    let mut metadata = vec![
        KeyValue::new(
            schema::SCHEMA_VERSION_KEY.into(),
            schema::SCHEMA_VERSION.to_string(),
        ),
        KeyValue::new(schema::TABLE_KEY.into(), table.name().to_string()),
        KeyValue::new(schema::MIN_TIME_KEY.into(), prepared.min_time.to_string()),
        KeyValue::new(schema::MAX_TIME_KEY.into(), prepared.max_time.to_string()),
        KeyValue::new(schema::ROW_COUNT_KEY.into(), rows.to_string()),
    ];
    if !compacted_from.is_empty() {
        metadata.push(KeyValue::new(
            COMPACTED_FROM_KEY.into(),
            compacted_from.join(","),
        ));
    }
    let time_index = prepared.time_index;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).expect("valid level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: time_index as i32,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(metadata));
    // Ids and times are (nearly) all distinct: a dictionary hashes every
    // value into itself until it fills and the writer gives up on it, so
    // those columns are written without one. Times are written as deltas
    // between neighbours, which rows sorted by time keep small.
    for field in prepared.schema.fields() {
        let column = (table, field.name().as_str());
        let path = || ColumnPath::from(field.name().as_str());
        let delta = match field.data_type() {
            DataType::Timestamp(..) => !REPEATED_TIMES.contains(&column),
            // A span's other integers are either distinct (durations,
            // request ids) or few (status codes, ports, sizes, virtual
            // users). As deltas they cost less to write than through a
            // dictionary, which hashes every value, and take within 0.2%
            // of the same space on real data (BENCHMARKS.md).
            DataType::Int32 | DataType::Int64 | DataType::UInt32 if table == Table::Spans => true,
            _ => DELTAS.contains(&column),
        };
        if delta {
            props = props.set_column_encoding(path(), Encoding::DELTA_BINARY_PACKED);
        }
        if delta || matches!(field.data_type(), DataType::FixedSizeBinary(_)) {
            props = props.set_column_dictionary_enabled(path(), false);
        }
    }
    if table == Table::Spans {
        props = props
            .set_column_bloom_filter_enabled(ColumnPath::from(schema::spans::col::TRACE_ID), true)
            .set_column_bloom_filter_max_ndv(
                ColumnPath::from(schema::spans::col::TRACE_ID),
                rows.min(ROW_GROUP_ROWS) as u64,
            );
    }
    props.build()
}

/// The highest WAL segment recorded in the names of a partition's files (0 if none).
pub fn highest_wal_segment(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| wal_segment_in_name(entry.file_name().to_str()?))
        .max()
        .unwrap_or(0)
}

/// The WAL segment a data file's name records (see [`file_name`]).
pub(crate) fn wal_segment_in_name(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    rest.split('-')
        .find_map(|part| part.strip_prefix('w')?.parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::spans::request_of;
    use crate::store::testing::{batch, batch_of, write_with_row_groups};
    use arrow::array::StringArray;
    use bytes::Bytes;
    use opentelemetry_proto::tonic::trace::v1::Span;

    #[test]
    fn rows_are_sorted_by_time_and_the_first_copy_of_a_span_is_kept() {
        let t = 1_795_392_000_000_000_000u64;
        let batches = [
            batch(&[(3, t + 30, "c"), (1, t + 10, "a first")]),
            batch(&[(2, t + 20, "b"), (1, t + 5, "a resent")]),
            batch(&[(4, t + 20, "d")]),
        ];
        let prepared = prepare(Table::Spans, &batches, |_| false).unwrap();
        let gathered = gather(&prepared);
        let names = column::<StringArray>(&gathered, schema::spans::col::NAME);
        let names: Vec<&str> = names.iter().map(Option::unwrap).collect();
        // Equal times keep their arrival order (b before d).
        assert_eq!(names, ["a first", "b", "d", "c"]);
        assert_eq!(prepared.duplicates, 1);
        assert_eq!(
            (prepared.min_time, prepared.max_time),
            (t as i64 + 10, t as i64 + 30)
        );
        assert_eq!(gathered.schema(), Table::Spans.file_schema());
        let none = prepare(Table::Spans, &[], |_| false).unwrap();
        assert_eq!((none.num_rows(), none.chunks().count()), (0, 0));
    }

    #[test]
    fn a_flush_drops_repeats_of_its_own_spans_and_of_spans_written_before() {
        let t = 1_795_392_000_000_000_000u64;
        let root = std::env::temp_dir().join(format!("loadlens-flushes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let key = spans_key();
        let mut recent = RecentSpans::new(crate::store::Dedupe::default());
        let first = [batch(&[
            (1, t + 10, "a"),
            (2, t + 20, "b"),
            (1, t + 5, "a again"),
        ])];
        let written = write_partition_after(&root, &key, &first, 1, &mut recent).unwrap();
        assert_eq!((written.rows, written.duplicates), (2, 1));
        assert_eq!(recent.len(), 2);
        assert_eq!(names(&written.path.unwrap()), ["a", "b"]);
        // A client resends span 2 with a new one: only the new one is written.
        let second = [batch(&[(2, t + 20, "b resent"), (3, t + 30, "c")])];
        let written = write_partition_after(&root, &key, &second, 2, &mut recent).unwrap();
        assert_eq!((written.rows, written.duplicates), (1, 1));
        assert_eq!(names(&written.path.unwrap()), ["c"]);
        // Nothing new: no file at all.
        let written = write_partition_after(&root, &key, &first, 3, &mut recent).unwrap();
        assert_eq!(
            (written.path, written.rows, written.duplicates),
            (None, 0, 3)
        );
        assert_eq!(recent.len(), 3);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn spans_past_the_horizon_are_looked_up_in_the_files_that_may_hold_them() {
        let t = 1_795_392_000_000_000_000u64;
        let root = std::env::temp_dir().join(format!("loadlens-lookup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let key = spans_key();
        let dir = schema::layout::partition_dir_for_day(&root, Table::Spans, &key.date, None);
        std::fs::create_dir_all(&dir).unwrap();
        // Stored before the index was made, two spans a row group.
        let before = batch(&[
            (1, t + 10, "a"),
            (2, t + 20, "b"),
            (3, t + 30, "c"),
            (4, t + 40, "d"),
        ]);
        write_with_row_groups(&dir.join("part-other.parquet"), &before, 2);
        let mut recent = RecentSpans::new(crate::store::Dedupe {
            window: std::time::Duration::from_secs(120),
            max_spans: 2,
        });
        // Span 2 is last in that file's first row group, 3 first in its
        // second; 5 started as early as 3, but is new.
        let first = [batch(&[
            (3, t + 30, "c again"),
            (5, t + 30, "e"),
            (2, t + 20, "b again"),
            (6, t + 50, "f"),
        ])];
        let written = write_partition_after(&root, &key, &first, 1, &mut recent).unwrap();
        assert_eq!((written.rows, written.duplicates), (2, 2));
        assert_eq!(names(&written.path.unwrap()), ["e", "f"]);
        // The count bound forgets the first flush's ids.
        let second = [batch(&[(7, t + 60, "g"), (8, t + 70, "h")])];
        write_partition_after(&root, &key, &second, 2, &mut recent).unwrap();
        assert!(!recent.contains(&[6; 24]) && recent.contains(&[7; 24]));
        // Resends of 6 and 5 are found in the first flush's file, of 7 in
        // the index; 9 started before the horizon but is new.
        let third = [batch(&[
            (6, t + 50, "f again"),
            (5, t + 30, "e again"),
            (9, t + 45, "i"),
            (10, t + 80, "j"),
            (7, t + 60, "g again"),
        ])];
        let written = write_partition_after(&root, &key, &third, 3, &mut recent).unwrap();
        assert_eq!((written.rows, written.duplicates), (2, 3));
        assert!(written.settled, "every file was read");
        // The rows of the groups whose times cover 30, 45 and 50: the
        // other file's second and the first flush's file (e and f).
        assert_eq!(written.lookup_rows_read, 4);
        assert_eq!(names(&written.path.unwrap()), ["i", "j"]);
        let mut stored = Vec::new();
        for path in crate::store::compact::files(&dir, crate::store::compact::is_data_file) {
            for batch in read_file(&path) {
                let (traces, spans) = id_columns(&batch).unwrap();
                stored.extend((0..batch.num_rows()).map(|row| span_key(traces, spans, row)[0]));
            }
        }
        stored.sort();
        assert_eq!(stored, (1..=10).collect::<Vec<u8>>(), "each span once");
        // A file the lookup cannot read may hold a copy: the flush's file is
        // left for compaction to compare with it.
        std::fs::write(dir.join("part-unreadable.parquet"), b"not parquet").unwrap();
        let fourth = [batch(&[(1, t + 10, "a again"), (11, t + 90, "k")])];
        let written = write_partition_after(&root, &key, &fourth, 4, &mut recent).unwrap();
        assert_eq!((written.rows, written.duplicates), (1, 1));
        assert!(!written.settled);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn only_lists_empty_and_valid_in_every_source_skip_the_gather() {
        use arrow::array::{ListArray, StringArray as Strings};
        use arrow::buffer::OffsetBuffer;
        let item = Arc::new(Field::new("item", DataType::Utf8, true));
        let list = |nulls: Option<NullBuffer>| -> ArrayRef {
            Arc::new(ListArray::new(
                item.clone(),
                OffsetBuffer::new_zeroed(2),
                Arc::new(Strings::from(Vec::<&str>::new())),
                nulls,
            ))
        };
        let (valid, null) = (list(None), list(Some(NullBuffer::from(vec![true, false]))));
        let empty = all_empty(&[valid.as_ref(), valid.as_ref()], 3).unwrap();
        assert_eq!((empty.len(), empty.null_count()), (3, 0));
        assert_eq!(empty.as_list::<i32>().value_length(2), 0);
        assert!(all_empty(&[valid.as_ref(), null.as_ref()], 3).is_none());
        let strings: ArrayRef = Arc::new(Strings::from(vec!["a"]));
        assert!(all_empty(&[strings.as_ref()], 1).is_none());
        // A list with an entry.
        let one = ListArray::new(
            item.clone(),
            OffsetBuffer::from_lengths([0, 1]),
            Arc::new(Strings::from(vec!["a"])),
            None,
        );
        assert!(all_empty(&[valid.as_ref(), &one], 3).is_none());
        // Attribute maps, the same way.
        let map = |entries: &[(&str, &str)]| -> ArrayRef {
            let mut builder = crate::convert::values::attr_map_builder();
            for (key, value) in entries {
                builder.keys().append_value(key);
                builder.values().append_value(value);
            }
            builder.append(true).unwrap();
            builder.append(true).unwrap();
            Arc::new(builder.finish())
        };
        let (empty_map, full_map) = (map(&[]), map(&[("k", "v")]));
        let empty = all_empty(&[empty_map.as_ref(), empty_map.as_ref()], 3).unwrap();
        assert_eq!((empty.len(), empty.null_count()), (3, 0));
        assert_eq!(empty.as_map().value_length(2), 0);
        assert!(all_empty(&[empty_map.as_ref(), full_map.as_ref()], 3).is_none());
    }

    #[test]
    fn columns_null_in_every_source_gather_as_arrow_would() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
        let t = 1_795_392_000_000_000_000u64;
        // Routes in the first batch only: that column is gathered, while
        // those NULL in both (trace state, RPC, ...) are not.
        let with_route = |id: u8, start: u64| Span {
            trace_id: vec![id; 16],
            span_id: vec![id; 8],
            // A parent for one span only: ids gathered around NULLs.
            parent_span_id: if id == 2 { vec![9; 8] } else { vec![] },
            name: "GET".into(),
            start_time_unix_nano: start,
            end_time_unix_nano: start + 10,
            // One span has an attribute left in its map, so that column
            // is gathered; the events and links are empty in every source.
            attributes: [schema::attr::HTTP_ROUTE, "custom"][..id as usize]
                .iter()
                .map(|key| KeyValue {
                    key: key.to_string(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(format!("/r{id}"))),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let routed = crate::convert::spans::convert(&request_of(vec![
            with_route(1, t + 30),
            with_route(2, t + 10),
        ]))
        .unwrap()
        .batches
        .pop()
        .unwrap()
        .1;
        let gathered_as_arrow_would = |batches: &[RecordBatch]| {
            let prepared = prepare(Table::Spans, batches, |_| false).unwrap();
            let gathered = gather(&prepared);
            let expected = arrow::compute::interleave_record_batch(
                &batches.iter().collect::<Vec<_>>(),
                &prepared.order,
            )
            .unwrap();
            for (c, field) in gathered.schema().fields().iter().enumerate() {
                assert_eq!(gathered.column(c), expected.column(c), "{}", field.name());
            }
            gathered
        };
        let plain = batch(&[(3, t + 20, "c"), (4, t, "d")]);
        // Every map empty in every source.
        let empty = gathered_as_arrow_would(&[plain.clone(), batch(&[(5, t + 1, "e")])]);
        let maps = empty
            .column_by_name(schema::spans::col::ATTRIBUTES)
            .unwrap()
            .as_map();
        assert_eq!((maps.len(), maps.entries().len()), (3, 0));
        let gathered = gathered_as_arrow_would(&[routed, plain]);
        let maps = gathered
            .column_by_name(schema::spans::col::ATTRIBUTES)
            .unwrap()
            .as_map();
        assert_eq!(maps.value_length(1), 1, "the custom attribute of span 2");
        let routes = column::<StringArray>(&gathered, schema::spans::col::HTTP_ROUTE);
        assert_eq!(
            routes.iter().collect::<Vec<_>>(),
            [None, Some("/r2"), None, Some("/r1")]
        );
        let rpc = gathered
            .column_by_name(schema::spans::col::RPC_SYSTEM)
            .unwrap();
        assert_eq!((rpc.len(), rpc.null_count()), (4, 4));
    }

    /// The encodings of each column of the first row group of the file at `path`.
    fn encodings_in(path: &Path) -> std::collections::HashMap<String, Vec<Encoding>> {
        let reader = parquet::file::reader::SerializedFileReader::new(File::open(path).unwrap());
        let reader: &dyn parquet::file::reader::FileReader = &reader.unwrap();
        let columns = reader.metadata().row_group(0).columns();
        columns
            .iter()
            .map(|c| (c.column_path().string(), c.encodings().collect()))
            .collect()
    }

    #[test]
    fn metric_times_are_deltas_but_start_times_that_repeat_keep_a_dictionary() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
            number_data_point::Value,
        };
        let t0 = 1_795_392_000_000_000_000u64;
        let points = (0..100)
            .map(|i| NumberDataPoint {
                time_unix_nano: t0 + i * 1_000_000_000,
                start_time_unix_nano: t0,
                value: Some(Value::AsInt(i as i64)),
                ..Default::default()
            })
            .collect();
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "in_flight".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: points,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut converted = crate::convert::metrics::convert(&request).unwrap();
        let (key, batch) = converted.batches.pop().unwrap();
        assert_eq!(key.table, Table::MetricsNumber);
        let root = std::env::temp_dir().join(format!("loadlens-metric-enc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let written = write_partition(&root, &key, &[batch], 1).unwrap();
        let encodings = encodings_in(&written.path.unwrap());
        use schema::metrics::col;
        assert!(encodings[col::TIME].contains(&Encoding::DELTA_BINARY_PACKED));
        assert!(!encodings[col::TIME].contains(&Encoding::RLE_DICTIONARY));
        assert!(encodings[col::START_TIME].contains(&Encoding::RLE_DICTIONARY));
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// The partition of a day's spans with no run.
    fn spans_key() -> PartitionKey {
        PartitionKey {
            table: Table::Spans,
            date: "2026-11-23".into(),
            run_id: None,
        }
    }

    /// The span names in the Parquet file at `path`, in its order.
    fn names(path: &Path) -> Vec<String> {
        read_file(path)
            .iter()
            .flat_map(|b| {
                column::<StringArray>(b, schema::spans::col::NAME)
                    .iter()
                    .map(|n| n.unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every row of the Parquet file at `path`.
    fn read_file(path: &Path) -> Vec<RecordBatch> {
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            File::open(path).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
        batch
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<T>()
            .unwrap()
    }

    fn gather(prepared: &Prepared) -> RecordBatch {
        let chunks: Vec<RecordBatch> = prepared.chunks().map(Result::unwrap).collect();
        arrow::compute::concat_batches(&prepared.schema, &chunks).unwrap()
    }

    /// Spans numbered `ids` (four-byte ids), each starting at `t0 + time(id)`.
    fn numbered(ids: std::ops::Range<u32>, t0: u64, time: impl Fn(u32) -> u64) -> RecordBatch {
        batch_of(ids.map(|id| (id.to_be_bytes().to_vec(), t0 + time(id), "span")))
    }

    #[test]
    fn a_file_larger_than_one_gather_holds_every_row_in_time_order() {
        let t0 = 1_795_392_000_000_000_000u64;
        let n = 2 * GATHER_ROWS as u32 + 1000;
        // Three batches whose times interleave: every chunk draws on all of
        // them. Ids start at 1: all-zero ids are invalid.
        let time = |id: u32| u64::from(id % 3) * 1_000_000 + u64::from(id);
        let batches: Vec<RecordBatch> = (0..3)
            .map(|b| numbered(1 + b * n / 3..1 + (b + 1) * n / 3, t0, time))
            .collect();
        let root = std::env::temp_dir().join(format!("loadlens-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let key = spans_key();
        let written = write_partition(&root, &key, &batches, 7).unwrap();
        assert_eq!((written.rows, written.duplicates), (n as usize, 0));
        let path = written.path.unwrap();
        // Distinct ids and times have no dictionary; times are deltas; a
        // repeated string keeps its dictionary.
        let encodings = encodings_in(&path);
        use schema::spans::col;
        for name in [col::TRACE_ID, col::SPAN_ID, col::START_TIME, col::END_TIME] {
            let used = &encodings[name];
            assert!(
                !used.contains(&Encoding::RLE_DICTIONARY),
                "{name}: {used:?}"
            );
        }
        for name in [col::START_TIME, col::DURATION_NS, col::FLAGS] {
            assert!(
                encodings[name].contains(&Encoding::DELTA_BINARY_PACKED),
                "{name}: {:?}",
                encodings[name]
            );
            assert!(
                !encodings[name].contains(&Encoding::RLE_DICTIONARY),
                "{name}: {:?}",
                encodings[name]
            );
        }
        assert!(encodings[col::NAME].contains(&Encoding::RLE_DICTIONARY));
        let mut times = Vec::new();
        for batch in read_file(&path) {
            let starts = column::<TimestampNanosecondArray>(&batch, schema::spans::col::START_TIME);
            times.extend(starts.values().iter().copied());
        }
        let mut expected: Vec<i64> = (1..=n).map(|id| (t0 + time(id)) as i64).collect();
        expected.sort_unstable();
        assert_eq!(times, expected);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Spans of the file schema, numbered from 0 and starting in that
    /// order, whose string, id and integer columns take every shape the
    /// encoders meet. Each block of 50,000 rows is split over three source batches
    /// (row `i` in the block's batch `i % 3`), so a gather draws on three
    /// batches, or six where blocks meet.
    fn column_shapes(rows: usize) -> Vec<RecordBatch> {
        const BLOCK: usize = 50_000;
        use schema::spans::col;
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = move |below: u64| {
            // xorshift64: any fixed sequence will do.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let mut runs = Vec::new();
        while runs.len() < rows {
            let (length, value) = (1 + random(20) as usize, random(12));
            runs.extend(std::iter::repeat_n(Some(format!("op-{value}")), length));
        }
        runs.truncate(rows);
        let per_row = |f: &dyn Fn(usize) -> Option<String>| (0..rows).map(f).collect::<Vec<_>>();
        let long = "x".repeat(65);
        let strings: Vec<(&str, Vec<Option<String>>)> = vec![
            // One value: a dictionary of one entry, indices of no bits.
            (col::SERVICE_NAME, per_row(&|_| Some("checkout".into()))),
            // Required, in runs of 1 to 20 rows.
            (col::NAME, runs),
            (col::KIND, per_row(&|_| Some("CLIENT".into()))),
            (
                col::STATUS_CODE,
                per_row(&|i| Some(if i % 97 == 0 { "ERROR" } else { "OK" }.into())),
            ),
            // A new value every row: bit-packed indices.
            (
                col::HTTP_REQUEST_METHOD,
                per_row(&|i| Some(["GET", "PUT", "POST", ""][i % 4].into())),
            ),
            // Nulls here and there, and a whole page of them.
            (
                col::HTTP_ROUTE,
                per_row(&|i| match i {
                    _ if (30_000..72_000).contains(&i) || i % 7 == 0 => None,
                    _ => Some(format!("/r/{}", i % 5)),
                }),
            ),
            // Values in the first block only: later gathers draw on batches
            // where the column is NULL throughout, in a page begun with
            // values.
            (
                col::DB_SYSTEM,
                per_row(&|i| (i < BLOCK).then(|| "postgresql".into())),
            ),
            // Bytes past ASCII order by byte, not by character.
            (
                col::DEPLOYMENT_ENVIRONMENT,
                per_row(&|i| Some(["prod-é", "prod-z", "ß", "prod"][i / 1000 % 4].into())),
            ),
            // Distinct values in order: at the end of the first page (in
            // the third gather) PLAIN is measured smaller than a
            // dictionary, and the file is PLAIN from there...
            (
                col::URL_FULL,
                per_row(&|i| Some(format!("http://shop/items?q={i}"))),
            ),
            // ...here the dictionary passes 1 MiB in a later gather, after
            // a first page of values that repeat (too few new ones to weigh
            // PLAIN against the dictionary), so the row group is PLAIN and
            // the second tries a dictionary again, and keeps it...
            (
                col::URL_PATH,
                per_row(&|i| match i {
                    _ if !(20_000..ROW_GROUP_ROWS).contains(&i) => Some(format!("/a/{}", i % 8)),
                    _ => Some(format!("/u/{i}")),
                }),
            ),
            // ...and here, with nulls and an empty value, PLAIN is measured
            // smaller on the first page, so the second row group is PLAIN
            // though its one value would fit a dictionary.
            (
                col::RPC_SERVICE,
                per_row(&|i| match i {
                    _ if i % 11 == 0 => None,
                    7 => Some(String::new()),
                    _ if i < ROW_GROUP_ROWS => Some(format!("svc-{i}")),
                    _ => Some("svc".into()),
                }),
            ),
            // PLAIN is measured smaller at row 20,000, in the third gather,
            // then refuses a long value later in that gather, as the row
            // group is written again: `parquet`'s writer takes the column.
            (
                col::RPC_SYSTEM,
                per_row(&|i| match i {
                    20_100 => Some(long.clone()),
                    _ => Some(format!("sys-{i}")),
                }),
            ),
            // The same, but the long value comes in a later gather.
            (
                col::STATUS_MESSAGE,
                per_row(&|i| match i {
                    100_000 => Some(long.clone()),
                    _ => Some(format!("msg-{i}")),
                }),
            ),
            // 6,000 values in cycles, in order: PLAIN is measured smaller on
            // the first page (counting strings shrink well, and their
            // counting indices do not), so the file is PLAIN, where
            // `parquet`'s writer keeps a dictionary...
            (
                col::RPC_METHOD,
                per_row(&|i| Some(format!("Method{}", i % 6_000))),
            ),
            // ...but in scattered order, past 12-bit indices, they keep one.
            (
                col::SCENARIO,
                per_row(&|i| {
                    let user = ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 6_000;
                    let key = user.wrapping_mul(0x2545_f491_4f6c_dd1d);
                    Some(format!("/users/{key:016x}/cart"))
                }),
            ),
            // 8,000 long values in scattered order: by the end of the first
            // page most have been seen, and fewer new ones come in its second
            // half than in its first; the dictionary, projected to grow
            // less and less, is smaller than PLAIN.
            (
                col::TRACE_STATE,
                per_row(&|i| {
                    let user = ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 8_000;
                    let (a, b) = (
                        user.wrapping_mul(0x2545_f491_4f6c_dd1d),
                        user.rotate_left(29),
                    );
                    Some(format!("/users/{a:016x}/cart/{b:016x}"))
                }),
            ),
            // Distinct values of random bytes: their dictionary, projected
            // to grow as fast as the values come, is as large as PLAIN.
            (
                col::STEP,
                per_row(&|i| {
                    let mut x = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
                    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    Some(format!("{:016x}", x ^ (x >> 31)))
                }),
            ),
            // Distinct values, then nulls from the last row of the first
            // page to the end of the row group: PLAIN wins as that page
            // ends on a null, and the second row group is PLAIN too.
            (
                col::STAGE,
                per_row(&|i| match i {
                    _ if i < 19_999 => Some(format!("stage-{i}")),
                    _ if i < ROW_GROUP_ROWS => None,
                    _ => Some("late".into()),
                }),
            ),
            // Refused for a value longer than statistics keep: `parquet`'s
            // writer takes the column over.
            (
                col::ERROR_TYPE,
                per_row(&|i| match i {
                    20_000 => Some(long.clone()),
                    _ if i % 10 == 0 => Some("timeout".into()),
                    _ => None,
                }),
            ),
        ];
        let ints = |f: &dyn Fn(i64) -> Option<i64>| {
            arrow::array::Int64Array::from_iter((0..rows as i64).map(f))
        };
        let integers: Vec<(&str, arrow::array::Int64Array)> = vec![
            // Unsigned, falling from u32::MAX past i32::MAX: bounds compare
            // as unsigned integers, and go down from page to page.
            (col::FLAGS, ints(&|i| Some(u32::MAX as i64 - i * 20_000))),
            // The extremes, whose deltas wrap, among small values of
            // either sign.
            (
                col::DURATION_NS,
                ints(&|i| match i % 1_000 {
                    0 => Some(i64::MIN),
                    1 => Some(i64::MAX),
                    _ => Some(i * 7_919 % 100_000 - 50_000),
                }),
            ),
            // The same at 32 bits, with nulls here and there and a page of
            // nulls only.
            (
                col::SERVER_PORT,
                ints(&|i| match i {
                    _ if i % 13 == 0 || (60_000..82_000).contains(&i) => None,
                    _ if i % 1_000 == 3 => Some(i32::MIN.into()),
                    _ if i % 1_000 == 4 => Some(i32::MAX.into()),
                    _ => Some(8_080 + i % 3),
                }),
            ),
            // Few values, in runs: deltas of 0 but where a run changes.
            (
                col::HTTP_RESPONSE_STATUS_CODE,
                ints(&|i| Some([200, 200, 200, 503, 404][(i / 7 % 5) as usize])),
            ),
            // Counting up, with nulls: bounds that rise.
            (col::REQUEST_ID, ints(&|i| (i % 5 != 0).then_some(i))),
            // Times a little before each start, one value in the first
            // block only.
            (
                col::INTENDED_START,
                ints(&|i| Some(i - 1_000).filter(|_| i % 4 == 1)),
            ),
            (col::SHARD, ints(&|i| (i == 7).then_some(-1))),
        ];
        let schema = Table::Spans.file_schema();
        let numbers = arrow::array::Int64Array::from_iter_values(0..rows as i64);
        let ids = |width: usize| {
            FixedSizeBinaryArray::try_from_iter(
                (0..rows).map(|i| (i as u128 + 1).to_be_bytes()[16 - width..].to_vec()),
            )
            .unwrap()
        };
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| match field.name().as_str() {
                col::TRACE_ID => Arc::new(ids(16)) as ArrayRef,
                col::SPAN_ID => Arc::new(ids(8)),
                // Bytes past 0x7f, nulls here and there, a page of nulls
                // only, and pages whose bounds go down.
                col::PARENT_SPAN_ID => {
                    let parent = |i: usize| {
                        let root = i.is_multiple_of(5) || (40_000..62_000).contains(&i);
                        (!root).then(|| (u64::MAX - (i as u64 / 3) * 0x0101).to_be_bytes())
                    };
                    Arc::new(
                        FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                            (0..rows).map(parent),
                            8,
                        )
                        .unwrap(),
                    )
                }
                name if integers.iter().any(|(n, _)| *n == name) => {
                    let (_, values) = integers.iter().find(|(n, _)| *n == name).unwrap();
                    arrow::compute::cast(values, field.data_type()).unwrap()
                }
                name => match strings.iter().find(|(n, _)| *n == name) {
                    Some((_, values)) => Arc::new(StringArray::from(values.clone())),
                    None if field.is_nullable() => new_null_array(field.data_type(), rows),
                    None => arrow::compute::cast(&numbers, field.data_type()).unwrap(),
                },
            })
            .collect();
        let all = RecordBatch::try_new(schema, columns).unwrap();
        // Columns of one value in each batch, as requests of spans that
        // share a value make them: scope names the same in the three
        // batches of a block, two of them one shared array, so a gather
        // within a block is one run and one across blocks is not; server
        // addresses different in each batch of a block.
        let mut shared: std::collections::HashMap<_, ArrayRef> = Default::default();
        (0..rows.div_ceil(BLOCK) * 3)
            .map(|b| {
                let block = b / 3 * BLOCK;
                let rows = (block + b % 3..(block + BLOCK).min(rows)).step_by(3);
                let rows = arrow::array::UInt64Array::from_iter_values(rows.map(|r| r as u64));
                let batch = arrow::compute::take_record_batch(&all, &rows).unwrap();
                let (n, block) = (batch.num_rows(), b / 3);
                let one = |value: String| Arc::new(StringArray::from(vec![value; n])) as ArrayRef;
                let scope = match b % 3 {
                    2 => one(format!("scope-{block}")),
                    _ => shared
                        .entry((block, n))
                        .or_insert_with(|| one(format!("scope-{block}")))
                        .clone(),
                };
                let server = one(format!("host-{}", b % 3));
                let mut columns = batch.columns().to_vec();
                let schema = batch.schema();
                columns[schema.index_of(col::SCOPE_NAME).unwrap()] = scope;
                columns[schema.index_of(col::SERVER_ADDRESS).unwrap()] = server;
                RecordBatch::try_new(schema, columns).unwrap()
            })
            .collect()
    }

    /// A reader of `bytes` that reads the page index too.
    fn with_page_index(
        bytes: &Bytes,
    ) -> parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder<Bytes> {
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new_with_options(
            bytes.clone(),
            options,
        )
        .unwrap()
    }

    /// The file `parquet`'s own `ArrowWriter` makes of `prepared`'s rows.
    fn reference_file(prepared: &Prepared, props: WriterProperties) -> Bytes {
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(Vec::new(), prepared.schema.clone(), Some(props))
                .unwrap();
        for chunk in prepared.chunks() {
            writer.write(&chunk.unwrap()).unwrap();
        }
        Bytes::from(writer.into_inner().unwrap())
    }

    /// A file's metadata, its page index read, and its rows as one batch.
    fn read_back(
        bytes: &Bytes,
        schema: &SchemaRef,
    ) -> (Arc<parquet::file::metadata::ParquetMetaData>, RecordBatch) {
        let reader = with_page_index(bytes);
        let metadata = reader.metadata().clone();
        let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        (
            metadata,
            arrow::compute::concat_batches(schema, &batches).unwrap(),
        )
    }

    /// Whether columns of `data_type` have an encoder of ours, given the
    /// file's properties (`super::columns`): strings, ids, integers, times.
    fn of_our_encoders(data_type: &DataType) -> bool {
        matches!(
            data_type,
            DataType::Utf8
                | DataType::FixedSizeBinary(_)
                | DataType::Int32
                | DataType::UInt32
                | DataType::Int64
                | DataType::Timestamp(..)
        )
    }

    /// Checks each page's entry in the column index of every string, id
    /// and integer column against the rows the offset index says the page
    /// holds.
    fn check_page_index(bytes: &Bytes) {
        let reader = with_page_index(bytes);
        let metadata = reader.metadata().clone();
        let rows = reader
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        let rows = arrow::compute::concat_batches(&rows[0].schema(), &rows).unwrap();
        let (column_index, offset_index) = (
            metadata.column_index().unwrap(),
            metadata.offset_index().unwrap(),
        );
        let mut first_row = 0;
        for (group, meta) in metadata.row_groups().iter().enumerate() {
            for (c, chunk) in meta.columns().iter().enumerate() {
                let path = chunk.column_path();
                let Some(column) = (path.parts().len() == 1)
                    .then(|| rows.column_by_name(&path.string()))
                    .flatten()
                    .filter(|c| of_our_encoders(c.data_type()))
                else {
                    continue;
                };
                // Integers as bytes that order as they do: big-endian, the
                // sign bit of signed ones flipped.
                let int32 = |v: i32| match column.data_type() {
                    DataType::UInt32 => v.to_be_bytes().to_vec(),
                    _ => (v ^ i32::MIN).to_be_bytes().to_vec(),
                };
                let int64 = |v: i64| (v ^ i64::MIN).to_be_bytes().to_vec();
                let value = |row: usize| -> Option<Vec<u8>> {
                    if !column.is_valid(row) {
                        return None;
                    }
                    Some(match column.data_type() {
                        DataType::Utf8 => column.as_string::<i32>().value(row).as_bytes().to_vec(),
                        DataType::FixedSizeBinary(_) => {
                            column.as_fixed_size_binary().value(row).to_vec()
                        }
                        DataType::Int32 => int32(column.as_primitive::<Int32Type>().value(row)),
                        DataType::UInt32 => {
                            int32(column.as_primitive::<UInt32Type>().value(row) as i32)
                        }
                        DataType::Int64 => int64(column.as_primitive::<Int64Type>().value(row)),
                        _ => int64(column.as_primitive::<TimestampNanosecondType>().value(row)),
                    })
                };
                use parquet::file::page_index::column_index::ColumnIndexMetaData as Index;
                // A page's entry: its bounds as `int32`, `int64` or the
                // bytes give them, its nulls, and whether it holds only nulls.
                type Entry = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>, bool);
                let index: Box<dyn Fn(usize) -> Entry> = match &column_index[group][c] {
                    Index::BYTE_ARRAY(index) | Index::FIXED_LEN_BYTE_ARRAY(index) => {
                        Box::new(move |p| {
                            let bytes = |v: Option<&[u8]>| v.map(<[u8]>::to_vec);
                            (
                                bytes(index.min_value(p)),
                                bytes(index.max_value(p)),
                                index.null_count(p),
                                index.is_null_page(p),
                            )
                        })
                    }
                    Index::INT32(index) => Box::new(move |p| {
                        (
                            index.min_value(p).map(|&v| int32(v)),
                            index.max_value(p).map(|&v| int32(v)),
                            index.null_count(p),
                            index.is_null_page(p),
                        )
                    }),
                    Index::INT64(index) => Box::new(move |p| {
                        (
                            index.min_value(p).map(|&v| int64(v)),
                            index.max_value(p).map(|&v| int64(v)),
                            index.null_count(p),
                            index.is_null_page(p),
                        )
                    }),
                    _ => panic!("{path}: no column index"),
                };
                let pages = offset_index[group][c].page_locations();
                let (mut ascending, mut descending) = (true, true);
                let mut last: Option<(Vec<u8>, Vec<u8>)> = None;
                for (p, page) in pages.iter().enumerate() {
                    let start = first_row + page.first_row_index as usize;
                    let end = pages
                        .get(p + 1)
                        .map_or(first_row + meta.num_rows() as usize, |next| {
                            first_row + next.first_row_index as usize
                        });
                    let page_values: Vec<Vec<u8>> = (start..end).filter_map(value).collect();
                    let what = format!("{} row group {group} page {p}", chunk.column_path());
                    let nulls = (end - start - page_values.len()) as i64;
                    let (index_min, index_max, index_nulls, null_page) = index(p);
                    assert_eq!(index_nulls, Some(nulls), "{what}");
                    assert_eq!(null_page, page_values.is_empty(), "{what}");
                    let (min, max) = (page_values.iter().min(), page_values.iter().max());
                    if let (Some(min), Some(max)) = (min, max) {
                        // Past 64 bytes, parquet keeps a shorter bound.
                        let (index_min, index_max) = (index_min.unwrap(), index_max.unwrap());
                        let (index_min, index_max) = (index_min.as_slice(), index_max.as_slice());
                        let (min, max) = (min.as_slice(), max.as_slice());
                        if min.len() <= 64 {
                            assert_eq!(index_min, min, "{what}");
                        } else {
                            assert!(index_min.len() <= 64 && index_min <= min, "{what}");
                        }
                        if max.len() <= 64 {
                            assert_eq!(index_max, max, "{what}");
                        } else {
                            assert!(index_max.len() <= 64 && index_max >= max, "{what}");
                        }
                        if let Some((last_min, last_max)) = &last {
                            let (last_min, last_max) = (last_min.as_slice(), last_max.as_slice());
                            ascending &= last_min <= min && last_max <= max;
                            descending &= min <= last_min && max <= last_max;
                        }
                        last = Some((min.to_vec(), max.to_vec()));
                    }
                }
                let order = match (ascending, descending) {
                    (true, _) => parquet::basic::BoundaryOrder::ASCENDING,
                    (false, true) => parquet::basic::BoundaryOrder::DESCENDING,
                    _ => parquet::basic::BoundaryOrder::UNORDERED,
                };
                assert_eq!(
                    column_index[group][c].get_boundary_order(),
                    Some(order),
                    "{}",
                    chunk.column_path()
                );
            }
            first_row += meta.num_rows() as usize;
        }
    }

    #[test]
    fn a_null_where_the_schema_allows_none_fails_the_write() {
        use schema::spans::col;
        // The spans' name is required; a batch whose own schema allows it
        // to be NULL holds one.
        let good = column_shapes(10).remove(0);
        let nullable: Vec<Field> = good
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let mut columns = good.columns().to_vec();
        let name = good.schema().index_of(col::NAME).unwrap();
        columns[name] = new_null_array(&DataType::Utf8, good.num_rows());
        let bad = RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(nullable)), columns)
            .unwrap();
        let batches = [bad];
        let prepared = prepare(Table::Spans, &batches, |_| false).unwrap();
        let props = properties(Table::Spans, &prepared, &[]);
        let Err(error) = encode(Vec::new(), Table::Spans, &prepared, props) else {
            panic!("a NULL in a required column was written");
        };
        assert!(
            error.to_string().contains("column name holds NULLs"),
            "{error}"
        );
    }

    /// `batches` with trace and span ids as random as tracers make them.
    fn with_random_ids(batches: &[RecordBatch]) -> Vec<RecordBatch> {
        use schema::spans::col;
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random_id = move |width: usize| {
            let mut id = Vec::with_capacity(16);
            while id.len() < width {
                // xorshift64: any fixed sequence will do.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                id.extend_from_slice(&state.to_le_bytes());
            }
            id.truncate(width);
            id
        };
        batches
            .iter()
            .map(|batch| {
                let schema = batch.schema();
                let mut columns = batch.columns().to_vec();
                for (name, width) in [(col::TRACE_ID, 16), (col::SPAN_ID, 8)] {
                    let ids = (0..batch.num_rows()).map(|_| random_id(width));
                    columns[schema.index_of(name).unwrap()] =
                        Arc::new(FixedSizeBinaryArray::try_from_iter(ids).unwrap());
                }
                RecordBatch::try_new(schema, columns).unwrap()
            })
            .collect()
    }

    #[test]
    fn small_row_groups_are_written_plain_when_that_is_smaller() {
        use schema::spans::col;
        // One page, and two: the first page weighed at `finish`, then as
        // it ends with a second to come.
        for rows in [15_000, 30_000] {
            let batches = column_shapes(rows);
            let prepared = prepare(Table::Spans, &batches, |_| false).unwrap();
            let props = properties(Table::Spans, &prepared, &[]);
            let ours =
                Bytes::from(encode(Vec::new(), Table::Spans, &prepared, props.clone()).unwrap());
            let reference = reference_file(&prepared, props);
            let ((metadata, ours_rows), (reference_meta, reference_rows)) = (
                read_back(&ours, &prepared.schema),
                read_back(&reference, &prepared.schema),
            );
            assert_eq!(ours_rows, reference_rows, "{rows} rows");
            check_page_index(&ours);
            let chunk = |name: &str| {
                let leaf = prepared.schema.index_of(name).unwrap();
                (
                    metadata.row_group(0).column(leaf).clone(),
                    reference_meta.row_group(0).column(leaf).clone(),
                )
            };
            // Distinct values, in order or random: PLAIN, with parquet's
            // statistics.
            for name in [col::URL_FULL, col::STEP] {
                let (ours, reference) = chunk(name);
                let encodings: Vec<Encoding> = ours.encodings().collect();
                assert_eq!(
                    encodings,
                    [Encoding::PLAIN, Encoding::RLE],
                    "{name}, {rows}"
                );
                assert!(ours.dictionary_page_offset().is_none(), "{name}, {rows}");
                assert_eq!(ours.statistics(), reference.statistics(), "{name}, {rows}");
            }
            // Values in runs, and long values that repeat in scattered
            // order, keep their dictionary.
            for name in [col::NAME, col::TRACE_STATE] {
                let (ours, _) = chunk(name);
                assert!(
                    ours.encodings().any(|e| e == Encoding::RLE_DICTIONARY),
                    "{name}, {rows}"
                );
            }
        }
    }

    #[test]
    fn plain_string_pages_end_at_the_page_size_limit() {
        use schema::spans::col;
        let rows = 30_000;
        let batches = column_shapes(rows);
        let prepared = prepare(Table::Spans, &batches, |_| false).unwrap();
        // A dictionary of 64 KiB is refused after some 2,300 URLs, and
        // the column is written PLAIN.
        let limit = 16 * 1024;
        let props = properties(Table::Spans, &prepared, &[])
            .into_builder()
            .set_data_page_size_limit(limit)
            .set_dictionary_page_size_limit(64 * 1024)
            .build();
        let bytes = Bytes::from(encode(Vec::new(), Table::Spans, &prepared, props).unwrap());
        check_page_index(&bytes);
        let reader = with_page_index(&bytes);
        let metadata = reader.metadata().clone();
        let read: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        let read = arrow::compute::concat_batches(&prepared.schema, &read).unwrap();
        let urls = read
            .column_by_name(col::URL_FULL)
            .unwrap()
            .as_string::<i32>();
        let expected: Vec<String> = (0..rows)
            .map(|i| format!("http://shop/items?q={i}"))
            .collect();
        assert!(
            urls.iter()
                .map(Option::unwrap)
                .eq(expected.iter().map(String::as_str))
        );

        // Each page but the last holds the values that first reach the
        // limit, PLAIN: a length of 4 bytes and the bytes of each.
        let leaf = prepared.schema.index_of(col::URL_FULL).unwrap();
        let index = &metadata.offset_index().unwrap()[0][leaf];
        let pages = index.page_locations();
        let value_bytes = index.unencoded_byte_array_data_bytes().unwrap();
        assert!(pages.len() > 30, "{} pages", pages.len());
        for (p, page) in pages.iter().enumerate() {
            let end = pages.get(p + 1).map_or(rows as i64, |n| n.first_row_index);
            let values = (page.first_row_index..end).map(|r| 4 + expected[r as usize].len());
            assert_eq!(
                value_bytes[p] as usize,
                values.clone().map(|b| b - 4).sum::<usize>(),
                "page {p}"
            );
            let plain: usize = values.clone().sum();
            let last = values.clone().next_back().unwrap();
            assert!(plain - last < limit, "page {p}: {plain} bytes");
            if p + 1 < pages.len() {
                assert!(plain >= limit, "page {p}: {plain} bytes");
            }
        }
    }

    #[test]
    fn ids_zstd_cannot_shrink_are_stored_uncompressed() {
        use parquet::basic::Compression;
        use schema::spans::col;
        let counting = column_shapes(30_000);
        let random = with_random_ids(&counting);
        // A file does not record zstd's level: any ZSTD is zstd.
        let zstd = |codec: Compression| matches!(codec, Compression::ZSTD(_));
        for (batches, ids_compressed) in [(&counting, true), (&random, false)] {
            let prepared = prepare(Table::Spans, batches, |_| false).unwrap();
            let props = properties(Table::Spans, &prepared, &[]);
            let ours =
                Bytes::from(encode(Vec::new(), Table::Spans, &prepared, props.clone()).unwrap());
            let reader = with_page_index(&ours);
            let metadata = reader.metadata().clone();
            let codec = |name: &str| {
                metadata.row_group(0).columns()[prepared.schema.index_of(name).unwrap()]
                    .compression()
            };
            assert_eq!(zstd(codec(col::TRACE_ID)), ids_compressed);
            assert_eq!(zstd(codec(col::SPAN_ID)), ids_compressed);
            // Other columns keep the file's codec: one encoded here with a
            // dictionary, one PLAIN, one that parquet's writer took over
            // within the row group (a long value), and one it writes
            // throughout.
            for column in [col::NAME, col::URL_FULL, col::ERROR_TYPE, col::START_TIME] {
                assert!(zstd(codec(column)), "{column}");
            }
            // Read back, the rows are those parquet's own writer stores.
            let reference = reference_file(&prepared, props);
            assert_eq!(
                read_back(&ours, &prepared.schema).1,
                read_back(&reference, &prepared.schema).1
            );
            check_page_index(&ours);
        }
    }

    #[test]
    fn gathers_whose_sources_hold_one_value_are_runs() {
        use schema::spans::col;
        let batches = column_shapes(100_000);
        let prepared = prepare(Table::Spans, &batches, |_| false).unwrap();
        let c = |name: &str| prepared.schema.index_of(name).unwrap();
        let (scopes, servers) = (
            prepared.one_values(c(col::SCOPE_NAME)),
            prepared.one_values(c(col::SERVER_ADDRESS)),
        );
        let names = prepared.one_values(c(col::NAME));
        // One value in each batch; none in a column of runs of several.
        assert!(scopes.iter().chain(&servers).all(Option::is_some));
        assert!(names.iter().all(Option::is_none));
        let mut local = vec![usize::MAX; prepared.sources.len()];
        let chunks: Vec<_> = prepared.order.chunks(GATHER_ROWS).collect();
        // The first gather draws on the three batches of the first block,
        // which hold one scope and three servers; the seventh (rows 49,152
        // to 57,343) on two blocks, of two scopes.
        let first = prepared.gather(chunks[0], &mut local);
        assert_eq!(first.one_value(&scopes), Some("scope-0"));
        assert_eq!(first.one_value(&servers), None);
        let across = prepared.gather(chunks[6], &mut local);
        assert_eq!(across.one_value(&scopes), None);
    }

    #[test]
    fn string_columns_encoded_here_read_back_as_parquet_writes_them() {
        use schema::spans::col;
        // Two row groups, the second of exactly two pages.
        let rows = ROW_GROUP_ROWS + 40_000;
        let batches = column_shapes(rows);
        let prepared = prepare(Table::Spans, &batches, |_| false).unwrap();
        let props = properties(Table::Spans, &prepared, &[]);
        let ours = Bytes::from(encode(Vec::new(), Table::Spans, &prepared, props.clone()).unwrap());
        let reference = reference_file(&prepared, props);
        let (ours_meta, ours_rows) = read_back(&ours, &prepared.schema);
        let (reference_meta, reference_rows) = read_back(&reference, &prepared.schema);
        assert_eq!(ours_rows.num_rows(), rows);
        assert_eq!(ours_rows, reference_rows);
        assert_eq!(ours_meta.row_groups().len(), 2);

        // Chunks written here have pages of exactly 20,000 rows; parquet's
        // writer cuts its pages where its batches of values end. Strings
        // with too many values for a dictionary are written here PLAIN,
        // where parquet's writer keeps a dictionary until it is full.
        let refused = [col::ERROR_TYPE, col::RPC_SYSTEM, col::STATUS_MESSAGE];
        let plain = |name: &str, group: usize| match name {
            col::URL_FULL | col::RPC_SERVICE | col::RPC_METHOD | col::STAGE | col::STEP => true,
            col::URL_PATH => group == 0,
            _ => false,
        };
        for (group, (ours, reference)) in ours_meta
            .row_groups()
            .iter()
            .zip(reference_meta.row_groups())
            .enumerate()
        {
            for (leaf, (ours, reference)) in
                ours.columns().iter().zip(reference.columns()).enumerate()
            {
                let name = ours.column_path().string();
                let what = format!("{name}, row group {group}");
                let pages = ours_meta.offset_index().unwrap()[group][leaf].page_locations();
                let encoded_here = prepared
                    .schema
                    .field_with_name(&name)
                    .is_ok_and(|f| of_our_encoders(f.data_type()));
                if encoded_here {
                    assert_eq!(
                        pages.get(1).map(|p| p.first_row_index) == Some(20_000),
                        !refused.contains(&name.as_str()),
                        "{what}: pages cut here or by parquet"
                    );
                }
                assert_eq!(ours.statistics(), reference.statistics(), "{what}");
                assert_eq!(ours.num_values(), reference.num_values(), "{what}");
                if plain(&name, group) {
                    assert!(
                        reference.encodings().any(|e| e == Encoding::RLE_DICTIONARY),
                        "{what}: parquet's writer began with a dictionary"
                    );
                    assert_eq!(
                        ours.encodings().collect::<Vec<_>>(),
                        vec![Encoding::PLAIN, Encoding::RLE],
                        "{what}"
                    );
                    // Of data pages: every one PLAIN.
                    let mask = ours.page_encoding_stats_mask();
                    assert!(
                        mask.is_some_and(|m| m.is_only(Encoding::PLAIN)),
                        "{what}: {mask:?}"
                    );
                    assert!(ours.dictionary_page_offset().is_none(), "{what}");
                } else {
                    assert_eq!(ours.encodings_mask(), reference.encodings_mask(), "{what}");
                    assert!(ours.page_encoding_stats_mask().is_some(), "{what}");
                    assert_eq!(
                        ours.page_encoding_stats_mask(),
                        reference.page_encoding_stats_mask(),
                        "{what}"
                    );
                }
                assert_eq!(
                    ours.unencoded_byte_array_data_bytes(),
                    reference.unencoded_byte_array_data_bytes(),
                    "{what}"
                );
                assert_eq!(
                    ours.definition_level_histogram(),
                    reference.definition_level_histogram(),
                    "{what}"
                );
            }
        }
        check_page_index(&ours);
        check_page_index(&reference);

        // The bloom filter on trace ids has the same bits.
        let blooms = |bytes: &Bytes| {
            use parquet::file::reader::{FileReader, SerializedFileReader};
            let options = parquet::file::serialized_reader::ReadOptionsBuilder::new()
                .with_reader_properties(
                    parquet::file::properties::ReaderProperties::builder()
                        .set_read_bloom_filter(true)
                        .build(),
                )
                .build();
            let reader = SerializedFileReader::new_with_options(bytes.clone(), options).unwrap();
            let leaf = prepared.schema.index_of(col::TRACE_ID).unwrap();
            (0..reader.num_row_groups())
                .map(|group| {
                    let mut bits = Vec::new();
                    // The group's first row is span `first`, of trace `first + 1`.
                    let first = (group * ROW_GROUP_ROWS) as u128;
                    let group = reader.get_row_group(group).unwrap();
                    let filter = group.get_column_bloom_filter(leaf).expect("a bloom filter");
                    filter.write_bitset(&mut bits).unwrap();
                    assert!(
                        filter.check(&(first + 1).to_be_bytes()[..]),
                        "its first trace id"
                    );
                    bits
                })
                .collect::<Vec<_>>()
        };
        let (ours, reference) = (blooms(&ours), blooms(&reference));
        assert_eq!(ours.len(), 2);
        assert!(ours == reference, "bloom filters differ");
    }
}
