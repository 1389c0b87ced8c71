//! W3C Trace Context: ids and the `traceparent` header.

use std::fmt;

use rand::RngCore;

/// A 16-byte W3C trace id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte W3C span id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A random, non-zero trace id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        while bytes == [0; 16] {
            rand::rng().fill_bytes(&mut bytes);
        }
        TraceId(bytes)
    }
}

impl SpanId {
    /// A random, non-zero span id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 8];
        while bytes == [0; 8] {
            rand::rng().fill_bytes(&mut bytes);
        }
        SpanId(bytes)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The parent a `traceparent` header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub sampled: bool,
}

impl TraceContext {
    /// The `traceparent` header value (version 00).
    pub fn to_traceparent(&self) -> String {
        let bytes = self.traceparent_bytes();
        String::from_utf8(bytes.to_vec()).expect("hex digits and dashes are ASCII")
    }

    /// The `traceparent` header value (version 00) as bytes, with nothing
    /// allocated: a generator writes one into every request it sends.
    pub fn traceparent_bytes(&self) -> [u8; 55] {
        // Written byte by byte: `format!` with per-byte `{:02x}` showed up
        // in the generator's profile.
        fn hex(out: &mut [u8], bytes: &[u8]) {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
                pair[0] = HEX[usize::from(b >> 4)];
                pair[1] = HEX[usize::from(b & 15)];
            }
        }
        let mut out = [b'-'; 55];
        out[..2].copy_from_slice(b"00");
        hex(&mut out[3..35], &self.trace_id.0);
        hex(&mut out[36..52], &self.parent_id.0);
        out[53..].copy_from_slice(if self.sampled { b"01" } else { b"00" });
        out
    }

    /// Parses a `traceparent` header; `None` for anything the W3C spec says to ignore
    /// (wrong length, bad hex, all-zero ids, version ff).
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let mut parts = header.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || trace.len() != 32 || parent.len() != 16 {
            return None;
        }
        // Version 00 has exactly four fields; later versions may append more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if flags.len() != 2 {
            return None;
        }
        let trace_id = TraceId(hex_array(trace)?);
        let parent_id = SpanId(hex_array(parent)?);
        let flags = u8::from_str_radix(flags, 16).ok()?;
        u8::from_str_radix(version, 16).ok()?;
        if trace_id.0 == [0; 16] || parent_id.0 == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }
}

fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    // Lower-case only, as the spec requires.
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ctx = TraceContext {
            trace_id: TraceId::random(),
            parent_id: SpanId::random(),
            sampled: true,
        };
        assert_eq!(TraceContext::parse(&ctx.to_traceparent()), Some(ctx));
        let unsampled = TraceContext {
            sampled: false,
            ..ctx
        };
        assert_eq!(
            unsampled.to_traceparent(),
            format!("00-{}-{}-00", ctx.trace_id, ctx.parent_id)
        );
    }

    #[test]
    fn parses_the_spec_example() {
        let ctx =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(ctx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ctx.to_traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(ctx.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(ctx.sampled);
    }

    #[test]
    fn rejects_what_the_spec_says_to_ignore() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }
}
