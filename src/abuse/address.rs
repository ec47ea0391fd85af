//! The client's address as the rate limits and lockout see it: the socket peer, or the address
//! a trusted proxy forwarded in the one configured header, and the key under which an address
//! is counted (IPv6 per /64).

use std::net::IpAddr;

use crate::config::ForwardedHeader;

/// The client's address: the socket peer, unless the peer is a trusted proxy. Then the one
/// configured forwarded header (`header`) is walked from the right, nearest hop first,
/// skipping trusted proxies, and the first untrusted address is the client: everything to its
/// left may have been written by the client itself, so it is never read. If a hop cannot be
/// parsed before an untrusted address is found, the walk stops at the nearest trusted hop
/// (never a value the client could have chosen); if every hop is trusted, the leftmost counts.
/// Several lines of the header are one list, in order (`lines`: every line of `header` as
/// received, `None` for one that is not text). IPv4-mapped IPv6 addresses are IPv4.
pub fn client_ip(
    peer: Option<IpAddr>,
    lines: &[Option<&str>],
    trusted: &[ipnet::IpNet],
    header: ForwardedHeader,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut nearest = peer;
    for hop in forwarded_hops(lines, header).into_iter().rev() {
        match hop {
            Some(ip) if is_trusted(&ip) => nearest = ip,
            Some(ip) => return Some(ip),
            None => return Some(nearest),
        }
    }
    Some(nearest)
}

/// The hops of `header`, left to right; `None` for one that is not an address. Elements are
/// split at every comma, quoted or not: the hops that are read (those right of the client) are
/// written by trusted proxies and hold none, and a quote the client leaves open cannot swallow
/// the elements a proxy appends after it.
fn forwarded_hops(lines: &[Option<&str>], header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for line in lines {
        let Some(text) = line else {
            hops.push(None);
            continue;
        };
        let parse = match header {
            ForwardedHeader::XForwardedFor => xff_hop,
            ForwardedHeader::Forwarded => forwarded_element,
        };
        hops.extend(text.split(',').map(parse));
    }
    hops
}

/// An `X-Forwarded-For` hop: an address, also with a port (`192.0.2.1:4711`, `[2001:db8::1]:80`)
/// or in brackets, as some proxies write it.
fn xff_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// The `for=` node of one RFC 7239 `Forwarded` element (`for=192.0.2.60:4711;proto=https`,
/// `for="[2001:db8::1]:4711"`). `unknown`, obfuscated identifiers, a missing or repeated
/// `for` are not addresses.
fn forwarded_element(element: &str) -> Option<IpAddr> {
    let mut nodes = element.split(';').filter_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    });
    let node = nodes.next()?;
    if nodes.next().is_some() {
        return None;
    }
    // No address needs a backslash escape in a quoted string.
    let node = match node.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) if quoted.contains('\\') => return None,
        Some(quoted) => quoted,
        None => node,
    };
    let ip = match node.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let port_ok = after.is_empty()
                || after
                    .strip_prefix(':')
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if !port_ok {
                return None;
            }
            IpAddr::V6(inside.parse().ok()?)
        }
        None => match node.split_once(':') {
            Some((v4, port)) if !port.contains(':') => {
                if !port.bytes().all(|b| b.is_ascii_digit()) || port.is_empty() {
                    return None;
                }
                IpAddr::V4(v4.parse().ok()?)
            }
            _ => node.parse().ok()?,
        },
    };
    Some(ip.to_canonical())
}

/// The key under which an address is counted for rate limits and lockout blocks: an IPv4
/// address (also IPv4-mapped) as itself, an IPv6 address by its /64, since one subscriber
/// usually holds a whole /64 and could otherwise take a fresh address, and a fresh budget,
/// for every request. The audit log keeps the full address.
pub fn ip_bucket(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let network = std::net::Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)));
            format!("{network}/64")
        }
    }
}

/// [`ip_bucket`] of an address in text (as [`crate::audit::Origin`] holds it); text that is
/// not an address is its own key.
pub fn ip_bucket_of(ip: &str) -> String {
    ip.parse::<IpAddr>()
        .map_or_else(|_| ip.to_string(), ip_bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::ForwardedHeader::{Forwarded, XForwardedFor};

    /// The lines of the configured header among `received` (name, value) pairs.
    fn lines<'a>(received: &[(&str, &'a str)], header: ForwardedHeader) -> Vec<Option<&'a str>> {
        received
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(header.name()))
            .map(|(_, v)| Some(*v))
            .collect()
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_of_the_configured_header() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
        ];
        let proxy = "10.0.0.2";
        // (what, peer, configured header, headers received, client address)
        type Case<'a> = (
            &'a str,
            &'a str,
            ForwardedHeader,
            &'a [(&'a str, &'a str)],
            &'a str,
        );
        let cases: &[Case] = &[
            (
                "an untrusted peer is the client, whatever it sends",
                "203.0.113.9",
                XForwardedFor,
                &[("x-forwarded-for", "198.51.100.7")],
                "203.0.113.9",
            ),
            (
                "untrusted peer, Forwarded configured",
                "203.0.113.9",
                Forwarded,
                &[("forwarded", "for=198.51.100.7")],
                "203.0.113.9",
            ),
            ("no header", proxy, XForwardedFor, &[], proxy),
            (
                "the proxy's hop",
                proxy,
                XForwardedFor,
                &[("x-forwarded-for", "198.51.100.7")],
                "198.51.100.7",
            ),
            (
                "walked from the right past trusted proxies",
                proxy,
                XForwardedFor,
                &[("x-forwarded-for", "198.51.100.7, 10.0.0.3, 10.1.2.3")],
                "198.51.100.7",
            ),
            (
                "addresses the client prepends are never read",
                proxy,
                XForwardedFor,
                &[("x-forwarded-for", "1.2.3.4, 198.51.100.7")],
                "198.51.100.7",
            ),
            (
                "the review's case: the client sends X-Forwarded-For, the proxy sets Forwarded",
                proxy,
                Forwarded,
                &[
                    ("x-forwarded-for", "1.2.3.4"),
                    ("forwarded", "for=198.51.100.9"),
                ],
                "198.51.100.9",
            ),
            (
                "the other way round: the client sends Forwarded, the proxy sets X-Forwarded-For",
                proxy,
                XForwardedFor,
                &[
                    ("forwarded", "for=1.2.3.4"),
                    ("x-forwarded-for", "198.51.100.9"),
                ],
                "198.51.100.9",
            ),
            (
                "the other header alone is ignored (X-Forwarded-For configured)",
                proxy,
                XForwardedFor,
                &[("forwarded", "for=1.2.3.4")],
                proxy,
            ),
            (
                "the other header alone is ignored (Forwarded configured)",
                proxy,
                Forwarded,
                &[("x-forwarded-for", "1.2.3.4")],
                proxy,
            ),
            (
                "garbage before an untrusted hop: the nearest trusted hop",
                proxy,
                XForwardedFor,
                &[("x-forwarded-for", "198.51.100.7, garbage, 10.0.0.3")],
                "10.0.0.3",
            ),
            (
                "garbage as the nearest hop: the peer",
                proxy,
                XForwardedFor,
                &[("x-forwarded-for", "1.2.3.4, unknown")],
                proxy,
            ),
            (
                "an empty hop is garbage",
                proxy,
                XForwardedFor,
                &[("x-forwarded-for", "1.2.3.4,")],
                proxy,
            ),
            (
                "every hop trusted: the leftmost",
                proxy,
                XForwardedFor,
                &[("x-forwarded-for", "10.0.0.7, 10.0.0.3")],
                "10.0.0.7",
            ),
            (
                "several lines are one list, in order",
                proxy,
                XForwardedFor,
                &[
                    ("x-forwarded-for", "1.2.3.4, 198.51.100.7"),
                    ("x-forwarded-for", "10.0.0.3"),
                ],
                "198.51.100.7",
            ),
            (
                "a later line is nearer",
                proxy,
                XForwardedFor,
                &[
                    ("x-forwarded-for", "198.51.100.7"),
                    ("x-forwarded-for", "198.51.100.8"),
                ],
                "198.51.100.8",
            ),
            (
                "hops with ports and brackets",
                proxy,
                XForwardedFor,
                &[("x-forwarded-for", "[2001:db8::1]:4711, 10.0.0.3:80")],
                "2001:db8::1",
            ),
            (
                "an IPv4-mapped peer and hop read as IPv4",
                "::ffff:10.0.0.2",
                XForwardedFor,
                &[("x-forwarded-for", "::ffff:198.51.100.7")],
                "198.51.100.7",
            ),
            (
                "trusted IPv6 proxies",
                "2001:db8:ffff::1",
                XForwardedFor,
                &[("x-forwarded-for", "2001:db8:1::9, 2001:db8:ffff::2")],
                "2001:db8:1::9",
            ),
            (
                "Forwarded: quoted IPv6 with a port, other parameters",
                proxy,
                Forwarded,
                &[(
                    "forwarded",
                    "for=\"[2001:db8::1]:4711\";proto=https, For=10.0.0.5;by=10.0.0.2",
                )],
                "2001:db8::1",
            ),
            (
                "Forwarded: IPv4 with a port",
                proxy,
                Forwarded,
                &[("forwarded", "for=192.0.2.60:1234")],
                "192.0.2.60",
            ),
            (
                "Forwarded: several lines",
                proxy,
                Forwarded,
                &[
                    ("forwarded", "for=1.2.3.4"),
                    ("forwarded", "for=192.0.2.60, for=10.0.0.5"),
                ],
                "192.0.2.60",
            ),
            (
                "Forwarded: unknown or obfuscated nodes are garbage",
                proxy,
                Forwarded,
                &[("forwarded", "for=1.2.3.4, for=_hidden, for=10.0.0.5")],
                "10.0.0.5",
            ),
            (
                "Forwarded: an element without for is garbage",
                proxy,
                Forwarded,
                &[("forwarded", "for=1.2.3.4, proto=https")],
                proxy,
            ),
            (
                "Forwarded: a repeated for is garbage",
                proxy,
                Forwarded,
                &[("forwarded", "for=1.2.3.4;for=198.51.100.7")],
                proxy,
            ),
            (
                "Forwarded: an unbracketed IPv6 with a port is garbage",
                proxy,
                Forwarded,
                &[("forwarded", "for=1.2.3.4, for=\"2001:db8::1]:80\"")],
                proxy,
            ),
            (
                "Forwarded: a quote the client leaves open swallows nothing",
                proxy,
                Forwarded,
                &[("forwarded", "for=\"1.2.3.4, for=198.51.100.7")],
                "198.51.100.7",
            ),
        ];
        for (what, peer, header, received, expected) in cases {
            let peer: IpAddr = peer.parse().unwrap();
            let expected: IpAddr = expected.parse().unwrap();
            assert_eq!(
                client_ip(Some(peer), &lines(received, *header), &trusted, *header),
                Some(expected),
                "{what}"
            );
        }
        assert_eq!(client_ip(None, &[], &trusted, XForwardedFor), None);
    }

    #[test]
    fn a_header_line_that_is_not_text_is_garbage() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // The second line was not text (the HTTP layer passes `None` for it).
        let received = [Some("1.2.3.4"), None];
        assert_eq!(
            client_ip(
                Some("10.0.0.2".parse().unwrap()),
                &received,
                &trusted,
                XForwardedFor
            ),
            Some("10.0.0.2".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_addresses_are_counted_per_64() {
        let bucket = |ip: &str| ip_bucket(ip.parse().unwrap());
        assert_eq!(bucket("192.0.2.1"), "192.0.2.1");
        assert_eq!(bucket("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(bucket("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(bucket("2001:db8:1:2::9"), bucket("2001:db8:1:2:ffff::1"));
        assert_ne!(bucket("2001:db8:1:2::9"), bucket("2001:db8:1:3::9"));
        assert_eq!(ip_bucket_of("2001:db8:1:2::9"), "2001:db8:1:2::/64");
        assert_eq!(ip_bucket_of("unknown"), "unknown");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Header text: anything, and text made of plausible hops.
        fn line() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                proptest::collection::vec(
                    prop_oneof![
                        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,5})?",
                        "for=\"?\\[?[0-9a-f:.]{2,39}\\]?(:[0-9]{1,5})?\"?(;proto=https)?",
                        "[ ,;=\"\\[\\]a-z0-9:.]{0,20}",
                    ],
                    0..6,
                )
                .prop_map(|hops| hops.join(", ")),
            ]
        }

        fn header() -> impl Strategy<Value = ForwardedHeader> {
            prop_oneof![
                Just(ForwardedHeader::XForwardedFor),
                Just(ForwardedHeader::Forwarded),
            ]
        }

        proptest! {
            #[test]
            fn an_untrusted_peer_is_the_client_whatever_it_sends(
                lines in proptest::collection::vec(line(), 0..4),
                header in header(),
                peer in any::<std::net::Ipv4Addr>(),
            ) {
                let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
                prop_assume!(!trusted[0].contains(&IpAddr::V4(peer)));
                let lines: Vec<Option<&str>> = lines.iter().map(|l| Some(l.as_str())).collect();
                prop_assert_eq!(
                    client_ip(Some(IpAddr::V4(peer)), &lines, &trusted, header),
                    Some(IpAddr::V4(peer))
                );
            }

            #[test]
            fn what_the_client_prepends_never_picks_its_address(
                prefix in line(),
                client in any::<std::net::Ipv4Addr>(),
                header in header(),
            ) {
                // The proxy (trusted, the peer) appended the address it saw as the last hop.
                let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
                prop_assume!(!trusted[0].contains(&IpAddr::V4(client)));
                let appended = match header {
                    ForwardedHeader::XForwardedFor => format!("{prefix}, {client}"),
                    ForwardedHeader::Forwarded => format!("{prefix}, for={client}"),
                };
                let peer: IpAddr = "10.0.0.2".parse().unwrap();
                prop_assert_eq!(
                    client_ip(Some(peer), &[Some(appended.as_str())], &trusted, header),
                    Some(IpAddr::V4(client))
                );
            }

            #[test]
            fn any_header_gives_an_address_the_chain_or_the_peer_holds(
                lines in proptest::collection::vec(line(), 0..4),
                header in header(),
            ) {
                let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
                let peer: IpAddr = "10.0.0.2".parse().unwrap();
                let lines: Vec<Option<&str>> = lines.iter().map(|l| Some(l.as_str())).collect();
                let found = client_ip(Some(peer), &lines, &trusted, header);
                prop_assert!(found.is_some());
                let found = found.unwrap_or(peer);
                let text: String = lines.iter().flatten().copied().collect::<Vec<_>>().join(",");
                prop_assert!(
                    found == peer || text.contains(&found.to_string()) || matches!(found, IpAddr::V6(_)),
                    "{found} came from neither the peer nor the header {text:?}"
                );
            }
        }
    }
}
