//! Attribute keys the span converter looks for, recognised once per
//! attribute as it is read. A span of a load run carries about ten such
//! keys; comparing each attribute's key with every promoted key, then again
//! for the run id, the RED figures and the attribute map, cost more than
//! reading the attribute.

use schema::attr;
use schema::spans::PROMOTED;

use super::values::Attr;

/// Which known key an attribute has: `0..PROMOTED.len()` is the promoted
/// column of that index, [`RUN_ID`] the run id.
pub(crate) type Slot = u8;

/// `loadlens.run.id`, which picks the partition and has no column of its own.
pub(crate) const RUN_ID: Slot = PROMOTED.len() as Slot;

/// Promoted keys the RED figures read.
pub(crate) const STEP: Slot = promoted_slot(attr::STEP);
pub(crate) const ERROR_TYPE: Slot = promoted_slot(attr::ERROR_TYPE);
pub(crate) const INTENDED_START: Slot = promoted_slot(attr::INTENDED_START);
pub(crate) const REQUEST_ID: Slot = promoted_slot(attr::REQUEST_ID);

/// Keys longer than this are never known ones.
const MAX_LEN: usize = 64;

const _: () = assert!(
    PROMOTED.len() < 63,
    "slots, the run id's too, are bits of a u64"
);

/// The known keys by slot: the promoted ones, then the run id.
const KEYS: [&str; SLOTS] = {
    let mut keys = [""; SLOTS];
    let mut slot = 0;
    while slot < PROMOTED.len() {
        keys[slot] = PROMOTED[slot].0;
        slot += 1;
    }
    keys[RUN_ID as usize] = attr::RUN_ID;
    keys
};

/// Known keys by length: bit `s` of `BY_LEN[n]` is set when slot `s`'s key
/// is `n` bytes long. Most lengths hold none or one key, so a key is
/// compared with at most a couple of others. Both tables are constants,
/// so a lookup reads no lazily built value first.
const BY_LEN: [u64; MAX_LEN + 1] = {
    let mut by_len = [0u64; MAX_LEN + 1];
    let mut slot = 0;
    while slot < SLOTS {
        let len = KEYS[slot].len();
        assert!(len <= MAX_LEN, "a known key is too long");
        by_len[len] |= 1 << slot;
        slot += 1;
    }
    by_len
};

/// The slot of `key` and the key as a `str`, if it is a known one. The
/// `str` is the known key itself, so a caller holding raw bytes need not
/// check them for UTF-8.
#[inline]
pub(crate) fn known(key: &[u8]) -> Option<(Slot, &'static str)> {
    let mut candidates = *BY_LEN.get(key.len())?;
    while candidates != 0 {
        let slot = candidates.trailing_zeros() as usize;
        if crate::short::eq(KEYS[slot].as_bytes(), key) {
            return Some((slot as Slot, KEYS[slot]));
        }
        candidates &= candidates - 1;
    }
    None
}

/// Where a span's known attributes are, found in one pass over them so
/// that the run id, the RED figures, the promoted columns and the attribute
/// map each look their keys up instead of walking the list again.
pub(crate) struct Index {
    /// Bit `s` is set when an attribute has slot `s`.
    present: u64,
    /// The position of the first attribute of each slot present.
    first: [u32; SLOTS],
    /// A known key appears more than once.
    repeated: bool,
    /// Some attribute has no slot.
    unknown: bool,
}

/// Slots: the promoted columns, then the run id.
const SLOTS: usize = PROMOTED.len() + 1;

impl Index {
    pub fn of(attributes: &[Attr<'_>]) -> Self {
        let mut index = Index {
            present: 0,
            first: [0; SLOTS],
            repeated: false,
            unknown: false,
        };
        for (at, attr) in attributes.iter().enumerate() {
            match attr.slot {
                Some(slot) => {
                    let bit = 1u64 << slot;
                    if index.present & bit == 0 {
                        index.present |= bit;
                        // More than 4 billion attributes cannot fit a request.
                        index.first[usize::from(slot)] = at as u32;
                    } else {
                        index.repeated = true;
                    }
                }
                None => index.unknown = true,
            }
        }
        index
    }

    /// The position of the first attribute with `slot`.
    #[inline]
    pub fn first(&self, slot: Slot) -> Option<usize> {
        (self.present & (1 << slot) != 0).then(|| self.first[usize::from(slot)] as usize)
    }

    /// The slots present, as bits.
    pub fn present(&self) -> u64 {
        self.present
    }

    /// Whether a known key appears more than once.
    pub fn repeated(&self) -> bool {
        self.repeated
    }

    /// Whether some attribute has a key no slot stands for.
    pub fn has_unknown(&self) -> bool {
        self.unknown
    }
}

/// The slot of a promoted key, at compile time.
const fn promoted_slot(key: &str) -> Slot {
    let mut slot = 0;
    while slot < PROMOTED.len() {
        if same(PROMOTED[slot].0.as_bytes(), key.as_bytes()) {
            return slot as Slot;
        }
        slot += 1;
    }
    panic!("not a promoted key");
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_key_is_found_in_its_slot() {
        for (slot, (key, _, _)) in PROMOTED.iter().enumerate() {
            assert_eq!(known(key.as_bytes()), Some((slot as Slot, *key)));
            assert_eq!(schema::spans::promoted(key).map(|p| p.0), Some(slot));
        }
        assert_eq!(known(attr::RUN_ID.as_bytes()), Some((RUN_ID, attr::RUN_ID)));
        assert_eq!(PROMOTED[STEP as usize].0, attr::STEP);
        assert_eq!(PROMOTED[ERROR_TYPE as usize].0, attr::ERROR_TYPE);
        assert_eq!(PROMOTED[INTENDED_START as usize].0, attr::INTENDED_START);
        assert_eq!(PROMOTED[REQUEST_ID as usize].0, attr::REQUEST_ID);
    }

    #[test]
    fn other_keys_are_not_known() {
        for key in [
            "",
            "custom.key",
            "http.route ",
            "Http.route",
            "http.rout",
            "service.name",
            &"x".repeat(MAX_LEN + 1),
        ] {
            assert_eq!(known(key.as_bytes()), None, "{key:?}");
        }
        // Same length as a known key, one byte off.
        let mut near = attr::REQUEST_ID.as_bytes().to_vec();
        *near.last_mut().unwrap() ^= 1;
        assert_eq!(known(&near), None);
        assert_eq!(known(&[0xff; 10]), None);
    }
}
