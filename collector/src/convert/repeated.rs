//! String columns whose rows repeat one value through a request: the
//! service and scope names (one per resource and scope), the span kind and
//! status, and promoted values such as the method, the server address or a
//! load run's step. Appended to an Arrow builder row by row, the same bytes
//! and an offset were copied for every span and held in memory until the
//! flush, some 80 bytes a span of the collector's bench (BENCHMARKS.md).
//! Here rows are counted while they repeat the first one; a builder is
//! made, with the rows so far, only at the first row that differs. A
//! column whose rows all hold one value is an array a thread keeps and
//! shares with its next requests of the same value and length, as NULL
//! columns are (`null_column` in the span converter).

use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, new_null_array};
use arrow::datatypes::DataType;

/// Arrays of one repeated value each thread keeps to share.
const SHARED: usize = 16;

/// A string column being built, its rows counted while they are the same.
pub(crate) struct RepeatedStrings {
    state: State,
    /// The room of the builder made when the rows first differ: rows, and
    /// bytes of values.
    room_rows: usize,
    room_bytes: usize,
}

enum State {
    /// `rows` rows so far, each `value` (`None`: NULL).
    Same {
        value: Option<Box<str>>,
        rows: usize,
    },
    /// Rows that differ, built one by one.
    Built(StringBuilder),
}

impl RepeatedStrings {
    /// A column whose builder, should its rows differ, has room for
    /// `room_rows` rows and `room_bytes` bytes of values.
    pub fn new(room_rows: usize, room_bytes: usize) -> Self {
        RepeatedStrings {
            state: State::Same {
                value: None,
                rows: 0,
            },
            room_rows,
            room_bytes,
        }
    }

    #[inline]
    pub fn append_option(&mut self, value: Option<&str>) {
        match &mut self.state {
            State::Same { value: same, rows } if *rows == 0 => {
                *same = value.map(Box::from);
                *rows = 1;
            }
            State::Same { value: same, rows } if equal(same.as_deref(), value) => *rows += 1,
            State::Same { .. } => self.builder().append_option(value),
            State::Built(builder) => builder.append_option(value),
        }
    }

    #[inline]
    pub fn append_value(&mut self, value: &str) {
        self.append_option(Some(value));
    }

    pub fn append_nulls(&mut self, n: usize) {
        match &mut self.state {
            // No rows yet, or NULLs only.
            State::Same { value: None, rows } => *rows += n,
            State::Same { .. } => self.builder().append_nulls(n),
            State::Built(builder) => builder.append_nulls(n),
        }
    }

    /// The column's builder, with the rows so far: for a row that may
    /// differ from them, written by its caller.
    pub fn builder(&mut self) -> &mut StringBuilder {
        if let State::Same { value, rows } = &self.state {
            let (rows, room_rows) = (*rows, self.room_rows.max(rows + 1));
            let mut builder = StringBuilder::with_capacity(room_rows, self.room_bytes);
            match value {
                Some(value) => (0..rows).for_each(|_| builder.append_value(value)),
                None => builder.append_nulls(rows),
            }
            self.state = State::Built(builder);
        }
        match &mut self.state {
            State::Built(builder) => builder,
            State::Same { .. } => unreachable!("made above"),
        }
    }

    pub fn finish(self) -> ArrayRef {
        match self.state {
            State::Same { value, rows } => shared(value.as_deref(), rows),
            State::Built(mut builder) => Arc::new(builder.finish()),
        }
    }
}

#[inline]
fn equal(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => crate::short::eq(a.as_bytes(), b.as_bytes()),
        (None, None) => true,
        _ => false,
    }
}

/// The largest array of one value kept to share, in bytes of values: a
/// few thousand rows of a service name. A larger one, a long value repeated
/// by every row, is made for its batch alone, so that what the cache holds
/// stays small beside the pending rows the memory bound counts.
const MAX_SHARED_BYTES: usize = 64 * 1024;

/// A column of `rows` rows of `value`. Each thread keeps the [`SHARED`]
/// arrays it used last, of at most [`MAX_SHARED_BYTES`] each, and batches
/// share them.
fn shared(value: Option<&str>, rows: usize) -> ArrayRef {
    thread_local! {
        static ARRAYS: std::cell::RefCell<Vec<(Option<Box<str>>, ArrayRef)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let bytes = value.map_or(0, str::len).saturating_mul(rows);
    let make = || -> ArrayRef {
        match value {
            Some(value) => {
                let mut builder = StringBuilder::with_capacity(rows, bytes);
                (0..rows).for_each(|_| builder.append_value(value));
                Arc::new(builder.finish())
            }
            None => new_null_array(&DataType::Utf8, rows),
        }
    };
    if bytes > MAX_SHARED_BYTES {
        return make();
    }
    ARRAYS.with_borrow_mut(|arrays| {
        // The last used go last, and the first are dropped.
        if let Some(at) = arrays
            .iter()
            .position(|(v, array)| array.len() == rows && equal(v.as_deref(), value))
        {
            let used = arrays.remove(at);
            let array = Arc::clone(&used.1);
            arrays.push(used);
            return array;
        }
        let array = make();
        if arrays.len() == SHARED {
            arrays.remove(0);
        }
        arrays.push((value.map(Box::from), Arc::clone(&array)));
        array
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;

    fn rows(column: &ArrayRef) -> Vec<Option<&str>> {
        column.as_string::<i32>().iter().collect()
    }

    #[test]
    fn rows_that_differ_come_out_as_appended() {
        let mut column = RepeatedStrings::new(4, 16);
        column.append_value("GET");
        column.append_value("GET");
        column.append_nulls(2);
        column.append_option(Some("POST"));
        column.append_value("GET");
        let column = column.finish();
        assert_eq!(column.len(), 6);
        assert_eq!(
            rows(&column),
            [
                Some("GET"),
                Some("GET"),
                None,
                None,
                Some("POST"),
                Some("GET")
            ]
        );
    }

    #[test]
    fn a_value_after_nulls_and_one_written_by_the_caller_keep_their_places() {
        let mut column = RepeatedStrings::new(1, 0);
        column.append_nulls(2);
        column.append_value("a");
        let mut written = RepeatedStrings::new(1, 0);
        written.append_value("7");
        written.builder().append_value("8");
        written.append_value("7");
        assert_eq!(rows(&column.finish()), [None, None, Some("a")]);
        assert_eq!(rows(&written.finish()), [Some("7"), Some("8"), Some("7")]);
    }

    #[test]
    fn columns_of_one_value_are_shared_by_value_and_length() {
        let column = |value: Option<&str>, n: usize| {
            let mut column = RepeatedStrings::new(n, 0);
            (0..n).for_each(|_| column.append_option(value));
            column.finish()
        };
        let service = column(Some("checkout"), 3);
        assert!(Arc::ptr_eq(&service, &column(Some("checkout"), 3)));
        assert!(!Arc::ptr_eq(&service, &column(Some("checkout"), 2)));
        assert!(!Arc::ptr_eq(&service, &column(Some("checkouT"), 3)));
        assert_eq!(rows(&service), [Some("checkout"); 3]);
        let nulls = column(None, 3);
        assert_eq!((nulls.len(), nulls.null_count()), (3, 3));
        assert_eq!(nulls.data_type(), &DataType::Utf8);
        assert_eq!(rows(&column(Some(""), 2)), [Some(""), Some("")]);
        assert_eq!(column(None, 0).len(), 0);
    }

    #[test]
    fn the_cache_keeps_the_arrays_used_last_and_no_large_ones() {
        let column = |value: &str, n: usize| {
            let mut column = RepeatedStrings::new(n, 0);
            (0..n).for_each(|_| column.append_value(value));
            column.finish()
        };
        let kept = column("kept", 2);
        // More other values than the cache holds, `kept` used in between.
        for i in 0..2 * SHARED {
            let other = format!("v{i}");
            assert_eq!(rows(&column(&other, 2)), [Some(other.as_str()); 2]);
            assert!(Arc::ptr_eq(&kept, &column("kept", 2)), "{i}");
        }
        // A value too large to keep comes right, and afresh each time.
        let long = "x".repeat(MAX_SHARED_BYTES / 2 + 1);
        let large = column(&long, 2);
        assert_eq!(rows(&large), [Some(long.as_str()); 2]);
        assert!(!Arc::ptr_eq(&large, &column(&long, 2)));
    }
}
