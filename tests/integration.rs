//! Every integration test, in one binary: one link instead of thirty (each test binary
//! carries the whole dependency set, which made a cold build link for minutes and take GiBs of
//! disk). Run one area with `cargo test --test integration cache_files::`.

mod support;

mod architecture;
mod azure_entra;
mod azure_identity;
mod cache_files;
mod cache_pages;
mod cli;
mod client_identity;
mod core_metadata;
mod credentials;
mod deploy_observability;
mod deploy_ship;
mod e2e_client_auth;
mod e2e_clients;
mod e2e_poetry_pdm;
mod e2e_resolution;
mod egress;
mod file_integrity;
mod hostile_clients;
mod hostile_upstreams;
mod metrics;
mod names;
mod observability;
mod oidc;
mod owner_rule;
mod publish;
mod request_stack;
mod shared_tier;
mod simple_api;
mod throttling;
mod tls;
