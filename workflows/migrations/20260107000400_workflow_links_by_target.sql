-- A payment's provider reference is looked up by the payment alone (`Links::provider_ref`:
-- tenant, link kind and target), when a campaign's close captures each paid participant and
-- when checkout or compensation settles a payment. The primary key leads with the owner, so
-- that lookup read every link of the tenant: a flash sale of 100,000 participants (300,000
-- links) spent 100-250 ms of parallel sequential scan per participant in its close
-- (measured 2026-11-29), quadratic in the campaign's size.
CREATE INDEX workflow_links_by_target ON workflow_links (tenant_id, link_kind, target);
