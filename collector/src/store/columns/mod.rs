//! Column chunks the collector encodes itself, spliced into each row group
//! among the chunks `parquet`'s writer makes ([`super::writer`]): strings
//! with few distinct values through a dictionary ([`dictionary`]), strings
//! with many as they are ([`plain`]), ids as they are ([`ids`]), and
//! integers and times as deltas ([`deltas`]).
//!
//! For these columns `parquet`'s writer spends most of its time on work per
//! value that knowing the data makes unneeded: hashing every string into
//! its dictionary, comparing every value for statistics, copying ids one by
//! one into values of their own. Together that was about a seventh of the
//! collector's CPU (BENCHMARKS.md).
//!
//! A chunk made here holds what `parquet`'s writer would make of the
//! column, V1 pages (<https://parquet.apache.org/docs/file-format/>): the
//! same encodings, statistics, level histograms and bloom filter, and a
//! column index and offset index true to its pages. A test in
//! [`super::writer`] reads both back and compares them with `ArrowWriter`'s
//! file for the same rows, and each page's index entry with its rows. The
//! bytes differ: here every page but the last holds the same number of
//! rows, runs are chosen as [`hybrid`] says, and ids that zstd cannot
//! shrink are stored uncompressed ([`Pages::compression`]). So do the
//! encodings of some string columns: one whose dictionary passes its
//! limit is PLAIN here throughout, where `parquet`'s writer keeps the
//! pages it wrote with the dictionary and goes on PLAIN; and one that
//! comes out smaller PLAIN ([`dictionary::DictionaryColumn`]) is PLAIN
//! here, where `parquet`'s writer keeps a dictionary ([`plain`]).

pub(crate) mod deltas;
pub(crate) mod dictionary;
pub(crate) mod ids;
pub(crate) mod plain;

use std::cell::RefCell;
use std::io;

use arrow::datatypes::{DataType, TimeUnit};
use bytes::Bytes;
use parquet::basic::{
    BoundaryOrder, Compression, Encoding, EncodingMask, PageType, SortOrder, Type,
};
use parquet::bloom_filter::Sbbf;
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::{ByteArray, FixedLenByteArray};
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, LevelHistogram, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use deltas::DeltaColumn;
use dictionary::DictionaryColumn;
use ids::IdColumn;
use plain::PlainColumn;

/// A column chunk an encoder here does not write, for the reason given:
/// `parquet`'s writer takes it, but for a refused dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The dictionary page would pass the column's size limit: the column
    /// is written PLAIN here instead ([`Encoder::plain`]).
    TooManyValues,
    /// The row group's first page showed that the row group would be
    /// smaller PLAIN than with the dictionary: the column is written PLAIN
    /// here instead, for the rest of the file.
    PlainIsSmaller,
    /// A value is longer than statistics keep whole; `parquet` cuts such
    /// values in its statistics, which the encoders here do not do.
    LongValue,
    /// A value of the wrong length for its fixed-size column, or a null in
    /// a column the schema says has none. The writer checks the batches
    /// against the schema first, so this is a second line of defence.
    Invalid,
}

/// How a column's chunks are written, from the file's properties.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    compression: Compression,
    zstd_level: i32,
    /// Rows a data page holds, but for the last.
    page_rows: usize,
    /// Bytes of values past which a PLAIN string page ends before its rows.
    max_page_bytes: usize,
    /// Longest value kept whole in statistics and the column index.
    max_value_len: usize,
    /// Largest dictionary page, PLAIN.
    max_dictionary_bytes: usize,
    /// Bloom filter size and false-positive rate, for ids that have one.
    bloom_filter: Option<(u64, f64)>,
}

impl Settings {
    /// The settings for the leaf `descr`, of Arrow type `data_type`, under
    /// `props`, if an encoder here writes such a column as `parquet` would:
    /// a top-level column, page statistics, V1 pages and zstd; and either
    /// `Utf8` strings with a dictionary and no bloom filter, fixed-size ids
    /// without a dictionary, or 32- and 64-bit integers and nanosecond
    /// times set to DELTA_BINARY_PACKED.
    pub(crate) fn for_column(
        props: &WriterProperties,
        descr: &ColumnDescPtr,
        data_type: &DataType,
    ) -> Option<Settings> {
        let path = descr.path();
        let zstd_level = match props.compression(path) {
            Compression::ZSTD(level) => level.compression_level(),
            _ => return None,
        };
        let limit = |length: Option<usize>| length.unwrap_or(usize::MAX);
        let max_value_len = limit(props.statistics_truncate_length())
            .min(limit(props.column_index_truncate_length()));
        let width = usize::try_from(descr.type_length()).unwrap_or(0);
        let kind = match (descr.physical_type(), data_type) {
            // The encoding is the one past a full dictionary: PLAIN here.
            (Type::BYTE_ARRAY, DataType::Utf8) => {
                props.dictionary_enabled(path)
                    && props.bloom_filter_properties(path).is_none()
                    && matches!(props.encoding(path), None | Some(Encoding::PLAIN))
            }
            // Integers and times as deltas, which `parquet` writes without
            // a dictionary.
            (Type::INT64, DataType::Int64 | DataType::Timestamp(TimeUnit::Nanosecond, _))
            | (Type::INT32, DataType::Int32 | DataType::UInt32) => {
                !props.dictionary_enabled(path)
                    && props.encoding(path) == Some(Encoding::DELTA_BINARY_PACKED)
                    && props.bloom_filter_properties(path).is_none()
            }
            // Ids whose bounds parquet would not cut.
            (Type::FIXED_LEN_BYTE_ARRAY, DataType::FixedSizeBinary(_)) => {
                !props.dictionary_enabled(path)
                    && matches!(props.encoding(path), None | Some(Encoding::PLAIN))
                    && (1..=16).contains(&width)
                    && width <= max_value_len
            }
            _ => false,
        };
        let takes = kind
            && path.parts().len() == 1
            && descr.max_rep_level() == 0
            && descr.max_def_level() <= 1
            && props.statistics_enabled(path) == EnabledStatistics::Page
            && !props.write_page_header_statistics(path)
            && props.writer_version() == WriterVersion::PARQUET_1_0
            && !props.offset_index_disabled()
            && props.content_defined_chunking().is_none()
            && props.data_page_row_count_limit() > 0;
        if !takes {
            return None;
        }
        let page_rows = match descr.physical_type() {
            // Ids are written as they are: a page also stops at the size
            // limit. So do integers here, as if each took its full width.
            Type::FIXED_LEN_BYTE_ARRAY | Type::INT32 | Type::INT64 => {
                let width = match descr.physical_type() {
                    Type::INT32 => 4,
                    Type::INT64 => 8,
                    _ => width,
                };
                props
                    .data_page_row_count_limit()
                    .min(props.column_data_page_size_limit(path) / width)
                    .max(1)
            }
            // A dictionary index takes at most 18 bits under the default
            // 1 MiB dictionary page (262,144 empty strings of 4 bytes
            // each) and a level 1 bit, so such pages stay far below the
            // default size limit; PLAIN pages also end at it.
            _ => props.data_page_row_count_limit(),
        };
        Some(Settings {
            compression: props.compression(path),
            zstd_level,
            page_rows,
            max_page_bytes: props.column_data_page_size_limit(path),
            max_value_len,
            max_dictionary_bytes: props.column_dictionary_page_size_limit(path),
            bloom_filter: props
                .bloom_filter_properties(path)
                .map(|bloom| (bloom.ndv(), bloom.fpp())),
        })
    }
}

/// One column chunk (a column's rows in one row group) being encoded here.
#[derive(Debug)]
pub(crate) enum Encoder {
    Strings(DictionaryColumn),
    PlainStrings(PlainColumn),
    Ids(IdColumn),
    Ints(DeltaColumn),
}

impl Encoder {
    /// The encoder for a column [`Settings::for_column`] took, for a row
    /// group of `rows` rows.
    pub(crate) fn new(
        descr: ColumnDescPtr,
        settings: Settings,
        rows: usize,
    ) -> Result<Encoder, ParquetError> {
        Ok(match descr.physical_type() {
            Type::FIXED_LEN_BYTE_ARRAY => Encoder::Ids(IdColumn::new(descr, settings, rows)?),
            Type::INT32 | Type::INT64 => Encoder::Ints(DeltaColumn::new(descr, settings, rows)),
            _ => Encoder::Strings(DictionaryColumn::new(descr, settings, rows)),
        })
    }

    /// The encoder for a string column that [`Settings::for_column`] took
    /// but whose dictionary was refused ([`Refused::TooManyValues`],
    /// [`Refused::PlainIsSmaller`]).
    pub(crate) fn plain(descr: ColumnDescPtr, settings: Settings) -> Encoder {
        Encoder::PlainStrings(PlainColumn::new(descr, settings))
    }

    /// Adds `rows` nulls.
    pub(crate) fn push_nulls(&mut self, rows: usize) -> Result<(), Refused> {
        match self {
            Encoder::Strings(strings) => strings.push_nulls(rows),
            Encoder::PlainStrings(strings) => strings.push_nulls(rows),
            Encoder::Ids(ids) => ids.push_nulls(rows),
            Encoder::Ints(ints) => ints.push_nulls(rows),
        }
    }

    /// The chunk's bytes, from offset 0, and what `append_column` needs to
    /// splice them into a row group.
    pub(crate) fn finish(self) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
        match self {
            Encoder::Strings(strings) => strings.finish(),
            Encoder::PlainStrings(strings) => strings.finish(),
            Encoder::Ids(ids) => ids.finish(),
            Encoder::Ints(ints) => ints.finish(),
        }
    }
}

/// What every encoder here keeps besides its values: the column, how it
/// is written, the rows of the page being filled and the pages done.
#[derive(Debug)]
struct Pages {
    descr: ColumnDescPtr,
    settings: Settings,
    nullable: bool,
    page: PageRows,
    done: Vec<EncodedPage>,
    /// The chunk's codec, chosen as its first page ends
    /// ([`Pages::compression`]).
    codec: Option<Compression>,
    /// Why a page could not be compressed, for [`Pages::write`] to say.
    failed: Option<io::Error>,
}

impl Pages {
    fn new(descr: ColumnDescPtr, settings: Settings) -> Self {
        Pages {
            nullable: descr.max_def_level() == 1,
            descr,
            settings,
            page: PageRows::default(),
            done: Vec::new(),
            codec: None,
            failed: None,
        }
    }

    /// The chunk's codec: the file's, but for ids that zstd would not
    /// shrink. Random ids, as tracers make them, are most of a span's bytes
    /// on disk and come out of zstd no smaller; trying every page was
    /// about 1% of the collector's CPU in its bench (BENCHMARKS.md). Ids
    /// that count up, as some tracers' do, still shrink, and are
    /// compressed. The first [`SAMPLE_BYTES`] of the first page decide.
    fn compression(&self, first: &[u8]) -> io::Result<Compression> {
        if self.descr.physical_type() != Type::FIXED_LEN_BYTE_ARRAY {
            return Ok(self.settings.compression);
        }
        let sample = &first[..first.len().min(SAMPLE_BYTES)];
        let compressed = compress(self.settings.zstd_level, sample)?.len();
        Ok(if compressed * 16 >= sample.len() * 15 {
            Compression::UNCOMPRESSED
        } else {
            self.settings.compression
        })
    }

    /// `payload` with the chunk's codec, chosen on the first page.
    fn compressed(&mut self, payload: Vec<u8>) -> io::Result<Bytes> {
        let codec = match self.codec {
            Some(codec) => codec,
            None => *self.codec.insert(self.compression(&payload)?),
        };
        Ok(match codec {
            Compression::UNCOMPRESSED => Bytes::from(payload),
            _ => Bytes::from(compress(self.settings.zstd_level, &payload)?),
        })
    }

    /// Ends the page being filled: its definition levels, then the values
    /// `encode` appends, with the bounds of those values. The page is
    /// compressed now, as `parquet`'s writer does, so that a chunk holds
    /// its pages compressed until the row group closes.
    fn end_page(&mut self, encode: impl FnOnce(&mut Vec<u8>), min_max: Option<(Vec<u8>, Vec<u8>)>) {
        let page = std::mem::take(&mut self.page);
        let mut payload = page.levels_section(self.nullable);
        encode(&mut payload);
        let len = payload.len();
        let buf = self.compressed(payload).unwrap_or_else(|e| {
            self.failed.get_or_insert(e);
            Bytes::new()
        });
        self.done.push(EncodedPage {
            buf,
            len,
            rows: page.rows,
            nulls: page.nulls,
            value_bytes: page.value_bytes,
            min_max,
        });
        if self.nullable {
            self.page.levels.reserve(page.levels.capacity());
        }
    }

    /// The chunk's bytes and description (see [`Encoder::finish`]), the
    /// last page ended already.
    fn write(
        self,
        dictionary: Option<(&[u8], u32)>,
        bloom_filter: Option<Sbbf>,
    ) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
        if let Some(failed) = self.failed {
            return Err(ParquetError::External(Box::new(failed)));
        }
        Chunk {
            descr: &self.descr,
            settings: &self.settings,
            compression: self.codec.unwrap_or(self.settings.compression),
            dictionary,
            pages: &self.done,
            bloom_filter,
        }
        .write()
    }
}

/// A column chunk filled a page at a time: what the encoders share.
trait Paged {
    fn pages(&mut self) -> &mut Pages;
    /// Ends the page being filled (through [`Pages::end_page`]).
    fn end_page(&mut self);

    /// Ends a row whose value the encoder has taken: its level, and the
    /// page if that fills it.
    #[inline]
    fn value_added(&mut self) {
        let pages = self.pages();
        if pages.nullable {
            pages.page.levels.push(1);
        }
        pages.page.rows += 1;
        if pages.page.rows == pages.settings.page_rows {
            self.end_page();
        }
    }

    /// Adds `rows` nulls, across pages as need be.
    fn push_nulls(&mut self, mut rows: usize) -> Result<(), Refused> {
        if !self.pages().nullable {
            return Err(Refused::Invalid);
        }
        while rows > 0 {
            let pages = self.pages();
            let room = pages.settings.page_rows - pages.page.rows;
            let take = rows.min(room);
            let page = &mut pages.page;
            page.levels.resize(page.levels.len() + take, 0);
            page.nulls += take as u64;
            page.rows += take;
            rows -= take;
            if take == room {
                self.end_page();
            }
        }
        Ok(())
    }

    /// Ends the last page, unless it is empty.
    fn end_last_page(&mut self) {
        if self.pages().page.rows > 0 {
            self.end_page();
        }
    }
}

/// The rows of the data page being filled, with what a column's statistics
/// need of them.
#[derive(Debug, Default)]
struct PageRows {
    /// Definition levels, for a nullable column: 1 for a value, 0 for null.
    levels: Vec<u8>,
    rows: usize,
    nulls: u64,
    /// The values' bytes, before encoding: counted for strings only, as
    /// the format records it for variable-length values only.
    value_bytes: i64,
}

impl PageRows {
    /// The page payload's first part: for a nullable column, its definition
    /// levels, as their length (u32, little-endian) and the hybrid at bit
    /// width 1.
    fn levels_section(&self, nullable: bool) -> Vec<u8> {
        let mut payload = Vec::new();
        if nullable {
            payload.extend_from_slice(&[0; 4]);
            hybrid(&self.levels, 1, &mut payload);
            let len = (payload.len() - 4) as u32;
            payload[..4].copy_from_slice(&len.to_le_bytes());
        }
        payload
    }
}

/// A data page, encoded and compressed.
#[derive(Debug)]
struct EncodedPage {
    /// Its bytes, compressed with the chunk's codec.
    buf: Bytes,
    /// Their length before compression.
    len: usize,
    rows: usize,
    nulls: u64,
    value_bytes: i64,
    /// Smallest and largest value; `None` if all are null.
    min_max: Option<(Vec<u8>, Vec<u8>)>,
}

thread_local! {
    /// The zstd context the last chunk written on this thread used, with
    /// its level, for the next: making one allocates and clears some
    /// hundreds of KiB and asks the CPU what it supports, which a
    /// hypervisor traps (BENCHMARKS.md).
    static KEPT_COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
}

/// `bytes` after zstd at `level`, with this thread's kept context.
fn compress(level: i32, bytes: &[u8]) -> io::Result<Vec<u8>> {
    let kept = KEPT_COMPRESSOR.with(|kept| kept.borrow_mut().take());
    let mut compressor = match kept {
        Some((kept_level, compressor)) if kept_level == level => compressor,
        _ => zstd::bulk::Compressor::new(level)?,
    };
    let compressed = compressor.compress(bytes);
    KEPT_COMPRESSOR.with(|kept| *kept.borrow_mut() = Some((level, compressor)));
    compressed
}

/// Bytes of an id column's first page that zstd is tried on, to choose
/// the chunk's codec ([`Pages::compression`]): at most 4,096 ids of 16
/// bytes, fewer when the page is shorter or begins with definition levels.
const SAMPLE_BYTES: usize = 64 * 1024;

/// The pages of a column chunk, to be written as one.
struct Chunk<'a> {
    descr: &'a ColumnDescPtr,
    settings: &'a Settings,
    /// The pages' codec, and the dictionary page's.
    compression: Compression,
    /// The PLAIN payload of a dictionary page and its number of entries.
    dictionary: Option<(&'a [u8], u32)>,
    pages: &'a [EncodedPage],
    bloom_filter: Option<Sbbf>,
}

impl Chunk<'_> {
    /// Writes the pages, dictionary first (compressing it), from offset 0
    /// of a buffer of their own, and describes them as `parquet`'s writer
    /// would.
    fn write(self) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
        let external = |e: io::Error| ParquetError::External(Box::new(e));
        let compression = self.compression;
        let byte_array = self.descr.physical_type() == Type::BYTE_ARRAY;
        let mut sink = TrackedWrite::new(Vec::new());
        let mut totals = Totals::default();
        let mut offsets = OffsetIndexBuilder::new();
        let mut index = ColumnIndexBuilder::new(self.descr.physical_type());
        let cmp = ordering(self.descr);
        let mut order = Order::new(cmp);
        let level_histogram = || LevelHistogram::try_new(self.descr.max_def_level());
        let mut levels = level_histogram();
        let mut data_page_offset = None;
        let mut encodings = vec![Encoding::RLE];
        let mut page_stats = Vec::new();
        {
            let mut writer = SerializedPageWriter::new(&mut sink);
            if let Some((plain, entries)) = self.dictionary {
                let buf = match compression {
                    Compression::UNCOMPRESSED => Bytes::copy_from_slice(plain),
                    _ => Bytes::from(compress(self.settings.zstd_level, plain).map_err(external)?),
                };
                let page = Page::DictionaryPage {
                    buf,
                    num_values: entries,
                    encoding: Encoding::PLAIN,
                    is_sorted: false,
                };
                totals.add(&writer.write_page(CompressedPage::new(page, plain.len()))?);
                encodings.push(Encoding::PLAIN);
                page_stats.push(PageEncodingStats {
                    page_type: PageType::DICTIONARY_PAGE,
                    encoding: Encoding::PLAIN,
                    count: 1,
                });
            }
            let encoding = match (self.dictionary, self.descr.physical_type()) {
                (Some(_), _) => Encoding::RLE_DICTIONARY,
                (None, Type::INT32 | Type::INT64) => Encoding::DELTA_BINARY_PACKED,
                (None, _) => Encoding::PLAIN,
            };
            encodings.push(encoding);
            page_stats.push(PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding,
                count: self.pages.len() as i32,
            });
            for page in self.pages {
                let data = Page::DataPage {
                    buf: page.buf.clone(),
                    num_values: page.rows as u32,
                    encoding,
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    statistics: None,
                };
                let spec = writer.write_page(CompressedPage::new(data, page.len))?;
                totals.add(&spec);
                data_page_offset.get_or_insert(spec.offset as i64);
                offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
                offsets.append_row_count(page.rows as i64);
                offsets
                    .append_unencoded_byte_array_data_bytes(byte_array.then_some(page.value_bytes));
                match &page.min_max {
                    None => index.append(true, Vec::new(), Vec::new(), page.nulls as i64),
                    Some((min, max)) => {
                        order.next(min, max);
                        index.append(false, min.clone(), max.clone(), page.nulls as i64);
                    }
                }
                let mut page_levels = level_histogram();
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
        let bounds = self.pages.iter().filter_map(|p| p.min_max.as_ref());
        let min = bounds.clone().map(|(min, _)| min).min_by(|a, b| cmp(a, b));
        let max = bounds.map(|(_, max)| max).max_by(|a, b| cmp(a, b));
        let (signed, nulls) = (self.descr.sort_order().is_signed(), Some(nulls));
        let statistics = match self.descr.physical_type() {
            Type::BYTE_ARRAY => Statistics::ByteArray(chunk_statistics(
                (min, max),
                |v| ByteArray::from(v.to_vec()),
                nulls,
                signed,
            )),
            Type::INT32 => Statistics::Int32(chunk_statistics((min, max), le_i32, nulls, signed)),
            Type::INT64 => Statistics::Int64(chunk_statistics((min, max), le_i64, nulls, signed)),
            _ => Statistics::FixedLenByteArray(chunk_statistics(
                (min, max),
                |v| FixedLenByteArray::from(ByteArray::from(v.to_vec())),
                nulls,
                signed,
            )),
        };
        let rows: u64 = self.pages.iter().map(|p| p.rows as u64).sum();
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(compression)
            .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
            .set_page_encoding_stats(page_stats)
            .set_total_compressed_size(totals.compressed)
            .set_total_uncompressed_size(totals.uncompressed)
            .set_num_values(rows as i64)
            .set_dictionary_page_offset(self.dictionary.map(|_| 0))
            .set_data_page_offset(data_page_offset.unwrap_or(0))
            .set_statistics(statistics)
            .set_unencoded_byte_array_data_bytes(
                byte_array.then(|| self.pages.iter().map(|p| p.value_bytes).sum()),
            )
            .set_definition_level_histogram(levels)
            .build()?;
        let bloom_filter = self.bloom_filter.map(|mut filter| {
            // As parquet's writer does: the smallest filter that keeps the rate.
            let fpp = self.settings.bloom_filter.map_or(0.0, |(_, fpp)| fpp);
            filter.fold_to_target_fpp(fpp);
            filter
        });
        let close = ColumnCloseResult {
            bytes_written: totals.written,
            rows_written: rows,
            metadata,
            bloom_filter,
            column_index: Some(index.build()?),
            offset_index: Some(offsets.build()),
        };
        Ok((Bytes::from(sink.into_inner()?), close))
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

/// How two bounds of a column compare, as the format orders its values:
/// integers by value (signed, or unsigned for unsigned types), strings and
/// ids byte by byte.
type Compare = fn(&[u8], &[u8]) -> std::cmp::Ordering;

fn ordering(descr: &ColumnDescPtr) -> Compare {
    let unsigned = descr.sort_order() == SortOrder::UNSIGNED;
    match descr.physical_type() {
        Type::INT32 if unsigned => |a, b| (le_i32(a) as u32).cmp(&(le_i32(b) as u32)),
        Type::INT32 => |a, b| le_i32(a).cmp(&le_i32(b)),
        Type::INT64 if unsigned => |a, b| (le_i64(a) as u64).cmp(&(le_i64(b) as u64)),
        Type::INT64 => |a, b| le_i64(a).cmp(&le_i64(b)),
        _ => |a, b| a.cmp(b),
    }
}

/// A chunk's statistics from its bounds (as the column index stores them,
/// read by `read`) and nulls. As `parquet`'s writer does, the bounds of
/// columns whose values sort signed go in the footer's old min and max
/// fields too, for older readers.
fn chunk_statistics<T>(
    (min, max): (Option<&Vec<u8>>, Option<&Vec<u8>>),
    read: impl Fn(&[u8]) -> T,
    nulls: Option<u64>,
    signed: bool,
) -> ValueStatistics<T> {
    ValueStatistics::new(
        min.map(|v| read(v)),
        max.map(|v| read(v)),
        None,
        nulls,
        false,
    )
    .with_backwards_compatible_min_max(signed)
}

/// A 32-bit bound, as the column index stores it (little-endian).
fn le_i32(bytes: &[u8]) -> i32 {
    bytes.try_into().map_or(0, i32::from_le_bytes)
}

/// A 64-bit bound, as the column index stores it (little-endian).
fn le_i64(bytes: &[u8]) -> i64 {
    bytes.try_into().map_or(0, i64::from_le_bytes)
}

/// Whether the pages' bounds only rise, only fall, or neither, as the
/// column index records it: pages of nulls only are skipped, and a page
/// whose min and max both equal the last's keeps either order.
#[derive(Debug)]
struct Order<'a> {
    cmp: Compare,
    last: Option<(&'a [u8], &'a [u8])>,
    ascending: bool,
    descending: bool,
}

impl<'a> Order<'a> {
    fn new(cmp: Compare) -> Self {
        Order {
            cmp,
            last: None,
            ascending: true,
            descending: true,
        }
    }

    fn next(&mut self, min: &'a [u8], max: &'a [u8]) {
        if let Some((last_min, last_max)) = self.last {
            let le = |a, b| (self.cmp)(a, b).is_le();
            self.ascending &= le(last_min, min) && le(last_max, max);
            self.descending &= le(min, last_min) && le(max, last_max);
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
/// bits a value. A run of at least [`MIN_RUN`] equal values, or a run that
/// ends the values, is one RLE run: its length shifted left once, as a
/// ULEB128, then the value in `ceil(width / 8)` little-endian bytes. Other
/// values go out eight at a time as bit-packed groups: a ULEB128 of the
/// group count shifted left once with the low bit set, then the values
/// packed from the lowest bit up. Only the last group may hold fewer than
/// eight values; it is padded with zeros, and readers stop at the number of
/// values the page holds. So width 0 (a dictionary of one entry) is always
/// one RLE run, as other writers make it.
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
        if run >= MIN_RUN || at + run == values.len() {
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
            let value = values[start..at].get(i).map_or(0, |&v| v.into());
            bits |= u64::from(value) << held;
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
        // Fewer than eight values: one group, padded with zeros; but a run
        // to the end is one RLE run however short.
        assert_eq!(encoded(&[1, 0, 1], 1), [0b11, 0b0000_0101]);
        assert_eq!(encoded(&[1, 1, 1], 1), [6, 1]);
        assert_eq!(encoded(&[0], 0), [2]);
        // Groups of eight until a long run starts at a group's end.
        let mut values = vec![1, 0, 1, 0, 1, 0, 1, 0];
        values.extend([1; 9]);
        assert_eq!(encoded(&values, 1), [0b11, 0b0101_0101, 18, 1]);
    }
}
