//! The sign-up example: every user lands in the topics its region and choices name,
//! and bad records are dead-lettered while the run goes on.

use super::*;

/// One sign-up of the generated sample: regions and notification choices cycle so
/// every combination appears; two users in three click the verification link.
fn signup(i: usize) -> Value {
    let regions = ["eu", "us", "ap", "eu", "ap"];
    let choices: [&[&str]; 4] = [&[], &["email"], &["sms"], &["email", "sms"]];
    json!({
        "user_id": format!("u{i:04}"),
        "email": format!("user{i}@example.com"),
        "phone": format!("+1555{i:07}"),
        "region": regions[i % regions.len()],
        "notify": choices[(i / 2) % choices.len()],
    })
}

fn jsonl(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

/// Parses JSON lines keyed by user_id; every record must have one, and only once.
fn by_user(lines: &[String]) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        let id = v["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("output without user_id: {l}"))
            .to_string();
        assert!(m.insert(id, v).is_none(), "duplicate user: {l}");
    }
    m
}

fn keyed(users: &[&Value]) -> BTreeMap<String, Value> {
    users
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap_or("").to_string(),
                (*u).clone(),
            )
        })
        .collect()
}

fn wants(u: &Value, channel: &str) -> bool {
    u["notify"]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c == channel))
}

/// Conservation in a run's summary: in = out + filtered + dead-lettered for every stage
/// (a finished --batch run has nothing in flight).
fn assert_conserved(summary: &BTreeMap<String, (String, [u64; 5])>, err: &str) {
    assert!(!summary.is_empty(), "no summary in:\n{err}");
    for (stage, (_, [i, o, f, d, _])) in summary {
        assert_eq!(*i, o + f + d, "stage {stage} does not conserve:\n{err}");
    }
}

/// The book's sign-up flow on generated users: every output checked record by record.
#[test]
fn signup_flow_lands_every_user_where_it_belongs() {
    const N: usize = 90;
    for b in Backend::all() {
        let file = b.example("signup.yaml", SIGNUP_TOPICS);
        let file = path_str(&file);
        let t = |name: &str| b.topic(name);
        let users: Vec<Value> = (0..N).map(signup).collect();
        let verified: Vec<&Value> = users.iter().filter(|u| has_verified(u)).collect();

        // The first (empty) batch run creates the pipeline's topics, as the README does.
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        b.ok(
            &["produce", "--topic", &t("signups")],
            jsonl(&users).as_bytes(),
        );
        let v: Vec<Value> = verified.iter().map(|u| (*u).clone()).collect();
        b.ok(
            &["produce", "--topic", &t("verified")],
            jsonl(&v).as_bytes(),
        );
        let out = b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let err = stderr(&out);

        // Verification e-mails: one per sign-up, {user_id, email, region} as signed up.
        let emails = by_user(&b.read_exactly(&t("verification-emails"), N));
        let want: BTreeMap<String, Value> = users
            .iter()
            .map(|u| {
                let id = u["user_id"].as_str().unwrap_or("").to_string();
                let e = json!({"user_id": id, "email": u["email"], "region": u["region"]});
                (id, e)
            })
            .collect();
        assert_eq!(emails, want, "[{}] verification-emails", b.name);

        // Each region's shard holds exactly that region's users, untouched.
        for region in ["eu", "us", "ap"] {
            let of_region: Vec<&Value> = users.iter().filter(|u| u["region"] == region).collect();
            let topic = t(&format!("signups-{region}"));
            let got = by_user(&b.read_exactly(&topic, of_region.len()));
            assert_eq!(got, keyed(&of_region), "[{}] {topic}", b.name);
        }

        // Verified users: all welcomed; notifications by choice — either, both or
        // neither, nothing dropped.
        let welcome = by_user(&b.read_exactly(&t("welcome-email"), verified.len()));
        assert_eq!(welcome, keyed(&verified), "[{}] welcome-email", b.name);
        let email: Vec<&Value> = verified
            .iter()
            .copied()
            .filter(|u| wants(u, "email"))
            .collect();
        let sms: Vec<&Value> = verified
            .iter()
            .copied()
            .filter(|u| wants(u, "sms"))
            .collect();
        let none: Vec<&Value> = verified
            .iter()
            .copied()
            .filter(|u| !wants(u, "email") && !wants(u, "sms"))
            .collect();
        assert!(!email.is_empty() && !sms.is_empty() && !none.is_empty());
        assert!(email.iter().any(|u| wants(u, "sms")), "someone chose both");
        for (topic, want) in [
            ("notify-email", &email),
            ("notify-sms", &sms),
            ("notify-none", &none),
        ] {
            let got = by_user(&b.read_exactly(&t(topic), want.len()));
            assert_eq!(&got, &keyed(want), "[{}] {topic}", b.name);
        }
        assert_eq!(
            b.records_in(&b.dead_letter("signup")),
            0,
            "[{}] dead letters",
            b.name
        );

        // The summary conserves records and says where they went.
        let s = parse_summary(&err);
        assert_conserved(&s, &err);
        let n = N as u64;
        let v = verified.len() as u64;
        let row = |st: &str| {
            s.get(st)
                .map(|r| r.1)
                .unwrap_or_else(|| panic!("{st}: {err}"))
        };
        assert_eq!(row("shard-by-region"), [n, n, 0, 0, n], "{err}");
        let verify_in: u64 = ["verify-eu", "verify-us", "verify-ap"]
            .iter()
            .map(|st| row(st)[0])
            .sum();
        assert_eq!(verify_in, n, "{err}");
        assert_eq!(row("welcome"), [v, v, 0, 0, 2 * v], "{err}");
        let notified = (email.len() + sms.len() + none.len()) as u64;
        assert_eq!(row("notify"), [v, v, 0, 0, notified], "{err}");
        assert_eq!(s.get("notify").map(|r| r.0.as_str()), Some("splitter"));
    }
}

fn has_verified(u: &Value) -> bool {
    u["user_id"]
        .as_str()
        .and_then(|id| id[1..].parse::<usize>().ok())
        .is_some_and(|i| i % 3 != 0)
}

/// Bad sign-ups end in the dead-letter topic with headers saying why and from where;
/// the good ones go through and the run exits 0.
#[test]
fn signup_bad_records_are_dead_lettered_and_the_run_goes_on() {
    for b in Backend::all() {
        let file = b.example("signup.yaml", SIGNUP_TOPICS);
        let file = path_str(&file);
        let t = |name: &str| b.topic(name);
        b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let good: Vec<Value> = (0..6).map(signup).collect();
        let mut input = jsonl(&good);
        input.push_str("this is not json\n");
        input
            .push_str(r#"{"user_id":"mars1","email":"m@example.com","region":"mars","notify":[]}"#);
        input.push('\n');
        // Sharded fine, then refused by the worker: no e-mail address.
        input.push_str(r#"{"user_id":"noemail","region":"eu","notify":[]}"#);
        input.push('\n');
        b.ok(&["produce", "--topic", &t("signups")], input.as_bytes());

        let out = b.root_ok(&["run", file, "--batch", "--no-http"], b"");
        let err = stderr(&out);
        let s = parse_summary(&err);
        assert_conserved(&s, &err);
        assert_eq!(s["shard-by-region"].1, [9, 7, 0, 2, 7], "{err}");
        let emails = by_user(&b.read_exactly(&t("verification-emails"), 6));
        assert_eq!(
            emails.keys().cloned().collect::<Vec<_>>(),
            (0..6).map(|i| format!("u{i:04}")).collect::<Vec<_>>()
        );

        let dlq = b.dead_letter("signup");
        assert_eq!(b.records_in(&dlq), 3, "[{}] {err}", b.name);
        let out = b.ok(
            &[
                "consume",
                "--topic",
                &dlq,
                "--from-beginning",
                "--max-messages",
                "3",
                "--timeout-ms",
                "20000",
                "--property",
                "print.headers=true",
            ],
            b"",
        );
        let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
        let find = |needle: &str| -> &String {
            lines
                .iter()
                .find(|l| l.ends_with(needle))
                .unwrap_or_else(|| panic!("[{}] no dead letter for {needle}: {lines:?}", b.name))
        };
        let not_json = find("\tthis is not json");
        let signups = t("signups");
        for h in [
            "millrace.stage:shard-by-region",
            "millrace.error:value is not JSON",
            "millrace.attempts:1",
            &format!("millrace.source.topic:{signups}"),
            "millrace.source.partition:",
            "millrace.source.offset:",
        ] {
            assert!(not_json.contains(h), "[{}] {h} in {not_json}", b.name);
        }
        let mars = find(r#""region":"mars","notify":[]}"#);
        assert!(
            mars.contains("millrace.stage:shard-by-region")
                && mars.contains("shard key 'mars' names no shard"),
            "[{}] {mars}",
            b.name
        );
        let no_email = find(r#"{"user_id":"noemail","region":"eu","notify":[]}"#);
        assert!(
            no_email.contains("millrace.stage:verify-eu")
                && no_email.contains("sign-up has no email")
                && no_email.contains(&format!("millrace.source.topic:{}", t("signups-eu"))),
            "[{}] {no_email}",
            b.name
        );
    }
}
