-- Money a payment provider took for a payment the engine had already closed (voided, failed or
-- expired): its webhook arrived after the close, and a closed payment takes no event (PAY-9).
-- The webhook route records it here; the process managers give it back at the provider and
-- mark it settled. One row per provider event, so a redelivered webhook adds nothing.
CREATE TABLE provider_orphans (
    tenant_id         text NOT NULL,
    provider_event_id text NOT NULL,
    payment_id        uuid NOT NULL,
    provider_ref      text NOT NULL,
    -- Minor units the provider captured; NULL when it only holds an authorization.
    captured_minor    bigint CHECK (captured_minor > 0),
    currency          text NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    settled_at        timestamptz,
    attempts          integer NOT NULL DEFAULT 0,
    attempted_at      timestamptz,
    last_error        text,
    PRIMARY KEY (tenant_id, provider_event_id)
);

CREATE INDEX provider_orphans_unsettled ON provider_orphans (recorded_at)
    WHERE settled_at IS NULL;
