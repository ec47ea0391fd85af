//! Where a webhook may be sent. A target is an absolute `http(s)` URL without credentials;
//! every address its host resolves to must be public (no loopback, private, link-local,
//! shared, multicast or reserved range) unless private targets are allowed. The check runs when
//! an endpoint is registered and again at every delivery, and the delivery connects only to
//! the addresses it checked (no second lookup an attacker's DNS could answer differently).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::WebhookError;

/// A parsed target URL: what to resolve.
pub struct Target {
    pub url: url::Url,
    pub host: String,
    pub port: u16,
}

/// The longest target URL accepted.
pub const MAX_URL: usize = 2048;

/// Parses and checks the shape of a target URL.
pub fn parse(text: &str) -> Result<Target, WebhookError> {
    let bad = |why: &str| WebhookError::InvalidUrl(why.to_owned());
    if text.len() > MAX_URL {
        return Err(bad("is longer than 2048 characters"));
    }
    let url = url::Url::parse(text.trim()).map_err(|_| bad("is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    if url.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(bad("has no host")),
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| bad("has no port"))?;
    Ok(Target { url, host, port })
}

/// Resolves the target's host and checks every address. Returns the addresses to connect to.
pub async fn resolve(
    target: &Target,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, WebhookError> {
    let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::lookup_host((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| WebhookError::Unreachable("the host name did not resolve in time".into()))?
        .map_err(|_| WebhookError::Unreachable("the host name does not resolve".into()))?
        .collect(),
    };
    if addrs.is_empty() {
        return Err(WebhookError::Unreachable(
            "the host name resolves to no address".into(),
        ));
    }
    if !allow_private && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(WebhookError::PrivateTarget(bad.ip().to_string()));
    }
    Ok(addrs)
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments().first().copied().unwrap_or(0);
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || in_v6(v6, "64:ff9b::/96") // NAT64: an IPv4 address in disguise
                || in_v6(v6, "64:ff9b:1::/48")
                || in_v6(v6, "2001:db8::/32") // documentation
                || in_v6(v6, "100::/64")) // discard
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    const BLOCKED: [&str; 14] = [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    ];
    !BLOCKED.iter().any(|net| {
        net.parse::<ipnet::Ipv4Net>()
            .is_ok_and(|net| net.contains(&v4))
    })
}

fn in_v6(ip: Ipv6Addr, net: &str) -> bool {
    net.parse::<ipnet::Ipv6Net>().is_ok_and(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "ff02::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_must_be_plain_http_targets() {
        assert!(parse("https://hooks.example.com/portcullis").is_ok());
        assert_eq!(parse("http://[::1]:9000/x").unwrap().host, "::1");
        for bad in [
            "ftp://example.com/",
            "/relative",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "not a url",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn private_targets_are_refused_unless_allowed() {
        let target = parse("http://127.0.0.1:9/hook").unwrap();
        assert!(matches!(
            resolve(&target, false).await,
            Err(WebhookError::PrivateTarget(_))
        ));
        assert!(resolve(&target, true).await.is_ok());
        // A name that resolves to loopback is refused after resolution.
        let target = parse("http://localhost:9/hook").unwrap();
        assert!(matches!(
            resolve(&target, false).await,
            Err(WebhookError::PrivateTarget(_))
        ));
    }
}
