//! Trace and span id columns built on a plain `Vec`. `arrow`'s
//! `FixedSizeBinaryBuilder::append_value` checks each id's length against
//! the column's, copies it with a call to `memcpy` and returns a `Result`:
//! some 64 instructions an id, three ids a span of the collector's bench.
//! Here the length is checked once, where spans are validated, and an id
//! of a width known here is copied in a move or two.

use arrow::array::{BooleanBufferBuilder, FixedSizeBinaryArray};
use arrow::buffer::{Buffer, NullBuffer};
use arrow::error::ArrowError;

/// A column of ids of `WIDTH` bytes being built, row by row.
pub(crate) struct Ids<const WIDTH: usize> {
    bytes: Vec<u8>,
    /// Which rows hold an id, from the first NULL on; `None` while every
    /// row does.
    valid: Option<BooleanBufferBuilder>,
}

impl<const WIDTH: usize> Ids<WIDTH> {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Ids {
            bytes: Vec::with_capacity(rows * WIDTH),
            valid: None,
        }
    }

    fn rows(&self) -> usize {
        self.bytes.len() / WIDTH
    }

    /// Appends `id`, which must be `WIDTH` bytes long.
    #[inline]
    pub(crate) fn append_value(&mut self, id: &[u8]) {
        let id: &[u8; WIDTH] = id.try_into().expect("an id of the column's width");
        self.bytes.extend_from_slice(id);
        if let Some(valid) = &mut self.valid {
            valid.append(true);
        }
    }

    pub(crate) fn append_null(&mut self) {
        let rows = self.rows();
        let valid = self.valid.get_or_insert_with(|| {
            let mut valid = BooleanBufferBuilder::new(self.bytes.capacity() / WIDTH + 1);
            valid.append_n(rows, true);
            valid
        });
        valid.append(false);
        self.bytes.extend_from_slice(&[0; WIDTH]);
    }

    pub(crate) fn finish(self) -> Result<FixedSizeBinaryArray, ArrowError> {
        let nulls = self.valid.map(|mut valid| NullBuffer::new(valid.finish()));
        FixedSizeBinaryArray::try_new(WIDTH as i32, Buffer::from_vec(self.bytes), nulls)
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
