//! product aggregate (being written).
