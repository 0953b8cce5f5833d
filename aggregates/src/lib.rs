//! The write model: the six cqrs-es aggregates and their business rules.
