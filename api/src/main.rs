//! The `commerce` binary: a thin entry point over [`commerce_api`].
fn main() {}
