//! HTTP API (axum) and the `commerce` binary that wires every component together.
