//! Strings with few distinct values (service, scope and span names, kinds,
//! status codes, methods, routes, steps) through a dictionary of our own.
//!
//! Rows sorted by time mostly repeat the value of the row before, so each
//! value is compared with the previous one and hashed only when they
//! differ; a page's statistics come from the dictionary entries it used,
//! not from comparing every value. The chunk:
//! - one dictionary page, PLAIN: each entry's length (u32, little-endian)
//!   and bytes, in order of first appearance;
//! - data pages: the definition levels of a nullable column, then one byte
//!   of bit width and the dictionary indices of the non-null values in the
//!   RLE / bit-packing hybrid.
//!
//! A column is refused, and the writer writes it PLAIN from the start of
//! its row group ([`super::plain`]), when its dictionary page would pass
//! the column's dictionary page size limit (1 MiB unless set otherwise),
//! where `parquet`'s writer gives up its dictionary too; or when, at the
//! end of a row group's first page of many distinct values, that page
//! compressed PLAIN is smaller than the dictionary and the indices would
//! be ([`DictionaryColumn::weigh`]). A value longer than the statistics
//! keep whole is refused too, and the writer hands the column to
//! `parquet`'s writer.

use ahash::AHashMap;
use bytes::Bytes;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::schema::types::ColumnDescPtr;

use super::{Paged, Pages, Refused, Settings, bit_width, hybrid, zstd_lens};

/// A row group's first page is weighed PLAIN against the dictionary
/// ([`DictionaryColumn::weigh`]) when at least one value in this many is
/// a new entry: below it a dictionary always wins.
const WEIGH_ONE_NEW_IN: usize = 16;

/// A string column's chunk being encoded.
#[derive(Debug)]
pub(crate) struct DictionaryColumn {
    pages: Pages,
    /// The entry of each distinct value.
    lookup: AHashMap<Box<[u8]>, u32>,
    /// The dictionary page's PLAIN payload.
    plain: Vec<u8>,
    /// Where each entry's bytes are in `plain`: (start, length).
    entries: Vec<(u32, u32)>,
    /// The entry of the last non-null value.
    last: Option<u32>,
    /// The entry of each non-null value of the page being filled.
    indices: Vec<u32>,
    /// Which entries that page uses, a bit each.
    used: Vec<u64>,
    /// Non-null values taken so far.
    values: usize,
    /// Rows of the row group, for [`DictionaryColumn::weigh`].
    group_rows: usize,
    /// Set by [`DictionaryColumn::weigh`].
    plain_is_smaller: bool,
}

impl DictionaryColumn {
    /// The encoder of a chunk of `group_rows` rows.
    pub(crate) fn new(descr: ColumnDescPtr, settings: Settings, group_rows: usize) -> Self {
        DictionaryColumn {
            pages: Pages::new(descr, settings),
            lookup: AHashMap::new(),
            plain: Vec::new(),
            entries: Vec::new(),
            last: None,
            indices: Vec::new(),
            used: Vec::new(),
            values: 0,
            group_rows,
            plain_is_smaller: false,
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
                self.values += 1;
                self.indices.push(entry);
                self.used[entry as usize / 64] |= 1 << (entry % 64);
                self.pages.page.value_bytes += value.len() as i64;
                self.value_added();
                if self.plain_is_smaller {
                    return Err(Refused::PlainIsSmaller);
                }
                Ok(())
            }
            None => self.push_nulls(1),
        }
    }

    fn entry(&self, entry: u32) -> &[u8] {
        let (start, len) = self.entries[entry as usize];
        &self.plain[start as usize..(start + len) as usize]
    }

    fn find_or_add(&mut self, value: &[u8]) -> Result<u32, Refused> {
        if let Some(&entry) = self.lookup.get(value) {
            return Ok(entry);
        }
        let settings = &self.pages.settings;
        if value.len() > settings.max_value_len {
            return Err(Refused::LongValue);
        }
        if self.plain.len() + 4 + value.len() > settings.max_dictionary_bytes {
            return Err(Refused::TooManyValues);
        }
        let entry = self.entries.len() as u32;
        self.plain
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.entries
            .push((self.plain.len() as u32, value.len() as u32));
        self.plain.extend_from_slice(value);
        self.lookup.insert(value.into(), entry);
        if self.used.len() * 64 < self.entries.len() {
            self.used.push(0);
        }
        Ok(entry)
    }

    /// Whether every value taken so far was distinct: asked once the
    /// dictionary is refused, it tells a column of unique values (URLs
    /// with their query strings) from one whose values repeat, if too
    /// rarely for a dictionary.
    pub(crate) fn all_distinct(&self) -> bool {
        self.values == self.entries.len()
    }

    /// At the end of a row group's first page, when its values are many
    /// and the row group has more pages to come: whether the row group
    /// would be smaller PLAIN. Both are compressed as their pages would be:
    /// this page PLAIN, against the dictionary so far and this page's
    /// indices, the page's size counted once for each page the row group
    /// will hold and the dictionary once. Values in time order that differ
    /// in a few characters (URLs with a running number) shrink well PLAIN;
    /// values that repeat in scattered order (users from a feeder) shrink
    /// better as indices into a dictionary.
    fn weigh(&mut self) {
        let values = self.indices.len();
        let page_rows = self.pages.settings.page_rows;
        if !self.pages.done.is_empty()
            || values == 0
            || self.entries.len() * WEIGH_ONE_NEW_IN < values
            || self.group_rows <= page_rows
        {
            return;
        }
        let mut plain = Vec::with_capacity(self.pages.page.value_bytes as usize + 4 * values);
        for &entry in &self.indices {
            let value = self.entry(entry);
            plain.extend_from_slice(&(value.len() as u32).to_le_bytes());
            plain.extend_from_slice(value);
        }
        let width = bit_width(self.entries.len().saturating_sub(1) as u32);
        let mut indices = vec![width];
        hybrid(&self.indices, width, &mut indices);
        let level = self.pages.settings.zstd_level;
        let Some([plain, dictionary, indices]) = zstd_lens(level, [&plain, &self.plain, &indices])
        else {
            return;
        };
        let pages = self.group_rows.div_ceil(page_rows);
        self.plain_is_smaller = plain * pages < dictionary + indices * pages;
    }

    /// The smallest and largest of the entries the page uses.
    fn min_max(&self) -> Option<(u32, u32)> {
        let mut min_max: Option<(u32, u32)> = None;
        for (word_at, &word) in self.used.iter().enumerate() {
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
        self.end_last_page();
        let dictionary = (self.plain.as_slice(), self.entries.len() as u32);
        self.pages.write(Some(dictionary), None)
    }
}

impl Paged for DictionaryColumn {
    fn pages(&mut self) -> &mut Pages {
        &mut self.pages
    }

    fn end_page(&mut self) {
        self.weigh();
        let width = bit_width(self.entries.len().saturating_sub(1) as u32);
        let min_max = self
            .min_max()
            .map(|(min, max)| (self.entry(min).to_vec(), self.entry(max).to_vec()));
        let indices = &self.indices;
        self.pages.end_page(
            |payload| {
                payload.push(width);
                hybrid(indices, width, payload);
            },
            min_max,
        );
        // The next page starts with room for every entry so far.
        self.indices.clear();
        self.used.clear();
        self.used.resize(self.entries.len().div_ceil(64), 0);
    }
}
