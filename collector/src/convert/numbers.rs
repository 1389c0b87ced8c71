//! Number and time columns built on a plain `Vec`: a span's start, end,
//! duration and flags, and the promoted numbers (status code, port, the
//! generator's request id and intended start). `arrow`'s
//! `PrimitiveBuilder::append_value`, which the compiler did not inline
//! here, took some 28 instructions a value, eight values a span of the
//! collector's bench; a `Vec::push` inlined takes a few. The values become
//! the array's buffer as they are, without a copy.

use arrow::array::{ArrowPrimitiveType, BooleanBufferBuilder, PrimitiveArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};

/// A column of `T` being built, row by row.
pub(crate) struct Numbers<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    /// Which rows hold a value, from the first NULL on; `None` while every
    /// row does.
    valid: Option<BooleanBufferBuilder>,
}

impl<T: ArrowPrimitiveType> Numbers<T> {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Numbers {
            values: Vec::with_capacity(rows),
            valid: None,
        }
    }

    #[inline]
    pub(crate) fn append_value(&mut self, value: T::Native) {
        self.values.push(value);
        if let Some(valid) = &mut self.valid {
            valid.append(true);
        }
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
        let valid = self.valid.get_or_insert_with(|| {
            let mut valid = BooleanBufferBuilder::new(self.values.capacity().max(rows + n));
            valid.append_n(rows, true);
            valid
        });
        valid.append_n(n, false);
        self.values.resize(rows + n, T::Native::default());
    }

    pub(crate) fn finish(self) -> PrimitiveArray<T> {
        let nulls = self.valid.map(|mut valid| NullBuffer::new(valid.finish()));
        PrimitiveArray::new(ScalarBuffer::from(self.values), nulls)
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
