use super::*;

fn errors(src: &str) -> Vec<String> {
    match parse_str(src, "p.yaml") {
        Ok(_) => Vec::new(),
        Err(d) => d
            .items
            .iter()
            .map(|i| i.display("p.yaml").to_string())
            .collect(),
    }
}

#[test]
fn smoke() {
    let src = "pipeline: x\ntopics:\n  a: 2\nstages:\n  f: {kind: filter, from: a, to: b, where: '.x == 1'}\n";
    let plan = parse_str(src, "p.yaml").expect("valid");
    assert_eq!(plan.stages.len(), 1);
    assert_eq!(plan.topic("b").map(|t| t.partitions), Some(2));
    println!(
        "{:?}",
        errors("pipeline: x\nstages:\n  f: {kind: filtre, from: a, to: b, where: '.x == '}\n")
    );
}

const COMBINING: &str = "pipeline: wc
topics:
  lines: 2
stages:
  split: {kind: map, from: lines, to: words-raw, format: text, expr: 'scan(\"[a-z]+\") | {word: .}'}
  shard: {kind: sharder, from: words-raw, by: .word, to: words, shards: 4}
  count: {kind: reduce, from: words, to: counts, group_by: .word, reducer: count, combine: true}
";

#[test]
fn combine_gives_the_map_upstream_the_reducers_combiner() {
    let plan = parse_str(COMBINING, "p.yaml").expect("valid");
    let split = plan
        .stages
        .iter()
        .find(|s| s.name == "split")
        .expect("split");
    let c = split.combine.as_ref().expect("the map combines");
    assert_eq!(c.reduce, "count");
    assert_eq!(c.reducer.name(), "count");
    // The sharder shards by the group key itself: nothing to add.
    assert!(c.route_by.is_empty());
    assert!(
        plan.stages
            .iter()
            .filter(|s| s.name != "split")
            .all(|s| s.combine.is_none())
    );
    // Sharding by another key combines by it too.
    let other = COMBINING.replace("words-raw, by: .word", "words-raw, by: .len");
    let plan = parse_str(&other, "p.yaml").expect("valid");
    let split = plan
        .stages
        .iter()
        .find(|s| s.name == "split")
        .expect("split");
    assert_eq!(split.combine.as_ref().expect("combines").route_by.len(), 1);
}

#[test]
fn combine_without_a_map_to_combine_in_is_a_located_error() {
    // A filter in between decides on whole records: no combining through it.
    let through_filter = COMBINING.replace(
        "shard: {kind: sharder, from: words-raw, by: .word, to: words, shards: 4}",
        "shard: {kind: filter, from: words-raw, where: '.word != \"a\"', to: words}",
    );
    let only_errors = |e: Vec<String>| -> Vec<String> {
        e.into_iter().filter(|x| x.contains(": error:")).collect()
    };
    let e = only_errors(errors(&through_filter));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("p.yaml:7:"), "{}", e[0]);
    assert!(e[0].contains("`combine` on `count`"), "{}", e[0]);
    assert!(e[0].contains("filter `shard`"), "{}", e[0]);
    // Another reader of a topic on the way would see combined records.
    let e = only_errors(errors(&format!(
        "{COMBINING}  peek: {{kind: copier, from: words-raw, to: audit}}\n"
    )));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("also read by `peek`"), "{}", e[0]);
    // `combine: false` asks for nothing.
    let plan = parse_str(
        &COMBINING.replace("combine: true", "combine: false"),
        "p.yaml",
    )
    .expect("valid");
    assert!(plan.stages.iter().all(|s| s.combine.is_none()));
}
