//! Feeders: rows from a CSV or JSON file handed to iterations in order, at
//! random, or each exactly once; a shard takes every n-th row, so shards never
//! share a row.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::FeederMode;

/// One row: values in column order.
pub type Row = Arc<[String]>;

/// A loaded feeder.
#[derive(Debug)]
pub struct Feeder {
    pub name: String,
    pub columns: Vec<String>,
    rows: Vec<Row>,
    mode: FeederMode,
    next: AtomicUsize,
}

impl Feeder {
    /// Reads `path` (`.json`: an array of objects; anything else: CSV with a
    /// header row) and keeps this shard's rows.
    pub fn load(
        name: &str,
        path: &Path,
        mode: FeederMode,
        shard: (u32, u32),
    ) -> Result<Feeder, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read feeder file {}: {e}", path.display()))?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let (columns, rows) = if is_json {
            parse_json(&text)
        } else {
            parse_csv(&text)
        }
        .map_err(|e| format!("feeder file {}: {e}", path.display()))?;
        let (index, count) = (shard.0 as usize, shard.1.max(1) as usize);
        let rows: Vec<Row> = rows
            .into_iter()
            .skip(index)
            .step_by(count)
            .map(Row::from)
            .collect();
        if rows.is_empty() {
            return Err(format!(
                "feeder file {} has no rows{}",
                path.display(),
                if count > 1 {
                    format!(" for shard {index}/{count}")
                } else {
                    String::new()
                }
            ));
        }
        Ok(Feeder {
            name: name.to_string(),
            columns,
            rows,
            mode,
            next: AtomicUsize::new(0),
        })
    }

    /// The next row, or `None` once a `unique` feeder has handed out every row.
    pub fn next_row(&self) -> Option<Row> {
        let i = match self.mode {
            FeederMode::Sequential => self.next.fetch_add(1, Ordering::Relaxed) % self.rows.len(),
            FeederMode::Random => rand::random_range(0..self.rows.len()),
            FeederMode::Unique => {
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                if i >= self.rows.len() {
                    return None;
                }
                i
            }
        };
        Some(self.rows[i].clone())
    }

    /// Rows this shard holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

type Parsed = (Vec<String>, Vec<Vec<String>>);

fn parse_csv(text: &str) -> Result<Parsed, String> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        rows.push(record.iter().map(str::to_string).collect());
    }
    Ok((columns, rows))
}

fn parse_json(text: &str) -> Result<Parsed, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let items = value.as_array().ok_or("expected a JSON array of objects")?;
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        let object = item.as_object().ok_or("expected a JSON array of objects")?;
        for key in object.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    let rows = items
        .iter()
        .filter_map(|item| item.as_object())
        .map(|object| {
            columns
                .iter()
                .map(|c| match object.get(c) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                })
                .collect()
        })
        .collect();
    Ok((columns, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("loadlens-feeder-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn unique_rows_are_handed_out_once_and_shards_split_them() {
        let path = write("u.csv", "id,name\n0,a\n1,b\n2,c\n3,d\n4,e\n");
        let all = Feeder::load("u", &path, FeederMode::Unique, (0, 1)).unwrap();
        let ids: Vec<String> = std::iter::from_fn(|| all.next_row())
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(ids, ["0", "1", "2", "3", "4"]);
        let mut seen = Vec::new();
        for shard in 0..2 {
            let f = Feeder::load("u", &path, FeederMode::Unique, (shard, 2)).unwrap();
            seen.extend(std::iter::from_fn(|| f.next_row()).map(|r| r[0].clone()));
        }
        seen.sort();
        assert_eq!(seen, ids, "shards together hand out every row once");
    }

    #[test]
    fn sequential_wraps_and_json_objects_become_rows() {
        let path = write(
            "s.json",
            r#"[{"id": 1, "name": "a"}, {"id": 2, "tags": ["x"]}]"#,
        );
        let f = Feeder::load("s", &path, FeederMode::Sequential, (0, 1)).unwrap();
        assert_eq!(f.columns, ["id", "name", "tags"]);
        let rows: Vec<Row> = (0..3).map(|_| f.next_row().unwrap()).collect();
        assert_eq!(&*rows[0], ["1", "a", ""]);
        assert_eq!(&*rows[1], ["2", "", r#"["x"]"#]);
        assert_eq!(rows[2], rows[0]);
    }

    #[test]
    fn empty_or_malformed_files_are_errors() {
        let path = write("e.csv", "id\n");
        let err = Feeder::load("e", &path, FeederMode::Random, (0, 1)).unwrap_err();
        assert!(err.contains("has no rows"), "{err}");
        let path = write("b.json", "{\"id\": 1}");
        let err = Feeder::load("b", &path, FeederMode::Random, (0, 1)).unwrap_err();
        assert!(err.contains("array of objects"), "{err}");
    }
}
