//! Shared by the server's tests: a server over a fresh data directory on a free
//! loopback port, raw Kafka requests for the protocol-level tests, and the external
//! tools (kcat, kafka-python, Apache Kafka's Java tools).
//!
//! A test that needs a tool follows the repository's rule: in CI (`CI=true`) a missing
//! tool fails the test; elsewhere the test is skipped with a printed reason.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use millrace_server::{Hub, ServerConfig};
use millrace_store::{Store, StoreOptions};

/// Every wait in these tests ends by this bound.
pub const WAIT: Duration = Duration::from_secs(60);

/// A server running on its own runtime thread over a temporary data directory.
pub struct Server {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(ServerConfig::default())
    }

    pub fn start_with(config: ServerConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let hub = Hub::new(Arc::new(store)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&hub);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                millrace_server::serve(listener, served, config, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        Server {
            addr,
            hub,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A librdkafka client's configuration for `server`.
pub fn config(server: &Server) -> rdkafka::config::ClientConfig {
    let mut c = rdkafka::config::ClientConfig::new();
    c.set("bootstrap.servers", server.bootstrap())
        .set("broker.address.family", "v4");
    c
}

/// A librdkafka admin client of `server`.
pub fn admin(
    server: &Server,
) -> rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> {
    config(server).create().unwrap()
}

/// A topic name no other test uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A raw protocol client: one blocking TCP connection.
pub struct Raw {
    pub stream: TcpStream,
    correlation: i32,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Raw {
            stream,
            correlation: 0,
        }
    }

    /// Sends raw bytes as one frame (length prefixed).
    pub fn send_frame(&mut self, body: &[u8]) {
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&i32::try_from(body.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(body);
        self.stream.write_all(&frame).unwrap();
    }

    /// Reads one response frame; `None` if the server closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; usize::try_from(i32::from_be_bytes(len)).unwrap()];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// Whether the server closed the connection (reads end without data).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }

    /// Encodes and sends a request at `version`; returns its correlation id.
    pub fn send<R: Encodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &R,
    ) -> i32 {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, R::header_version(version)).unwrap();
        req.encode(&mut buf, version).unwrap();
        self.send_frame(&buf);
        self.correlation
    }

    /// Sends a request and decodes its response.
    pub fn call<R: Encodable + HeaderVersion, P: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &R,
    ) -> P {
        let id = self.send(key, version, req);
        let mut frame = self.read_frame().expect("a response");
        let header = ResponseHeader::decode(&mut frame, P::header_version(version)).unwrap();
        assert_eq!(header.correlation_id, id);
        P::decode(&mut frame, version).unwrap()
    }
}

/// Reads an i16 error code at the front of `b` after the 4-byte correlation id.
pub fn correlation_of(frame: &Bytes) -> i32 {
    let mut b = frame.clone();
    b.get_i32()
}

pub fn put_i16(buf: &mut BytesMut, v: i16) {
    buf.put_i16(v);
}

// Each test file uses some of these.
#[allow(unused_imports)]
pub use millrace_testkit::{fetched_jars, have, in_ci, kafka_libs};

pub fn have_kcat() -> bool {
    have("kcat", "kcat", &["-V"], "apt-get install -y kcat")
}

pub fn have_kafka_python() -> bool {
    have(
        "kafka-python",
        "python3",
        &["-c", "import kafka"],
        "pip install kafka-python",
    )
}

/// `java -cp '<libs>/*' <main class> --bootstrap-server <server> <args>`.
pub fn java_tool(libs: &Path, server: &Server, main: &str, args: &[&str]) -> Command {
    let mut c = Command::new("java");
    c.arg("-Xmx256m")
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .arg(main)
        .arg("--bootstrap-server")
        .arg(server.bootstrap())
        .args(args);
    c
}

/// Main classes of Kafka's tools.
pub const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
pub const PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
pub const CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
pub const GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";

/// The lines a child process prints, collected by a thread as they come.
pub struct Lines {
    lines: Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Lines {
    pub fn collect(out: impl Read + Send + 'static) -> Lines {
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Lines {
            lines,
            reader: Some(reader),
        }
    }

    /// The lines so far.
    pub fn get(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every line, once the process closed its output.
    pub fn finish(&mut self) -> Vec<String> {
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.get()
    }
}

/// Runs a command, feeding `input`, and returns its stdout; fails the test if it does
/// not succeed within `limit`.
pub fn run(cmd: &mut Command, input: &[u8], limit: Duration) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} ran over {limit:?}; stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = writer.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    assert!(
        status.success(),
        "{cmd:?} failed ({status}):\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}
