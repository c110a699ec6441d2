use super::*;
use crate::expr::{Expr, Format, RecordVars, parse_value, to_json_bytes};

/// jaq's outputs (as JSON) or its error.
fn jaq(src: &str, input: &[u8], format: Format) -> Result<Vec<Vec<u8>>, String> {
    let e = Expr::compile(src).unwrap_or_else(|_| panic!("compiles: {src}"));
    let v = parse_value(input, format).map_err(|e| e.to_string())?;
    let outs = e
        .eval_val(v, &RecordVars::new("t", 0))
        .map_err(|e| e.to_string())?;
    Ok(outs.iter().map(to_json_bytes).collect())
}

/// The native outputs, or `None` when it left the record to jaq.
fn native(src: &str, input: &[u8], format: Format) -> Option<Vec<Vec<u8>>> {
    let n = NativeMap::compile(src).unwrap_or_else(|| panic!("qualifies: {src}"));
    let mut outs = Vec::new();
    n.run(input, format, &mut |o| outs.push(o.to_vec()))?;
    Some(outs)
}

/// Where the native evaluation answers, it answers exactly as jaq, and jaq succeeds.
fn agree(src: &str, input: &[u8], format: Format) -> bool {
    let Some(n) = native(src, input, format) else {
        return false;
    };
    let j = jaq(src, input, format);
    assert_eq!(
        Ok(&n),
        j.as_ref(),
        "{src} on {:?} ({format:?}): native {:?}, jaq {:?}",
        String::from_utf8_lossy(input),
        n.iter()
            .map(|o| String::from_utf8_lossy(o))
            .collect::<Vec<_>>(),
        j
    );
    true
}

const TEXT_EXPRS: [&str; 9] = [
    r#"ascii_downcase | scan("[a-z0-9]+") | {word: .}"#,
    r#"scan("[A-Za-z_]+")"#,
    r#"scan("[^a-z ]+") | ascii_upcase"#,
    r#"scan("a*") | {m: ., n: 1, "k k": "v"}"#,
    r#"scan("[0-9]+x?")"#,
    r#"scan("") | {e: .}"#,
    r#"ascii_upcase | {line: ., lower: ascii_downcase, t: true, f: false, z: null}"#,
    ".",
    r#"{w: scan("[a-z]+")}"#,
];

const TEXTS: [&str; 12] = [
    "Hello, World 42!",
    "",
    "   ",
    "aaa b aa",
    "naïve café — ÉTÉ 2024x 7",
    "tab\there \"quoted\" back\\slash",
    "ctl\u{1}\u{7f}chars",
    "x",
    "under_score CamelCase",
    "数字123漢字abc",
    "emoji 🎉🎉 ok",
    "aa\nbb\r\ncc",
];

#[test]
fn text_expressions_agree_with_jaq() {
    let mut answered = 0;
    for src in TEXT_EXPRS {
        for text in TEXTS {
            if agree(src, text.as_bytes(), Format::Text) {
                answered += 1;
            }
        }
    }
    // Only `{w: scan(..)}` on the 10 texts without exactly one word is left to jaq.
    assert_eq!(answered, 98, "native answered {answered} of 108");
}

#[test]
fn random_text_agrees_with_jaq() {
    // Deterministic pseudo-random lines over letters, digits, punctuation, spaces,
    // escapes and multi-byte characters.
    let alphabet: Vec<char> = "aZz09_ .,-!\"\\\t\néÉß漢🎉\u{1}".chars().collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let len = next() % 40;
        let line: String = (0..len)
            .map(|_| alphabet[usize::try_from(next()).unwrap_or(0) % alphabet.len()])
            .collect();
        for src in TEXT_EXPRS.iter().take(6) {
            assert!(agree(src, line.as_bytes(), Format::Text) || src.contains("{w:"));
        }
    }
}

#[test]
fn json_expressions_agree_with_jaq() {
    let exprs = [
        "{user: .user_id, region, n: .a.b}",
        ".email | ascii_downcase",
        r#".name | scan("[a-z]+") | {part: ., of: .}"#,
        "{group: .group, count: .value, batch: .batch}",
        ".a.b",
        r#"{"x y": .x, y: "lit", z: 12}"#,
    ];
    let docs = [
        r#"{"user_id":"u1","region":"eu","a":{"b":[1,2]},"email":"A@B.C","name":"ann lee","group":"w","value":3,"batch":1,"x":1.50}"#,
        r#"{"user_id":7,"a":null,"email":"x","name":"Zoë","value":1e3,"x":"\u00e9\n"}"#,
        r#"{"a":{"b":{"c":"\"q\""}},"region":null,"email":5,"name":null}"#,
        r#"{}"#,
        r#"[1,2]"#,
        r#""a string""#,
        r#"{"a":1,"a":2}"#,
        r#"{"user_id":"dup","user_id":"last"}"#,
        "not json",
    ];
    let mut answered = 0;
    for src in exprs {
        for doc in docs {
            if agree(src, doc.as_bytes(), Format::Json) {
                answered += 1;
            }
        }
    }
    assert!(answered >= 25, "native answered only {answered}");
}

#[test]
fn the_word_count_map_is_answered_natively() {
    let src = r#"ascii_downcase | scan("[a-z0-9]+") | {word: .}"#;
    assert_eq!(
        native(src, b"The cat, the HAT; 2 cats!", Format::Text),
        Some(
            [
                r#"{"word":"the"}"#,
                r#"{"word":"cat"}"#,
                r#"{"word":"the"}"#,
                r#"{"word":"hat"}"#,
                r#"{"word":"2"}"#,
                r#"{"word":"cats"}"#
            ]
            .map(|s| s.as_bytes().to_vec())
            .to_vec()
        )
    );
    // Text that is not UTF-8 is jaq's (it reads it lossily).
    assert_eq!(native(src, b"caf\xe9 ok", Format::Text), None);
}

#[test]
fn expressions_outside_the_grammar_do_not_qualify() {
    for src in [
        ".[0]",
        ".a?",
        "..",
        r#"."a""#,
        r#"scan("(a)b")"#,
        r#"scan("a"; "i")"#,
        "{a: .b, a: .c}",
        "{a: 1} | .a",
        "{a: {b: 1}}",
        "$key",
        r#""a\nb""#,
        "1.5",
        "-1",
        ".a, .b",
        ".a + 1",
        "length",
        "{(.k): 1}",
        "{a: .b,}",
        "ascii_downcase(1)",
        "# comment\n.",
    ] {
        assert!(
            NativeMap::compile(src).is_none(),
            "{src} should not qualify"
        );
    }
}
