-- Process-manager state (crate commerce-workflows).
--
-- workflow_cursor  where each log tailer stopped in the event store's global log
--                  ("{transaction_id}:{position}" as two columns); moved after each handled event.
-- workflow_links   what a process manager created on behalf of an order or a campaign participant
--                  (reservations, payments, shipments), written BEFORE the command that creates it,
--                  so compensation always finds everything that may exist.
-- deadlines        durable timers, one row per (aggregate, deadline kind): scheduling is an upsert
--                  that never resets a fired row, firing marks `fired_at` once.

CREATE TABLE workflow_cursor (
    name           text PRIMARY KEY,
    transaction_id bigint NOT NULL CHECK (transaction_id >= 0),
    position       bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workflow_links (
    tenant_id  text NOT NULL,
    owner_kind text NOT NULL,
    owner_id   uuid NOT NULL,
    link_kind  text NOT NULL,
    target     text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, owner_kind, owner_id, link_kind, target)
);

CREATE TABLE deadlines (
    tenant_id      text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_key  text NOT NULL,
    kind           text NOT NULL,
    due_at         timestamptz NOT NULL,
    correlation_id uuid NOT NULL,
    causation_id   uuid NOT NULL,
    scheduled_at   timestamptz NOT NULL DEFAULT now(),
    fired_at       timestamptz,
    outcome        text,
    PRIMARY KEY (tenant_id, aggregate_type, aggregate_key, kind)
);

CREATE INDEX deadlines_due ON deadlines (due_at) WHERE fired_at IS NULL;
