//! W3C Trace Context: ids, the `traceparent` header and a checked `tracestate`.

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

/// A `tracestate` header value that follows the W3C grammar: at most 32
/// `key=value` list members, joined by commas, at most 512 characters.
/// Empty members and the optional whitespace around commas are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceState(String);

/// Why a `tracestate` value breaks the W3C Trace Context grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceStateError {
    #[error("it has no list members; write key=value pairs separated by commas, or leave it out")]
    Empty,
    #[error("member {index} ('{member}') has no '='; write it as key=value")]
    NoEquals { index: usize, member: String },
    #[error(
        "member {index}: key '{key}' is not a W3C key; a key is up to 256 of a-z 0-9 _ - * / \
         starting with a-z, or tenant@system (tenant up to 241 starting with a-z or 0-9, \
         system up to 14 starting with a-z)"
    )]
    BadKey { index: usize, key: String },
    #[error(
        "member {index}: the value of '{key}' is not a W3C value; a value is 1 to 256 printable \
         ASCII characters other than ',' and '=', and does not end in a space"
    )]
    BadValue { index: usize, key: String },
    #[error("key '{0}' appears more than once; give each key once")]
    DuplicateKey(String),
    #[error("it has {0} list members; at most 32 are allowed")]
    TooManyMembers(usize),
    #[error(
        "it is {0} characters long; loadlens sends at most 512, the length W3C Trace Context \
         asks every system to pass on whole (longer ones may be cut on the way)"
    )]
    TooLong(usize),
}

impl TraceState {
    /// Most list members a `tracestate` may hold.
    pub const MAX_MEMBERS: usize = 32;
    /// Longest `tracestate` sent, in characters: the spec's grammar allows
    /// more, but asks systems to pass on at least this much, so a longer
    /// one may not reach the target's spans whole.
    pub const MAX_LENGTH: usize = 512;

    /// Checks `text` against the grammar of W3C Trace Context (Level 1, §3.3).
    pub fn parse(text: &str) -> Result<TraceState, TraceStateError> {
        // Optional whitespace is spaces and tabs; a member may be empty.
        let members: Vec<&str> = text
            .split(',')
            .map(|m| m.trim_matches([' ', '\t']))
            .filter(|m| !m.is_empty())
            .collect();
        if members.is_empty() {
            return Err(TraceStateError::Empty);
        }
        // Counted first: the members are compared pairwise below.
        if members.len() > Self::MAX_MEMBERS {
            return Err(TraceStateError::TooManyMembers(members.len()));
        }
        let mut keys: Vec<&str> = Vec::with_capacity(members.len());
        for (i, member) in members.iter().enumerate() {
            let index = i + 1;
            let Some((key, value)) = member.split_once('=') else {
                return Err(TraceStateError::NoEquals {
                    index,
                    member: member.to_string(),
                });
            };
            if !is_key(key) {
                return Err(TraceStateError::BadKey {
                    index,
                    key: key.into(),
                });
            }
            if !is_value(value) {
                return Err(TraceStateError::BadValue {
                    index,
                    key: key.into(),
                });
            }
            if keys.contains(&key) {
                return Err(TraceStateError::DuplicateKey(key.into()));
            }
            keys.push(key);
        }
        let joined = members.join(",");
        if joined.len() > Self::MAX_LENGTH {
            return Err(TraceStateError::TooLong(joined.len()));
        }
        Ok(TraceState(joined))
    }

    /// The header value: members joined by commas.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `simple-key` or `multi-tenant-key` of the W3C grammar.
fn is_key(key: &str) -> bool {
    fn rest(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/".contains(&b))
    }
    fn starts(s: &str, first: impl Fn(u8) -> bool, max: usize) -> bool {
        s.len() <= max && s.as_bytes().first().is_some_and(|&b| first(b)) && rest(s)
    }
    match key.split_once('@') {
        None => starts(key, |b| b.is_ascii_lowercase(), 256),
        Some((tenant, system)) => {
            starts(
                tenant,
                |b| b.is_ascii_lowercase() || b.is_ascii_digit(),
                241,
            ) && starts(system, |b| b.is_ascii_lowercase(), 14)
        }
    }
}

/// A `value` of the W3C grammar: printable ASCII but ',' and '=', not ending in a space.
fn is_value(value: &str) -> bool {
    (1..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && !value.ends_with(' ')
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

    #[test]
    fn trace_states_that_follow_the_grammar_are_kept_in_canonical_form() {
        for (text, canonical) in [
            ("congo=t61rcWkgMzE", "congo=t61rcWkgMzE"),
            (
                "rojo=00f067aa0ba902b7 ,\tcongo=t61rcWkgMzE",
                "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            ),
            // Empty members are allowed, and dropped.
            ("a=1,,  ,b=2,", "a=1,b=2"),
            // tenant@system keys; a tenant may start with a digit.
            (
                "fw529a3039@dt=x,0tenant@sys-1=y",
                "fw529a3039@dt=x,0tenant@sys-1=y",
            ),
            ("k_-*/9=v", "k_-*/9=v"),
            // A value may hold spaces inside and any printable ASCII but , and =.
            ("k= a b!~\"#", "k= a b!~\"#"),
        ] {
            let state = TraceState::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(state.as_str(), canonical);
        }
        let many: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(TraceState::parse(&many.join(",")).is_ok());
        let longest = format!("k={},b={}", "v".repeat(256), "v".repeat(251));
        assert_eq!(longest.len(), 512);
        assert!(TraceState::parse(&longest).is_ok());
    }

    #[test]
    fn trace_states_that_break_the_grammar_say_what_is_wrong() {
        use TraceStateError::*;
        for (text, expected) in [
            ("", Empty),
            (" , ", Empty),
            (
                "novalue",
                NoEquals {
                    index: 1,
                    member: "novalue".into(),
                },
            ),
            (
                "a=1,Upper=x",
                BadKey {
                    index: 2,
                    key: "Upper".into(),
                },
            ),
            (
                "1abc=x",
                BadKey {
                    index: 1,
                    key: "1abc".into(),
                },
            ),
            (
                "a b=x",
                BadKey {
                    index: 1,
                    key: "a b".into(),
                },
            ),
            (
                "=x",
                BadKey {
                    index: 1,
                    key: "".into(),
                },
            ),
            (
                "t@=x",
                BadKey {
                    index: 1,
                    key: "t@".into(),
                },
            ),
            (
                "t@1sys=x",
                BadKey {
                    index: 1,
                    key: "t@1sys".into(),
                },
            ),
            (
                "a@b@c=x",
                BadKey {
                    index: 1,
                    key: "a@b@c".into(),
                },
            ),
            (
                "t@systemnamelong15=x",
                BadKey {
                    index: 1,
                    key: "t@systemnamelong15".into(),
                },
            ),
            (
                "k=",
                BadValue {
                    index: 1,
                    key: "k".into(),
                },
            ),
            (
                "k=a=b",
                BadValue {
                    index: 1,
                    key: "k".into(),
                },
            ),
            (
                "k=caf\u{e9}",
                BadValue {
                    index: 1,
                    key: "k".into(),
                },
            ),
            (
                "k=a\u{7f}",
                BadValue {
                    index: 1,
                    key: "k".into(),
                },
            ),
            (
                "k=\ta",
                BadValue {
                    index: 1,
                    key: "k".into(),
                },
            ),
            ("a=1,a=2", DuplicateKey("a".into())),
        ] {
            assert_eq!(TraceState::parse(text), Err(expected), "{text:?}");
        }
        // A value ending in a space: the space would be optional whitespace
        // before a comma, so the value must not need it.
        assert!(TraceState::parse("k=a \t").is_ok());
        assert_eq!(
            TraceState::parse(&format!("k={}", "v".repeat(257))),
            Err(BadValue {
                index: 1,
                key: "k".into()
            })
        );
        assert_eq!(
            TraceState::parse(&format!("{}=v", "k".repeat(257))),
            Err(BadKey {
                index: 1,
                key: "k".repeat(257)
            })
        );
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(TraceState::parse(&many.join(",")), Err(TooManyMembers(33)));
        let too_long = format!("k={},b={}", "v".repeat(256), "v".repeat(252));
        assert_eq!(TraceState::parse(&too_long), Err(TooLong(513)));
        // Messages say what to do.
        let message = TraceState::parse("a=1,Upper=x").unwrap_err().to_string();
        assert!(
            message
                .starts_with("member 2: key 'Upper' is not a W3C key; a key is up to 256 of a-z"),
            "{message}"
        );
    }
}
