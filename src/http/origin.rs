//! Where a request came from, for the audit log and rate limits: the client address (the
//! socket peer, or what a trusted proxy forwarded in the configured header; see
//! `abuse::client_ip`), the request id and the user agent.

use std::sync::Arc;

use poem::Request;

use super::deps::{Deps, Proxies};
use super::middleware::RequestId;
use crate::audit::Origin;

/// Where `req` came from.
pub fn origin(req: &Request) -> Origin {
    let none = Proxies::default();
    let proxies = req.data::<Arc<Deps>>().map_or(&none, |d| &d.proxies);
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
        user_agent: req
            .headers()
            .get(poem::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| {
                ua.chars()
                    .filter(|c| !c.is_control())
                    .take(crate::audit::USER_AGENT_MAX)
                    .collect()
            }),
    }
}
