//! Strings with few distinct values (service, scope and span names, kinds,
//! status codes, methods, routes, steps) through a dictionary of our own.
//!
//! Rows sorted by time mostly repeat the value of the row before, or one
//! of a few others, so each value is compared with the last value of the
//! same length (modulo 16) and hashed only when they differ; a page's
//! statistics come from the dictionary entries it used, not from comparing
//! every value. The chunk:
//! - one dictionary page, PLAIN: each entry's length (u32, little-endian)
//!   and bytes, in order of first appearance;
//! - data pages: the definition levels of a nullable column, then one byte
//!   of bit width and the dictionary indices of the non-null values in the
//!   RLE / bit-packing hybrid.
//!
//! A column is refused, and the writer writes it PLAIN from the start of
//! its row group ([`super::plain`]), when its dictionary page would pass
//! the column's dictionary page size limit (1 MiB unless set otherwise),
//! where `parquet`'s writer gives up its dictionary too; or when the row
//! group's first page, if one value in [`WEIGH_ONE_NEW_IN`] or more on it
//! was new, shows that the row group would be smaller PLAIN
//! ([`DictionaryColumn::weigh`]). A row group of one page is then written
//! PLAIN here. A value longer than the statistics keep whole is refused
//! too, and the writer hands the column to `parquet`'s writer.

use ahash::AHashMap;
use bytes::Bytes;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::schema::types::ColumnDescPtr;

use super::{Paged, Pages, Refused, Settings, bit_width, compress, hybrid};

/// A row group's first page is weighed PLAIN against the dictionary
/// ([`DictionaryColumn::weigh`]) when at least one value in this many is
/// a new entry: below it a dictionary always wins.
const WEIGH_ONE_NEW_IN: usize = 16;

/// Lengths, modulo this, whose last value is kept to compare before hashing.
const RECENT: usize = 16;

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
    /// The entry of the last value of each length modulo [`RECENT`];
    /// `u32::MAX`, no entry, for none yet.
    recent: [u32; RECENT],
    /// The entry of each non-null value of the page being filled.
    indices: Vec<u32>,
    /// Which entries that page uses, a bit each.
    used: Vec<u64>,
    /// Non-null values taken so far.
    values: usize,
    /// Rows of the row group, for [`DictionaryColumn::weigh`].
    group_rows: usize,
    /// Non-null values and entries when the first page was half full.
    at_half: Option<(usize, usize)>,
    /// Set at the end of the first page by [`DictionaryColumn::weigh`];
    /// the next row is then refused.
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
            recent: [u32::MAX; RECENT],
            indices: Vec::new(),
            used: Vec::new(),
            values: 0,
            group_rows,
            at_half: None,
            plain_is_smaller: false,
        }
    }

    /// Adds one row; `None` is a null.
    #[inline]
    pub(crate) fn push(&mut self, value: Option<&[u8]>) -> Result<(), Refused> {
        match value {
            Some(value) => {
                let entry = self.entry_of(value)?;
                self.values += 1;
                self.indices.push(entry);
                self.used[entry as usize / 64] |= 1 << (entry % 64);
                self.pages.page.value_bytes += value.len() as i64;
                self.note_half();
                self.value_added();
                self.refusal()
            }
            None => self.push_nulls(1),
        }
    }

    /// Adds `rows` rows of one value, as that many calls of
    /// [`DictionaryColumn::push`] would, a stretch of rows at a time. A
    /// flush's service and scope names, kinds, methods and steps are mostly
    /// one value in every row of a request; the writer finds such runs.
    pub(crate) fn push_run(&mut self, value: &[u8], mut rows: usize) -> Result<(), Refused> {
        if rows == 0 {
            return Ok(());
        }
        let entry = self.entry_of(value)?;
        while rows > 0 {
            let pages = &mut self.pages;
            let page_rows = pages.settings.page_rows;
            // A stretch ends where the page does, and where the first page
            // is half full: `push` notes the counts there.
            let mut take = rows.min(page_rows - pages.page.rows);
            let half = self.group_rows.min(page_rows).div_ceil(2);
            if self.at_half.is_none() && pages.done.is_empty() && pages.page.rows < half {
                take = take.min(half - pages.page.rows);
            }
            self.indices.extend(std::iter::repeat_n(entry, take));
            self.used[entry as usize / 64] |= 1 << (entry % 64);
            pages.page.value_bytes += (value.len() * take) as i64;
            if pages.nullable {
                pages.page.levels.extend(std::iter::repeat_n(1, take));
            }
            // `push` notes the half with its row's value counted, before
            // counting the row.
            self.values += 1;
            self.note_half();
            self.values += take - 1;
            let pages = &mut self.pages;
            pages.page.rows += take;
            rows -= take;
            if pages.page.rows == page_rows {
                self.end_page();
            }
            self.refusal()?;
        }
        Ok(())
    }

    /// Adds `rows` nulls.
    pub(crate) fn push_nulls(&mut self, rows: usize) -> Result<(), Refused> {
        self.note_half();
        Paged::push_nulls(self, rows)?;
        self.refusal()
    }

    /// Remembers the values and entries of the first page when it is
    /// half full (or, after a run of nulls, past half).
    #[inline]
    fn note_half(&mut self) {
        if self.at_half.is_none()
            && self.pages.done.is_empty()
            && 2 * self.pages.page.rows >= self.group_rows.min(self.pages.settings.page_rows)
        {
            self.at_half = Some((self.values, self.entries.len()));
        }
    }

    #[inline]
    fn refusal(&self) -> Result<(), Refused> {
        match self.plain_is_smaller {
            true => Err(Refused::PlainIsSmaller),
            false => Ok(()),
        }
    }

    fn entry(&self, entry: u32) -> &[u8] {
        let (start, len) = self.entries[entry as usize];
        &self.plain[start as usize..(start + len) as usize]
    }

    /// The entry of `value`, added if new. Rows in time order mostly
    /// repeat the value before, or one of a few others (span names, routes
    /// and status codes of interleaved requests): the last value whose
    /// length is the same modulo [`RECENT`] is compared first, and the
    /// value hashed only when it is not that one.
    #[inline]
    fn entry_of(&mut self, value: &[u8]) -> Result<u32, Refused> {
        let slot = value.len() % RECENT;
        let recent = self.recent[slot];
        if (recent as usize) < self.entries.len() && crate::short::eq(self.entry(recent), value) {
            return Ok(recent);
        }
        let entry = self.find_or_add(value)?;
        self.recent[slot] = entry;
        Ok(entry)
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

    /// The first page PLAIN, if the row group would be smaller PLAIN than
    /// with the dictionary, judged on that page, which is still being filled:
    /// at its end when more pages follow, or, for a row group of one page,
    /// at [`DictionaryColumn::finish`]. Only a page on which one value in
    /// [`WEIGH_ONE_NEW_IN`] or more was new is weighed.
    ///
    /// Unless every value on it was new, some in its second half, the page is
    /// compressed both ways, as its pages would be: PLAIN, and as the
    /// dictionary so far and the page's indices. The page's sizes are scaled to
    /// the rows of the row group. The dictionary grows by the entries later
    /// values will add, from the rate of new entries in each half of the page:
    /// unchanged from the first half to the second (every value new), it goes
    /// on so; falling, it falls on by the same ratio every half page (values
    /// drawn from a set the page has mostly seen). Values in time order that
    /// differ in a few characters (URLs with a running number) shrink well
    /// PLAIN, and their indices do not; values that repeat in scattered order
    /// (users from a feeder) shrink better as indices into a dictionary.
    fn weigh(&self) -> Option<Vec<u8>> {
        let (values, entries) = (self.indices.len(), self.entries.len());
        if !self.pages.done.is_empty() || values == 0 || entries * WEIGH_ONE_NEW_IN < values {
            return None;
        }
        // Every value new (URLs with their query strings), and some in the
        // page's second half: the dictionary is the page PLAIN, byte for
        // byte, and is projected to grow as fast as the values come, to
        // PLAIN's size; the indices come on top, so PLAIN wins, known
        // without compressing three times what may be a megabyte of
        // values. (With none in the second half, the dictionary is
        // projected not to grow, and the sizes decide.)
        let second_half_new = self
            .at_half
            .is_none_or(|(half_values, _)| half_values < values);
        if entries == values && second_half_new {
            debug_assert!(
                self.plain == self.page_plain(),
                "the page's values in order"
            );
            return Some(self.plain.clone());
        }
        self.weigh_compressed()
    }

    /// [`DictionaryColumn::weigh`] by the sizes zstd gives, whatever the
    /// values.
    fn weigh_compressed(&self) -> Option<Vec<u8>> {
        let (values, entries) = (self.indices.len(), self.entries.len());
        let rows = self.pages.page.rows;
        let plain = self.page_plain();
        let width = bit_width(entries.saturating_sub(1) as u32);
        let mut indices = vec![width];
        hybrid(&self.indices, width, &mut indices);
        // Should zstd fail, the dictionary stays, as without weighing.
        let level = self.pages.settings.zstd_level;
        let len = |part: &[u8]| compress(level, part).map(|c| c.len());
        let (Ok(plain_len), Ok(dictionary), Ok(indices)) =
            (len(&plain), len(&self.plain), len(&indices))
        else {
            return None;
        };
        // Sizes as f64: an estimate, of at most some MB.
        let scale = self.group_rows as f64 / rows as f64;
        let later_values = (self.group_rows - rows) as f64 * values as f64 / rows as f64;
        let (half_values, half_entries) = self.at_half.unwrap_or((0, 0));
        let rate = |new: usize, of: usize| if of == 0 { 0.0 } else { new as f64 / of as f64 };
        let first = rate(half_entries, half_values);
        let second = rate(entries - half_entries, values - half_values);
        let half_page = (values - half_values).max(1) as f64;
        let new_entries = growth(first, second, half_page, later_values);
        let dictionary = dictionary as f64 * (1.0 + new_entries / entries as f64);
        ((plain_len as f64) * scale < dictionary + indices as f64 * scale).then_some(plain)
    }

    /// The values of the page being filled, PLAIN.
    fn page_plain(&self) -> Vec<u8> {
        let mut plain =
            Vec::with_capacity(self.pages.page.value_bytes as usize + 4 * self.indices.len());
        for &entry in &self.indices {
            let value = self.entry(entry);
            plain.extend_from_slice(&(value.len() as u32).to_le_bytes());
            plain.extend_from_slice(value);
        }
        plain
    }

    /// The bounds of the page being filled, from the entries it uses.
    fn page_bounds(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        self.min_max()
            .map(|(min, max)| (self.entry(min).to_vec(), self.entry(max).to_vec()))
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
        if let Some(plain) = self.weigh() {
            // A row group of one page, written PLAIN: the page as weighed.
            let min_max = self.page_bounds();
            self.pages
                .end_page(|payload| payload.extend_from_slice(&plain), min_max);
            return self.pages.write(None, None);
        }
        self.end_last_page();
        let dictionary = (self.plain.as_slice(), self.entries.len() as u32);
        self.pages.write(Some(dictionary), None)
    }
}

/// Entries that `later` values are projected to add to a dictionary, when
/// a page's first half made `first` new entries a value and its second
/// half, of `half_page` values, `second`: at the second half's rate if it
/// did not fall; else falling by the same ratio every half page, so that
/// values drawn from a set mostly seen add few.
fn growth(first: f64, second: f64, half_page: f64, later: f64) -> f64 {
    let fall = if first > 0.0 { second / first } else { 1.0 };
    if fall >= 1.0 {
        return second * later;
    }
    // The sum of `second * half_page * fall^k` over the half pages to come.
    let halves = later / half_page;
    second * half_page * fall * (1.0 - fall.powf(halves)) / (1.0 - fall)
}

impl Paged for DictionaryColumn {
    fn pages(&mut self) -> &mut Pages {
        &mut self.pages
    }

    fn end_page(&mut self) {
        // The first page of several: the next row is refused if PLAIN wins.
        if self.pages.done.is_empty() && self.group_rows > self.pages.page.rows {
            self.plain_is_smaller = self.weigh().is_some();
        }
        let width = bit_width(self.entries.len().saturating_sub(1) as u32);
        let min_max = self.page_bounds();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::DataType;
    use parquet::basic::{Compression, LogicalType, Repetition, Type as PhysicalType, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    use parquet::schema::types::{ColumnDescriptor, ColumnPath, Type};

    use super::*;

    /// A string column of a row group of `group_rows` rows, its pages of
    /// the default 20,000 rows.
    fn column(nullable: bool, group_rows: usize) -> DictionaryColumn {
        let repetition = match nullable {
            true => Repetition::OPTIONAL,
            false => Repetition::REQUIRED,
        };
        let leaf = Type::primitive_type_builder("s", PhysicalType::BYTE_ARRAY)
            .with_repetition(repetition)
            .with_logical_type(Some(LogicalType::String))
            .build()
            .unwrap();
        let descr = ColumnDescriptor::new(
            Arc::new(leaf),
            i16::from(nullable),
            0,
            ColumnPath::from("s"),
        );
        let descr = Arc::new(descr);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let settings = Settings::for_column(&props, &descr, &DataType::Utf8).unwrap();
        assert_eq!(settings.page_rows, 20_000);
        DictionaryColumn::new(descr, settings, group_rows)
    }

    #[test]
    fn a_page_of_new_values_is_weighed_as_compressing_it_would() {
        // Distinct values that zstd shrinks by half at most, beside their
        // indices, which count up and shrink well.
        let value = |i: usize| {
            let x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            format!("{:016x}", x ^ (x >> 29))
        };
        // (values, nulls) in turn, and how many distinct values there
        // are: new values to a row short of the page's end; 12,000 then
        // nulls; 1,000 then nulls, none past the page's half (noted by the
        // nulls that come after it), where the dictionary is projected not
        // to grow and keeps its place; nulls, then new values; 8,000
        // values of which 4,000 distinct, where the sizes decide.
        let pages: [(&[(usize, usize)], usize); 5] = [
            (&[(19_999, 0)], usize::MAX),
            (&[(12_000, 7_999)], usize::MAX),
            (&[(1_000, 9_500), (0, 9_499)], usize::MAX),
            (&[(0, 10_000), (2_000, 0)], usize::MAX),
            (&[(8_000, 0)], 4_000),
        ];
        let mut plain = Vec::new();
        for (steps, distinct) in pages {
            let mut column = column(true, 100_000);
            let mut n = 0;
            for &(new, nulls) in steps {
                for _ in 0..new {
                    column.push(Some(value(n % distinct).as_bytes())).unwrap();
                    n += 1;
                }
                column.push_nulls(nulls).unwrap();
            }
            assert!(column.pages.done.is_empty(), "one page, still open");
            let weighed = column.weigh();
            assert_eq!(weighed, column.weigh_compressed(), "{steps:?}");
            plain.push(weighed.is_some());
        }
        assert_eq!(plain, [true, true, false, true, true]);
    }

    enum Rows {
        One(String),
        Run(&'static str, usize),
        Nulls(usize),
    }

    /// `rows` given to one column a row at a time and to another with runs
    /// as runs: each step answers the same, and the chunks are the same.
    fn runs_as_rows(nullable: bool, group_rows: usize, rows: &[Rows]) -> Result<(), Refused> {
        let (mut by_row, mut by_run) = (column(nullable, group_rows), column(nullable, group_rows));
        for step in rows {
            let (row, run) = match step {
                Rows::One(value) => (
                    by_row.push(Some(value.as_bytes())),
                    by_run.push(Some(value.as_bytes())),
                ),
                Rows::Run(value, n) => (
                    (0..*n).try_for_each(|_| by_row.push(Some(value.as_bytes()))),
                    by_run.push_run(value.as_bytes(), *n),
                ),
                Rows::Nulls(n) => (by_row.push_nulls(*n), by_run.push_nulls(*n)),
            };
            assert_eq!(row, run);
            // Where each stopped, too: a refusal ends the run at its row.
            let at = |c: &DictionaryColumn| (c.values, c.pages.page.rows, c.pages.done.len());
            assert_eq!(at(&by_row), at(&by_run));
            assert_eq!(by_row.at_half, by_run.at_half);
            row?;
        }
        let (row, run) = (by_row.finish().unwrap(), by_run.finish().unwrap());
        assert_eq!(row.0, run.0, "chunk bytes");
        assert_eq!(format!("{:?}", row.1), format!("{:?}", run.1));
        Ok(())
    }

    #[test]
    fn a_run_of_one_value_is_encoded_as_its_rows_one_by_one() {
        use Rows::*;
        // Runs up to the first page's half (10,000 rows) and from it, to a
        // page's end exactly, across page ends, and of the value before
        // them; with nulls between, for a nullable column, to the row
        // group's end.
        let rows = |nullable: bool| {
            let nulls = |n: usize| nullable.then_some(Nulls(n));
            [
                One("a".into()),
                Run("a", 4),
                Run("b", 9_995),
                Run("c", 10_000),
            ]
            .into_iter()
            .chain(nulls(7))
            .chain([Run("b", 2), Run("c", 15_000), Run("a", 5_000)])
            .chain([Run("d", 45_001), One("e".into()), Run("e", 3)])
            .chain(nulls(14_986))
            .collect::<Vec<_>>()
        };
        // A row group shorter than a page: its half is at 3,500 rows.
        let short = [
            One("a".into()),
            Run("a", 4),
            Run("b", 3_000),
            Run("c", 3_995),
        ];
        for nullable in [false, true] {
            assert_eq!(runs_as_rows(nullable, 100_000, &rows(nullable)), Ok(()));
            assert_eq!(runs_as_rows(nullable, 7_000, &short), Ok(()));
        }
        // A first page of new values but for a run across its half: its
        // end weighs PLAIN against the dictionary from the counts noted at
        // the half, and PLAIN wins, refused at the run that ends the page.
        let distinct = |from: usize, n: usize| (from..from + n).map(|i| One(format!("v{i}")));
        let rows: Vec<Rows> = distinct(0, 9_000)
            .chain([Run("x", 2_000)])
            .chain(distinct(9_000, 8_000))
            .chain([Run("y", 5_000)])
            .collect();
        assert_eq!(
            runs_as_rows(false, 100_000, &rows),
            Err(Refused::PlainIsSmaller)
        );
        // A value longer than statistics keep is refused at once.
        let long = "z".repeat(65);
        assert_eq!(
            column(true, 100).push_run(long.as_bytes(), 3),
            Err(Refused::LongValue)
        );
    }

    #[test]
    fn a_dictionary_grows_on_as_its_first_page_did() {
        // Every value new in both halves: every later value is new.
        assert_eq!(growth(1.0, 1.0, 10_000.0, 100_000.0), 100_000.0);
        // No new value in the second half: none later.
        assert_eq!(growth(0.5, 0.0, 10_000.0, 100_000.0), 0.0);
        // New values at a tenth of the first half's rate: 80 in the next
        // half page, 8 in the one after, and so on, about 89 in all, where
        // the second half's rate kept up would make 8,000.
        let falling = growth(0.8, 0.08, 10_000.0, 100_000.0);
        assert!((falling - 800.0 / 9.0).abs() < 0.01, "{falling}");
        // One half page to come: only the first term.
        let one = growth(0.8, 0.08, 10_000.0, 10_000.0);
        assert!((one - 80.0).abs() < 0.01, "{one}");
    }
}
