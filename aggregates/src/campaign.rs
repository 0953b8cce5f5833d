//! campaign aggregate (being written).
