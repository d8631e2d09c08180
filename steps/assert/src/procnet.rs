//! The kernel's TCP socket tables, `/proc/net/tcp` and `/proc/net/tcp6`:
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue ...
//!    0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 ...
//! ```
//!
//! Addresses are the kernel's in-memory words printed as hex: an IPv4
//! address is one 32-bit word, an IPv6 address four, each little-endian on
//! the machines mend runs on (x86-64, arm64). The port is plain hex.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `st` of a listening socket (`TCP_LISTEN`).
const LISTEN: &str = "0A";

/// The local addresses of the sockets in `table` that listen on `port`.
pub fn listening(table: &str, port: u16) -> Result<Vec<IpAddr>, String> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or("");
    if !header.contains("local_address") {
        return Err("does not look like /proc/net/tcp: no `local_address` header".to_string());
    }
    let mut found = Vec::new();
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let bad = || format!("line {}: cannot read {line:?}", i + 2);
        let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
            return Err(bad());
        };
        if *state != LISTEN {
            continue;
        }
        let (addr, p) = local.split_once(':').ok_or_else(bad)?;
        let p = u16::from_str_radix(p, 16).map_err(|_| bad())?;
        if p == port {
            found.push(address(addr).ok_or_else(bad)?);
        }
    }
    Ok(found)
}

/// `0100007F` -> 127.0.0.1; 32 hex digits -> an IPv6 address.
fn address(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| {
        let w = u32::from_str_radix(hex.get(8 * i..8 * i + 8)?, 16).ok()?;
        Some(w.to_le_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[4 * i..4 * i + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Whether only this machine can reach the address: 127.0.0.0/8, `::1`,
/// `::ffff:127.x.x.x`. The wildcards `0.0.0.0` and `::` are not.
pub fn is_loopback(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// `0.0.0.0 (all addresses)`, `192.168.1.5`.
pub fn describe(ip: &IpAddr) -> String {
    if ip.is_unspecified() {
        format!("{ip} (all addresses)")
    } else {
        ip.to_string()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // From a machine running Redis on 0.0.0.0:6379 and [::]:6379, PostgreSQL
    // on 127.0.0.1:5432 and ::1:5432, sshd on 0.0.0.0:22, plus one
    // established connection to 6379 from 127.0.0.1.
    pub const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   114        0 23456 1 0000000000000000 100 0 0 10 0
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   3: 0100007F:18EB 0100007F:C350 01 00000000:00000000 00:00000000 00000000   999        0 41414 1 0000000000000000 20 4 30 10 -1
";
    pub const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 31338 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   114        0 23457 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 23458 1 0000000000000000 100 0 0 10 0
   3: B80D0120000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23459 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listeners_by_port_and_state() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(listening(TCP, 6379).unwrap(), [ip("0.0.0.0")]);
        assert_eq!(listening(TCP, 5432).unwrap(), [ip("127.0.0.1")]);
        assert_eq!(listening(TCP, 22).unwrap(), [ip("0.0.0.0")]);
        assert!(listening(TCP, 50000).unwrap().is_empty());
        assert_eq!(listening(TCP6, 6379).unwrap(), [ip("::")]);
        assert_eq!(listening(TCP6, 5432).unwrap(), [ip("::1")]);
        assert_eq!(listening(TCP6, 8080).unwrap(), [ip("::ffff:127.0.0.1")]);
        assert_eq!(listening(TCP6, 443).unwrap(), [ip("2001:db8::1")]);
    }

    #[test]
    fn loopback_and_wildcards() {
        for (addr, lo) in [
            ("127.0.0.1", true),
            ("127.3.2.1", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("0.0.0.0", false),
            ("::", false),
            ("::ffff:10.0.0.1", false),
            ("192.168.1.5", false),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_loopback(&addr.parse().unwrap()), lo, "{addr}");
        }
        assert_eq!(
            describe(&"0.0.0.0".parse().unwrap()),
            "0.0.0.0 (all addresses)"
        );
        assert_eq!(describe(&"::".parse().unwrap()), ":: (all addresses)");
        assert_eq!(describe(&"10.0.0.2".parse().unwrap()), "10.0.0.2");
    }

    #[test]
    fn other_files_are_refused() {
        assert!(
            listening("Inter-|   Receive\n", 22)
                .unwrap_err()
                .contains("local_address")
        );
        assert!(listening("", 22).is_err());
        let bad = format!("{}   9: zz:0016 00000000:0000 0A\n", TCP);
        assert!(listening(&bad, 22).unwrap_err().contains("line 6"));
    }
}
