-- Reactions that failed permanently (crate commerce-workflows).
--
-- workflow_dead_letters  one row per log event whose reaction can never succeed (an undecodable
--                        payload, a stored value out of range): the process managers park it here,
--                        count it (`workflow_parked_total`) and move on, so one bad event neither
--                        blocks the flow nor disappears. An operator inspects `reason`, fixes the
--                        cause and, if needed, replays the event's flow by hand.

CREATE TABLE workflow_dead_letters (
    event_id       uuid PRIMARY KEY,
    position       bigint NOT NULL,
    transaction_id bigint NOT NULL CHECK (transaction_id >= 0),
    tenant_id      text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    event_type     text NOT NULL,
    reason         text NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX workflow_dead_letters_parked_at ON workflow_dead_letters (parked_at);
