-- The read models, created in one schema (`rm`, or `rm_shadow` during a rebuild) through the
-- search path: names here are unqualified on purpose. Every row carries its tenant.

-- Per aggregate stream: the last sequence applied here (deduplication and gap detection) and the
-- global log position of that event (read-your-writes). `blocked_by` names the dead letter the
-- stream waits for.
CREATE TABLE stream_state (
    tenant_id      text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    last_sequence  bigint      NOT NULL DEFAULT 0,
    last_position  bigint      NOT NULL DEFAULT 0,
    blocked_by     bigint,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, aggregate_type, aggregate_id)
);

-- Events that arrived ahead of a gap (or while their stream is blocked), applied once it fills.
CREATE TABLE pending_events (
    tenant_id      text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL,
    envelope       jsonb       NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, aggregate_type, aggregate_id, sequence)
);

CREATE TABLE products (
    tenant_id    text        NOT NULL,
    sku          text        NOT NULL,
    product_id   uuid        NOT NULL,
    name         text        NOT NULL,
    description  text,
    price_minor  bigint      NOT NULL,
    currency     text        NOT NULL,
    discontinued boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, sku)
);
CREATE UNIQUE INDEX products_by_id ON products (tenant_id, product_id);

-- One row per inventory stream (tenant / sku / location); `aggregate_id` is the stream key.
CREATE TABLE inventory_levels (
    tenant_id        text        NOT NULL,
    aggregate_id     text        NOT NULL,
    sku              text        NOT NULL,
    location         text        NOT NULL,
    on_hand          bigint      NOT NULL DEFAULT 0,
    reserved         bigint      NOT NULL DEFAULT 0,
    available        bigint      GENERATED ALWAYS AS (on_hand - reserved) STORED,
    safety_threshold bigint      NOT NULL DEFAULT 0,
    backorder_limit  bigint      NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, aggregate_id)
);
CREATE UNIQUE INDEX inventory_levels_by_sku ON inventory_levels (tenant_id, sku, location);

CREATE VIEW inventory_totals AS
    SELECT tenant_id, sku,
           sum(on_hand)::bigint AS on_hand,
           sum(reserved)::bigint AS reserved,
           sum(available)::bigint AS available
    FROM inventory_levels
    GROUP BY tenant_id, sku;

CREATE TABLE orders (
    tenant_id          text        NOT NULL,
    order_id           uuid        NOT NULL,
    customer_id        text        NOT NULL,
    status             text        NOT NULL,
    cancel_reason      text,
    currency           text        NOT NULL,
    total_minor        bigint      NOT NULL,
    payment_method     text,
    campaign_id        uuid,
    participant_id     uuid,
    channel            text        NOT NULL,
    fulfillment_status text        NOT NULL,
    -- The UTC day whose daily_sales count this order (set at confirmation, cleared on cancel).
    sales_day          date,
    expires_at         timestamptz NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);
-- The "customer's orders" read model is this index (and the view below).
CREATE INDEX orders_by_customer ON orders (tenant_id, customer_id, created_at DESC, order_id DESC);
CREATE INDEX orders_by_time ON orders (tenant_id, created_at DESC, order_id DESC);
CREATE VIEW customer_orders AS
    SELECT tenant_id, customer_id, order_id, status, total_minor, currency, created_at
    FROM orders;

CREATE TABLE order_lines (
    tenant_id        text    NOT NULL,
    order_id         uuid    NOT NULL,
    line_no          bigint  NOT NULL,
    sku              text    NOT NULL,
    product_id       uuid,
    quantity         bigint  NOT NULL,
    unit_price_minor bigint  NOT NULL,
    currency         text    NOT NULL,
    fulfilled        bigint  NOT NULL DEFAULT 0,
    shipped          bigint  NOT NULL DEFAULT 0,
    delivered        bigint  NOT NULL DEFAULT 0,
    returned         bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, order_id, line_no)
);

CREATE TABLE order_status_history (
    tenant_id  text        NOT NULL,
    order_id   uuid        NOT NULL,
    sequence   bigint      NOT NULL,
    event_type text        NOT NULL,
    status     text        NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, order_id, sequence)
);

CREATE TABLE payments (
    tenant_id            text        NOT NULL,
    payment_id           uuid        NOT NULL,
    order_id             uuid,
    campaign_id          uuid,
    participant_id       uuid,
    customer_id          text        NOT NULL,
    method               text        NOT NULL,
    provider             text        NOT NULL,
    capture_policy       text        NOT NULL,
    status               text        NOT NULL,
    currency             text        NOT NULL,
    amount_minor         bigint      NOT NULL,
    authorized_minor     bigint      NOT NULL DEFAULT 0,
    captured_minor       bigint      NOT NULL DEFAULT 0,
    refunded_minor       bigint      NOT NULL DEFAULT 0,
    refund_pending_minor bigint      NOT NULL DEFAULT 0,
    charged_back_minor   bigint      NOT NULL DEFAULT 0,
    failure_reason       text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, payment_id)
);
CREATE INDEX payments_by_order ON payments (tenant_id, order_id, created_at);

CREATE TABLE shipments (
    tenant_id       text        NOT NULL,
    shipment_id     uuid        NOT NULL,
    order_id        uuid        NOT NULL,
    fulfillment_id  uuid,
    carrier         text        NOT NULL,
    service         text        NOT NULL,
    tracking_number text        NOT NULL,
    label_url       text        NOT NULL,
    status          text        NOT NULL,
    cancel_reason   text,
    created_at      timestamptz NOT NULL,
    shipped_at      timestamptz,
    delivered_at    timestamptz,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, shipment_id)
);
CREATE INDEX shipments_by_order ON shipments (tenant_id, order_id, created_at);

CREATE TABLE campaigns (
    tenant_id            text        NOT NULL,
    campaign_id          uuid        NOT NULL,
    sku                  text        NOT NULL,
    product_id           uuid,
    location             text        NOT NULL,
    status               text        NOT NULL,
    currency             text        NOT NULL,
    group_price_minor    bigint      NOT NULL,
    original_price_minor bigint      NOT NULL,
    min_participants     integer     NOT NULL,
    max_participants     integer     NOT NULL,
    per_customer_limit   integer     NOT NULL,
    per_order_limit      integer     NOT NULL,
    start_time           timestamptz NOT NULL,
    end_time             timestamptz NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id)
);

CREATE TABLE campaign_participants (
    tenant_id      text        NOT NULL,
    campaign_id    uuid        NOT NULL,
    participant_id uuid        NOT NULL,
    customer_id    text        NOT NULL,
    quantity       bigint      NOT NULL,
    currency       text        NOT NULL,
    unit_price_minor bigint    NOT NULL,
    amount_minor   bigint      NOT NULL,
    status         text        NOT NULL,
    is_leader      boolean     NOT NULL DEFAULT false,
    payment_id     uuid,
    order_id       uuid,
    paid_at        timestamptz,
    joined_at      timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, participant_id)
);

-- Confirmed sales per tenant, UTC day, SKU and currency (see the projector's daily_sales rule).
CREATE TABLE daily_sales (
    tenant_id     text   NOT NULL,
    day           date   NOT NULL,
    sku           text   NOT NULL,
    currency      text   NOT NULL,
    quantity      bigint NOT NULL DEFAULT 0,
    revenue_minor bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, sku, currency)
);
