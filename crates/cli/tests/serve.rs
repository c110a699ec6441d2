//! `millrace serve` as a user runs it: it records its address in `<data>/endpoint`
//! (owner-only), which stays when it is stopped with SIGTERM; it refuses to listen off
//! loopback without users unless `--insecure`; a users file readable by others is
//! refused; `--group-initial-rebalance-delay-ms` sets Kafka's setting, as the broker's
//! configs show it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bin;

fn serve(data: &Path, args: &[&str]) -> Child {
    Command::new(bin())
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn millrace serve")
}

/// Waits for `<data>/endpoint` and returns the address in it.
fn endpoint(data: &Path) -> SocketAddr {
    let path = data.join("endpoint");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(addr) = text.trim().parse()
        {
            return addr;
        }
        assert!(Instant::now() < deadline, "no endpoint file appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An ApiVersions v0 request and its answer's correlation id and error code.
fn api_versions(addr: SocketAddr) -> (i32, i16) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // size, api key 18, version 0, correlation id 7, client id null
    let req: [u8; 14] = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 7, 0xff, 0xff];
    s.write_all(&req).expect("write");
    let mut head = [0u8; 10];
    s.read_exact(&mut head).expect("read");
    let correlation = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    (correlation, i16::from_be_bytes([head[8], head[9]]))
}

/// The broker's value of one config, from a DescribeConfigs v1 request for broker 1:
/// whether the answer holds `name` with the value `value`.
fn broker_config_is(addr: SocketAddr, name: &str, value: &str) -> bool {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let string = |b: &mut Vec<u8>, v: &str| {
        b.extend_from_slice(&i16::try_from(v.len()).expect("short").to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    };
    // api key 32 (DescribeConfigs), version 1, correlation id 9, client id null; one
    // resource: type 4 (broker), name "1", one config key; no synonyms.
    let mut body = vec![0, 32, 0, 1, 0, 0, 0, 9, 0xff, 0xff, 0, 0, 0, 1, 4];
    string(&mut body, "1");
    body.extend_from_slice(&1i32.to_be_bytes());
    string(&mut body, name);
    body.push(0);
    let mut req = u32::try_from(body.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    req.extend_from_slice(&body);
    s.write_all(&req).expect("write");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("read");
    let mut answer = vec![0u8; usize::try_from(u32::from_be_bytes(len)).expect("size")];
    s.read_exact(&mut answer).expect("read");
    let mut pair = Vec::new();
    string(&mut pair, name);
    string(&mut pair, value);
    answer.windows(pair.len()).any(|w| w == pair)
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "millrace serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_records_its_endpoint_answers_and_keeps_it_when_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = serve(dir.path(), &["--listen", "127.0.0.1:0"]);
    let addr = endpoint(dir.path());
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let mode = std::fs::metadata(dir.path().join("endpoint"))
        .expect("endpoint")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the endpoint file is the owner's only");
    assert_eq!(api_versions(addr), (7, 0));
    let status = stop(child);
    assert!(status.success(), "{status}");
    // The address stays recorded: the next process to hold the directory serves it
    // again, so clients and tools pointed at it keep working.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("endpoint")).expect("endpoint"),
        format!("{addr}\n")
    );
}

#[test]
fn serve_off_loopback_needs_users_or_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--users") && err.contains("--insecure"),
        "the refusal says what to do: {err}"
    );
    assert!(!dir.path().join("endpoint").exists());

    let users = dir.path().join("users");
    std::fs::write(&users, "alice:secret\n").expect("users");
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = Command::new(bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--users"])
        .arg(&users)
        .arg("--data")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");

    let child = serve(dir.path(), &["--listen", "0.0.0.0:0", "--insecure"]);
    let addr = endpoint(dir.path());
    assert!(
        addr.ip().is_loopback(),
        "an unspecified address is recorded as loopback"
    );
    assert_eq!(api_versions(addr), (7, 0));
    assert!(stop(child).success());
}

#[test]
fn serve_takes_kafkas_group_initial_rebalance_delay() {
    let help = Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--group-initial-rebalance-delay-ms"),
        "serve --help names the setting"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let delay = "group.initial.rebalance.delay.ms";
    let child = serve(dir.path(), &["--listen", "127.0.0.1:0"]);
    let addr = endpoint(dir.path());
    assert!(broker_config_is(addr, delay, "3000"), "Kafka's default");
    assert!(stop(child).success());
    let dir = tempfile::tempdir().expect("tempdir");
    let child = serve(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--group-initial-rebalance-delay-ms",
            "0",
        ],
    );
    let addr = endpoint(dir.path());
    assert!(broker_config_is(addr, delay, "0"));
    assert!(!broker_config_is(addr, delay, "3000"));
    assert!(stop(child).success());
}
