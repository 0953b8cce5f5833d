//! The PostgreSQL event store: migrations, gap-free global log, command execution with caching, idempotency and upcasting.
