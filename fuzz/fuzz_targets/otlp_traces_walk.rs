//! The collector reads spans straight from protobuf bytes when it can and
//! leaves the rest to prost. Whenever the walk gives rows for an input, prost
//! must accept the input and give the same rows.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(difference) = collector::convert::spans::wire_agrees_with_prost(data) {
        panic!("{difference}");
    }
});
