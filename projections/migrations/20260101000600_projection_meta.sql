-- Bookkeeping of the projection workers that must survive a read-model rebuild, so it lives in
-- `rm_meta`, outside the `rm` schema that a rebuild swaps out.
CREATE SCHEMA IF NOT EXISTS rm_meta;

-- Where each consumer group stands on each partition: the offset of the next record to read.
-- Written in the same transaction as the read-model change it accounts for, and only through a
-- compare-and-set on `next_offset`, so a worker fenced by a rebalance cannot move it.
CREATE TABLE rm_meta.projection_offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Records that could not be decoded, kept verbatim with the reason. The stream they belong to (when
-- the key and tenant header name it) waits until an operator resolves the dead letter.
CREATE TABLE rm_meta.dead_letters (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id       text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    record_key     bytea,
    record_value   bytea,
    tenant_id      text,
    aggregate_type text,
    aggregate_id   text,
    reason         text        NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    resolution     text,
    UNIQUE (group_id, topic, partition, "offset")
);
CREATE INDEX dead_letters_open ON rm_meta.dead_letters (parked_at) WHERE resolved_at IS NULL;

-- Analyst-stream records waiting to be produced: written in the read-model transaction, deleted
-- once the broker acknowledged them (at-least-once publication).
CREATE TABLE rm_meta.analytics_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream      text        NOT NULL,
    record_key  text        NOT NULL,
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Which DDL version the live `rm` schema was built with (a new version is rolled out by a rebuild).
CREATE TABLE rm_meta.read_model_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    integer     NOT NULL,
    built_at   timestamptz NOT NULL DEFAULT now()
);
