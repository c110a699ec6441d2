//! Places inside a YAML scalar: an offset in a scalar's value (a jq expression's
//! error, say) mapped back through its quoting (`'…'`, `"…"`, plain, or a block
//! scalar) to a line and column of the file.

use super::node::Pos;

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
    use crate::yaml::node::{Value, parse_yaml};

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
