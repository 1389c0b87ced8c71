//! Span batches and files for the store's unit tests.

use std::fs::File;
use std::path::Path;

use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::trace::v1::Span;
use parquet::file::properties::WriterProperties;

/// One converted batch of spans (ids, start time, name); an id repeated to
/// fill the trace id and the span id.
pub(crate) fn batch_of<'a>(
    spans: impl IntoIterator<Item = (Vec<u8>, u64, &'a str)>,
) -> RecordBatch {
    let spans = spans
        .into_iter()
        .map(|(id, start, name)| Span {
            trace_id: id.repeat(16 / id.len()),
            span_id: id.repeat(8 / id.len()),
            name: name.into(),
            start_time_unix_nano: start,
            end_time_unix_nano: start + 10,
            ..Default::default()
        })
        .collect();
    let request = crate::convert::spans::request_of(spans);
    let mut converted = crate::convert::spans::convert(&request).unwrap();
    converted.batches.pop().unwrap().1
}

/// [`batch_of`] with one-byte ids: span `id` has the key `[id; 24]`.
pub(crate) fn batch(spans: &[(u8, u64, &str)]) -> RecordBatch {
    batch_of(
        spans
            .iter()
            .map(|&(id, start, name)| (vec![id], start, name)),
    )
}

/// Writes `batch` to `path` as Parquet in row groups of `rows` rows, as
/// another program might (in the batch's order, no loadlens metadata).
pub(crate) fn write_with_row_groups(path: &Path, batch: &RecordBatch, rows: usize) {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows))
        .build();
    let out = File::create(path).unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(out, batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    let groups = writer.close().unwrap().num_row_groups();
    assert_eq!(groups, batch.num_rows().div_ceil(rows));
}
