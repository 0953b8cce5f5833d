//! HTTP API (axum) and the `commerce` binary that wires every component together.
//!
//! Layout:
//! - [`cli`]: the command line (one subcommand per component) and its dispatch;
//! - [`config`]: configuration from flags and environment, validated into [`config::Settings`];
//! - [`connect`]: connections to PostgreSQL and the broker, checked at startup;
//! - [`engine`]: the relay, projection worker and workflows run in-process, stopped together;
//!   [`event_store`]: `COMMERCE_EVENT_STORE`, which commands run on which store, the relay on
//!   KurrentDB's `$all` (feature `kurrentdb`);
//! - [`server`]: the axum router and its graceful shutdown;
//! - [`telemetry`]: `tracing` logs;
//! - [`replay_cli`]: `commerce replay …`, the auditor tooling of `commerce_replay`;
//!   [`sealer`]: the periodic checkpoint seals next to the relay.
//!
//! The HTTP API itself:
//! - [`app`]: the router behind its cross-cutting layers (correlation id, span, timeout,
//!   metrics, body limit); [`routes`] the handlers, documented for [`openapi`];
//! - [`auth`]: JWT verification, roles, development tokens; [`tenants`]: the served tenants;
//! - [`problem`]: every error as RFC 9457 problem+json; [`extract`]: extractors answering those;
//! - [`consistency`]: read-your-writes waits of queries on a `Consistency-Token`;
//! - [`commands`]: executing commands with idempotency and building their answers;
//! - [`limits`]: body, lines, time and per-tenant rate limits; [`metrics`]: Prometheus;
//! - [`webhooks`]: payment-provider signatures; [`state`]: what handlers share.

pub mod admin;
pub mod api_config;
pub mod app;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod connect;
pub mod consistency;
pub mod engine;
pub mod event_store;
pub mod extract;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod replay_cli;
mod routes;
pub mod sealer;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tenants;
pub mod webhooks;

pub use cli::{Cli, CommandError};
