//! Strings written without a dictionary, PLAIN: too many distinct values
//! for one, or smaller so (full URLs with their query strings, say).
//!
//! `parquet`'s writer, given such a column, first hashes every value into a
//! dictionary until the dictionary passes its size limit, and only then
//! falls back to PLAIN; the column was also gathered into an array of its
//! own for it. Here a page's payload is the definition levels of a
//! nullable column, then each value as its length (u32, little-endian) and
//! bytes, read straight from the source batches; a page ends at the rows a
//! page holds or at the column's page size limit, whichever comes first.
//!
//! A value longer than the statistics keep whole is refused, as by the
//! dictionary ([`Refused::LongValue`]).

use std::ops::Range;

use bytes::Bytes;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::schema::types::ColumnDescPtr;

use super::{Paged, Pages, Refused, Settings};

/// A string column's chunk being encoded without a dictionary.
#[derive(Debug)]
pub(crate) struct PlainColumn {
    pages: Pages,
    /// The page's values, PLAIN, one after the other.
    values: Vec<u8>,
    /// Where its smallest and largest value are in `values`.
    bounds: Option<(Range<usize>, Range<usize>)>,
}

impl PlainColumn {
    pub(crate) fn new(descr: ColumnDescPtr, settings: Settings) -> Self {
        PlainColumn {
            pages: Pages::new(descr, settings),
            values: Vec::new(),
            bounds: None,
        }
    }

    /// Adds one row; `None` is a null.
    #[inline]
    pub(crate) fn push(&mut self, value: Option<&[u8]>) -> Result<(), Refused> {
        let Some(value) = value else {
            return self.push_nulls(1);
        };
        if value.len() > self.pages.settings.max_value_len {
            return Err(Refused::LongValue);
        }
        self.values
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        let at = self.values.len()..self.values.len() + value.len();
        self.values.extend_from_slice(value);
        self.bounds = Some(match self.bounds.take() {
            None => (at.clone(), at),
            Some((min, max)) => (
                if value < &self.values[min.clone()] {
                    at.clone()
                } else {
                    min
                },
                if value > &self.values[max.clone()] {
                    at
                } else {
                    max
                },
            ),
        });
        self.pages.page.value_bytes += value.len() as i64;
        self.value_added();
        // `value_added` ends the page at its rows; this at its bytes.
        if self.values.len() >= self.pages.settings.max_page_bytes {
            self.end_page();
        }
        Ok(())
    }

    /// The chunk's bytes, from offset 0, and what `append_column` needs to
    /// splice them into a row group.
    pub(crate) fn finish(mut self) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
        self.end_last_page();
        self.pages.write(None, None)
    }
}

impl Paged for PlainColumn {
    fn pages(&mut self) -> &mut Pages {
        &mut self.pages
    }

    fn end_page(&mut self) {
        let values = &self.values;
        let min_max = self
            .bounds
            .take()
            .map(|(min, max)| (values[min].to_vec(), values[max].to_vec()));
        self.pages
            .end_page(|payload| crate::bulk::extend(payload, values), min_max);
        self.values.clear();
    }
}
