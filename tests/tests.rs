//! Portcullis integration tests: one binary, one module per area. Every test starts the real
//! server on a random port with its own database (SQLite by default; a fresh PostgreSQL
//! database when PORTCULLIS_TEST_DATABASE_URL is set) and its own store (in-process; a fresh
//! Redis key prefix when PORTCULLIS_TEST_REDIS_URL is set).

// Tests fail by panicking; the workspace's no-panic lints are for the server itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api;
