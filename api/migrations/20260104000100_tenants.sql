-- Tenants the engine serves (crate commerce-api). A token whose `tenant` claim is not listed
-- here is refused with 403, so a validly signed token cannot create a tenant by naming one.
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id  text PRIMARY KEY CHECK (tenant_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);
