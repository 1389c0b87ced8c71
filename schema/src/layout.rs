//! Where each table lives in the store: Hive partitions by day and run.

use std::fmt;
use std::path::{Path, PathBuf};

/// The tables of the store, one folder each below the store root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Spans,
    MetricsNumber,
    MetricsHistogram,
    MetricsExpHistogram,
    MetricsSummary,
    Runs,
    Ledger,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Spans,
        Table::MetricsNumber,
        Table::MetricsHistogram,
        Table::MetricsExpHistogram,
        Table::MetricsSummary,
        Table::Runs,
        Table::Ledger,
    ];

    /// The folder name and the SQL table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Spans => "spans",
            Table::MetricsNumber => "metrics_number",
            Table::MetricsHistogram => "metrics_histogram",
            Table::MetricsExpHistogram => "metrics_exp_histogram",
            Table::MetricsSummary => "metrics_summary",
            Table::Runs => "runs",
            Table::Ledger => "ledger",
        }
    }

    /// The schema of the Parquet files (partition columns excluded).
    pub fn file_schema(self) -> arrow_schema::SchemaRef {
        match self {
            Table::Spans => crate::spans::schema(),
            Table::MetricsNumber => crate::metrics::number_schema(),
            Table::MetricsHistogram => crate::metrics::histogram_schema(),
            Table::MetricsExpHistogram => crate::metrics::exp_histogram_schema(),
            Table::MetricsSummary => crate::metrics::summary_schema(),
            Table::Runs => crate::runs::schema(),
            Table::Ledger => crate::ledger::schema(),
        }
    }

    /// The column whose values order rows within a file and give the partition day.
    pub fn time_column(self) -> &'static str {
        match self {
            Table::Spans => crate::spans::col::START_TIME,
            Table::Runs => crate::runs::col::STARTED_AT,
            Table::Ledger => crate::ledger::col::INTENDED_START,
            _ => crate::metrics::col::TIME,
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Hive partition column: the UTC day of the row's time, `YYYY-MM-DD`.
pub const DATE: &str = "date";
/// Hive partition column: the load run's id, or [`NULL_PARTITION`] for data
/// that belongs to no run (production services).
pub const RUN_ID: &str = "run_id";
/// The partition value for a missing run id; Spark and pyarrow read it as NULL.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// The partition columns, in folder order. Their values are strings.
pub const PARTITION_COLUMNS: [&str; 2] = [DATE, RUN_ID];

/// `<root>/<table>/date=<day>/run_id=<run>`: the folder a file of these rows goes in.
pub fn partition_dir(root: &Path, table: Table, unix_nanos: i64, run_id: Option<&str>) -> PathBuf {
    partition_dir_for_day(root, table, &utc_day(unix_nanos), run_id)
}

/// `<root>/<table>/date=<day>/run_id=<run>` for a day already formatted `YYYY-MM-DD`.
pub fn partition_dir_for_day(
    root: &Path,
    table: Table,
    day: &str,
    run_id: Option<&str>,
) -> PathBuf {
    let run = match run_id {
        Some(run) if !run.is_empty() => escape_partition_value(run),
        _ => NULL_PARTITION.to_string(),
    };
    root.join(table.name())
        .join(format!("{DATE}={day}"))
        .join(format!("{RUN_ID}={run}"))
}

/// Every `.parquet` file below `dir`, at any depth, sorted by path. A folder
/// that cannot be read counts as empty.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Percent-encodes the characters Hive escapes in partition values, so a run id
/// can never climb out of its folder or split a `key=value` segment.
pub fn escape_partition_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '/'
            | '\\'
            | '='
            | '%'
            | ':'
            | '#'
            | '?'
            | '*'
            | '"'
            | '\''
            | '['
            | ']'
            | '^'
            | '{'
            | '}'
            | '\u{0}'..='\u{1f}'
            | '\u{7f}' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            '.' if value.chars().all(|c| c == '.') => out.push_str("%2E"),
            c => out.push(c),
        }
    }
    out
}

/// The UTC calendar day of a time in ns since the epoch, as `YYYY-MM-DD`.
pub fn utc_day(unix_nanos: i64) -> String {
    let days = unix_nanos.div_euclid(86_400 * 1_000_000_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_files_are_found_at_any_depth_in_path_order() {
        let root = std::env::temp_dir().join(format!("schema-files-{}", std::process::id()));
        let deep = root.join("spans/date=2026-12-05/run_id=a");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir_all(root.join("runs")).unwrap();
        for file in [
            deep.join("part-2.parquet"),
            deep.join("part-1.parquet"),
            deep.join(".part-3.parquet.tmp"),
            root.join("runs/part-0.parquet"),
            root.join("notes.txt"),
        ] {
            std::fs::write(file, b"").unwrap();
        }
        let found = parquet_files(&root);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(
            found,
            vec![
                root.join("runs/part-0.parquet"),
                deep.join("part-1.parquet"),
                deep.join("part-2.parquet"),
            ]
        );
        assert!(parquet_files(&root.join("missing")).is_empty());
    }

    #[test]
    fn days_match_known_dates() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(-1), "1969-12-31");
        // 2026-11-23T12:00:00Z
        assert_eq!(utc_day(1_795_435_200 * 1_000_000_000), "2026-11-23");
        // 2000-02-29T00:00:00Z, a leap day in a century leap year
        assert_eq!(utc_day(951_782_400 * 1_000_000_000), "2000-02-29");
        for days in [-800_000, -1, 0, 11_016, 20_415, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
    }

    #[test]
    fn partition_dir_escapes_run_ids() {
        let dir = partition_dir(Path::new("/s"), Table::Spans, 0, Some("a/../b=c"));
        assert_eq!(
            dir,
            Path::new("/s/spans/date=1970-01-01/run_id=a%2F..%2Fb%3Dc")
        );
        let dir = partition_dir(Path::new("/s"), Table::Runs, 0, Some(".."));
        assert_eq!(dir, Path::new("/s/runs/date=1970-01-01/run_id=%2E%2E"));
    }

    #[test]
    fn missing_run_goes_to_the_null_partition() {
        let dir = partition_dir(Path::new("/s"), Table::Spans, 0, None);
        assert!(dir.ends_with(format!("run_id={NULL_PARTITION}")));
    }

    #[test]
    fn every_table_has_its_time_column() {
        for table in Table::ALL {
            let schema = table.file_schema();
            assert!(
                schema.field_with_name(table.time_column()).is_ok(),
                "{table} lacks {}",
                table.time_column()
            );
            for partition in PARTITION_COLUMNS {
                assert!(schema.field_with_name(partition).is_err());
            }
        }
    }
}
