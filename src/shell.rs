//! `loadlens sql` with no query: an interactive shell over the store.
//!
//! Statements end with `;` and may span lines. Tab completes table, view and
//! column names and SQL keywords; history is kept in `~/.loadlens_history`.
//! `\dt` lists tables, `\d NAME` describes one, `\q` quits.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use analyzer::{AnalyzerError, Format, Store};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "HAVING",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS NULL",
    "COUNT",
    "DESC",
    "ASC",
    "WITH",
    "UNION ALL",
    "DISTINCT",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "EXPLAIN",
    "BETWEEN",
    "INTERVAL",
];

/// Completes names the store knows.
struct SqlHelper {
    words: Vec<String>,
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let prefix = line[start..pos].to_ascii_lowercase();
        if prefix.is_empty() {
            return Ok((start, Vec::new()));
        }
        let candidates = self
            .words
            .iter()
            .filter(|w| w.to_ascii_lowercase().starts_with(&prefix))
            .map(|w| Pair {
                display: w.clone(),
                replacement: w.clone(),
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Highlighter for SqlHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Borrowed(line)
    }
}

impl Validator for SqlHelper {}

impl Helper for SqlHelper {}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".loadlens_history"))
}

/// Runs the shell until `\q` or end of input.
pub async fn run(
    store: Store,
    params: &BTreeMap<String, String>,
    format: Format,
) -> Result<(), AnalyzerError> {
    let mut words: Vec<String> = store.table_names();
    for table in store.table_names() {
        if let Ok(provider) = store.context().table_provider(table.as_str()).await {
            words.extend(provider.schema().fields().iter().map(|f| f.name().clone()));
        }
    }
    words.extend(KEYWORDS.iter().map(|k| k.to_string()));
    words.sort();
    words.dedup();

    let mut editor: Editor<SqlHelper, DefaultHistory> = Editor::new()
        .map_err(|e| AnalyzerError::Execution(format!("cannot start the shell: {e}")))?;
    editor.set_helper(Some(SqlHelper { words }));
    let history = history_file();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!(
        "loadlens SQL over {} — end statements with ';', \\dt lists tables, \\d NAME describes one, \\q quits",
        store.root().display()
    );
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() {
            "loadlens> "
        } else {
            "     ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                statement.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(AnalyzerError::Execution(format!("cannot read input: {e}"))),
        };
        let trimmed = line.trim();
        if statement.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            let sql = match trimmed.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["\\q"] => break,
                ["\\dt"] => "SELECT table_name, table_type FROM information_schema.tables \
                             WHERE table_schema = 'public' ORDER BY table_name"
                    .to_string(),
                ["\\d", name] => format!(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                     WHERE table_schema = 'public' AND table_name = '{}' ORDER BY ordinal_position",
                    name.replace('\'', "''")
                ),
                _ => {
                    eprintln!("commands: \\dt, \\d NAME, \\q");
                    continue;
                }
            };
            show(&store, &sql, params, format).await;
            continue;
        }
        statement.push_str(&line);
        statement.push('\n');
        if trimmed.ends_with(';') {
            let sql = std::mem::take(&mut statement);
            let _ = editor.add_history_entry(sql.trim());
            show(&store, sql.trim().trim_end_matches(';'), params, format).await;
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

/// Runs one statement and prints its result or its error; the shell goes on either way.
async fn show(store: &Store, sql: &str, params: &BTreeMap<String, String>, format: Format) {
    let result = async {
        let sql = analyzer::params::substitute(sql, params)?;
        let frame = store.plan(&sql).await?;
        let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
        let batches = frame
            .collect()
            .await
            .map_err(|e| AnalyzerError::from_datafusion(e, &store.table_names()))?;
        analyzer::output::render(&batches, schema, format)
    }
    .await;
    match result {
        Ok(bytes) => print!("{}", String::from_utf8_lossy(&bytes)),
        Err(e) => eprintln!("error: {e}"),
    }
}
