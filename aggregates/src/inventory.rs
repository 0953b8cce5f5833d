//! inventory aggregate (being written).
