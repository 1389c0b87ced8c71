//! Finds where a key path sits in YAML text, so errors found after parsing
//! (an unknown request in a flow, a bad template) still name a line and column.

/// 1-based line and column of the deepest key of `path` found in `text`
/// (block mappings and `{ inline: maps }`), or `None` if not even the first is.
pub fn key(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut best = None;
    // Lines to search for the next key, and the text of the line that holds the parent.
    let mut range = 0..lines.len();
    let mut parent_line: Option<usize> = None;
    for segment in path {
        let mut found = None;
        // An inline map on the parent's own line: `home: { url: x }`.
        if let Some(p) = parent_line
            && let Some(col) = inline_key(lines[p], segment)
        {
            found = Some((p, col));
        }
        if found.is_none() {
            for i in range.clone() {
                let line = lines[i];
                let trimmed = line.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let item = trimmed.trim_start_matches("- ");
                let col = line.len() - item.len();
                if starts_with_key(item, segment) {
                    found = Some((i, col));
                    break;
                }
                if let Some(col) = inline_key(line, segment) {
                    found = Some((i, col));
                    break;
                }
            }
        }
        let Some((i, col)) = found else { break };
        best = Some((i + 1, col + 1));
        let indent = indent_of(lines[i]);
        let end = (i + 1..lines.len())
            .find(|&j| {
                let t = lines[j].trim_start();
                !t.is_empty() && !t.starts_with('#') && indent_of(lines[j]) <= indent
            })
            .unwrap_or(lines.len());
        range = i + 1..end;
        parent_line = Some(i);
    }
    best
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Whether `text` begins with `key:` (bare or quoted).
fn starts_with_key(text: &str, key: &str) -> bool {
    for quote in ["", "\"", "'"] {
        if let Some(rest) = text.strip_prefix(quote)
            && let Some(rest) = rest.strip_prefix(key)
            && let Some(rest) = rest.strip_prefix(quote)
            && rest.trim_start().starts_with(':')
        {
            return true;
        }
    }
    false
}

/// Column (0-based) of `key:` inside a `{ … }` on this line.
fn inline_key(line: &str, key: &str) -> Option<usize> {
    let open = line.find('{')?;
    let mut from = open;
    while let Some(pos) = line[from..].find(key) {
        let at = from + pos;
        let before = line[..at].trim_end();
        if (before.ends_with('{') || before.ends_with(',')) && starts_with_key(&line[at..], key) {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::key;

    const TEXT: &str = "\
name: shop
requests:
  home:
    url: /
    checks:
      - status: 200
  cart: { url: /cart, method: POST }
flows:
  buy: [home, cart]
";

    #[test]
    fn finds_block_keys_by_path() {
        assert_eq!(key(TEXT, &["requests"]), Some((2, 1)));
        assert_eq!(key(TEXT, &["requests", "home", "url"]), Some((4, 5)));
        assert_eq!(
            key(TEXT, &["requests", "home", "checks", "status"]),
            Some((6, 9))
        );
        assert_eq!(key(TEXT, &["flows", "buy"]), Some((9, 3)));
    }

    #[test]
    fn finds_keys_in_inline_maps() {
        assert_eq!(key(TEXT, &["requests", "cart", "method"]), Some((7, 23)));
    }

    #[test]
    fn stops_at_the_deepest_key_found() {
        assert_eq!(key(TEXT, &["requests", "home", "nope"]), Some((3, 3)));
        assert_eq!(key(TEXT, &["nope"]), None);
        // "url" under home must not match the url of another request.
        assert_eq!(key(TEXT, &["requests", "cart", "url"]), Some((7, 11)));
    }
}
