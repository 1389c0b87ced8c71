//! OTLP/HTTP JSON bodies: traces or metrics (first byte). Any input must give
//! rows or a 4xx refusal, never a panic or a 5xx.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [signal, body @ ..] = data else {
        return;
    };
    let answer = collector::receiver::http::decode_like_export(
        signal & 1 == 1,
        "application/json",
        false,
        body,
        1 << 20,
    );
    if let Err((status, text)) = answer {
        assert!((400..500).contains(&status), "{status}: {text}");
    }
});
