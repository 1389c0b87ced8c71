//! Trace and span id columns built on a plain `Vec`. `arrow`'s
//! `FixedSizeBinaryBuilder::append_value` checks each id's length against
//! the column's, copies it with a call to `memcpy` and returns a `Result`:
//! some 52 instructions a call in the collector's bench, whose spans have
//! two ids each and no parent; built here, the wire walk took 84 fewer
//! instructions a span (BENCHMARKS.md). An id, whose length was validated
//! with its span, is copied as an array of the column's width: a move or
//! two.

use arrow::array::FixedSizeBinaryArray;
use arrow::buffer::Buffer;
use arrow::error::ArrowError;

use super::numbers::Validity;

/// A column of ids of `WIDTH` bytes being built, row by row.
pub(crate) struct Ids<const WIDTH: usize> {
    bytes: Vec<u8>,
    valid: Validity,
}

impl<const WIDTH: usize> Ids<WIDTH> {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Ids {
            bytes: Vec::with_capacity(rows * WIDTH),
            valid: Validity::default(),
        }
    }

    /// Appends `id`, which must be `WIDTH` bytes long.
    #[inline]
    pub(crate) fn append_value(&mut self, id: &[u8]) {
        let id: &[u8; WIDTH] = id.try_into().expect("an id of the column's width");
        self.bytes.extend_from_slice(id);
        self.valid.append_valid();
    }

    pub(crate) fn append_null(&mut self) {
        let rows = self.bytes.len() / WIDTH;
        self.valid.append_null(rows, self.bytes.capacity() / WIDTH);
        self.bytes.extend_from_slice(&[0; WIDTH]);
    }

    pub(crate) fn finish(self) -> Result<FixedSizeBinaryArray, ArrowError> {
        FixedSizeBinaryArray::try_new(
            WIDTH as i32,
            Buffer::from_vec(self.bytes),
            self.valid.finish(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, FixedSizeBinaryBuilder};

    #[test]
    fn columns_are_those_arrows_builder_makes() {
        let id = |n: u8| [n, 0, 0, 0, 0, 0, 0, n.wrapping_mul(7)];
        // Ids only; NULLs first; NULLs among ids; nothing.
        let rows: [&[Option<[u8; 8]>]; 4] = [
            &[Some(id(1)), Some(id(2)), Some(id(255))],
            &[None, None, Some(id(3))],
            &[Some(id(5)), None, Some(id(6)), None, None, Some(id(7))],
            &[],
        ];
        for rows in rows {
            let mut ours = Ids::<8>::with_capacity(1);
            let mut arrows = FixedSizeBinaryBuilder::new(8);
            for row in rows {
                match row {
                    Some(id) => {
                        ours.append_value(id);
                        arrows.append_value(id).unwrap();
                    }
                    None => {
                        ours.append_null();
                        arrows.append_null();
                    }
                }
            }
            let (ours, arrows) = (ours.finish().unwrap(), arrows.finish());
            assert_eq!(ours, arrows, "{rows:?}");
            assert_eq!(ours.null_count(), arrows.null_count(), "{rows:?}");
            assert_eq!(ours.nulls().is_some(), rows.contains(&None), "{rows:?}");
        }
    }
}
