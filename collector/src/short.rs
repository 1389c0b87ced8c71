//! Equality of short byte strings in line: a call to `memcmp` costs more
//! than comparing the few to few dozen bytes of an attribute key or a
//! column value.

/// Whether `a` and `b` hold the same bytes: eight at a time, then the last
/// eight (overlapping the words before when the length is not a multiple
/// of eight); four and four for lengths of 4 to 7; byte by byte below.
#[inline]
pub(crate) fn eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_ne_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    match n {
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if word(a, at) != word(b, at) {
                    return false;
                }
                at += 8;
            }
            word(a, n - 8) == word(b, n - 8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_and_every_differing_byte_is_told_apart() {
        let base: Vec<u8> = (0..40).collect();
        for n in 0..base.len() {
            let a = &base[..n];
            assert!(eq(a, &base[..n]), "{n}");
            assert!(!eq(a, &base[..n + 1]), "{n} against {}", n + 1);
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 0x80;
                assert!(!eq(a, &b), "length {n}, byte {at}");
            }
        }
    }
}
