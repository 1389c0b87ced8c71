//! Integers and times as deltas between neighbours, DELTA_BINARY_PACKED:
//! span times, durations, flags and the promoted numbers.
//!
//! `parquet`'s writer first gathers such a column into an array of its
//! own, then for every value computes a delta into a block, and packs the
//! block's values one at a time through a general bit writer. Here a
//! page's values are read straight from the source batches into one list,
//! and the page is encoded when it ends: its bounds in one pass, then its
//! deltas a block at a time, packed a miniblock at a time.
//!
//! A page's payload is the definition levels of a nullable column, then
//! its non-null values as the format specifies
//! (<https://parquet.apache.org/docs/file-format/data-pages/encodings/>):
//! a header (values per block, miniblocks per block, the number of values,
//! the first value), then blocks of deltas, each its smallest delta, the
//! bit width of each miniblock, and the miniblocks' deltas less the
//! smallest, packed from the lowest bit up. Block and miniblock sizes are
//! `parquet`'s: four miniblocks of 32 values for 32-bit columns, of 64 for
//! 64-bit ones; deltas of 32-bit columns wrap as 32-bit integers.

use bytes::Bytes;
use parquet::basic::{SortOrder, Type};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::schema::types::ColumnDescPtr;

use super::{Paged, Pages, Refused, Settings, uleb128};

/// Miniblocks in a block, as `parquet`'s writer makes them.
const MINIBLOCKS: usize = 4;

/// An integer column's chunk being encoded.
#[derive(Debug)]
pub(crate) struct DeltaColumn {
    pages: Pages,
    /// 32-bit values: their deltas wrap at 32 bits, and they are stored
    /// in four bytes.
    int32: bool,
    /// Bounds compare as unsigned integers (`UInt32`).
    unsigned: bool,
    /// The non-null values of the page being filled. A 32-bit value is
    /// held sign-extended, or zero-extended if unsigned, so that bounds
    /// compare as `i64`.
    values: Vec<i64>,
    /// Values a page holds at most: `values` takes room for them at the
    /// first value, so that a column NULL in every row takes none.
    page_values: usize,
}

impl DeltaColumn {
    /// The encoder of a chunk of `rows` rows.
    pub(crate) fn new(descr: ColumnDescPtr, settings: Settings, rows: usize) -> Self {
        DeltaColumn {
            int32: descr.physical_type() == Type::INT32,
            unsigned: descr.sort_order() == SortOrder::UNSIGNED,
            values: Vec::new(),
            page_values: rows.min(settings.page_rows),
            pages: Pages::new(descr, settings),
        }
    }

    /// Adds one row; `None` is a null. A 32-bit value must be given as
    /// [`DeltaColumn::values`] holds it.
    #[inline]
    pub(crate) fn push(&mut self, value: Option<i64>) -> Result<(), Refused> {
        match value {
            Some(value) => {
                self.take_room();
                self.values.push(value);
                self.value_added();
                Ok(())
            }
            None => self.push_nulls(1),
        }
    }

    /// Adds a row for each of `values`, none of them null.
    pub(crate) fn extend(&mut self, mut values: impl Iterator<Item = i64>) {
        self.take_room();
        loop {
            let page_rows = self.pages.settings.page_rows;
            let room = page_rows - self.pages.page.rows;
            let before = self.values.len();
            self.values.extend(values.by_ref().take(room));
            let added = self.values.len() - before;
            let page = &mut self.pages.page;
            if self.pages.nullable {
                page.levels.resize(page.levels.len() + added, 1);
            }
            page.rows += added;
            if page.rows == page_rows {
                self.end_page();
            }
            if added < room {
                return;
            }
        }
    }

    /// Room for a page's values, once: grown from nothing, the list was
    /// reallocated and copied a dozen times a page.
    #[inline]
    fn take_room(&mut self) {
        if self.values.capacity() == 0 {
            self.values.reserve_exact(self.page_values);
        }
    }

    /// The chunk's bytes, from offset 0, and what `append_column` needs to
    /// splice them into a row group.
    pub(crate) fn finish(mut self) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
        self.end_last_page();
        self.pages.write(None, None)
    }

    /// A bound as the column index stores it: the value's physical bytes,
    /// little-endian.
    fn bound(&self, value: i64) -> Vec<u8> {
        match self.int32 {
            true => (value as i32).to_le_bytes().to_vec(),
            false => value.to_le_bytes().to_vec(),
        }
    }
}

impl Paged for DeltaColumn {
    fn pages(&mut self) -> &mut Pages {
        &mut self.pages
    }

    fn end_page(&mut self) {
        let values = &self.values;
        // One pass, which the compiler vectorizes; `Iterator::min` is not.
        let bounds = (!values.is_empty()).then(|| {
            values.iter().fold((i64::MAX, i64::MIN), |(min, max), &v| {
                (min.min(v), max.max(v))
            })
        });
        let min_max = bounds.map(|(min, max)| (self.bound(min), self.bound(max)));
        let int32 = self.int32;
        debug_assert!(!self.unsigned || values.iter().all(|&v| (0..1 << 32).contains(&v)));
        self.pages.end_page(
            |payload| delta_binary_packed(values, int32, payload),
            min_max,
        );
        self.values.clear();
    }
}

/// Appends `values` to `out` DELTA_BINARY_PACKED, as the module describes;
/// `int32` for a 32-bit column.
pub(crate) fn delta_binary_packed(values: &[i64], int32: bool, out: &mut Vec<u8>) {
    let miniblock = if int32 { 32 } else { 64 };
    let block = miniblock * MINIBLOCKS;
    // At most the header, then per block its smallest delta, widths and
    // miniblocks of full width: reserved once, as a page's values are
    // thousands.
    let width_bytes = if int32 { 4 } else { 8 };
    out.reserve(4 * 10 + values.len().div_ceil(block) * (10 + MINIBLOCKS + block * width_bytes));
    uleb128(block as u64, out);
    uleb128(MINIBLOCKS as u64, out);
    uleb128(values.len() as u64, out);
    let first = values.first().copied().unwrap_or(0);
    // Unsigned 32-bit values are held zero-extended: as the column's
    // integer, they are the same bits read signed.
    uleb128(
        zigzag(if int32 { (first as i32).into() } else { first }),
        out,
    );
    // One block's deltas, then each less the smallest; zeros past the last
    // delta pad its miniblock.
    let mut packed = [0u64; MINIBLOCKS * 64];
    // The deltas from value `at` to the block's end.
    let mut at = 1;
    while at < values.len() {
        let end = (at + block).min(values.len());
        let deltas = &mut packed[..end - at];
        let min = match int32 {
            true => block_deltas::<true>(&values[at - 1..end], deltas),
            false => block_deltas::<false>(&values[at - 1..end], deltas),
        };
        let used = (end - at).div_ceil(miniblock);
        packed[end - at..used * miniblock].fill(0);
        at = end;
        uleb128(zigzag(min), out);
        let widths_at = out.len();
        out.resize(widths_at + MINIBLOCKS, 0);
        // Miniblocks past the last delta take no bytes and width 0.
        for (m, chunk) in packed[..used * miniblock]
            .chunks_exact(miniblock)
            .enumerate()
        {
            let width = 64 - chunk.iter().fold(0, |all, &v| all | v).leading_zeros();
            out[widths_at + m] = width as u8;
            pack(chunk, width, out);
        }
    }
}

/// Writes to `deltas` the deltas between neighbours of `values` (one more
/// than `deltas`) less the smallest of them, as unsigned integers of the
/// column's width, and returns that smallest delta. Deltas of a 32-bit
/// column (`INT32`) wrap as 32-bit integers and are held sign-extended.
#[inline]
fn block_deltas<const INT32: bool>(values: &[i64], deltas: &mut [u64]) -> i64 {
    let delta = |pair: &[i64]| match INT32 {
        true => i64::from((pair[1] as i32).wrapping_sub(pair[0] as i32)),
        false => pair[1].wrapping_sub(pair[0]),
    };
    let mut min = i64::MAX;
    for (out, pair) in deltas.iter_mut().zip(values.windows(2)) {
        let delta = delta(pair);
        *out = delta as u64;
        min = min.min(delta);
    }
    for out in deltas.iter_mut() {
        *out = match INT32 {
            true => u64::from((*out as i32).wrapping_sub(min as i32) as u32),
            false => (*out as i64).wrapping_sub(min) as u64,
        };
    }
    min
}

/// Appends `values` at `width` bits each, from the lowest bit up. Their
/// number is a multiple of 8, so they end on a byte.
fn pack(values: &[u64], width: u32, out: &mut Vec<u8>) {
    debug_assert!(values.len().is_multiple_of(8) && width <= 64);
    if width == 0 {
        return;
    }
    // `bits` holds the `held` low bits not yet written, always under 64.
    let (mut bits, mut held) = (0u64, 0u32);
    for &value in values {
        bits |= value << held;
        held += width;
        if held >= 64 {
            out.extend_from_slice(&bits.to_le_bytes());
            held -= 64;
            // The bits of `value` the word had no room for: none when it
            // ended exactly (a shift by 64 would overflow).
            bits = if held == 0 {
                0
            } else {
                value >> (width - held)
            };
        }
    }
    out.extend_from_slice(&bits.to_le_bytes()[..held as usize / 8]);
}

/// ZigZag: small magnitudes, either sign, to small unsigned integers.
fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(values: &[i64], int32: bool) -> Vec<u8> {
        let mut out = Vec::new();
        delta_binary_packed(values, int32, &mut out);
        out
    }

    #[test]
    fn deltas_encode_as_the_format_specification_shows() {
        // The specification's first example, 1 to 5: deltas of 1 less
        // the smallest, 1, are all 0, so one miniblock of width 0.
        assert_eq!(
            encoded(&[1, 2, 3, 4, 5], true),
            [128, 1, 4, 5, 2, /* min delta */ 2, 0, 0, 0, 0]
        );
        // Its second, 7 5 3 1 2 3 4 5: deltas -2 -2 -2 1 1 1 1, the
        // smallest -2, so 0 0 0 3 3 3 3 at 2 bits, padded to 32 values.
        let mut expected = vec![128, 1, 4, 8, 14, /* min delta */ 3, 2, 0, 0, 0];
        expected.extend([0b1100_0000, 0b0011_1111]);
        expected.extend([0; 6]);
        assert_eq!(encoded(&[7, 5, 3, 1, 2, 3, 4, 5], true), expected);
        // No values, and one: a header only.
        assert_eq!(encoded(&[], false), [128, 2, 4, 0, 0]);
        assert_eq!(encoded(&[-3], false), [128, 2, 4, 1, 5]);
    }

    #[test]
    fn a_last_block_is_padded_with_zeros_not_the_block_before() {
        // A first block of deltas of ±1,000, then a block of one delta,
        // 5: that one less the smallest is 0, and so is its padding, so its
        // miniblocks are all of width 0.
        let mut values: Vec<i64> = (0..129).map(|i| (i % 2) * 1_000).collect();
        values.push(values[128] + 5);
        let out = encoded(&values, true);
        assert_eq!(out[out.len() - 5..], [10, 0, 0, 0, 0]);
    }

    #[test]
    fn a_64_bit_miniblock_is_padded_to_64_values() {
        // Deltas 5 and -4, the smallest -4: 9 and 0 at 4 bits, then 62
        // values of padding, 32 bytes in all.
        let mut expected = vec![128, 2, 4, 3, 0, /* min delta */ 7, 4, 0, 0, 0, 9];
        expected.extend([0; 31]);
        assert_eq!(encoded(&[0, 5, 1], false), expected);
    }

    #[test]
    fn signed_bounds_go_in_the_old_statistics_fields_too() {
        use parquet::basic::LogicalType;
        use parquet::schema::types::{ColumnDescriptor, ColumnPath};
        use std::sync::Arc;
        // As `parquet`'s writer does: for signed integers, not unsigned.
        for (physical, logical, signed) in [
            (Type::INT64, None, true),
            (Type::INT32, None, true),
            (Type::INT32, Some(LogicalType::integer(32, false)), false),
        ] {
            let leaf = parquet::schema::types::Type::primitive_type_builder("n", physical)
                .with_logical_type(logical)
                .with_repetition(parquet::basic::Repetition::REQUIRED)
                .build()
                .unwrap();
            let descr = Arc::new(ColumnDescriptor::new(
                Arc::new(leaf),
                0,
                0,
                ColumnPath::from("n"),
            ));
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .set_dictionary_enabled(false)
                .set_encoding(parquet::basic::Encoding::DELTA_BINARY_PACKED)
                .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page)
                .build();
            let data_type = match physical {
                Type::INT64 => arrow::datatypes::DataType::Int64,
                _ if signed => arrow::datatypes::DataType::Int32,
                _ => arrow::datatypes::DataType::UInt32,
            };
            let settings = Settings::for_column(&props, &descr, &data_type).expect("taken here");
            let mut column = DeltaColumn::new(descr, settings, 3);
            column.extend([3, 1, 2].into_iter());
            let (_, close) = column.finish().unwrap();
            let statistics = close.metadata.statistics().unwrap();
            assert_eq!(
                statistics.is_min_max_backwards_compatible(),
                signed,
                "{physical:?}"
            );
        }
    }

    #[test]
    fn deltas_wrap_at_the_columns_width() {
        // From i32::MAX to i32::MIN is +1 as a 32-bit integer.
        assert_eq!(
            encoded(&[i32::MAX.into(), i32::MIN.into()], true),
            [128, 1, 4, 2, 0xfe, 0xff, 0xff, 0xff, 0x0f, 2, 0, 0, 0, 0]
        );
        // u32::MAX, held zero-extended, is -1 as the column's integer.
        assert_eq!(encoded(&[u32::MAX.into()], true), [128, 1, 4, 1, 1]);
        // And from i64::MIN to i64::MAX is -1 at 64 bits.
        let out = encoded(&[i64::MIN, i64::MAX], false);
        assert_eq!(out[out.len() - 5..], [1, 0, 0, 0, 0]);
    }

    #[test]
    fn pack_puts_the_lowest_bit_first_and_ends_on_a_byte() {
        let mut out = Vec::new();
        pack(&[1, 2, 3, 0, 0, 0, 0, 0], 3, &mut out);
        assert_eq!(out, [0b11_010_001, 0b0000_0000, 0]);
        out.clear();
        pack(&[u64::MAX; 8], 64, &mut out);
        assert_eq!(out, [0xff; 64]);
        out.clear();
        pack(&[u64::MAX >> 1, 0, 1, 0, 0, 0, 0, 0], 63, &mut out);
        assert_eq!(out.len(), 63);
        assert_eq!(out[..8], (u64::MAX >> 1).to_le_bytes());
        // The third value's bit is bit 126.
        assert_eq!(out[15], 0b0100_0000);
    }

    #[test]
    fn pack_agrees_with_writing_bit_by_bit_at_every_width() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for width in 0..=64u32 {
            for count in [8, 32, 64] {
                let mask = if width == 64 {
                    u64::MAX
                } else {
                    (1 << width) - 1
                };
                let values: Vec<u64> = (0..count)
                    .map(|_| {
                        // xorshift64: any fixed sequence will do.
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state & mask
                    })
                    .collect();
                let mut expected = vec![0u8; count * width as usize / 8];
                for (i, &value) in values.iter().enumerate() {
                    for bit in 0..width as usize {
                        let at = i * width as usize + bit;
                        expected[at / 8] |= (((value >> bit) & 1) as u8) << (at % 8);
                    }
                }
                let mut out = vec![7];
                pack(&values, width, &mut out);
                assert_eq!(out[0], 7, "what was there stays");
                assert_eq!(out[1..], expected, "width {width}, {count} values");
            }
        }
    }
}
