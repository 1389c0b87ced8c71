//! Templates in URLs, headers and bodies: `{{uuid}}`, `{{rand_int 1 100}}`,
//! `{{feeder.column}}` and `{{name}}` for a value extracted by an earlier step.
//! Parsed once when the scenario loads; rendering only appends strings.

use std::fmt::Write as _;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Uuid,
    RandInt(i64, i64),
    Feeder { feeder: usize, column: usize },
    Var(String),
}

/// A parsed template.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values a template reads while it renders.
pub trait Values {
    /// The current iteration's value of a feeder column.
    fn feeder(&mut self, feeder: usize, column: usize) -> Result<&str, String>;
    /// A value extracted earlier in the iteration.
    fn var(&self, name: &str) -> Option<&str>;
}

/// Feeders a template may name: `(name, columns)`, by index.
pub type FeederColumns<'a> = &'a [(String, Vec<String>)];

impl Template {
    /// Parses `text`; `feeders` resolves `{{feeder.column}}`, and every other
    /// bare name must be in `vars` (values some step extracts).
    pub fn parse(text: &str, feeders: FeederColumns<'_>, vars: &[&str]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("'{{{{' without a closing '}}}}' in \"{text}\""))?;
            parts.push(expression(after[..close].trim(), feeders, vars)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The text itself, when it has no `{{ }}`.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// Appends the rendered template to `out`.
    pub fn render(&self, values: &mut impl Values, out: &mut String) -> Result<(), String> {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Uuid => {
                    let _ = write!(out, "{}", uuid_v4(rand::random()));
                }
                Part::RandInt(lo, hi) => {
                    let _ = write!(out, "{}", rand::random_range(*lo..=*hi));
                }
                Part::Feeder { feeder, column } => out.push_str(values.feeder(*feeder, *column)?),
                Part::Var(name) => out.push_str(values.var(name).ok_or_else(|| {
                    format!("'{{{{{name}}}}}' has no value: the step that extracts it did not run or found nothing")
                })?),
            }
        }
        Ok(())
    }

    /// Renders into a new string.
    pub fn to_string(&self, values: &mut impl Values) -> Result<String, String> {
        let mut out = String::new();
        self.render(values, &mut out)?;
        Ok(out)
    }

    /// Names of the extracted values this template reads.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            _ => None,
        })
    }
}

fn expression(expr: &str, feeders: FeederColumns<'_>, vars: &[&str]) -> Result<Part, String> {
    let words: Vec<&str> = expr.split_whitespace().collect();
    match words.as_slice() {
        ["uuid"] => Ok(Part::Uuid),
        ["rand_int", lo, hi] => {
            let parse = |w: &str| {
                w.parse::<i64>().map_err(|_| {
                    format!("'{{{{{expr}}}}}': rand_int takes two integers, as in {{{{rand_int 1 100}}}}")
                })
            };
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if lo > hi {
                return Err(format!(
                    "'{{{{{expr}}}}}': the lower bound is above the upper"
                ));
            }
            Ok(Part::RandInt(lo, hi))
        }
        ["rand_int", ..] => Err(format!(
            "'{{{{{expr}}}}}': rand_int takes two integers, as in {{{{rand_int 1 100}}}}"
        )),
        [name] if name.contains('.') => {
            let (feeder_name, column_name) = name.split_once('.').unwrap_or_default();
            let (feeder, (_, columns)) = feeders
                .iter()
                .enumerate()
                .find(|(_, (n, _))| n == feeder_name)
                .ok_or_else(|| {
                    format!(
                        "'{{{{{name}}}}}': there is no feeder '{feeder_name}' (feeders: {})",
                        list(feeders.iter().map(|(n, _)| n.as_str()))
                    )
                })?;
            let column = columns
                .iter()
                .position(|c| c == column_name)
                .ok_or_else(|| {
                    format!(
                        "'{{{{{name}}}}}': feeder '{feeder_name}' has no column '{column_name}' (columns: {})",
                        list(columns.iter().map(String::as_str))
                    )
                })?;
            Ok(Part::Feeder { feeder, column })
        }
        [name] if vars.contains(name) => Ok(Part::Var(name.to_string())),
        [name] => Err(format!(
            "'{{{{{name}}}}}' is not a template value: use uuid, rand_int A B, feeder.column, or a name some request extracts ({})",
            list(vars.iter().copied())
        )),
        _ => Err(format!("'{{{{{expr}}}}}' is not a template value")),
    }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A random (version 4) UUID in its hyphenated form.
fn uuid_v4(bits: u128) -> String {
    let version = (bits & !(0xf_u128 << 76)) | (0x4 << 76);
    let b = (version & !(0x3_u128 << 62)) | (0x2 << 62);
    let hex = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fixed {
        rows: Vec<Vec<String>>,
        vars: HashMap<String, String>,
    }

    impl Values for Fixed {
        fn feeder(&mut self, feeder: usize, column: usize) -> Result<&str, String> {
            Ok(&self.rows[feeder][column])
        }
        fn var(&self, name: &str) -> Option<&str> {
            self.vars.get(name).map(String::as_str)
        }
    }

    fn feeders() -> Vec<(String, Vec<String>)> {
        vec![("users".into(), vec!["name".into(), "pass".into()])]
    }

    #[test]
    fn renders_literals_feeders_and_vars() {
        let t =
            Template::parse("/u/{{users.pass}}/{{ token }}?x=1", &feeders(), &["token"]).unwrap();
        let mut values = Fixed {
            rows: vec![vec!["ann".into(), "pw".into()]],
            vars: HashMap::from([("token".into(), "t0".into())]),
        };
        assert_eq!(t.to_string(&mut values).unwrap(), "/u/pw/t0?x=1");
        values.vars.clear();
        let err = t.to_string(&mut values).unwrap_err();
        assert!(err.contains("'{{token}}' has no value"), "{err}");
    }

    #[test]
    fn rand_int_stays_in_bounds_and_uuid_has_version_4() {
        let t = Template::parse("{{rand_int 3 5}} {{uuid}}", &[], &[]).unwrap();
        let mut values = Fixed {
            rows: vec![],
            vars: HashMap::new(),
        };
        for _ in 0..200 {
            let s = t.to_string(&mut values).unwrap();
            let (n, uuid) = s.split_once(' ').unwrap();
            assert!((3..=5).contains(&n.parse::<i64>().unwrap()), "{s}");
            assert_eq!(uuid.len(), 36);
            assert_eq!(&uuid[14..15], "4");
            assert!("89ab".contains(&uuid[19..20]), "{uuid}");
        }
    }

    #[test]
    fn bad_expressions_say_what_is_allowed() {
        let err = |text: &str| Template::parse(text, &feeders(), &["token"]).unwrap_err();
        assert!(err("{{rand_int 1}}").contains("two integers"));
        assert!(err("{{rand_int 9 1}}").contains("lower bound"));
        assert!(err("{{users.email}}").contains("columns: name, pass"));
        assert!(err("{{orders.id}}").contains("feeders: users"));
        assert!(err("{{tokn}}").contains("extracts (token)"));
        assert!(err("{{uuid").contains("closing"));
        assert_eq!(
            Template::parse("plain", &[], &[]).unwrap().as_literal(),
            Some("plain")
        );
    }
}
