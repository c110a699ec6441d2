//! Clients nobody here wrote, against the server: kcat (librdkafka's command line:
//! `-L`, `-P`, `-C`, `-G`) and kafka-python, plainly and with SASL/SCRAM-SHA-256.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{Server, have_kafka_python, have_kcat, run, unique};
use millrace_server::{Access, ServerConfig, Users};

const LIMIT: Duration = Duration::from_secs(90);

fn kcat(server: &Server, args: &[&str]) -> Command {
    let mut c = Command::new("kcat");
    // cargo puts the directory of the librdkafka it built (without SASL/SCRAM) on the
    // library path of tests; kcat must load the system's.
    c.env_remove("LD_LIBRARY_PATH");
    c.arg("-b").arg(server.bootstrap()).args(args);
    c
}

#[test]
fn kcat_lists_produces_consumes_and_consumes_in_a_group() {
    if !have_kcat() {
        return;
    }
    let server = Server::start();
    let topic = unique("kcat");
    server
        .hub
        .store()
        .create_topic(&topic, 2, Default::default())
        .unwrap();
    let listing = run(&mut kcat(&server, &["-L"]), b"", LIMIT);
    assert!(
        listing.contains(&format!("topic \"{topic}\" with 2 partitions")),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("broker 1 at {}", server.bootstrap())),
        "{listing}"
    );

    let lines: String = (0..20).map(|i| format!("k{i}:v{i}\n")).collect();
    run(
        &mut kcat(
            &server,
            &["-P", "-t", &topic, "-K", ":", "-H", "origin=kcat"],
        ),
        lines.as_bytes(),
        LIMIT,
    );
    let out = run(
        &mut kcat(
            &server,
            &[
                "-C",
                "-t",
                &topic,
                "-o",
                "beginning",
                "-e",
                "-f",
                "%k=%s %h\n",
            ],
        ),
        b"",
        LIMIT,
    );
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_by_key(|l| l[1..l.find('=').unwrap()].parse::<u32>().unwrap());
    let want: Vec<String> = (0..20).map(|i| format!("k{i}=v{i} origin=kcat")).collect();
    assert_eq!(got, want);

    // -G: a balanced consumer group; it exits at the end of every partition (-e).
    let group = unique("kcat-group");
    let out = run(
        &mut kcat(
            &server,
            &["-G", &group, "-o", "beginning", "-e", "-f", "%s\n", &topic],
        ),
        b"",
        LIMIT,
    );
    assert_eq!(out.lines().count(), 20, "{out}");
}

/// A record's headers are a list: two of one name both come back, in order.
#[test]
fn kcat_reads_back_every_header_of_a_record_in_order() {
    if !have_kcat() {
        return;
    }
    let server = Server::start();
    let topic = unique("kcat-headers");
    server
        .hub
        .store()
        .create_topic(&topic, 1, Default::default())
        .unwrap();
    let headers = ["-H", "a=1", "-H", "b=2", "-H", "a=3", "-H", "a=1"];
    let mut produce = vec!["-P", "-t", &topic];
    produce.extend(headers);
    run(&mut kcat(&server, &produce), b"v\n", LIMIT);
    let out = run(
        &mut kcat(
            &server,
            &["-C", "-t", &topic, "-o", "beginning", "-e", "-f", "%h|%s\n"],
        ),
        b"",
        LIMIT,
    );
    assert_eq!(out, "a=1,b=2,a=3,a=1|v\n");
}

/// kafka-python: produce, then consume in a group from the beginning. With `sasl`, as
/// user `alice` (password `secret`) over SCRAM-SHA-256.
fn kafka_python(server: &Server, topic: &str, sasl: Option<&str>) -> String {
    let auth = match sasl {
        Some(password) => format!(
            "security_protocol='SASL_PLAINTEXT', sasl_mechanism='SCRAM-SHA-256', \
             sasl_plain_username='alice', sasl_plain_password='{password}',"
        ),
        None => String::new(),
    };
    let script = format!(
        r#"
import sys
from kafka import KafkaProducer, KafkaConsumer
p = KafkaProducer(bootstrap_servers='{b}', {auth} acks='all')
for i in range(25):
    p.send('{t}', key=b'k%d' % i, value=b'py-%d' % i, headers=[('h', b'x')])
p.flush()
p.close()
c = KafkaConsumer('{t}', bootstrap_servers='{b}', {auth} group_id='py-{t}',
                  auto_offset_reset='earliest', consumer_timeout_ms=15000)
got = []
for m in c:
    got.append(m.value.decode())
    if len(got) == 25:
        break
c.commit()
c.close()
print('\n'.join(sorted(got, key=lambda v: int(v[3:]))))
"#,
        b = server.bootstrap(),
        t = topic,
    );
    run(Command::new("python3").arg("-c").arg(script), b"", LIMIT)
}

#[test]
fn kafka_python_produces_and_consumes_in_a_group() {
    if !have_kafka_python() {
        return;
    }
    let server = Server::start();
    let topic = unique("py");
    let out = kafka_python(&server, &topic, None);
    let want: Vec<String> = (0..25).map(|i| format!("py-{i}")).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    let group = format!("py-{topic}");
    let committed = server.hub.store().committed_offset(&group, &topic, 0);
    assert_eq!(committed, Some(25), "the group's commit is in the store");
}

fn sasl_server() -> Server {
    Server::start_with(ServerConfig {
        access: Access {
            users: Some(Arc::new(Users::from_pairs([("alice", "secret")]))),
            owner_uid: None,
        },
        ..ServerConfig::default()
    })
}

#[test]
fn scram_sha_256_admits_the_right_password_only_with_kcat_and_kafka_python() {
    let (kcat_ok, python_ok) = (have_kcat(), have_kafka_python());
    let server = sasl_server();
    let topic = unique("sasl");
    server
        .hub
        .store()
        .create_topic(&topic, 1, Default::default())
        .unwrap();
    let sasl = |password: &str| {
        vec![
            "-X".to_string(),
            "security.protocol=SASL_PLAINTEXT".to_string(),
            "-X".to_string(),
            "sasl.mechanisms=SCRAM-SHA-256".to_string(),
            "-X".to_string(),
            "sasl.username=alice".to_string(),
            "-X".to_string(),
            format!("sasl.password={password}"),
        ]
    };
    if kcat_ok {
        let mut args = sasl("secret");
        args.extend(["-P", "-t", &topic].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&mut kcat(&server, &args), b"over-sasl\n", LIMIT);
        let mut args = sasl("secret");
        args.extend(["-C", "-t", &topic, "-o", "beginning", "-e"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(
            run(&mut kcat(&server, &args), b"", LIMIT).trim(),
            "over-sasl"
        );

        let mut args = sasl("wrong");
        args.push("-L".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let refused = kcat(&server, &args).output().unwrap();
        assert!(!refused.status.success(), "a wrong password is refused");
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("uthentication"), "{err}");
        // Without SASL at all, nothing but the handshake is answered.
        let plain = kcat(&server, &["-L", "-m", "5"]).output().unwrap();
        assert!(
            !plain.status.success(),
            "a client without SASL gets nothing"
        );
    }
    if python_ok {
        let out = kafka_python(&server, &unique("sasl-py"), Some("secret"));
        assert_eq!(out.lines().count(), 25);
    }
}
