//! Where a request came from, for the audit log and rate limits: the client address (the
//! socket peer, or what a trusted proxy forwarded in the configured header; see
//! `abuse::client_ip`) and the request id.

use poem::Request;

use super::middleware::RequestId;
use crate::audit::Origin;
use crate::config::{AbuseSettings, ForwardedHeader};

/// The proxies whose forwarded header is believed (`PORTCULLIS_TRUSTED_PROXIES`), and which
/// header they write (`PORTCULLIS_FORWARDED_HEADER`).
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    trusted: Vec<ipnet::IpNet>,
    header: ForwardedHeader,
}

impl Proxies {
    pub fn new(settings: &AbuseSettings) -> Self {
        Self {
            trusted: settings.trusted_proxies.clone(),
            header: settings.forwarded_header,
        }
    }
}

/// Where `req` came from.
pub fn origin(req: &Request) -> Origin {
    let proxies = req.data::<Proxies>().cloned().unwrap_or_default();
    let lines: Vec<Option<&str>> = req
        .headers()
        .get_all(proxies.header.name())
        .iter()
        .map(|v| v.to_str().ok())
        .collect();
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    Origin {
        ip: crate::abuse::client_ip(peer, &lines, &proxies.trusted, proxies.header)
            .map(|ip| ip.to_string()),
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
    }
}
