//! The user id of the process at the other end of a loopback TCP connection, read
//! from Linux's socket tables (`/proc/net/tcp` and `/proc/net/tcp6`): the peer's own
//! socket is the row whose local address is the peer's address and whose remote
//! address is ours, and the row names its owner's uid.
//!
//! Addresses in those tables are hexadecimal, each 32-bit word in the machine's byte
//! order, then `:` and the port in big-endian hex. An IPv4 peer of an IPv6 listener
//! shows as `::ffff:a.b.c.d` on our side and in the IPv4 table on its side, so both
//! tables are searched with addresses compared as IPv4 where they can be.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// The uid owning the socket at `peer` connected to `local`, if the tables show it
/// (they do not on systems other than Linux).
pub fn uid_of(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    TABLES.iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        find(&text, peer, local)
    })
}

/// Finds the row of the socket at `peer` connected to `local` in one table's text.
fn find(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (from, to, uid) = (cols.get(1)?, cols.get(2)?, cols.get(7)?);
        if same(parse(from)?, peer) && same(parse(to)?, local) {
            uid.parse().ok()
        } else {
            None
        }
    })
}

/// Compares addresses, an IPv4-mapped IPv6 address as the IPv4 one it maps.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && plain(a.ip()) == plain(b.ip())
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6).
fn parse(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| {
            addr.get(i * 8..i * 8 + 8)
                .and_then(|w| u32::from_str_radix(w, 16).ok())
        })
        .collect::<Option<_>>()?;
    // Each word was printed from the kernel's bytes read as a native integer.
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_parse_in_both_families() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:A1B2 0100007F:2384 01 00000000:00000000 00:00000000 00000000  1000        0 12345 1\n";
        let peer: SocketAddr = "127.0.0.1:41394".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:9092".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(find(table, peer, local), Some(1000));
            let mapped: SocketAddr = "[::ffff:127.0.0.1]:9092".parse().unwrap();
            assert_eq!(find(table, peer, mapped), Some(1000));
            assert_eq!(find(table, local, peer), None);
            let v6 = parse("00000000000000000000000001000000:2384").unwrap();
            assert_eq!(v6, "[::1]:9092".parse().unwrap());
        }
    }

    #[test]
    fn a_real_loopback_peer_is_this_process_user() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let local = server.local_addr().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let me = unsafe_free_uid();
        assert_eq!(uid_of(peer, local), Some(me));
    }

    /// The uid of this process, from `/proc/self/status` (no unsafe needed).
    fn unsafe_free_uid() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
