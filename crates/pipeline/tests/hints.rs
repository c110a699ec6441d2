//! What `validate` tells a new user about the mistakes of a first hour: a field of
//! another stage kind, a field name without its dot, a builtin called with the wrong
//! number of arguments, counts in words, and a reduce or barrier join that a
//! continuous run would never finish.

use millrace_pipeline::diagnostics::NO_BATCH_END;
use millrace_pipeline::{ExprError, Format, parse_str, parse_value};

/// Each error as `line:col: message` with its hint, in order.
fn errors(src: &str) -> Vec<(String, String)> {
    match parse_str(src, "p.yaml") {
        Ok(_) => panic!("expected errors in:\n{src}"),
        Err(d) => d
            .errors()
            .map(|e| {
                (
                    format!("{}:{}: {}", e.line, e.col, e.message),
                    e.hint.clone().unwrap_or_default(),
                )
            })
            .collect(),
    }
}

/// The hint of the one error whose message contains `about`.
fn hint_about(src: &str, about: &str) -> String {
    let found: Vec<_> = errors(src)
        .into_iter()
        .filter(|(m, _)| m.contains(about))
        .collect();
    assert_eq!(found.len(), 1, "one error about {about:?}: {found:#?}");
    found.into_iter().next().map(|(_, h)| h).unwrap_or_default()
}

const HEAD: &str = "pipeline: p\ntopics:\n  a: 2\n  c: 2\nstages:\n";

fn with_stages(stages: &str) -> String {
    format!("{HEAD}{stages}")
}

#[test]
fn a_sharders_fields_in_a_splitter_suggest_the_sharder() {
    let src = with_stages(
        "  s: {kind: splitter, from: a, by: .region, shards: {eu: e, us: u}, default: o}\n",
    );
    let by = hint_about(&src, "unknown field `by`");
    assert!(
        by.starts_with("`by` is a field of a sharder (did you mean `kind: sharder`?)"),
        "{by}"
    );
    let shards = hint_about(&src, "unknown field `shards`");
    assert!(
        shards.starts_with("`shards` is a field of a sharder (did you mean `kind: sharder`?)"),
        "{shards}"
    );
    // What a splitter does take is still listed.
    assert!(by.ends_with("a splitter takes: kind, from, format, batch, mode, routes, default"));
}

#[test]
fn a_field_of_several_kinds_names_them_all_and_a_typo_of_one_is_caught() {
    let src = with_stages("  f: {kind: filter, from: a, to: b, where: .ok, combine: true}\n");
    assert!(
        hint_about(&src, "unknown field `combine`")
            .starts_with("`combine` is a field of a join or a reduce;"),
        "{src}"
    );
    let src = with_stages("  f: {kind: filter, from: a, to: b, where: .ok, timout: 5s}\n");
    assert!(
        hint_about(&src, "unknown field `timout`")
            .starts_with("close to `timeout`, a field of an exec or a join;"),
        "{src}"
    );
    // A typo of the stage's own field is still just that.
    let src = with_stages("  f: {kind: filter, from: a, to: b, were: .ok}\n");
    assert_eq!(
        hint_about(&src, "unknown field `were`"),
        "did you mean `where`?"
    );
}

#[test]
fn a_splitter_given_to_is_told_where_its_outputs_go() {
    let src = with_stages(
        "  s: {kind: splitter, from: a, to: b, routes: [{when: .x, to: b}], default: o}\n",
    );
    assert!(hint_about(&src, "unknown field `to`").starts_with(
        "a splitter names its outputs in `routes` (each with `when` and `to`) and `default`"
    ));
}

#[test]
fn kinds_take_their_article() {
    let src = with_stages("  e: {kind: exec, from: a, to: [b, d], command: [cat]}\n");
    assert_eq!(
        errors(&src)[0].0,
        "6:32: an exec writes exactly one topic, found 2"
    );
}

#[test]
fn a_bare_field_name_in_an_expression_is_told_to_take_a_dot() {
    let src = with_stages(
        "  r: {kind: reduce, from: a, to: b, reducer: sum, of: amount, batch: {records: 10}}\n",
    );
    let (message, hint) = &errors(&src)[0];
    assert_eq!(
        message,
        "6:55: `of` of stage `r` does not compile: undefined filter `amount`"
    );
    assert_eq!(hint, "to read the field, write `.amount`");
    let src = with_stages("  f: {kind: filter, from: a, to: b, where: 'total > 3'}\n");
    assert_eq!(
        hint_about(&src, "undefined filter `total`"),
        "to read the field, write `.total`"
    );
}

#[test]
fn a_builtin_with_the_wrong_number_of_arguments_is_told_how_it_is_called() {
    let src = with_stages("  m: {kind: map, from: a, to: b, expr: 'ascii_downcase(.name)'}\n");
    assert_eq!(
        hint_about(&src, "undefined filter `ascii_downcase/1`"),
        "`ascii_downcase` takes no arguments: it works on its input, as in `.field | ascii_downcase`"
    );
    let src = with_stages("  f: {kind: filter, from: a, to: b, where: '.name | test'}\n");
    assert_eq!(
        hint_about(&src, "undefined filter `test`"),
        "`test` is called as `test(…)` or `test(…; …)`"
    );
    let src = with_stages("  f: {kind: filter, from: a, to: b, where: '.n | ltrimstr'}\n");
    assert_eq!(
        hint_about(&src, "undefined filter `ltrimstr`"),
        "`ltrimstr` takes 1 argument: `ltrimstr(…)`"
    );
}

#[test]
fn counts_read_in_words() {
    let src = with_stages("  s: {kind: sharder, from: a, by: .k, to: c, shards: 1}\n");
    assert_eq!(
        errors(&src)[0].0,
        "6:54: sharder `s` writes 1 shard into the partitions of `c`, which is declared with 2 partitions"
    );
    let one = parse_str(
        &with_stages("  s: {kind: shader, from: a, to: b}\n"),
        "p.yaml",
    )
    .expect_err("an unknown kind");
    assert!(
        one.to_string().ends_with("p.yaml: 1 error, 1 warning"),
        "{one}"
    );
}

#[test]
fn a_reduce_or_barrier_join_without_batches_is_a_warning_naming_the_fix() {
    let src = "pipeline: p\ntopics: {lines: 1}\nstages:\n  split: {kind: map, from: lines, to: words, expr: '.words[]'}\n  count: {kind: reduce, from: words, to: counts, reducer: count}\n  wait: {kind: join, from: [counts], to: done, mode: barrier}\n  pairs: {kind: join, from: [lines, words], to: zipped, mode: zip}\n";
    let plan = parse_str(src, "p.yaml").expect("a warning is not an error");
    let warnings: Vec<String> = plan
        .warnings
        .iter()
        .filter(|w| w.code == Some(NO_BATCH_END))
        .map(|w| {
            format!(
                "{}:{}: {}\n  hint: {}",
                w.line,
                w.col,
                w.message,
                w.hint.as_deref().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        warnings,
        [
            "5:17: reduce `count` never sees a batch end in a continuous run: no stage sets `batch:`, so it emits no final result and commits nothing\n  hint: add `batch: {records: N}` or `batch: {every: 5s}` to `split` (the stage that reads the source), or run it with `millrace run --batch`",
            "6:16: barrier join `wait` never sees a batch end in a continuous run: no stage sets `batch:`, so it releases nothing and commits nothing\n  hint: add `batch: {records: N}` or `batch: {every: 5s}` to `split` (the stage that reads the source), or run it with `millrace run --batch`",
        ],
        "a zip works without batches"
    );
    // With batches cut at the source, a continuous run finishes them.
    let batched = src.replace("expr: '.words[]'}", "expr: '.words[]', batch: {every: 5s}}");
    let plan = parse_str(&batched, "p.yaml").expect("valid");
    assert!(
        plan.warnings.iter().all(|w| w.code != Some(NO_BATCH_END)),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn a_value_that_is_not_json_is_worded_once_with_the_byte() {
    let cases: [(&[u8], &str); 4] = [
        (b"not json", "value is not JSON: expected ident at byte 1"),
        (
            b"{oops",
            "value is not JSON: key must be a string at byte 1",
        ),
        (
            b"",
            "value is not JSON: EOF while parsing a value at byte 0",
        ),
        (b"{\"a\":\xff}", "value is not JSON: not UTF-8 at byte 5"),
    ];
    for (bytes, want) in cases {
        let got = parse_value(bytes, Format::Json).expect_err("not JSON");
        assert!(matches!(got, ExprError::NotJson(_)), "{got:?}");
        assert_eq!(
            got.to_string(),
            want,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}
