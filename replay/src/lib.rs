//! Auditor tooling: order history, as-of state, integrity verification, export and read-model rebuilds.
