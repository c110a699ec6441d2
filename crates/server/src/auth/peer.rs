//! The user id of the process at the other end of a loopback TCP connection: the
//! peer's own socket is the one whose local address is the peer's address and whose
//! remote address is ours, and the kernel knows its owner's uid.
//!
//! The kernel is asked for that one socket by its addresses (sock_diag over netlink,
//! as `ss` asks): a hash lookup, whatever the number of sockets. Listing the socket
//! tables (`/proc/net/tcp` and `/proc/net/tcp6`) instead walks every bucket of the
//! kernel's connection hash, tens of milliseconds per connection on a large machine,
//! so they are read only when the lookup gives no answer (a kernel without
//! `tcp_diag`, or a socket it did not find).
//!
//! Addresses in those tables are hexadecimal, each 32-bit word in the machine's byte
//! order, then `:` and the port in big-endian hex. An IPv4 peer of an IPv6 listener
//! shows as `::ffff:a.b.c.d` on our side and in the IPv4 table on its side, so both
//! tables are searched with addresses compared as IPv4 where they can be; the lookup
//! asks for such a peer as IPv4 too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// The uid owning the socket at `peer` connected to `local`, if the tables show it
/// (they do not on systems other than Linux).
pub fn uid_of(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    diag::uid_of(peer, local).or_else(|| uid_in_tables(peer, local))
}

/// The uid as the socket tables show it.
fn uid_in_tables(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
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
    let (a, b) = (plain(a), plain(b));
    a.port() == b.port() && a.ip() == b.ip()
}

/// An address as the kernel looks it up: an IPv4-mapped IPv6 address as IPv4.
fn plain(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(addr, |v4| SocketAddr::new(IpAddr::V4(v4), addr.port())),
        IpAddr::V4(_) => addr,
    }
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

/// The lookup of one TCP socket by its addresses over netlink (`NETLINK_SOCK_DIAG`).
#[cfg(target_os = "linux")]
mod diag {
    use std::net::SocketAddr;

    use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_sock_diag::SockDiagMessage;
    use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
    use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
    use netlink_sys::protocols::NETLINK_SOCK_DIAG;
    use netlink_sys::{Socket, SocketAddr as NetlinkAddr};

    /// The kernel's "no cookie": match the socket by its addresses alone.
    const NO_COOKIE: [u8; 8] = [0xff; 8];

    /// The uid owning the TCP socket whose local address is `peer` and whose remote
    /// address is `local`; `None` when the kernel does not say (no such socket, or no
    /// sock_diag support).
    pub(super) fn uid_of(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
        let (src, dst) = (super::plain(peer), super::plain(local));
        let family = match (src, dst) {
            (SocketAddr::V4(_), SocketAddr::V4(_)) => AF_INET,
            (SocketAddr::V6(_), SocketAddr::V6(_)) => AF_INET6,
            _ => return None,
        };
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST;
        let mut request = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::all(),
                socket_id: SocketId {
                    source_port: src.port(),
                    destination_port: dst.port(),
                    source_address: src.ip(),
                    destination_address: dst.ip(),
                    interface_id: 0,
                    cookie: NO_COOKIE,
                },
            })
            .into(),
        );
        request.finalize();
        // `serialize` writes exactly `buffer_len` bytes.
        let mut out = vec![0; request.buffer_len()];
        request.serialize(&mut out);
        let socket = Socket::new(NETLINK_SOCK_DIAG).ok()?;
        socket.connect(&NetlinkAddr::new(0, 0)).ok()?;
        socket.send(&out, 0).ok()?;
        // One socket's answer: its header and a few attributes (none were asked for).
        let mut answer = Vec::with_capacity(4096);
        socket.recv(&mut answer, 0).ok()?;
        match NetlinkMessage::<SockDiagMessage>::deserialize(&answer)
            .ok()?
            .payload
        {
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => Some(r.header.uid),
            _ => None,
        }
    }
}

/// Without Linux's sock_diag, only the tables (which such systems do not have).
#[cfg(not(target_os = "linux"))]
mod diag {
    pub(super) fn uid_of(_: std::net::SocketAddr, _: std::net::SocketAddr) -> Option<u32> {
        None
    }
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
        // Both ways of asking agree, and the lookup by addresses needs no table.
        assert_eq!(uid_in_tables(peer, local), Some(me));
        assert_eq!(diag::uid_of(peer, local), Some(me));
        // Our own end is a socket too, of this user; a socket nobody has is none.
        assert_eq!(diag::uid_of(local, peer), Some(me));
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(diag::uid_of(nobody, local), None);
        assert_eq!(uid_of(nobody, local), None);
    }

    /// A connection from `connect` to a listener on `listen`: the server side's peer
    /// and local addresses (the client stays open while they are looked up).
    fn accepted(listen: &str, connect: &str) -> (std::net::TcpStream, SocketAddr, SocketAddr) {
        let listener = std::net::TcpListener::bind(listen).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect((connect, port)).unwrap();
        let (server, peer) = listener.accept().unwrap();
        (client, peer, server.local_addr().unwrap())
    }

    #[test]
    fn a_dual_stack_peer_of_an_ipv4_listener_is_found() {
        // Java's clients connect from IPv6 sockets, to IPv4 addresses as mapped ones.
        let (_client, peer, local) = accepted("127.0.0.1:0", "::ffff:127.0.0.1");
        assert_eq!(diag::uid_of(peer, local), Some(unsafe_free_uid()));
    }

    #[test]
    fn an_ipv4_peer_of_an_ipv6_listener_is_found() {
        let (_client, peer, local) = accepted("[::]:0", "127.0.0.1");
        assert!(matches!(peer.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()));
        assert_eq!(diag::uid_of(peer, local), Some(unsafe_free_uid()));
    }

    /// The uid of this process, from `/proc/self/status` (no unsafe needed).
    fn unsafe_free_uid() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
