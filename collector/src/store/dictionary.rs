//! A dictionary encoder of our own for the string columns that hold few
//! distinct values: service, scope and span names, kinds, status codes,
//! methods, routes, steps.
//!
//! `parquet`'s writer hashes every value of such a column into its
//! dictionary, and compares every value for the page statistics: a tenth of
//! the collector's CPU (BENCHMARKS.md). Rows sorted by time mostly repeat
//! the value of the row before, so this encoder compares each value with
//! the previous one and hashes only when they differ, and takes a page's
//! statistics from the dictionary entries the page used. The column chunk
//! it makes is spliced into the row group among the chunks `parquet` writes
//! (see [`super::writer`]).
//!
//! The chunk is what `parquet`'s own writer makes of a dictionary-encoded
//! optional or required `BYTE_ARRAY` column, V1 pages
//! (<https://parquet.apache.org/docs/file-format/>):
//! - one dictionary page, PLAIN: each entry's length (u32, little-endian)
//!   and bytes, in order of first appearance;
//! - data pages of at most `data_page_row_count_limit` rows: for a nullable
//!   column its definition levels (u32 length, then the hybrid at bit width
//!   1), then one byte of bit width and the dictionary indices of the
//!   non-null values in the RLE / bit-packing hybrid;
//! - statistics, column index and offset index as `parquet` computes them.
//!
//! A column is refused ([`Refused`]) when its dictionary would grow past
//! [`MAX_ENTRIES`] or [`MAX_DICTIONARY_BYTES`], or a value is longer than
//! the statistics keep whole; the writer then hands the column to
//! `parquet`'s writer from the start of its row group.

use std::io;

use ahash::AHashMap;
use bytes::Bytes;
use parquet::basic::{BoundaryOrder, Compression, Encoding, EncodingMask, PageType, Type};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, LevelHistogram, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Most entries a dictionary may hold: indices of at most 12 bits. A column
/// with more (unique URLs, say) gains little from a dictionary, and
/// `parquet`'s writer decides what to do with it.
pub(crate) const MAX_ENTRIES: usize = 4096;

/// Most bytes a dictionary page may hold, well below `parquet`'s default
/// limit (1 MiB), past which its own writer would stop using a dictionary.
pub(crate) const MAX_DICTIONARY_BYTES: usize = 256 * 1024;

/// A column this encoder does not take, for the reason given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The dictionary would pass [`MAX_ENTRIES`] or [`MAX_DICTIONARY_BYTES`].
    TooManyValues,
    /// A value is longer than statistics keep whole; `parquet` cuts such
    /// values in its statistics, which this encoder does not do.
    LongValue,
    /// A null in a column the schema says has none; `parquet`'s writer
    /// reports it.
    Null,
}

/// How the encoder writes: the column's properties, checked once per file.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    compression: Compression,
    zstd_level: i32,
    page_rows: usize,
    /// Longest value kept whole in statistics and the column index.
    max_value_len: usize,
}

impl Settings {
    /// The settings for `descr` under `props`, if this encoder writes such a
    /// column as `parquet` would: a top-level string column, with a
    /// dictionary, page statistics, no bloom filter, V1 pages and zstd.
    pub(crate) fn for_column(props: &WriterProperties, descr: &ColumnDescPtr) -> Option<Settings> {
        let path = descr.path();
        let zstd_level = match props.compression(path) {
            Compression::ZSTD(level) => level.compression_level(),
            _ => return None,
        };
        let takes = descr.physical_type() == Type::BYTE_ARRAY
            && descr.max_rep_level() == 0
            && descr.max_def_level() <= 1
            && descr.path().parts().len() == 1
            && props.dictionary_enabled(path)
            && props.statistics_enabled(path) == EnabledStatistics::Page
            && !props.write_page_header_statistics(path)
            && props.bloom_filter_properties(path).is_none()
            && props.writer_version() == WriterVersion::PARQUET_1_0
            && props.dictionary_page_encoding() == Encoding::PLAIN
            && !props.offset_index_disabled()
            && props.data_page_row_count_limit() > 0;
        let limit = |length: Option<usize>| length.unwrap_or(usize::MAX);
        takes.then(|| Settings {
            compression: props.compression(path),
            zstd_level,
            page_rows: props.data_page_row_count_limit(),
            max_value_len: limit(props.statistics_truncate_length())
                .min(limit(props.column_index_truncate_length())),
        })
    }
}

/// One column chunk (the column's rows in one row group) being encoded.
#[derive(Debug)]
pub(crate) struct DictionaryColumn {
    descr: ColumnDescPtr,
    settings: Settings,
    nullable: bool,
    /// The entry of each distinct value.
    lookup: AHashMap<Box<[u8]>, u32>,
    /// The dictionary page's PLAIN payload.
    plain: Vec<u8>,
    /// Where each entry's bytes are in `plain`: (start, length).
    entries: Vec<(u32, u32)>,
    /// The entry of the last non-null value.
    last: Option<u32>,
    page: PageRows,
    pages: Vec<EncodedPage>,
    rows: u64,
}

/// The rows of the data page being filled.
#[derive(Debug, Default)]
struct PageRows {
    /// Definition levels, for a nullable column: 1 for a value, 0 for null.
    levels: Vec<u8>,
    /// The entry of each non-null value.
    indices: Vec<u32>,
    /// Which entries the page uses, a bit each.
    used: Vec<u64>,
    rows: usize,
    nulls: u64,
    /// The values' bytes, before encoding.
    value_bytes: i64,
}

/// A data page, encoded but not yet compressed.
#[derive(Debug)]
struct EncodedPage {
    payload: Vec<u8>,
    rows: usize,
    nulls: u64,
    value_bytes: i64,
    /// Smallest and largest entry used, by their bytes; `None` if all null.
    min_max: Option<(u32, u32)>,
}

impl DictionaryColumn {
    pub(crate) fn new(descr: ColumnDescPtr, settings: Settings) -> Self {
        DictionaryColumn {
            nullable: descr.max_def_level() == 1,
            descr,
            settings,
            lookup: AHashMap::new(),
            plain: Vec::new(),
            entries: Vec::new(),
            last: None,
            page: PageRows::default(),
            pages: Vec::new(),
            rows: 0,
        }
    }

    /// Adds one row; `None` is a null.
    #[inline]
    pub(crate) fn push(&mut self, value: Option<&[u8]>) -> Result<(), Refused> {
        match value {
            Some(value) => {
                let entry = match self.last {
                    Some(last) if crate::short::eq(self.entry(last), value) => last,
                    _ => self.find_or_add(value)?,
                };
                self.last = Some(entry);
                let page = &mut self.page;
                page.indices.push(entry);
                page.used[entry as usize / 64] |= 1 << (entry % 64);
                page.value_bytes += value.len() as i64;
                if self.nullable {
                    page.levels.push(1);
                }
            }
            None if !self.nullable => return Err(Refused::Null),
            None => {
                self.page.levels.push(0);
                self.page.nulls += 1;
            }
        }
        self.page.rows += 1;
        self.rows += 1;
        if self.page.rows == self.settings.page_rows {
            self.end_page();
        }
        Ok(())
    }

    /// Adds `rows` nulls.
    pub(crate) fn push_nulls(&mut self, mut rows: usize) -> Result<(), Refused> {
        if !self.nullable {
            return Err(Refused::Null);
        }
        while rows > 0 {
            let take = rows.min(self.settings.page_rows - self.page.rows);
            let page = &mut self.page;
            page.levels.resize(page.levels.len() + take, 0);
            page.nulls += take as u64;
            page.rows += take;
            self.rows += take as u64;
            rows -= take;
            if self.page.rows == self.settings.page_rows {
                self.end_page();
            }
        }
        Ok(())
    }

    fn entry(&self, entry: u32) -> &[u8] {
        let (start, len) = self.entries[entry as usize];
        &self.plain[start as usize..(start + len) as usize]
    }

    fn find_or_add(&mut self, value: &[u8]) -> Result<u32, Refused> {
        if let Some(&entry) = self.lookup.get(value) {
            return Ok(entry);
        }
        if value.len() > self.settings.max_value_len {
            return Err(Refused::LongValue);
        }
        if self.entries.len() == MAX_ENTRIES
            || self.plain.len() + 4 + value.len() > MAX_DICTIONARY_BYTES
        {
            return Err(Refused::TooManyValues);
        }
        let entry = self.entries.len() as u32;
        self.plain
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.entries
            .push((self.plain.len() as u32, value.len() as u32));
        self.plain.extend_from_slice(value);
        self.lookup.insert(value.into(), entry);
        if self.page.used.len() * 64 < self.entries.len() {
            self.page.used.push(0);
        }
        Ok(entry)
    }

    /// Encodes the rows of the page being filled as a page.
    fn end_page(&mut self) {
        let page = std::mem::take(&mut self.page);
        let mut payload = Vec::with_capacity(16 + page.indices.len() * 2);
        if self.nullable {
            payload.extend_from_slice(&[0; 4]);
            hybrid(&page.levels, 1, &mut payload);
            let len = (payload.len() - 4) as u32;
            payload[..4].copy_from_slice(&len.to_le_bytes());
        }
        let width = bit_width(self.entries.len().saturating_sub(1) as u32);
        payload.push(width);
        hybrid(&page.indices, width, &mut payload);
        let min_max = self.min_max(&page.used);
        self.pages.push(EncodedPage {
            payload,
            rows: page.rows,
            nulls: page.nulls,
            value_bytes: page.value_bytes,
            min_max,
        });
        // The next page starts with room for every entry so far.
        self.page.used = vec![0; self.entries.len().div_ceil(64)];
        self.page.indices.reserve(page.indices.capacity());
        if self.nullable {
            self.page.levels.reserve(page.levels.capacity());
        }
    }

    /// The smallest and largest of the entries whose bits are set.
    fn min_max(&self, used: &[u64]) -> Option<(u32, u32)> {
        let mut min_max: Option<(u32, u32)> = None;
        for (word_at, &word) in used.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let entry = (word_at * 64) as u32 + bits.trailing_zeros();
                bits &= bits - 1;
                let value = self.entry(entry);
                min_max = Some(match min_max {
                    None => (entry, entry),
                    Some((min, max)) => (
                        if value < self.entry(min) { entry } else { min },
                        if value > self.entry(max) { entry } else { max },
                    ),
                });
            }
        }
        min_max
    }

    /// The chunk's bytes, from offset 0, and what `append_column` needs to
    /// splice them into a row group.
    pub(crate) fn finish(mut self) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
        if self.page.rows > 0 {
            self.end_page();
        }
        let external = |e: io::Error| ParquetError::External(Box::new(e));
        let mut compressor =
            zstd::bulk::Compressor::new(self.settings.zstd_level).map_err(external)?;
        let mut compress = |payload: &[u8]| -> Result<Bytes, ParquetError> {
            Ok(Bytes::from(compressor.compress(payload).map_err(external)?))
        };
        let mut sink = TrackedWrite::new(Vec::new());
        let mut totals = Totals::default();
        let mut offsets = OffsetIndexBuilder::new();
        let mut index = ColumnIndexBuilder::new(Type::BYTE_ARRAY);
        let mut order = Order::default();
        let mut levels = self.level_histogram();
        let mut data_page_offset = None;
        {
            let mut writer = SerializedPageWriter::new(&mut sink);
            let dictionary = Page::DictionaryPage {
                buf: compress(&self.plain)?,
                num_values: self.entries.len() as u32,
                encoding: Encoding::PLAIN,
                is_sorted: false,
            };
            totals.add(&writer.write_page(CompressedPage::new(dictionary, self.plain.len()))?);
            for page in &self.pages {
                let data = Page::DataPage {
                    buf: compress(&page.payload)?,
                    num_values: page.rows as u32,
                    encoding: Encoding::RLE_DICTIONARY,
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    statistics: None,
                };
                let spec = writer.write_page(CompressedPage::new(data, page.payload.len()))?;
                totals.add(&spec);
                data_page_offset.get_or_insert(spec.offset as i64);
                offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
                offsets.append_row_count(page.rows as i64);
                offsets.append_unencoded_byte_array_data_bytes(Some(page.value_bytes));
                match page.min_max {
                    None => index.append(true, Vec::new(), Vec::new(), page.nulls as i64),
                    Some((min, max)) => {
                        order.next(self.entry(min), self.entry(max));
                        index.append(
                            false,
                            self.entry(min).to_vec(),
                            self.entry(max).to_vec(),
                            page.nulls as i64,
                        );
                    }
                }
                let mut page_levels = self.level_histogram();
                if let Some(histogram) = &mut page_levels {
                    histogram.increment_by(0, page.nulls as i64);
                    histogram.increment_by(1, (page.rows as u64 - page.nulls) as i64);
                }
                index.append_histograms(&None, &page_levels);
                if let (Some(chunk), Some(page)) = (&mut levels, &page_levels) {
                    chunk.add(page);
                }
            }
            writer.close()?;
        }
        index.set_boundary_order(order.boundary());

        let nulls: u64 = self.pages.iter().map(|p| p.nulls).sum();
        let min = self
            .pages
            .iter()
            .filter_map(|p| p.min_max)
            .map(|(min, _)| self.entry(min))
            .min();
        let max = self
            .pages
            .iter()
            .filter_map(|p| p.min_max)
            .map(|(_, max)| self.entry(max))
            .max();
        let statistics = Statistics::ByteArray(ValueStatistics::new(
            min.map(|v| ByteArray::from(v.to_vec())),
            max.map(|v| ByteArray::from(v.to_vec())),
            None,
            Some(nulls),
            false,
        ));
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(self.settings.compression)
            .set_encodings_mask(EncodingMask::new_from_encodings(
                [Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY].iter(),
            ))
            .set_page_encoding_stats(vec![
                PageEncodingStats {
                    page_type: PageType::DICTIONARY_PAGE,
                    encoding: Encoding::PLAIN,
                    count: 1,
                },
                PageEncodingStats {
                    page_type: PageType::DATA_PAGE,
                    encoding: Encoding::RLE_DICTIONARY,
                    count: self.pages.len() as i32,
                },
            ])
            .set_total_compressed_size(totals.compressed)
            .set_total_uncompressed_size(totals.uncompressed)
            .set_num_values(self.rows as i64)
            .set_dictionary_page_offset(Some(0))
            .set_data_page_offset(data_page_offset.unwrap_or(0))
            .set_statistics(statistics)
            .set_unencoded_byte_array_data_bytes(Some(
                self.pages.iter().map(|p| p.value_bytes).sum(),
            ))
            .set_definition_level_histogram(levels)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: totals.written,
            rows_written: self.rows,
            metadata,
            bloom_filter: None,
            column_index: Some(index.build()?),
            offset_index: Some(offsets.build()),
        };
        Ok((Bytes::from(sink.into_inner()?), close))
    }

    /// An empty histogram of definition levels, for a nullable column.
    fn level_histogram(&self) -> Option<LevelHistogram> {
        LevelHistogram::try_new(self.descr.max_def_level())
    }
}

/// Sizes of the pages written, headers included.
#[derive(Debug, Default)]
struct Totals {
    compressed: i64,
    uncompressed: i64,
    written: u64,
}

impl Totals {
    fn add(&mut self, spec: &PageWriteSpec) {
        self.compressed += spec.compressed_size as i64;
        self.uncompressed += spec.uncompressed_size as i64;
        self.written += spec.bytes_written;
    }
}

/// Whether the pages' bounds only rise, only fall, or neither, as the
/// column index records it: pages of nulls only are skipped, and a page
/// whose min and max both equal the last's keeps either order.
#[derive(Debug)]
struct Order<'a> {
    last: Option<(&'a [u8], &'a [u8])>,
    ascending: bool,
    descending: bool,
}

impl Default for Order<'_> {
    fn default() -> Self {
        Order {
            last: None,
            ascending: true,
            descending: true,
        }
    }
}

impl<'a> Order<'a> {
    fn next(&mut self, min: &'a [u8], max: &'a [u8]) {
        if let Some((last_min, last_max)) = self.last {
            self.ascending &= last_min <= min && last_max <= max;
            self.descending &= min <= last_min && max <= last_max;
        }
        self.last = Some((min, max));
    }

    fn boundary(&self) -> BoundaryOrder {
        match (self.ascending, self.descending) {
            (true, _) => BoundaryOrder::ASCENDING,
            (false, true) => BoundaryOrder::DESCENDING,
            (false, false) => BoundaryOrder::UNORDERED,
        }
    }
}

/// Bits needed for `max`: 0 for 0, 1 for 1, 2 for 2 and 3, …
fn bit_width(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// Runs of equal values at least this long are written as one RLE run;
/// shorter ones are bit-packed with their neighbours.
const MIN_RUN: usize = 8;

/// Appends `values` to `out` in the RLE / bit-packing hybrid at `width`
/// bits a value. A run of at least [`MIN_RUN`] equal values is one RLE run:
/// its length shifted left once, as a ULEB128, then the value in
/// `ceil(width / 8)` little-endian bytes. Other values go out eight at a
/// time as bit-packed groups: a ULEB128 of the group count shifted left
/// once with the low bit set, then the values packed from the lowest bit
/// up. Only the last group may hold fewer than eight values; it is padded
/// with zeros, and readers stop at the number of values the page holds.
fn hybrid<T: Copy + Eq + Into<u32>>(values: &[T], width: u8, out: &mut Vec<u8>) {
    let run_at = |at: usize| {
        values[at..]
            .iter()
            .take_while(|&&v| v == values[at])
            .count()
    };
    let mut at = 0;
    while at < values.len() {
        let run = run_at(at);
        if run >= MIN_RUN {
            uleb128((run as u64) << 1, out);
            let value = values[at].into().to_le_bytes();
            out.extend_from_slice(&value[..usize::from(width).div_ceil(8)]);
            at += run;
            continue;
        }
        // Whole groups of eight, until a long run starts where a group ends.
        let start = at;
        loop {
            at = (at + 8).min(values.len());
            if at == values.len() || run_at(at) >= MIN_RUN {
                break;
            }
        }
        let groups = (at - start).div_ceil(8);
        uleb128(((groups as u64) << 1) | 1, out);
        let mut bits: u64 = 0;
        let mut held = 0;
        for i in 0..groups * 8 {
            let value = values.get(start + i).filter(|_| start + i < at);
            bits |= u64::from(value.map_or(0, |&v| v.into())) << held;
            held += u32::from(width);
            while held >= 8 {
                out.push(bits as u8);
                bits >>= 8;
                held -= 8;
            }
        }
    }
}

/// `value` as an unsigned LEB128: seven bits a byte, lowest first, the high
/// bit set on every byte but the last.
fn uleb128(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(values: &[u32], width: u8) -> Vec<u8> {
        let mut out = Vec::new();
        hybrid(values, width, &mut out);
        out
    }

    #[test]
    fn the_hybrid_encodes_the_format_specification_examples() {
        // The bit-packing example of the specification: 0 to 7 at 3 bits,
        // one group (header 1 << 1 | 1), packed from the lowest bit up.
        assert_eq!(
            encoded(&[0, 1, 2, 3, 4, 5, 6, 7], 3),
            [0b11, 0b1000_1000, 0b1100_0110, 0b1111_1010]
        );
        // Ten fives: one RLE run (10 << 1) and the value in one byte.
        assert_eq!(encoded(&[5; 10], 3), [20, 5]);
        // A run needs no bytes for its value at width 0, and long runs take
        // a longer ULEB128 header: 300 << 1 = 600 = 0b100_1011000.
        assert_eq!(encoded(&[0; 300], 0), [0b1101_1000, 0b100]);
        // Values at 12 bits take two bytes in a run.
        assert_eq!(encoded(&[0xabc; 8], 12), [16, 0xbc, 0x0a]);
        // Fewer than eight values: one group, padded with zeros.
        assert_eq!(encoded(&[1, 1, 1], 1), [0b11, 0b0000_0111]);
        // Groups of eight until a long run starts at a group's end.
        let mut values = vec![1, 0, 1, 0, 1, 0, 1, 0];
        values.extend([1; 9]);
        assert_eq!(encoded(&values, 1), [0b11, 0b0101_0101, 18, 1]);
    }
}
