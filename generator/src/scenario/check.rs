//! Checks on responses (status, headers, body) and extraction of values from
//! them (a JSON path, a regular expression, a header) for later steps.

use http::{HeaderMap, HeaderName};
use regex::Regex;

use super::{CheckSpec, ExtractSpec};

/// The parts of a response that checks and extractors read.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// A compiled check.
#[derive(Debug, Clone)]
pub enum Check {
    Status(Vec<u16>),
    Header { name: HeaderName, test: TextTest },
    Body(TextTest),
}

/// What a text (header value or body) must satisfy.
#[derive(Debug, Clone)]
pub enum TextTest {
    Present,
    Equals(String),
    Contains(String),
    Matches(Regex),
}

impl TextTest {
    fn passes(&self, text: &str) -> bool {
        match self {
            TextTest::Present => true,
            TextTest::Equals(s) => text == s,
            TextTest::Contains(s) => text.contains(s.as_str()),
            TextTest::Matches(re) => re.is_match(text),
        }
    }
}

fn regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("invalid regular expression '{pattern}': {e}"))
}

impl Check {
    /// Compiles one check; it must say exactly one thing.
    pub fn compile(spec: &CheckSpec) -> Result<Check, String> {
        let value_test = || -> Result<Option<TextTest>, String> {
            Ok(match (&spec.equals, &spec.contains, &spec.matches) {
                (None, None, None) => None,
                (Some(s), None, None) => Some(TextTest::Equals(s.clone())),
                (None, Some(s), None) => Some(TextTest::Contains(s.clone())),
                (None, None, Some(p)) => Some(TextTest::Matches(regex(p)?)),
                _ => return Err("give only one of equals, contains and matches".into()),
            })
        };
        let kinds = [
            spec.status.is_some(),
            spec.header.is_some(),
            spec.body_contains.is_some(),
        ];
        match kinds {
            [true, false, false] if value_test()?.is_none() => Ok(Check::Status(
                spec.status.as_ref().map(|s| s.to_vec()).unwrap_or_default(),
            )),
            [false, true, false] => {
                let name = spec.header.as_deref().unwrap_or_default();
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("'{name}' is not a valid header name"))?;
                Ok(Check::Header {
                    name,
                    test: value_test()?.unwrap_or(TextTest::Present),
                })
            }
            [false, false, true] if value_test()?.is_none() => Ok(Check::Body(TextTest::Contains(
                spec.body_contains.clone().unwrap_or_default(),
            ))),
            [false, false, false] => match value_test()? {
                Some(test @ TextTest::Matches(_)) => Ok(Check::Body(test)),
                _ => Err(
                    "a check needs status, header, body_contains or matches (on the body)".into(),
                ),
            },
            _ => Err("a check tests one thing: write one list item per check".into()),
        }
    }

    /// Whether the response passes.
    pub fn passes(&self, response: &Response<'_>) -> bool {
        match self {
            Check::Status(allowed) => allowed.contains(&response.status),
            Check::Header { name, test } => response
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| test.passes(v))),
            Check::Body(test) => test.passes(&String::from_utf8_lossy(response.body)),
        }
    }

    /// Whether the check reads the body (so the body must be kept).
    pub fn reads_body(&self) -> bool {
        matches!(self, Check::Body(_))
    }

    /// Whether the check reads response headers (so they must be kept).
    pub fn reads_headers(&self) -> bool {
        matches!(self, Check::Header { .. })
    }
}

/// A compiled extractor.
#[derive(Debug, Clone)]
pub enum Extractor {
    Json(Vec<Segment>),
    Regex(Regex),
    Header(HeaderName),
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

impl Extractor {
    pub fn compile(spec: &ExtractSpec) -> Result<Extractor, String> {
        match (&spec.json, &spec.regex, &spec.header) {
            (Some(path), None, None) => json_path(path).map(Extractor::Json),
            (None, Some(pattern), None) => regex(pattern).map(Extractor::Regex),
            (None, None, Some(name)) => HeaderName::from_bytes(name.as_bytes())
                .map(Extractor::Header)
                .map_err(|_| format!("'{name}' is not a valid header name")),
            _ => Err("say where the value is with exactly one of json, regex and header".into()),
        }
    }

    /// The value, or `None` if the response does not have it. JSON strings
    /// come out unquoted; other JSON values as their JSON text.
    pub fn extract(&self, response: &Response<'_>) -> Option<String> {
        match self {
            Extractor::Json(path) => {
                let root: serde_json::Value = serde_json::from_slice(response.body).ok()?;
                let mut value = &root;
                for segment in path {
                    value = match segment {
                        Segment::Key(k) => value.get(k)?,
                        Segment::Index(i) => value.get(*i)?,
                    };
                }
                match value {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }
            }
            Extractor::Regex(re) => {
                let body = String::from_utf8_lossy(response.body);
                let captures = re.captures(&body)?;
                captures
                    .get(1)
                    .or_else(|| captures.get(0))
                    .map(|m| m.as_str().to_string())
            }
            Extractor::Header(name) => response
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }
    }

    pub fn reads_body(&self) -> bool {
        !matches!(self, Extractor::Header(_))
    }

    pub fn reads_headers(&self) -> bool {
        matches!(self, Extractor::Header(_))
    }
}

/// Parses the JSON path subset `$`, `.key`, `['key']`, `["key"]`, `[index]`.
pub fn json_path(path: &str) -> Result<Vec<Segment>, String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid JSON path '{path}': {why}; write it as $.items[0].id or $['a key']"
        ))
    };
    let Some(mut rest) = path.strip_prefix('$') else {
        return bad("it must start with $");
    };
    let mut segments = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return bad("empty key after '.'");
            }
            segments.push(Segment::Key(after[..end].to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return bad("'[' without ']'");
            };
            let inner = after[..end].trim();
            let quoted = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
            match (quoted, inner.parse::<usize>()) {
                (Some(key), _) => segments.push(Segment::Key(key.to_string())),
                (None, Ok(i)) => segments.push(Segment::Index(i)),
                (None, Err(_)) => return bad("brackets hold an index or a quoted key"),
            }
            rest = &after[end + 1..];
        } else {
            return bad("expected '.' or '['");
        }
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::OneOrMany;

    fn response<'a>(headers: &'a HeaderMap, body: &'a str) -> Response<'a> {
        Response {
            status: 200,
            headers,
            body: body.as_bytes(),
        }
    }

    fn check(yaml: &str) -> Result<Check, String> {
        let spec: CheckSpec = serde_norway::from_str(yaml).unwrap();
        Check::compile(&spec)
    }

    #[test]
    fn checks_pass_and_fail() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        let r = response(&headers, r#"{"items": [{"id": 7}]}"#);
        assert!(check("status: [200, 204]").unwrap().passes(&r));
        assert!(!check("status: 201").unwrap().passes(&r));
        assert!(
            check("{header: content-type, contains: json}")
                .unwrap()
                .passes(&r)
        );
        assert!(
            !check("{header: content-type, equals: json}")
                .unwrap()
                .passes(&r)
        );
        assert!(!check("header: x-missing").unwrap().passes(&r));
        assert!(check("body_contains: items").unwrap().passes(&r));
        assert!(check("matches: '\"id\": \\d+'").unwrap().passes(&r));
        assert!(!check("matches: '^\\['").unwrap().passes(&r));
    }

    #[test]
    fn checks_that_say_two_things_or_nothing_are_refused() {
        assert!(
            check("{status: 200, body_contains: x}")
                .unwrap_err()
                .contains("one thing")
        );
        assert!(
            check("{header: a, equals: x, contains: y}")
                .unwrap_err()
                .contains("only one")
        );
        assert!(check("equals: x").unwrap_err().contains("needs status"));
        assert!(
            check("matches: '('")
                .unwrap_err()
                .contains("invalid regular expression")
        );
        let _ = OneOrMany::One(1u16).to_vec();
    }

    #[test]
    fn extractors_take_json_paths_regex_groups_and_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-token", "abc".parse().unwrap());
        let r = response(
            &headers,
            r#"{"items": [{"id": 7, "name": "a b"}], "ok": true}"#,
        );
        let get = |spec: ExtractSpec| Extractor::compile(&spec).unwrap().extract(&r);
        assert_eq!(
            get(ExtractSpec::json("$.items[0].id")).as_deref(),
            Some("7")
        );
        assert_eq!(
            get(ExtractSpec::json("$['items'][0].name")).as_deref(),
            Some("a b")
        );
        assert_eq!(get(ExtractSpec::json("$.ok")).as_deref(), Some("true"));
        assert_eq!(get(ExtractSpec::json("$.items[3].id")), None);
        assert_eq!(
            get(ExtractSpec::regex(r#""id": (\d+)"#)).as_deref(),
            Some("7")
        );
        assert_eq!(get(ExtractSpec::header("x-token")).as_deref(), Some("abc"));
    }

    #[test]
    fn json_paths_parse_or_say_how_to_write_them() {
        assert_eq!(
            json_path("$.a[2]['b c'][\"d\"]").unwrap(),
            [
                Segment::Key("a".into()),
                Segment::Index(2),
                Segment::Key("b c".into()),
                Segment::Key("d".into())
            ]
        );
        assert!(json_path("a.b").unwrap_err().contains("must start with $"));
        assert!(
            json_path("$.a[x]")
                .unwrap_err()
                .contains("index or a quoted key")
        );
        assert!(json_path("$.a[1").unwrap_err().contains("without ']'"));
    }
}
