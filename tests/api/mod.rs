mod helpers;

mod abuse;
mod articles;
mod authorization;
mod cli;
mod discovery;
mod introspection;
mod openapi;
mod redis_outage;
mod refresh;
mod revocation;
mod robustness;
mod store;
mod tls;
mod token_endpoint;
mod token_security;
mod users;
