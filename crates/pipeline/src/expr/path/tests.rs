//! The fast path must agree with `parse_value` + the jq filter whenever it answers.

use super::*;
use crate::expr::{Expr, Format, RecordVars, parse_value, to_json_bytes};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// What the general path gives: key bytes, group JSON and the value as JSON text.
type Outcome = (Vec<u8>, serde_json::Value, Vec<u8>);

fn compiled(source: &str) -> Expr {
    thread_local! {
        static EXPRS: RefCell<HashMap<String, Expr>> = RefCell::default();
    }
    EXPRS.with_borrow_mut(|m| {
        m.entry(source.to_owned())
            .or_insert_with(|| Expr::compile(source).expect("compiles"))
            .clone()
    })
}

fn general(source: &str, doc: &[u8]) -> Option<Outcome> {
    let v = parse_value(doc, Format::Json).ok()?;
    let e = compiled(source);
    let g = e.first(v, &RecordVars::default()).ok()??;
    Some((key_bytes(&g), val_to_json(&g).ok()?, to_json_bytes(&g)))
}

fn fast(p: Picked<'_>) -> Outcome {
    let v = p.to_val().expect("a picked value parses");
    (
        p.key().expect("key").into_owned(),
        p.to_json().expect("json"),
        to_json_bytes(&v),
    )
}

fn check(source: &str, p: Picked<'_>, doc: &[u8]) {
    assert_eq!(
        Some(fast(p)),
        general(source, doc),
        "{source} on {:?}",
        String::from_utf8_lossy(doc)
    );
}

/// Checks `pick` against the general path for every pair of `sources` on `doc`;
/// returns whether it answered every time.
fn agrees(sources: &[&str], doc: &[u8]) -> bool {
    let paths: Vec<(&str, PlainPath)> = sources
        .iter()
        .map(|s| (*s, PlainPath::parse(s).expect("plain")))
        .collect();
    let mut answered = true;
    for (sa, a) in &paths {
        for (sb, b) in &paths {
            match pick(doc, [a, b]) {
                Some([pa, pb]) => {
                    check(sa, pa, doc);
                    check(sb, pb, doc);
                }
                None => answered = false,
            }
        }
    }
    answered
}

const PATHS: [&str; 6] = [".", ".user", ".a", ".a.b", ".a.b.c", ".x"];

#[test]
fn plain_paths_are_recognised() {
    for s in [".", ".user", " .a.b ", "._x1.Y_2", ".if"] {
        assert!(PlainPath::parse(s).is_some(), "{s}");
    }
    for s in [
        "", "a", "..", ".a.", ".a..b", ".1a", ".a[0]", ".[\"a\"]", ".\"a\"", ".a?", ". a", ".a .b",
        ".a|.b", "$key", ".a-b", ".é",
    ] {
        assert!(PlainPath::parse(s).is_none(), "{s}");
    }
    let p = PlainPath::parse(".a.b").expect("plain");
    assert_eq!(p.fields().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn a_keyword_field_is_still_a_field_in_jq() {
    for kw in [
        "if", "then", "and", "or", "not", "reduce", "def", "as", "end", "null",
    ] {
        let src = format!(".{kw}");
        let doc = format!("{{\"{kw}\": 7}}");
        if Expr::compile(&src).is_ok() {
            assert!(agrees(&[&src], doc.as_bytes()), "{src}");
        }
    }
}

#[test]
fn typical_records_take_the_fast_path_and_agree() {
    let docs: &[&str] = &[
        r#"{"n":1,"user":"u17","pad":"xxxx"}"#,
        r#"{"user":"u1","a":{"b":{"c":[1,2,{"d":null}]}},"x":-0.5e-3}"#,
        r#"  {"user" : "caf\u00e9\n", "a": {"b": 12345678901234567890123}} "#,
        r#"{"user":null,"a":{"b":1.50},"x":true}"#,
        r#"{"user":{"z":1,"a":[true,false]},"a":{"b":{}},"x":"é😀"}"#,
        r#"{"user":12,"a":{"b":-0},"x":1E+2}"#,
        r#"{"a":{"b":1},"a":{"c":2}}"#,
        r#"{"a":{"b":1},"a":null}"#,
        r#"{"user":"first","user":"second"}"#,
        r#"{}"#,
        r#"null"#,
        r#"{"other":"\"quoted\" \\ \/ \b\f\r\t"}"#,
        r#"{"user":"\"q\""}"#,
        "{\"user\":\"tab\\there\"}",
    ];
    for d in docs {
        agrees(&PATHS, d.as_bytes());
        for s in PATHS {
            let p = PlainPath::parse(s).expect("plain");
            if general(s, d.as_bytes()).is_some() {
                assert!(
                    pick(d.as_bytes(), [&p]).is_some(),
                    "no answer for {s} on {d}"
                );
            }
        }
    }
}

#[test]
fn what_jq_would_refuse_is_left_to_the_general_path() {
    // jaq's reader recurses once per level, deeply in a debug build.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(refused)
        .expect("thread")
        .join()
        .expect("no panic");
}

fn refused() {
    let deep_ok = "[".repeat(511) + "{\"a\":1}" + &"]".repeat(511);
    let too_deep = "[".repeat(512) + "{\"a\":1}" + &"]".repeat(512);
    let bad: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"   ".to_vec(),
        b"{".to_vec(),
        b"{\"user\":\"u1\"".to_vec(),
        b"{\"user\":\"u1\"} x".to_vec(),
        b"{\"user\":\"u1\",}".to_vec(),
        b"[1,]".to_vec(),
        b"{\"user\":\"\xff\"}".to_vec(),
        b"{\"user\":\"a\xc3\"}".to_vec(),
        b"{\"user\":\"\\ud800\"}".to_vec(),
        b"{\"user\":\"\\udc00x\"}".to_vec(),
        b"{\"user\":\"\\u12\"}".to_vec(),
        b"{\"user\":\"\\u+123\"}".to_vec(),
        b"{\"user\":\"\\x41\"}".to_vec(),
        b"{\"user\":\"raw\ncontrol\"}".to_vec(),
        b"{\"user\":NaN}".to_vec(),
        b"{\"user\":+1}".to_vec(),
        b"{\"user\":007}".to_vec(),
        b"{\"user\":1.}".to_vec(),
        b"{\"user\":.5}".to_vec(),
        b"{\"user\":1e}".to_vec(),
        b"{\"user\":tru}".to_vec(),
        b"{\"user\":1} # comment".to_vec(),
        b"{user:1}".to_vec(),
        b"{1:2}".to_vec(),
        b"{\"user\":b\"x\"}".to_vec(),
        b"\xef\xbb\xbf{\"user\":1}".to_vec(),
        too_deep.into_bytes(),
    ];
    for d in &bad {
        for s in PATHS {
            let p = PlainPath::parse(s).expect("plain");
            if let Some([v]) = pick(d, [&p]) {
                // Allowed only if jq agrees; none of these documents is strict JSON.
                panic!(
                    "{s} answered {v:?} on {:?} (general: {:?})",
                    String::from_utf8_lossy(d),
                    general(s, d)
                );
            }
        }
    }
    // 512 levels are allowed, as parse_value allows them.
    assert!(agrees(&["."], deep_ok.as_bytes()));
}

#[test]
fn paths_jq_fails_on_are_left_to_the_general_path() {
    for (src, doc) in [
        (".a", "[1]"),
        (".a", "3"),
        (".a", "\"s\""),
        (".a.b", r#"{"a":5}"#),
        (".a.b", r#"{"a":[{"b":1}]}"#),
        (".a.b", r#"{"a":"s"}"#),
        (".a.b.c", r#"{"a":{"b":true}}"#),
        // The last member of a name wins, so the failure stands.
        (".a.b", r#"{"a":{"b":1},"a":5}"#),
    ] {
        let p = PlainPath::parse(src).expect("plain");
        assert!(general(src, doc.as_bytes()).is_none(), "{src} on {doc}");
        assert_eq!(pick(doc.as_bytes(), [&p]), None, "{src} on {doc}");
    }
    // ...and the other way round.
    assert!(agrees(&[".a.b"], br#"{"a":5,"a":{"b":2}}"#));
}

#[test]
fn keys_with_escapes_are_compared_unescaped() {
    for doc in [
        r#"{"us\u0065r":"u1"}"#,
        r#"{"\u0075\u0073\u0065\u0072":"u1","a":{"\u0062":2}}"#,
        r#"{"user":"u1","us\u0065r":"u2","use\r":3,"user\n":4}"#,
        r#"{"a":{"c":1},"\u00e9":{"\n":1},"x":{"\"":2},"\/a":{"b":3}}"#,
    ] {
        assert!(agrees(&[".user", ".a.b", ".x"], doc.as_bytes()), "{doc}");
    }
    let p = PlainPath::parse(".user").expect("plain");
    assert_eq!(
        pick(br#"{"us\u0065r":"u1"}"#, [&p]),
        Some([Picked::Json(b"\"u1\"")])
    );
}

/// JSON text from a small grammar whose keys collide with the paths (duplicates
/// included), with tricky numbers, strings and spacing.
fn json_text() -> impl Strategy<Value = String> {
    let ws = prop::sample::select(vec!["", "", " ", "\n", "\t", "\r\n  "]);
    let num = prop::sample::select(vec![
        "0",
        "-0",
        "7",
        "-12",
        "1.0",
        "1.50",
        "2e3",
        "1E+2",
        "-1.5e-3",
        "9007199254740993",
        "12345678901234567890123",
        "1e400",
        "0.1",
    ]);
    let string = prop::sample::select(vec![
        r#""u1""#,
        r#""""#,
        r#""caf\u00e9""#,
        r#""é""#,
        r#""😀""#,
        r#""\ud83d\ude00""#,
        r#""a\"b""#,
        r#""\\""#,
        r#""line\nbreak""#,
        r#""\u0000""#,
        r#""\/""#,
    ]);
    let key = prop::sample::select(vec![
        r#""a""#,
        r#""b""#,
        r#""c""#,
        r#""user""#,
        r#""x""#,
        r#""pad""#,
        r#""\u0061""#,
        r#""us\u0065r""#,
    ]);
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        num.prop_map(str::to_string),
        string.prop_map(str::to_string),
    ];
    leaf.prop_recursive(5, 48, 5, move |inner| {
        prop_oneof![
            prop::collection::vec((inner.clone(), ws.clone()), 0..4).prop_map(|items| {
                let body: Vec<String> = items
                    .into_iter()
                    .map(|(v, w)| format!("{w}{v}{w}"))
                    .collect();
                format!("[{}]", body.join(","))
            }),
            prop::collection::vec((key.clone(), inner, ws.clone()), 0..5).prop_map(|members| {
                let body: Vec<String> = members
                    .into_iter()
                    .map(|(k, v, w)| format!("{w}{k}{w}:{w}{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn pick_agrees_with_jq(doc in json_text()) {
        agrees(&PATHS, doc.as_bytes());
    }

    #[test]
    fn pick_agrees_with_jq_on_damaged_documents(
        doc in json_text(),
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(vec![b'{', b'}', b'[', b']', b'"', b'\\', b',', b':', b'1', b'-', b'.', b'e', b' ', b'#', 0xff, 0x01]),
        delete in any::<bool>(),
    ) {
        let mut d = doc.into_bytes();
        if !d.is_empty() {
            let i = at.index(d.len());
            if delete {
                d.remove(i);
            } else {
                d.insert(i, byte);
            }
        }
        agrees(&PATHS, &d);
    }
}

#[test]
fn generated_documents_mostly_take_the_fast_path() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = json_text();
    let (mut answered, mut jq_ok, n) = (0, 0, 1000);
    for _ in 0..n {
        let doc = strategy.new_tree(&mut runner).expect("tree").current();
        let p = PlainPath::parse(".a").expect("plain");
        answered += usize::from(pick(doc.as_bytes(), [&p]).is_some());
        jq_ok += usize::from(general(".a", doc.as_bytes()).is_some());
    }
    eprintln!("answered {answered}, jq succeeded {jq_ok} of {n}");
    assert!(
        answered * 10 > jq_ok * 8,
        "answered {answered}, jq succeeded {jq_ok}"
    );
}

#[test]
fn strings_are_read_right_wherever_their_special_bytes_fall() {
    // Strings are skipped eight bytes at a time: put each kind of byte at every
    // position of those words.
    let specials: [(&[u8], bool); 9] = [
        (b"\\n", true),
        (b"\\\"", true),
        (b"\\u00e9", true),
        (b"\\\\", true),
        ("é😀".as_bytes(), true),
        (b"\x7f", true),
        (b" ", true),
        (b"\x01", false),
        (b"\x1f", false),
    ];
    for p in 0..20 {
        for (special, answers) in specials {
            for tail in ["", "y", "yyyyyyyyy"] {
                let mut doc = br#"{"user":""#.to_vec();
                doc.extend(std::iter::repeat_n(b'x', p));
                doc.extend_from_slice(special);
                doc.extend_from_slice(tail.as_bytes());
                doc.extend_from_slice(br#"","n":1}"#);
                let answered = agrees(&[".user", ".n"], &doc);
                assert_eq!(answered, answers, "{:?}", String::from_utf8_lossy(&doc));
            }
        }
    }
}
