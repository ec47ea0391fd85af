//! Prometheus metrics: every metric's name, type and labels in one place, the small
//! functions the services call to record them, and the exporter that renders them as the
//! Prometheus text format for `GET /metrics`.
//!
//! The `metrics` crate records into one recorder per process (its macros reach a global),
//! so [`install`] installs the Prometheus recorder once, whatever the number of app
//! instances in the process (the test suite starts many), and hands each instance the same
//! [`Exporter`]. Counters and histograms are therefore process-wide: a production process
//! runs one instance, so they are that instance's; in the test suite they add up over every
//! instance, and tests compare a series before and after their own requests. The few gauges
//! that describe one instance (the duty lease, the signing key's age, the outbox depth) are
//! likewise process-wide, last writer wins, rather than labelled with an instance id:
//! Prometheus labels each scrape with its target already, and a per-instance label would add
//! a series per test instance for nothing.
//!
//! Labels are few and bounded: route templates, never raw paths; grant types, error codes and
//! limit classes from fixed lists; never a user id, a username or an address. Client ids
//! only when `PORTCULLIS_METRICS_CLIENT_LABELS=true`, and only of authenticated clients.

pub mod store;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::metrics::{
    SharedString, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// `gauge{version}` = 1: the running version.
pub const BUILD_INFO: &str = "portcullis_build_info";
/// `counter{method, route, status}`: HTTP requests answered.
pub const HTTP_REQUESTS: &str = "portcullis_http_requests_total";
/// `histogram{method, route, status}`: seconds from the request's arrival to its answer.
pub const HTTP_DURATION: &str = "portcullis_http_request_duration_seconds";
/// `counter{grant_type[, client_id]}`: token requests answered with tokens.
pub const GRANTS_ISSUED: &str = "portcullis_grants_issued_total";
/// `counter{grant_type, reason[, client_id]}`: token requests refused.
pub const GRANTS_REFUSED: &str = "portcullis_grants_refused_total";
/// `counter`: already-rotated refresh tokens presented (their sign-in is ended).
pub const REFRESH_REUSE: &str = "portcullis_refresh_reuse_detected_total";
/// `counter{scope}`: account locks (`account`) and address blocks (`address`) set.
pub const LOCKOUTS: &str = "portcullis_lockouts_total";
/// `counter`: sign-in attempts refused because the account is locked or the address blocked.
pub const LOCKED_ATTEMPTS: &str = "portcullis_lockout_refused_attempts_total";
/// `counter{class}`: requests refused by a rate limit.
pub const RATE_LIMITED: &str = "portcullis_rate_limited_total";
/// `gauge`: password-hashing jobs waiting for a thread of the bcrypt pool.
pub const BCRYPT_QUEUE: &str = "portcullis_bcrypt_queue_depth";
/// `histogram`: seconds a password-hashing job waited for a thread.
pub const BCRYPT_WAIT: &str = "portcullis_bcrypt_wait_seconds";
/// `counter`: password operations refused at once because the pool and its queue were full.
pub const BCRYPT_BUSY: &str = "portcullis_bcrypt_busy_total";
/// `histogram{operation}`: seconds per Redis operation.
pub const STORE_DURATION: &str = "portcullis_store_operation_duration_seconds";
/// `counter{operation}`: Redis operations that failed.
pub const STORE_ERRORS: &str = "portcullis_store_errors_total";
/// `histogram`: seconds per database statement.
pub const DB_DURATION: &str = "portcullis_db_query_duration_seconds";
/// `counter`: database statements that failed (unreachable database, timeouts, and also
/// constraint violations such as a duplicate username).
pub const DB_ERRORS: &str = "portcullis_db_errors_total";
/// `gauge`: seconds since the current signing key started signing.
pub const SIGNING_KEY_AGE: &str = "portcullis_signing_key_age_seconds";
/// `gauge`: seconds until the scheduled rotation is due; negative when overdue.
pub const SIGNING_KEY_ROTATION_DUE: &str = "portcullis_signing_key_rotation_due_seconds";
/// `gauge`: 1 while this instance holds the background-duty lease, else 0.
pub const DUTIES_LEASE: &str = "portcullis_duties_lease_held";
/// `gauge{outbox}`: messages waiting to be delivered (neither sent nor given up on).
pub const OUTBOX_DEPTH: &str = "portcullis_outbox_depth";
/// `alerts`: security alerts raised (once per incident across instances), by rule.
pub const SECURITY_ALERTS: &str = "portcullis_security_alerts_total";

/// Every metric above (the alerting rules and the dashboard in deploy/ name only these).
pub const ALL: &[&str] = &[
    BUILD_INFO,
    HTTP_REQUESTS,
    HTTP_DURATION,
    GRANTS_ISSUED,
    GRANTS_REFUSED,
    REFRESH_REUSE,
    LOCKOUTS,
    LOCKED_ATTEMPTS,
    RATE_LIMITED,
    BCRYPT_QUEUE,
    BCRYPT_WAIT,
    BCRYPT_BUSY,
    STORE_DURATION,
    STORE_ERRORS,
    DB_DURATION,
    DB_ERRORS,
    SIGNING_KEY_AGE,
    SIGNING_KEY_ROTATION_DUE,
    DUTIES_LEASE,
    OUTBOX_DEPTH,
    SECURITY_ALERTS,
];

/// Latency buckets of the HTTP requests, in seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Latency buckets of Redis operations and database statements, in seconds.
const STORAGE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5,
];
/// Wait buckets of the bcrypt pool, in seconds (one bcrypt at cost 12 takes about 0.2 s).
const BCRYPT_BUCKETS: &[f64] = &[0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How often histogram samples are folded into their buckets when nobody scrapes. Samples
/// wait in a queue until then (8 bytes each, one per request and per statement): at tens of
/// thousands of requests a second a longer period costs megabytes of peak memory.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Renders the process's metrics in the Prometheus text format (cheap: no I/O).
#[derive(Clone)]
pub struct Exporter(Arc<PrometheusHandle>);

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exporter")
    }
}

impl Exporter {
    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        self.0.render()
    }
}

/// The `Content-Type` of [`Exporter::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the Prometheus recorder the first time it is called in the process, and returns
/// the exporter of that recorder every time. If some other recorder was installed first (a
/// program embedding Portcullis), the exporter renders only what reaches it: nothing is
/// recorded twice and nothing fails.
pub fn install() -> Exporter {
    static EXPORTER: OnceLock<Exporter> = OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = Arc::new(recorder.handle());
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            let upkeep = handle.clone();
            // A thread of its own: it outlives any async runtime (tests start many).
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if spawned.is_err() {
                tracing::warn!("could not start the metrics upkeep thread");
            }
            describe();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Exporter(handle)
        })
        .clone()
}

/// The recorder's settings: bucket boundaries for each histogram (without them a histogram
/// would be rendered as a summary).
fn builder() -> PrometheusBuilder {
    let with_buckets = [
        (HTTP_DURATION, HTTP_BUCKETS),
        (STORE_DURATION, STORAGE_BUCKETS),
        (DB_DURATION, STORAGE_BUCKETS),
        (BCRYPT_WAIT, BCRYPT_BUCKETS),
    ]
    .into_iter()
    .try_fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
        builder.set_buckets_for_metric(Matcher::Full(name.into()), buckets)
    });
    // Only an empty bucket list is refused, and none of these is empty.
    with_buckets.unwrap_or_else(|_| PrometheusBuilder::new())
}

/// The `# HELP` lines.
fn describe() {
    describe_gauge!(BUILD_INFO, "The running Portcullis version (always 1).");
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        ::metrics::Unit::Seconds,
        "Time from a request's arrival to its answer, by method, route template and status."
    );
    describe_counter!(GRANTS_ISSUED, "Token requests answered with tokens.");
    describe_counter!(
        GRANTS_REFUSED,
        "Token requests refused, by grant type and reason (the OAuth error code, rate_limited, busy or mfa_required)."
    );
    describe_counter!(
        SECURITY_ALERTS,
        "Security alerts raised by the rules, by rule (counted by the instance that raised each; one per incident)."
    );
    describe_counter!(
        REFRESH_REUSE,
        "Already-rotated refresh tokens presented; each ends its sign-in."
    );
    describe_counter!(
        LOCKOUTS,
        "Account locks (scope=account) and per-address blocks (scope=address) set by failed sign-ins."
    );
    describe_counter!(
        LOCKED_ATTEMPTS,
        "Sign-in attempts refused because the account was locked or the address blocked."
    );
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit, by class.");
    describe_gauge!(
        BCRYPT_QUEUE,
        "Password-hashing jobs waiting for a thread of the bcrypt pool."
    );
    describe_histogram!(
        BCRYPT_WAIT,
        ::metrics::Unit::Seconds,
        "Time a password-hashing job waited for a thread of the bcrypt pool."
    );
    describe_counter!(
        BCRYPT_BUSY,
        "Password operations refused at once because the bcrypt pool and its queue were full."
    );
    describe_histogram!(
        STORE_DURATION,
        ::metrics::Unit::Seconds,
        "Time per Redis operation, by operation."
    );
    describe_counter!(STORE_ERRORS, "Redis operations that failed, by operation.");
    describe_histogram!(
        DB_DURATION,
        ::metrics::Unit::Seconds,
        "Time per database statement."
    );
    describe_counter!(
        DB_ERRORS,
        "Database statements that failed (constraint violations included)."
    );
    describe_gauge!(
        SIGNING_KEY_AGE,
        "Seconds since the current signing key started signing."
    );
    describe_gauge!(
        SIGNING_KEY_ROTATION_DUE,
        "Seconds until the scheduled key rotation is due; negative when overdue."
    );
    describe_gauge!(
        DUTIES_LEASE,
        "1 while this instance holds the background-duty lease, else 0."
    );
    describe_gauge!(
        OUTBOX_DEPTH,
        "Messages waiting in an outbox (neither delivered nor given up on)."
    );
}

/// The method label: the standard methods by name, anything else as `other`.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// The route label of a path that matches no known route.
pub const OTHER_ROUTE: &str = "other";

/// One HTTP request answered: `route` is its template (e.g. `/api/v1/admin/users/{id}`) or
/// [`OTHER_ROUTE`].
pub fn http_request(method: &str, route: SharedString, status: u16, elapsed: Duration) {
    let labels = [
        ("method", SharedString::const_str(method_label(method))),
        ("route", route),
        ("status", SharedString::from(status.to_string())),
    ];
    counter!(HTTP_REQUESTS, &labels).increment(1);
    histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// The grant-type label of a token request's `grant_type` field: the supported ones by
/// name, `mfa_otp` for the second step of a password sign-in, `missing`, or `other`.
pub fn grant_type_label(grant_type: Option<&str>) -> &'static str {
    match grant_type {
        None | Some("") => "missing",
        Some("authorization_code") => "authorization_code",
        Some("password") => "password",
        Some("refresh_token") => "refresh_token",
        Some("client_credentials") => "client_credentials",
        Some("urn:portcullis:params:oauth:grant-type:mfa-otp") => "mfa_otp",
        Some(_) => "other",
    }
}

/// Tokens issued for a token request. `client` is the authenticated client's id when the
/// client labels are on.
pub fn grant_issued(grant_type: &'static str, client: Option<&str>) {
    match client {
        Some(client) => counter!(
            GRANTS_ISSUED,
            "grant_type" => grant_type,
            "client_id" => client.to_string()
        )
        .increment(1),
        None => counter!(GRANTS_ISSUED, "grant_type" => grant_type).increment(1),
    }
}

/// A token request refused for `reason` (an OAuth error code, `rate_limited`, `busy` or
/// `mfa_required`).
pub fn grant_refused(grant_type: &'static str, reason: &'static str, client: Option<&str>) {
    match client {
        Some(client) => counter!(
            GRANTS_REFUSED,
            "grant_type" => grant_type,
            "reason" => reason,
            "client_id" => client.to_string()
        )
        .increment(1),
        None => {
            counter!(GRANTS_REFUSED, "grant_type" => grant_type, "reason" => reason).increment(1)
        }
    }
}

/// An already-rotated refresh token was presented.
pub fn refresh_reuse_detected() {
    counter!(REFRESH_REUSE).increment(1);
}

/// A security alert rule fired (`rule` is one of the fixed rule names).
pub fn security_alert(rule: &'static str) {
    counter!(SECURITY_ALERTS, "rule" => rule).increment(1);
}

/// A failed sign-in locked an account.
pub fn account_locked() {
    counter!(LOCKOUTS, "scope" => "account").increment(1);
}

/// A failed sign-in blocked an address for an account.
pub fn address_blocked() {
    counter!(LOCKOUTS, "scope" => "address").increment(1);
}

/// A sign-in attempt was refused because of a lock or block.
pub fn locked_attempt_refused() {
    counter!(LOCKED_ATTEMPTS).increment(1);
}

/// A request of the limit class `class` (e.g. `token-ip`) was refused.
pub fn rate_limited(class: &'static str) {
    counter!(RATE_LIMITED, "class" => class).increment(1);
}

/// A password-hashing job joined the queue of the bcrypt pool.
pub fn bcrypt_queued() {
    gauge!(BCRYPT_QUEUE).increment(1.0);
}

/// A password-hashing job left the queue for a thread after `waited`.
pub fn bcrypt_started(waited: Duration) {
    gauge!(BCRYPT_QUEUE).decrement(1.0);
    histogram!(BCRYPT_WAIT).record(waited.as_secs_f64());
}

/// A queued password-hashing job was dropped without running (the pool closed).
pub fn bcrypt_dropped() {
    gauge!(BCRYPT_QUEUE).decrement(1.0);
}

/// A password operation was refused because the pool and its queue were full.
pub fn bcrypt_busy() {
    counter!(BCRYPT_BUSY).increment(1);
}

/// One Redis operation `operation` took `elapsed`, and failed or not.
pub fn store_operation(operation: &'static str, elapsed: Duration, failed: bool) {
    histogram!(STORE_DURATION, "operation" => operation).record(elapsed.as_secs_f64());
    if failed {
        counter!(STORE_ERRORS, "operation" => operation).increment(1);
    }
}

/// One database statement took `elapsed`, and failed or not.
pub fn db_statement(elapsed: Duration, failed: bool) {
    histogram!(DB_DURATION).record(elapsed.as_secs_f64());
    if failed {
        counter!(DB_ERRORS).increment(1);
    }
}

/// The current signing key has signed for `age_secs`; the scheduled rotation is due in
/// `due_in_secs` (negative: overdue).
#[allow(clippy::cast_precision_loss)]
pub fn signing_key(age_secs: i64, due_in_secs: i64) {
    gauge!(SIGNING_KEY_AGE).set(age_secs as f64);
    gauge!(SIGNING_KEY_ROTATION_DUE).set(due_in_secs as f64);
}

/// Whether this instance holds the background-duty lease.
pub fn duties_lease(held: bool) {
    gauge!(DUTIES_LEASE).set(if held { 1.0 } else { 0.0 });
}

/// `depth` messages wait in the outbox `outbox` (e.g. `mail`).
#[allow(clippy::cast_precision_loss)]
pub fn outbox_depth(outbox: &'static str, depth: u64) {
    gauge!(OUTBOX_DEPTH, "outbox" => outbox).set(depth as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_lists() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("BREW"), "other");
        assert_eq!(grant_type_label(None), "missing");
        assert_eq!(grant_type_label(Some("password")), "password");
        assert_eq!(
            grant_type_label(Some("urn:portcullis:params:oauth:grant-type:mfa-otp")),
            "mfa_otp"
        );
        assert_eq!(grant_type_label(Some("implicit")), "other");
    }

    #[test]
    fn the_exporter_renders_what_was_recorded() {
        let exporter = install();
        http_request(
            "GET",
            SharedString::const_str("/unit/{id}"),
            204,
            Duration::from_millis(3),
        );
        let text = exporter.render();
        assert!(
            text.contains(
                r#"portcullis_http_requests_total{method="GET",route="/unit/{id}",status="204"}"#
            ),
            "{text}"
        );
        assert!(text.contains("portcullis_http_request_duration_seconds_bucket{"));
        assert!(text.contains(&format!(
            "portcullis_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(std::ptr::eq(
            Arc::as_ptr(&install().0),
            Arc::as_ptr(&exporter.0)
        ));
    }
}
