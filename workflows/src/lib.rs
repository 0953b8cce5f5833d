//! Process managers: checkout, compensation, campaign settlement and durable deadlines.
