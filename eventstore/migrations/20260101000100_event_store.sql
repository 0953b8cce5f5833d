-- Event store schema (crate commerce-eventstore).
--
-- `events` keeps the seven columns postgres-es reads and writes (so cqrs-es' plain event-store mode
-- works on it unchanged) and adds, all with defaults so an insert naming only those seven columns
-- still works:
--   position        global identity, unique (insert order, NOT commit order)
--   transaction_id  the writer's xid8: readers only take rows older than the snapshot xmin horizon,
--                   which makes the (transaction_id, position) order gap-free (see GlobalLog)
--   event_id        stable id for consumers' de-duplication
--   recorded_at     commit-time clock of the writer
-- A later migration (tamper evidence) adds a `chain_hash` column and its own trigger.

CREATE TABLE events (
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL CHECK (sequence >= 1),
    event_type     text NOT NULL,
    event_version  text NOT NULL,
    payload        jsonb NOT NULL,
    metadata       jsonb NOT NULL,
    position       bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid NOT NULL DEFAULT gen_random_uuid(),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_pkey PRIMARY KEY (aggregate_type, aggregate_id, sequence),
    CONSTRAINT events_position_key UNIQUE (position),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

CREATE INDEX events_log_order ON events (transaction_id, position);

-- Append-only: history is never rewritten.
CREATE FUNCTION events_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();

-- Wake-up for log tailers (the relay). Delivered at commit; the payload is empty on purpose:
-- readers always re-read from their cursor, the notification only says "maybe something new".
CREATE FUNCTION events_notify_append() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('commerce_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify_append();

-- postgres-es' snapshot table, kept for compatibility only: the engine never uses cqrs-es'
-- snapshot modes (cqrs-es 0.5.0 applies events twice when it builds them).
CREATE TABLE snapshots (
    aggregate_type   text NOT NULL,
    aggregate_id     text NOT NULL,
    last_sequence    bigint NOT NULL CHECK (last_sequence >= 0),
    current_snapshot bigint NOT NULL CHECK (current_snapshot >= 0),
    payload          jsonb NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Engine-built snapshots: the newest folded state per stream, written after commit every N events.
-- `state_version` lets a deployment invalidate all snapshots of a type when its fold changes.
CREATE TABLE aggregate_snapshots (
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    last_sequence  bigint NOT NULL CHECK (last_sequence >= 1),
    state_version  text NOT NULL,
    payload        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Idempotent commands: the first outcome per (tenant, key), written in the same transaction as
-- the command's events.
CREATE TABLE command_idempotency (
    tenant_id       text NOT NULL,
    idempotency_key text NOT NULL,
    request_hash    text,
    aggregate_type  text NOT NULL,
    aggregate_id    text NOT NULL,
    result          jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT command_idempotency_pkey PRIMARY KEY (tenant_id, idempotency_key)
);
