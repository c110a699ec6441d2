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
