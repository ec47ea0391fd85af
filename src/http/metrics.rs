//! `GET /metrics`: the Prometheus text exposition of [`crate::metrics`], without
//! authentication (scrapers carry no token; the labels name no user). Served on the main
//! listener, or only on the separate listener of `PORTCULLIS_METRICS_LISTEN` ([`listener_app`]),
//! which answers nothing else. A scrape renders what is in memory: no database or store call.

use poem::endpoint::make_sync;
use poem::http::header;
use poem::middleware::CatchPanic;
use poem::{Endpoint, EndpointExt, Response, Route, get};

use crate::metrics::{CONTENT_TYPE, Exporter};

/// The path of the exposition, on whichever listener serves it.
pub const PATH: &str = "/metrics";

/// The `/metrics` endpoint (GET, and HEAD through it).
pub fn endpoint(exporter: Exporter) -> impl Endpoint {
    get(make_sync(move |_| {
        Response::builder()
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .header(header::CACHE_CONTROL, "no-store")
            .body(exporter.render())
    }))
}

/// The app of the separate metrics listener: `/metrics` and nothing else (404).
pub fn listener_app(exporter: Exporter) -> impl Endpoint {
    Route::new()
        .at(PATH, endpoint(exporter))
        .with(CatchPanic::new())
}
