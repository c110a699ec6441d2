//! `<data>/endpoint`: `HOST:PORT` and a newline, the address the holder of the data
//! directory serves Kafka's protocol at (an IPv6 host in brackets). Written owner-only
//! and whole (a temporary file renamed over it), so a reader sees the old address or
//! the new one. It stays after the holder exits: the next holder serves that address
//! again when it can, so clients and tools pointed at it keep working.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The file in the data directory that names the address served.
pub const ENDPOINT_FILE: &str = "endpoint";

/// The address recorded in `dir`, if there is a readable one.
pub fn read_endpoint(dir: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(dir.join(ENDPOINT_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Records `bound` as the address served; an unspecified address (0.0.0.0, ::) as
/// loopback, where it is reachable too. Returns what was recorded.
pub fn write_endpoint(dir: &Path, bound: SocketAddr) -> std::io::Result<SocketAddr> {
    let mut addr = bound;
    if bound.ip().is_unspecified() {
        addr.set_ip(match bound {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let path = dir.join(ENDPOINT_FILE);
    let tmp = dir.join(format!("{ENDPOINT_FILE}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(f, "{addr}")?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_endpoint_is_written_owner_only_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(read_endpoint(dir.path()), None);
        let v4: SocketAddr = "0.0.0.0:4321".parse().expect("addr");
        let recorded = write_endpoint(dir.path(), v4).expect("write");
        assert_eq!(recorded.to_string(), "127.0.0.1:4321");
        assert_eq!(read_endpoint(dir.path()), Some(recorded));
        let mode = std::fs::metadata(dir.path().join(ENDPOINT_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let v6: SocketAddr = "[::1]:9".parse().expect("addr");
        write_endpoint(dir.path(), v6).expect("write");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(ENDPOINT_FILE)).expect("read"),
            "[::1]:9\n"
        );
        assert_eq!(read_endpoint(dir.path()), Some(v6));
        std::fs::write(dir.path().join(ENDPOINT_FILE), "garbage\n").expect("write");
        assert_eq!(read_endpoint(dir.path()), None);
    }
}
