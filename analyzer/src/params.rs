//! Named parameters in SQL files, written as psql writes them, so the same file
//! runs with `loadlens sql -f FILE --param run=abc` and with
//! `psql -v run=abc -f FILE` against `loadlens serve`:
//!
//! - `:'name'` — the value as a string literal (quotes doubled);
//! - `:"name"` — the value as a quoted identifier;
//! - `:name` — the value as it is (numbers, `LIMIT :limit`).
//!
//! Text inside string literals, quoted identifiers and comments is left alone,
//! and so are `::` casts.

use std::collections::BTreeMap;

use crate::AnalyzerError;

/// Replaces every parameter reference in `sql` with its value. A reference to
/// a parameter that was not given is an error that names all the missing ones.
pub fn substitute(sql: &str, params: &BTreeMap<String, String>) -> Result<String, AnalyzerError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut missing: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                let end = closing(&chars, i + 1, c);
                out.extend(&chars[i..end]);
                i = end;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(chars.len(), |p| i + p);
                out.extend(&chars[i..end]);
                i = end;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                    .map_or(chars.len(), |j| j + 2);
                out.extend(&chars[i..end]);
                i = end;
            }
            ':' if chars.get(i + 1) == Some(&':') => {
                out.push_str("::");
                i += 2;
            }
            ':' => {
                let (quote, start) = match chars.get(i + 1) {
                    Some(&q @ ('\'' | '"')) => (Some(q), i + 2),
                    _ => (None, i + 1),
                };
                let name_end = (start..chars.len())
                    .find(|&j| !(chars[j].is_ascii_alphanumeric() || chars[j] == '_'))
                    .unwrap_or(chars.len());
                let closed = match quote {
                    Some(q) => chars.get(name_end) == Some(&q),
                    None => true,
                };
                let starts_like_a_name = chars
                    .get(start)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_');
                if !(starts_like_a_name && closed) {
                    out.push(':');
                    i += 1;
                    continue;
                }
                let name: String = chars[start..name_end].iter().collect();
                match params.get(&name) {
                    Some(value) => match quote {
                        Some('\'') => {
                            out.push('\'');
                            out.push_str(&value.replace('\'', "''"));
                            out.push('\'');
                        }
                        Some(_) => {
                            out.push('"');
                            out.push_str(&value.replace('"', "\"\""));
                            out.push('"');
                        }
                        None => out.push_str(value),
                    },
                    None => {
                        if !missing.contains(&name) {
                            missing.push(name);
                        }
                    }
                }
                i = if quote.is_some() {
                    name_end + 1
                } else {
                    name_end
                };
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    if !missing.is_empty() {
        let given: Vec<&str> = params.keys().map(String::as_str).collect();
        return Err(AnalyzerError::Query(format!(
            "the query uses parameter{} {} but {} given; pass --param {}=VALUE{}",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            if given.is_empty() {
                "none was".to_string()
            } else {
                format!(
                    "only {} {}",
                    given.join(", "),
                    if given.len() == 1 { "was" } else { "were" }
                )
            },
            missing[0],
            if missing.len() > 1 { " for each" } else { "" },
        )));
    }
    Ok(out)
}

/// The index just past the quote that closes a literal opened before `from`
/// (a doubled quote is an escaped one), or the end of the text.
fn closing(chars: &[char], from: usize, quote: char) -> usize {
    let mut j = from;
    while j < chars.len() {
        if chars[j] == quote {
            if chars.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    chars.len()
}

/// Parses `name=value` as given to `--param`.
pub fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("--param '{text}' needs the form name=value, e.g. run=abc"))?;
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "--param '{text}': '{name}' is not a parameter name (letters, digits, _)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_three_forms_are_substituted() {
        let p = params(&[("run", "it's"), ("n", "5"), ("col", "step")]);
        let sql = "SELECT :\"col\" FROM requests WHERE run_id = :'run' LIMIT :n";
        assert_eq!(
            substitute(sql, &p).unwrap(),
            "SELECT \"step\" FROM requests WHERE run_id = 'it''s' LIMIT 5"
        );
    }

    #[test]
    fn literals_comments_and_casts_are_left_alone() {
        let p = params(&[("run", "x")]);
        let sql = "-- uses :run\nSELECT ':run', \"a:run\", 1::BIGINT /* :run */, :'run'";
        assert_eq!(
            substitute(sql, &p).unwrap(),
            "-- uses :run\nSELECT ':run', \"a:run\", 1::BIGINT /* :run */, 'x'"
        );
        let time = "SELECT TIMESTAMP '2026-03-02T10:00:00Z'";
        assert_eq!(substitute(time, &p).unwrap(), time);
    }

    #[test]
    fn missing_parameters_are_named() {
        let err = substitute("SELECT :'run', :n, :'run'", &params(&[("x", "1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the query uses parameters run, n but only x was given; pass --param run=VALUE for each"
        );
    }

    #[test]
    fn a_colon_before_a_non_name_is_text() {
        let p = params(&[]);
        assert_eq!(
            substitute("SELECT ':' || :1", &p).unwrap(),
            "SELECT ':' || :1"
        );
    }

    #[test]
    fn param_flags_are_parsed() {
        assert_eq!(
            parse_param("run=a=b").unwrap(),
            ("run".to_string(), "a=b".to_string())
        );
        assert!(parse_param("run").unwrap_err().contains("name=value"));
        assert!(
            parse_param("9x=1")
                .unwrap_err()
                .contains("not a parameter name")
        );
    }
}
