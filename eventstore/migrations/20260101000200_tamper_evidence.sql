-- Tamper evidence and the engine's append-only role (crate commerce-eventstore, see src/chain.rs).
--
-- chain_hash  HMAC-SHA256, keyed by COMMERCE_AUDIT_KEY (held by the engine, never stored here),
--             over the event's fields and prev_hash; written by the executor at append time.
-- prev_hash   the chain_hash of the previous event of the same stream (NULL for sequence 1).
-- Both are nullable: rows written by other writers (cqrs-es itself, fixtures) carry none, and
-- `commerce replay verify` reports such rows as unauthenticated (Inserted).
ALTER TABLE events ADD COLUMN prev_hash bytea, ADD COLUMN chain_hash bytea;

-- Auditors follow an order to its payments, reservations and shipments by correlation id.
CREATE INDEX events_correlation ON events ((metadata ->> 'correlation_id'));

-- Checkpoints seal the global log: the cumulative hash of every event's chain_hash in log
-- order ((transaction_id, position), the gap-free order) up to a cursor, the event count, and
-- the head (sequence, chain_hash) of every stream that changed since the previous checkpoint.
-- `seal` is an HMAC over all of it and the previous checkpoint's seal, so checkpoints form a
-- chain of their own and cannot be forged or edited without the key either.
CREATE TABLE log_checkpoints (
    checkpoint_no   bigint PRIMARY KEY CHECK (checkpoint_no >= 1),
    transaction_id  xid8 NOT NULL,
    position        bigint NOT NULL,
    event_count     bigint NOT NULL CHECK (event_count >= 0),
    cumulative_hash bytea NOT NULL,
    heads           jsonb NOT NULL,
    prev_seal       bytea,
    seal            bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER log_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();

CREATE TRIGGER log_checkpoints_no_truncate
    BEFORE TRUNCATE ON log_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();

-- The engine's role: it may read and append events and checkpoints, never change or remove
-- them, whatever a trigger says. NOLOGIN by default: an operator enables it with
-- `ALTER ROLE commerce_app LOGIN PASSWORD '...'` (README, "Running the engine append-only").
-- Roles are cluster-wide, so a concurrent migration of another database may create it first.
DO $$
BEGIN
    CREATE ROLE commerce_app NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT SELECT, INSERT ON events, log_checkpoints TO commerce_app;
REVOKE UPDATE, DELETE, TRUNCATE ON events, log_checkpoints FROM commerce_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON snapshots, aggregate_snapshots, command_idempotency
    TO commerce_app;
-- Tables, schemas and sequences the migrating role creates later (other crates' read models,
-- cursors, workflow state) are usable by the engine role too.
ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO commerce_app;
ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT ON SEQUENCES TO commerce_app;
ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO commerce_app;
