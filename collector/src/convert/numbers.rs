//! Number and time columns built on a plain `Vec`: a span's start, end,
//! duration and flags, and the promoted numbers (status code, port, the
//! generator's request id and intended start, body sizes). `arrow`'s
//! `PrimitiveBuilder::append_value`, which the compiler did not inline
//! here, took some 28 instructions a call, eight calls a span of the
//! collector's bench; with a `Vec::push` in line the wire walk took 105
//! fewer instructions a span (BENCHMARKS.md). The values become the
//! array's buffer as they are, without a copy.

use arrow::array::{ArrowPrimitiveType, BooleanBufferBuilder, PrimitiveArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};

/// A column of `T` being built, row by row.
pub(crate) struct Numbers<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    valid: Validity,
}

impl<T: ArrowPrimitiveType> Numbers<T> {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Numbers {
            values: Vec::with_capacity(rows),
            valid: Validity::default(),
        }
    }

    #[inline]
    pub(crate) fn append_value(&mut self, value: T::Native) {
        self.values.push(value);
        self.valid.append_valid();
    }

    #[inline]
    pub(crate) fn append_option(&mut self, value: Option<T::Native>) {
        match value {
            Some(value) => self.append_value(value),
            None => self.append_nulls(1),
        }
    }

    pub(crate) fn append_nulls(&mut self, n: usize) {
        let rows = self.values.len();
        self.valid.append_nulls(rows, n, self.values.capacity());
        self.values.resize(rows + n, T::Native::default());
    }

    pub(crate) fn finish(self) -> PrimitiveArray<T> {
        PrimitiveArray::new(ScalarBuffer::from(self.values), self.valid.finish())
    }
}

/// Which rows of a column being built hold a value: nothing kept while
/// every row does. `arrow`'s `NullBufferBuilder` counts the rows as well,
/// which its column already does: with it, the wire walk took some 70 more
/// instructions a span (BENCHMARKS.md).
#[derive(Default)]
pub(crate) struct Validity(Option<BooleanBufferBuilder>);

impl Validity {
    /// The next row holds a value.
    #[inline]
    pub(crate) fn append_valid(&mut self) {
        if let Some(valid) = &mut self.0 {
            valid.append(true);
        }
    }

    /// The next row, after `rows` rows, is NULL; `capacity` is the rows
    /// the column has room for.
    #[inline]
    pub(crate) fn append_null(&mut self, rows: usize, capacity: usize) {
        self.kept(rows, capacity).append(false);
    }

    /// The next `n` rows, after `rows` rows, are NULL.
    pub(crate) fn append_nulls(&mut self, rows: usize, n: usize, capacity: usize) {
        self.kept(rows, capacity).append_n(n, false);
    }

    /// The rows' flags, kept from the first NULL on, after `rows` rows that
    /// hold a value.
    fn kept(&mut self, rows: usize, capacity: usize) -> &mut BooleanBufferBuilder {
        self.0.get_or_insert_with(|| {
            let mut valid = BooleanBufferBuilder::new(capacity.max(rows + 1));
            valid.append_n(rows, true);
            valid
        })
    }

    pub(crate) fn finish(self) -> Option<NullBuffer> {
        self.0.map(|mut valid| NullBuffer::new(valid.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Builder};
    use arrow::datatypes::Int64Type;

    #[test]
    fn columns_are_those_arrows_builder_makes() {
        // Values only; NULLs first; NULLs after values, in runs and alone.
        let rows: [&[Option<i64>]; 4] = [
            &[Some(1), Some(-2), Some(i64::MAX)],
            &[None, None, Some(3)],
            &[Some(5), None, Some(6), None, None, Some(7)],
            &[],
        ];
        for rows in rows {
            let mut ours = Numbers::<Int64Type>::with_capacity(2);
            let mut arrows = Int64Builder::new();
            for &row in rows {
                ours.append_option(row);
                arrows.append_option(row);
            }
            let (ours, arrows) = (ours.finish(), arrows.finish());
            assert_eq!(ours, arrows, "{rows:?}");
            assert_eq!(ours.null_count(), arrows.null_count(), "{rows:?}");
            assert_eq!(ours.nulls().is_some(), rows.contains(&None), "{rows:?}");
        }
        // Runs of NULLs.
        let mut ours = Numbers::<Int64Type>::with_capacity(0);
        ours.append_value(4);
        ours.append_nulls(70);
        ours.append_value(9);
        let ours = ours.finish();
        assert_eq!(ours.len(), 72);
        assert_eq!(ours.null_count(), 70);
        assert_eq!((ours.value(0), ours.value(71)), (4, 9));
        assert!(ours.is_valid(71) && ours.is_null(1) && ours.is_null(70));
    }
}
