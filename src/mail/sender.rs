//! Sending the outbox (the background duties' lease holder calls [`Sender::send_due`]).

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    /// Messages delivered (to the SMTP server, or written as files).
    pub sent: u32,
    /// Messages that failed this time and will be retried.
    pub deferred: u32,
    /// Messages given up.
    pub failed: u32,
}

/// Sends due messages.
#[derive(Clone)]
pub struct Sender {}
