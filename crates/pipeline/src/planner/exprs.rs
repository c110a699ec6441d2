//! Compiling the file's jq expressions, with errors placed *inside* the expression:
//! an offset in the expression text is mapped back through the YAML scalar's quoting
//! (`'…'`, `"…"`, plain, or a block scalar) to a line and column of the file.

use crate::diagnostics::Diagnostic;
use crate::expr::Expr;
use crate::spec::{ExprSrc, Pos};

/// Compile `e`; on failure push one diagnostic per compile error and return `None`.
pub fn compile(
    file_src: &str,
    e: &ExprSrc,
    extra_vars: &[&str],
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Expr> {
    match Expr::compile_with(&e.source, extra_vars) {
        Ok(x) => Some(x),
        Err(errs) => {
            for err in errs {
                let pos = position_in_scalar(file_src, e.pos, &e.source, err.offset);
                let mut d = Diagnostic::error(
                    pos.line,
                    pos.col,
                    format!("{what} does not compile: {}", err.message),
                )
                .with_hint(hint_for(&err.message, extra_vars));
                d.offset = pos.byte;
                diags.push(d);
            }
            None
        }
    }
}

fn hint_for(message: &str, extra_vars: &[&str]) -> String {
    if message.contains("undefined variable") {
        let mut vars: Vec<String> = crate::expr::RECORD_VARS
            .iter()
            .map(|v| (*v).to_owned())
            .collect();
        vars.extend(extra_vars.iter().map(|v| format!("${v}")));
        format!("variables available here: {}", vars.join(", "))
    } else if let Some(filter) = message.strip_prefix("undefined filter `") {
        undefined_filter_hint(filter.trim_end_matches('`'))
    } else if message.contains("too large") {
        "a map, filter or reduce per step keeps each expression small".to_owned()
    } else {
        "jq syntax; quote the whole expression in YAML with '…' so YAML leaves it alone".to_owned()
    }
}

/// The hint for an undefined filter, written `name` or `name/arity` (jq's notation).
/// A bare name like `amount` is almost always a field missing its dot; a builtin
/// called with the wrong number of arguments is told how many it takes.
fn undefined_filter_hint(filter: &str) -> String {
    let (name, arity) = match filter.rsplit_once('/') {
        Some((name, n)) => (name, n.parse::<usize>().unwrap_or(0)),
        None => (filter, 0),
    };
    let identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier {
        return "check the name and number of arguments against the jq manual".to_owned();
    }
    // The arities jq knows `name` by: compile a call with each (errors only, so rare).
    let call = |n: usize, arg: &str| match n {
        0 => name.to_owned(),
        n => format!("{name}({})", vec![arg; n].join("; ")),
    };
    let defined: Vec<usize> = (0..=3)
        .filter(|&n| n != arity && Expr::compile(&call(n, ".")).is_ok())
        .collect();
    match (arity, defined.as_slice()) {
        (0, []) => format!("to read the field, write `.{name}`"),
        (_, [0]) => {
            format!("`{name}` takes no arguments: it works on its input, as in `.field | {name}`")
        }
        (_, [n]) => format!(
            "`{name}` takes {}: `{}`",
            crate::diagnostics::count(*n, "argument"),
            call(*n, "…")
        ),
        (_, []) => "check the name and number of arguments against the jq manual".to_owned(),
        (_, many) => {
            let forms: Vec<String> = many
                .iter()
                .map(|&n| format!("`{}`", call(n, "…")))
                .collect();
            format!("`{name}` is called as {}", forms.join(" or "))
        }
    }
}

/// Where byte `offset` of the scalar's value lies in the file. `start` is the scalar's
/// first character: a quote, the first plain character, or (for block scalars) the
/// first content character. Falls back to `start` if the text does not line up.
pub fn position_in_scalar(file_src: &str, start: Pos, value: &str, offset: usize) -> Pos {
    let Some(begin) = start.byte.filter(|b| *b <= file_src.len()) else {
        return start;
    };
    let raw = &file_src[begin..];
    let (quote, mut r) = match raw.chars().next() {
        Some('\'') => (Some('\''), 1),
        Some('"') => (Some('"'), 1),
        _ => (None, 0),
    };
    // Block scalar content is indented to the column of its first line; plain and
    // quoted scalars fold line breaks and drop all leading indentation.
    let block_indent = if quote.is_none() && value.contains('\n') {
        Some(start.col.saturating_sub(1) as usize)
    } else {
        None
    };
    let value_bytes = value.as_bytes();
    let mut v = 0;
    while v < offset.min(value.len()) {
        let Some(c) = raw[r..].chars().next() else {
            return start;
        };
        if c == '\n' {
            r += 1;
            let rest = &raw[r..];
            let skip = match block_indent {
                Some(n) => rest.bytes().take(n).take_while(|b| *b == b' ').count(),
                None => rest
                    .bytes()
                    .take_while(|b| *b == b' ' || *b == b'\t')
                    .count(),
            };
            r += skip;
            v += 1;
            continue;
        }
        match quote {
            Some('\'') if raw[r..].starts_with("''") => {
                r += 2;
                v += 1;
            }
            Some('"') if c == '\\' => {
                let esc = raw[r + 1..].chars().next().unwrap_or(' ');
                let (raw_len, decoded) = match esc {
                    'x' => (4, 1),
                    'u' => (6, decoded_len(&raw[r..], 6)),
                    'U' => (10, decoded_len(&raw[r..], 10)),
                    other => (1 + other.len_utf8(), 1),
                };
                r += raw_len;
                v += decoded;
            }
            _ => {
                r += c.len_utf8();
                v += c.len_utf8();
            }
        }
        // Keep v on a char boundary of the value, in case the mapping drifted.
        while v < value_bytes.len() && !value.is_char_boundary(v) {
            v += 1;
        }
    }
    let abs = begin + r;
    line_col(file_src, abs)
}

/// UTF-8 length of the char a `\uXXXX` / `\UXXXXXXXX` escape stands for.
fn decoded_len(esc: &str, raw_len: usize) -> usize {
    esc.get(2..raw_len)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .and_then(char::from_u32)
        .map_or(1, char::len_utf8)
}

/// 1-based line and column (in chars) of byte `abs` in `src`.
pub fn line_col(src: &str, abs: usize) -> Pos {
    let abs = abs.min(src.len());
    let before = &src[..abs];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let col = src[line_start..abs].chars().count() + 1;
    Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(col).unwrap_or(u32::MAX),
        byte: Some(abs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::node::{Value, parse_yaml};

    /// The position of `offset` inside the value of top-level key `k`.
    fn pos_of(src: &str, offset: usize) -> (u32, u32) {
        let root = parse_yaml(src).expect("yaml");
        let Value::Map(entries) = &root.value else {
            panic!("map")
        };
        let node = &entries[0].1;
        let Value::Str(s) = &node.value else {
            panic!("string")
        };
        let p = position_in_scalar(src, node.pos, s, offset);
        (p.line, p.col)
    }

    #[test]
    fn plain_scalar() {
        // `.a | foo` : offset 5 is `f`, at column 9 of "k: " + 3 + 5 + 1
        assert_eq!(pos_of("k: .a | foo\n", 5), (1, 9));
    }

    #[test]
    fn single_quoted_with_escaped_quote() {
        // value: .a == 'x' | foo  → raw has '' for each '
        let src = "k: '.a == ''x'' | foo'\n";
        assert_eq!(pos_of(src, 12), (1, 19));
    }

    #[test]
    fn double_quoted_with_escapes() {
        let src = "k: \".a == \\\"x\\\" | foo\"\n";
        // value `.a == "x" | foo`, foo at offset 12; raw: k: ".a == \"x\" | foo"
        assert_eq!(pos_of(src, 12), (1, 19));
    }

    #[test]
    fn literal_block_scalar() {
        let src = "k: |\n  .a\n  | foo\n";
        // value ".a\n| foo\n"; foo at offset 5 → line 3, col 5
        assert_eq!(pos_of(src, 5), (3, 5));
    }

    #[test]
    fn line_col_counts_chars() {
        let p = line_col("ab\ncé d", 7);
        assert_eq!((p.line, p.col), (2, 4));
    }
}
