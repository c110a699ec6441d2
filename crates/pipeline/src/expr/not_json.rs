//! Why a record value is not JSON, in one wording for every stage that parses values
//! (filter, splitter, sharder, map, exec, join, reduce) and so in every dead letter:
//! `value is not JSON: <what is wrong> at byte <N>`, N counted from 0.
//!
//! The stages parse with jaq's reader or with serde_json, whose messages differ
//! (`byte offset 0: value expected`, `expected ident at line 1 column 2`): both are
//! reworded here, serde_json's message preferred for its detail.

use super::ExprError;

/// The error for `bytes`, which a parser refused with `refusal` (its message as it
/// reads). serde_json says what is wrong; where it would accept the bytes (a parser
/// stricter than JSON), `refusal` is kept.
pub fn not_json(bytes: &[u8], refusal: &dyn std::fmt::Display) -> ExprError {
    match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        // serde_json's nesting limit is lower than the records' (`MAX_JSON_DEPTH`): its
        // complaint there would not be why the value was refused.
        Err(e) if !e.to_string().starts_with("recursion limit exceeded") => {
            not_json_because(bytes, &e)
        }
        _ => {
            let text = refusal.to_string();
            // jaq's reader: `byte offset N: message`.
            let worded = text
                .strip_prefix("byte offset ")
                .and_then(|rest| rest.split_once(": "))
                .map(|(at, why)| format!("{why} at byte {at}"));
            ExprError::NotJson(worded.unwrap_or(text))
        }
    }
}

/// The error for `bytes`, which serde_json refused with `e`.
pub fn not_json_because(bytes: &[u8], e: &serde_json::Error) -> ExprError {
    let text = e.to_string();
    // serde_json places the error as ` at line L column C` (C counts bytes from 1).
    let why = text
        .rfind(" at line ")
        .map_or(text.as_str(), |i| &text[..i]);
    ExprError::NotJson(format!(
        "{why} at byte {}",
        byte_at(bytes, e.line(), e.column())
    ))
}

/// The 0-based byte offset of 1-based line `line`, column `column`.
fn byte_at(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(bytes.len(), |(i, _)| i + 1)
    };
    (line_start + column).saturating_sub(1).min(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worded(bytes: &[u8]) -> String {
        not_json(bytes, &"refused").to_string()
    }

    #[test]
    fn one_wording_with_the_byte_it_stopped_at() {
        assert_eq!(
            worded(b"not json"),
            "value is not JSON: expected ident at byte 1"
        );
        assert_eq!(
            worded(b"{oops"),
            "value is not JSON: key must be a string at byte 1"
        );
        assert_eq!(
            worded(b""),
            "value is not JSON: EOF while parsing a value at byte 0"
        );
        assert_eq!(
            worded(b"{\"a\":1}\n{\"a\":2}"),
            "value is not JSON: trailing characters at byte 8"
        );
        assert_eq!(
            worded(b"{\n  \"a\": tru\n}"),
            "value is not JSON: expected ident at byte 12"
        );
    }

    #[test]
    fn a_refusal_serde_json_would_accept_keeps_its_reason_reworded() {
        assert_eq!(
            not_json(b"1", &"byte offset 0: no numbers today").to_string(),
            "value is not JSON: no numbers today at byte 0"
        );
    }
}
