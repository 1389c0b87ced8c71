//! Trace and span ids (fixed-size byte strings) as they are, PLAIN.
//!
//! Ids are random, so they get no dictionary; `parquet`'s writer still
//! copies each into a value of its own, reference-counted, and compares it
//! byte by byte for statistics. Here a page's payload is the definition
//! levels of a nullable column, then the ids' bytes one after the other;
//! bounds are kept as integers read big-endian, whose order is the bytes'
//! order; and the bloom filter, if the column has one, takes each id as
//! `parquet`'s does.

use bytes::Bytes;
use parquet::bloom_filter::Sbbf;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::schema::types::ColumnDescPtr;

use super::{Paged, Pages, Refused, Settings};

/// An id column's chunk being encoded.
#[derive(Debug)]
pub(crate) struct IdColumn {
    pages: Pages,
    /// Bytes an id takes, 1 to 16.
    width: usize,
    /// The ids of the page being filled, one after the other.
    values: Vec<u8>,
    /// Bytes a page's ids take at most: `values` takes room for them at
    /// the first id, so that a column NULL in every row takes none.
    page_bytes: usize,
    /// Its smallest and largest id, as integers (see [`IdColumn::bound`]).
    bounds: Option<(u128, u128)>,
    bloom_filter: Option<Sbbf>,
}

impl IdColumn {
    /// The encoder of a chunk of `rows` rows.
    pub(crate) fn new(
        descr: ColumnDescPtr,
        settings: Settings,
        rows: usize,
    ) -> Result<Self, ParquetError> {
        let bloom_filter = settings
            .bloom_filter
            .map(|(ndv, fpp)| Sbbf::new_with_ndv_fpp(ndv, fpp))
            .transpose()?;
        let width = descr.type_length() as usize;
        Ok(IdColumn {
            width,
            values: Vec::new(),
            page_bytes: rows.min(settings.page_rows) * width,
            pages: Pages::new(descr, settings),
            bounds: None,
            bloom_filter,
        })
    }

    /// An id as an integer that orders as its bytes do: read big-endian,
    /// from the first byte of 16, the rest zero. Ids of a column are all
    /// the same length, so none is a prefix of another.
    #[inline]
    fn bound(id: &[u8]) -> u128 {
        match id.len() {
            16 => u128::from_be_bytes(id.try_into().expect("16 bytes")),
            8 => u128::from(u64::from_be_bytes(id.try_into().expect("8 bytes"))) << 64,
            _ => {
                let mut padded = [0u8; 16];
                padded[..id.len()].copy_from_slice(id);
                u128::from_be_bytes(padded)
            }
        }
    }

    /// Adds one row; `None` is a null.
    #[inline]
    pub(crate) fn push(&mut self, id: Option<&[u8]>) -> Result<(), Refused> {
        match id {
            Some(id) if id.len() == self.width => {
                // Grown from nothing, the page's ids were copied a dozen
                // times.
                if self.values.capacity() == 0 {
                    self.values.reserve_exact(self.page_bytes);
                }
                // Of a length known here, the copy is a move or two, not a
                // call to `memcpy`.
                match id.len() {
                    16 => self
                        .values
                        .extend_from_slice(&<[u8; 16]>::try_from(id).expect("16")),
                    8 => self
                        .values
                        .extend_from_slice(&<[u8; 8]>::try_from(id).expect("8")),
                    _ => self.values.extend_from_slice(id),
                }
                let bound = Self::bound(id);
                self.bounds = Some(match self.bounds {
                    None => (bound, bound),
                    Some((min, max)) => (min.min(bound), max.max(bound)),
                });
                if let Some(filter) = &mut self.bloom_filter {
                    filter.insert(id);
                }
                self.value_added();
                Ok(())
            }
            Some(_) => Err(Refused::Invalid),
            None => self.push_nulls(1),
        }
    }

    /// The chunk's bytes, from offset 0, and what `append_column` needs to
    /// splice them into a row group.
    pub(crate) fn finish(mut self) -> Result<(Bytes, ColumnCloseResult), ParquetError> {
        self.end_last_page();
        self.pages.write(None, self.bloom_filter)
    }
}

impl Paged for IdColumn {
    fn pages(&mut self) -> &mut Pages {
        &mut self.pages
    }

    fn end_page(&mut self) {
        let width = self.width;
        let bytes = |bound: u128| bound.to_be_bytes()[..width].to_vec();
        let min_max = self
            .bounds
            .take()
            .map(|(min, max)| (bytes(min), bytes(max)));
        let values = &self.values;
        self.pages
            .end_page(|payload| crate::bulk::extend(payload, values), min_max);
        self.values.clear();
    }
}
