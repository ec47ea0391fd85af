//! Tells the alert rules about answers 500 (`alerts::Rule::ServerErrors`), off the request's
//! path.

use poem::{Endpoint, IntoResponse, Request, Response};

use crate::alerts::Alerts;

pub async fn watch_errors<E: Endpoint>(
    next: E,
    req: Request,
    alerts: Alerts,
) -> poem::Result<Response> {
    let resp = next.call(req).await?.into_response();
    if resp.status().is_server_error() {
        tokio::spawn(async move { alerts.server_error().await });
    }
    Ok(resp)
}
