//! Pure domain value types and rules: ids, SKUs, quantities, money and currencies. No I/O, no async.
