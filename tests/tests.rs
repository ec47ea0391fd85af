//! Portcullis integration tests: one binary, one module per area. Every test starts the real
//! server on a random port with its own database (SQLite by default; a fresh PostgreSQL
//! database when PORTCULLIS_TEST_DATABASE_URL is set) and its own store (in-process; a fresh
//! Redis key prefix when PORTCULLIS_TEST_REDIS_URL is set).

mod api;
