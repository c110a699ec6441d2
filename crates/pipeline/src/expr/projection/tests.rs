use super::*;
use crate::expr::{Expr, Format, RecordVars, parse_value};

fn vars() -> RecordVars<'static> {
    RecordVars::new("t", 0)
}

/// The predicate's result (or error text) on the whole record and on its projection.
fn both(src: &str, json: &str) -> (Result<bool, String>, Option<Result<bool, String>>) {
    let e = Expr::compile(src).unwrap_or_else(|_| panic!("compiles: {src}"));
    let whole = parse_value(json.as_bytes(), Format::Json)
        .map_err(|e| e.to_string())
        .and_then(|v| e.eval_bool(&v, &vars()).map_err(|e| e.to_string()));
    let proj = Projection::of_all([src]).expect("qualifies");
    let projected = proj
        .project(json.as_bytes())
        .map(|v| e.eval_bool(&v, &vars()).map_err(|e| e.to_string()));
    (whole, projected)
}

#[test]
fn projected_predicates_agree_with_the_whole_record() {
    let exprs = [
        r#".region == "eu""#,
        ".n % 2 == 0",
        ".total >= 100 and .paid",
        ".a.b < 3 or .a.c != null",
        "(.x + 1) * 2 > .y",
        ".a.b == .a",
        ".missing == null",
        ".n / 0 > 1",
        r#".s + "x" == "yx""#,
        ".n - -1 >= 1e2",
    ];
    let docs = [
        r#"{"region":"eu","n":4,"total":150,"paid":true,"a":{"b":1,"c":2},"x":1,"y":3,"s":"y"}"#,
        r#"{"region":"us","n":3,"total":99,"paid":false,"a":{"b":5},"x":10,"y":3}"#,
        r#"{"region":"eu","n":"str","total":"100","a":null,"x":null,"y":null}"#,
        r#"{"a":7,"n":1.5,"s":null}"#,
        r#"{"a":{"b":{"c":1}},"n":100000000000000000000}"#,
        r#"{"region":"e\u0075","n":-0.0}"#,
        r#"{}"#,
        r#"{"n":2,"n":3}"#,
        r#"[1,2]"#,
        r#""text""#,
        r#"null"#,
    ];
    let mut projected = 0;
    for src in exprs {
        for doc in docs {
            let (whole, proj) = both(src, doc);
            if let Some(p) = proj {
                projected += 1;
                assert_eq!(p, whole, "{src} on {doc}");
            }
        }
    }
    assert!(projected > 60, "only {projected} cases took the projection");
}

#[test]
fn only_expressions_that_read_plain_paths_qualify() {
    for src in [
        r#".region == "eu""#,
        ".a.b_c >= 2 and (.d or false)",
        ".x % 3 != 1",
        ".a / 2 <= .b",
    ] {
        assert!(Projection::of_all([src]).is_some(), "{src}");
    }
    for src in [
        ".",
        ". == 1",
        "..",
        ".a | .b",
        "length > 1",
        ".a[0] == 1",
        r#".["a"] == 1"#,
        ".a? == 1",
        "$key == \"k\"",
        r#".s == "a\"b""#,
        r#".s == "\(.x)""#,
        ".a = 1",
        ".a += 1",
        ".a // 1",
        "not",
        ".a, .b",
        "if .a then true else false end",
        "test(\"x\")",
        ".a.b.c.d == .e and .f == .g and .h == .i",
    ] {
        assert!(
            Projection::of_all([src]).is_none(),
            "{src} must not qualify"
        );
    }
}

#[test]
fn paths_under_others_are_read_from_them() {
    let p = Projection::of_all([".a.b == 1 and .a != null", ".a.c > 2"]).expect("qualifies");
    assert_eq!(p.paths.len(), 1, "{p:?}");
    let v = p
        .project(br#"{"a":{"b":1,"c":3},"z":[1,2,3]}"#)
        .expect("picked");
    assert_eq!(
        crate::expr::val_to_json(&v).expect("json"),
        serde_json::json!({"a": {"b": 1, "c": 3}})
    );
    // Not strict JSON, or a path jq fails on: the whole record decides.
    assert!(p.project(b"{'a': 1}").is_none());
    assert!(
        p.project(br#"{"a":5}"#).is_some(),
        ".a itself is picked whole"
    );
    let q = Projection::of_all([".a.b == 1"]).expect("qualifies");
    assert!(
        q.project(br#"{"a":5}"#).is_none(),
        ".a.b on a number fails in jq"
    );
}
