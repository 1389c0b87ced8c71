//! Query results as a text table, CSV, JSON or Parquet.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::AnalyzerError;

/// How `loadlens sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects, one per row.
    Json,
    /// A Parquet file (zstd), for other tools to read.
    Parquet,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "parquet" => Ok(Format::Parquet),
            other => Err(format!(
                "unknown format '{other}': use table, csv, json or parquet"
            )),
        }
    }
}

/// A result as an aligned text table.
pub fn table(batches: &[RecordBatch]) -> Result<String, AnalyzerError> {
    arrow::util::pretty::pretty_format_batches(batches)
        .map(|t| t.to_string() + "\n")
        .map_err(|e| AnalyzerError::Output {
            format: "a table",
            message: e.to_string(),
        })
}

/// Renders a result; `schema` is used when there are no batches.
pub fn render(
    batches: &[RecordBatch],
    schema: SchemaRef,
    format: Format,
) -> Result<Vec<u8>, AnalyzerError> {
    let failed = |format: &'static str| {
        move |e: arrow::error::ArrowError| AnalyzerError::Output {
            format,
            message: e.to_string(),
        }
    };
    match format {
        Format::Table => table(batches).map(String::into_bytes),
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for batch in batches {
                    writer.write(batch).map_err(failed("CSV"))?;
                }
            }
            Ok(out)
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::json::ArrayWriter::new(&mut out);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                writer.write_batches(&refs).map_err(failed("JSON"))?;
                writer.finish().map_err(failed("JSON"))?;
            }
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
            Ok(out)
        }
        Format::Parquet => {
            let parquet_failed = |e: parquet::errors::ParquetError| AnalyzerError::Output {
                format: "Parquet",
                message: e.to_string(),
            };
            let properties = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let mut out = Vec::new();
            let mut writer =
                ArrowWriter::try_new(&mut out, schema, Some(properties)).map_err(parquet_failed)?;
            for batch in batches {
                writer.write(batch).map_err(parquet_failed)?;
            }
            writer.close().map_err(parquet_failed)?;
            Ok(out)
        }
    }
}
