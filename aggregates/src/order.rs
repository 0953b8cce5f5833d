//! order aggregate (being written).
