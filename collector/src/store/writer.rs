//! One Parquet file per partition flush: sorted by time, zstd, bloom filter on
//! `trace_id`, page-level statistics, `sorting_columns` and key-value metadata.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, TimestampNanosecondArray};
use arrow::compute::{SortOptions, concat_batches, sort_to_indices, take_record_batch};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use schema::Table;

use crate::convert::PartitionKey;

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
}

/// Rows per row group: large enough for good compression, small enough that a
/// reader can skip by statistics.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Writes the batches of one partition as one file and returns its path. The
/// file name records the last WAL segment whose rows it holds
/// (`part-<min time>-w<segment>-<random>.parquet`), so a replay after a crash
/// can tell which rows already reached Parquet.
pub fn write_partition(
    root: &Path,
    key: &PartitionKey,
    batches: &[RecordBatch],
    wal_segment: u64,
) -> Result<PathBuf, WriteError> {
    let table = key.table;
    let arrow_err = |source| WriteError::Arrow { table, source };
    let schema = table.file_schema();
    let batch = concat_batches(&schema, batches).map_err(arrow_err)?;
    let time_index = schema.index_of(table.time_column()).map_err(arrow_err)?;
    let order = sort_to_indices(batch.column(time_index), Some(SortOptions::default()), None)
        .map_err(arrow_err)?;
    let batch = take_record_batch(&batch, &order).map_err(arrow_err)?;
    let times = batch
        .column(time_index)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .expect("time columns are ns timestamps");
    let (min_time, max_time) = (times.value(0), times.value(times.len() - 1));

    let dir = schema::layout::partition_dir_for_day(root, table, &key.date, key.run_id.as_deref());
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Io { path, source }
    };
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let name = format!(
        "part-{min_time:020}-w{wal_segment:020}-{:016x}.parquet",
        rand::random::<u64>()
    );
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);

    let file = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut writer = ArrowWriter::try_new(
        file,
        Arc::new(batch.schema().as_ref().clone()),
        Some(properties(table, time_index, &batch, min_time, max_time)),
    )
    .map_err(|source| WriteError::Parquet { table, source })?;
    writer
        .write(&batch)
        .map_err(|source| WriteError::Parquet { table, source })?;
    let file = writer
        .into_inner()
        .map_err(|source| WriteError::Parquet { table, source })?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&dir))?;
    Ok(path)
}

fn properties(
    table: Table,
    time_index: usize,
    batch: &RecordBatch,
    min_time: i64,
    max_time: i64,
) -> WriterProperties {
    let metadata = vec![
        KeyValue::new(
            schema::SCHEMA_VERSION_KEY.into(),
            schema::SCHEMA_VERSION.to_string(),
        ),
        KeyValue::new(schema::TABLE_KEY.into(), table.name().to_string()),
        KeyValue::new(schema::MIN_TIME_KEY.into(), min_time.to_string()),
        KeyValue::new(schema::MAX_TIME_KEY.into(), max_time.to_string()),
        KeyValue::new(schema::ROW_COUNT_KEY.into(), batch.num_rows().to_string()),
    ];
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: time_index as i32,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(metadata));
    if table == Table::Spans {
        props = props
            .set_column_bloom_filter_enabled(ColumnPath::from(schema::spans::col::TRACE_ID), true)
            .set_column_bloom_filter_max_ndv(
                ColumnPath::from(schema::spans::col::TRACE_ID),
                batch.num_rows().min(ROW_GROUP_ROWS) as u64,
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
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
            rest.split('-')
                .find_map(|part| part.strip_prefix('w')?.parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0)
}
