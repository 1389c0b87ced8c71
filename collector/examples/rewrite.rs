//! Rewrites every Parquet file of a store through the collector's writer, into
//! a temporary folder, and prints how many bytes each table takes before and
//! after: the way to see what a change to the writer's encodings or
//! compression does to real data.
//!
//! ```text
//! cargo run --release -p collector --example rewrite -- DIR [OUT]
//! ```
//!
//! Each file is written as one flush of its rows would be. The store itself
//! is only read. With OUT, a new folder, the rewritten files are kept there
//! (one `date=1970-01-01` partition per table, no `run_id`), so that
//! queries can be timed on them with `loadlens sql --data OUT`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use schema::Table;

fn main() {
    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let Some(store) = args.next() else {
        eprintln!(
            "usage: rewrite DIR [OUT] (DIR: a loadlens store, or any folder of its Parquet files; OUT: a new folder to keep the rewritten files in)"
        );
        std::process::exit(2);
    };
    let kept = args.next();
    if let Some(out) = &kept
        && out.exists()
    {
        eprintln!(
            "{} exists; name a new folder to keep the rewritten files in",
            out.display()
        );
        std::process::exit(2);
    }
    let out = kept.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("loadlens-rewrite-{}", std::process::id()))
    });
    // Table name → (files, rows, bytes before, bytes after).
    let mut sizes: BTreeMap<&str, (usize, usize, u64, u64)> = BTreeMap::new();
    for path in schema::layout::parquet_files(&store) {
        match rewrite(&path, &out) {
            Ok((table, rows, before, after)) => {
                let entry = sizes.entry(table.name()).or_default();
                entry.0 += 1;
                entry.1 += rows;
                entry.2 += before;
                entry.3 += after;
            }
            Err(e) => eprintln!("skipped {}: {e}", path.display()),
        }
    }
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
    if sizes.is_empty() {
        eprintln!("no loadlens Parquet files below {}", store.display());
        std::process::exit(2);
    }
    println!(
        "table                  files        rows   bytes before    bytes after  per row before  per row after"
    );
    for (table, (files, rows, before, after)) in sizes {
        let per_row = |bytes: u64| bytes as f64 / rows.max(1) as f64;
        println!(
            "{table:<20} {files:>7} {rows:>11} {before:>14} {after:>14} {:>15.1} {:>14.1}",
            per_row(before),
            per_row(after)
        );
    }
}

/// Table, rows, bytes before and after, of one file rewritten below `out`.
fn rewrite(path: &Path, out: &Path) -> Result<(Table, usize, u64, u64), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let before = file.metadata().map_err(|e| e.to_string())?.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let table = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == schema::TABLE_KEY))
        .and_then(|kv| kv.value.as_deref())
        .and_then(|name| Table::ALL.into_iter().find(|t| t.name() == name))
        .ok_or("no loadlens table named in its metadata")?;
    let batches = builder
        .build()
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = collector::convert::PartitionKey {
        table,
        date: "1970-01-01".into(),
        run_id: None,
    };
    let written =
        collector::store::write_partition(out, &key, &batches, 0).map_err(|e| e.to_string())?;
    let after = match &written.path {
        Some(path) => std::fs::metadata(path).map_err(|e| e.to_string())?.len(),
        None => 0,
    };
    Ok((table, written.rows, before, after))
}
