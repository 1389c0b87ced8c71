//! Copies of 200 KiB, about the size of a request of 512 spans, whole and in the
//! pieces of `collector::bulk`, with the destination at several distances
//! past the source's place in its 4 KiB page. Both buffers begin on a page
//! and stay in cache; each line is the best of five rounds.
//!
//!   cargo bench -p collector --bench copy

use std::time::Instant;

const LEN: usize = 200 * 1024;
const PAGE: usize = 4096;

/// `len` bytes of a buffer that begin on a page, and room after them.
struct Paged {
    bytes: Vec<u8>,
    start: usize,
}

impl Paged {
    fn new(len: usize) -> Self {
        let bytes = vec![1u8; len + 2 * PAGE];
        let start = (PAGE - bytes.as_ptr() as usize % PAGE) % PAGE;
        Paged { bytes, start }
    }

    /// `len` bytes from `offset` past the page the buffer begins on.
    fn at(&mut self, offset: usize, len: usize) -> &mut [u8] {
        &mut self.bytes[self.start + offset..self.start + offset + len]
    }
}

/// The best rate of five rounds of `copy`.
fn gb_per_s(copy: &mut dyn FnMut()) -> f64 {
    let rounds = 2_000;
    (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..rounds {
                copy();
            }
            (LEN * rounds) as f64 / started.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn main() {
    let mut from = Paged::new(LEN);
    let from = &*from.at(0, LEN);
    let mut to = Paged::new(LEN);
    println!(
        "copies of {LEN} bytes, GB/s: whole (copy_from_slice) and in pieces (collector::bulk)"
    );
    for offset in [0, 8, 13, 64, 77, 2061] {
        let whole = gb_per_s(&mut || {
            to.at(offset, LEN).copy_from_slice(from);
            std::hint::black_box(&to.bytes);
        });
        let pieces = gb_per_s(&mut || {
            collector::bulk::copy(to.at(offset, LEN), from);
            std::hint::black_box(&to.bytes);
        });
        println!(
            "destination {offset:>4} bytes further in its page: {whole:5.1} whole, {pieces:5.1} in pieces"
        );
    }
}
