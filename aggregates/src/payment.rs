//! payment aggregate (being written).
