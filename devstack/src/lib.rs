//! Local services without Docker: a private PostgreSQL cluster and a Tansu broker, installed when missing, plus the per-test isolation harness.
