-- Relay schema (crate commerce-relay): where each relay stands in the global log.
--
-- One row per relay name. The cursor is the (transaction_id, position) of the last event whose
-- publication the broker acknowledged; it only ever moves forward and is written by the
-- instance that holds the relay's advisory lock, on the connection that holds it.
CREATE TABLE IF NOT EXISTS relay_cursor (
    name           text PRIMARY KEY,
    transaction_id xid8 NOT NULL DEFAULT '0'::xid8,
    position       bigint NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
