//! Write-ahead-log segments as a crash or a bad disk may leave them: replay
//! must stop at the first bad record, never panic, and account for every byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let replayed = collector::wal::parse_segment(data, 7);
    let kept: usize = replayed.records.iter().map(|(_, p)| 13 + p.len()).sum();
    assert_eq!(kept as u64 + replayed.torn_bytes, data.len() as u64);
});
