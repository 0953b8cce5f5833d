//! Process-manager state: what was created on behalf of an order or a campaign participant.
//!
//! A link is written *before* the command that creates its target, so compensation that runs
//! later (or after a crash) finds every reservation and payment that may exist; a link whose
//! target never came to be is harmless (releasing or voiding it is refused or a no-op).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::WorkflowError;

/// Whose flow a link belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Order(Uuid),
    Participant(Uuid),
}

impl Owner {
    fn parts(self) -> (&'static str, Uuid) {
        match self {
            Self::Order(id) => ("order", id),
            Self::Participant(id) => ("participant", id),
        }
    }
}

/// A stock reservation taken for an owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReservationLink {
    pub reservation_id: Uuid,
    pub sku: String,
    pub location: String,
    pub quantity: u32,
}

impl ReservationLink {
    /// The inventory stream key (`{sku}:{location}`).
    pub fn stream_key(&self) -> String {
        format!("{}:{}", self.sku, self.location)
    }
}

/// A payment opened for an owner, with the provider's reference once known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PaymentLink {
    pub payment_id: Uuid,
    pub provider_ref: Option<String>,
}

/// The campaign a participant joined (written before the participant's stock is reserved, so
/// a reservation is always traced back to its campaign, even before a payment exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CampaignLink {
    pub campaign_id: Uuid,
}

/// A payment's provider reference, by tenant, link kind and target (the payment): an index
/// of its own (`workflow_links_by_target`), since the key leads with the owner.
const PROVIDER_REF: &str = "SELECT max(detail->>'provider_ref') FROM workflow_links \
     WHERE tenant_id = $1 AND link_kind = $2 AND target = $3";

const RESERVATION: &str = "reservation";
const PAYMENT: &str = "payment";
const CAMPAIGN: &str = "campaign";

/// The `workflow_links` table.
#[derive(Debug, Clone)]
pub(crate) struct Links {
    pool: PgPool,
}

impl Links {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn add_reservation(
        &self,
        tenant: &str,
        owner: Owner,
        link: &ReservationLink,
    ) -> Result<(), WorkflowError> {
        self.upsert(tenant, owner, RESERVATION, link.reservation_id, link)
            .await
    }

    pub async fn add_payment(
        &self,
        tenant: &str,
        owner: Owner,
        link: &PaymentLink,
    ) -> Result<(), WorkflowError> {
        self.upsert(tenant, owner, PAYMENT, link.payment_id, link)
            .await
    }

    pub async fn add_campaign(
        &self,
        tenant: &str,
        participant_id: Uuid,
        campaign_id: Uuid,
    ) -> Result<(), WorkflowError> {
        let link = CampaignLink { campaign_id };
        let owner = Owner::Participant(participant_id);
        self.upsert(tenant, owner, CAMPAIGN, campaign_id, &link)
            .await
    }

    /// The campaign of a participant, when its join was handled by this version.
    pub async fn campaign(
        &self,
        tenant: &str,
        participant_id: Uuid,
    ) -> Result<Option<Uuid>, WorkflowError> {
        let owner = Owner::Participant(participant_id);
        let links: Vec<CampaignLink> = self.list(tenant, owner, CAMPAIGN).await?;
        Ok(links.first().map(|link| link.campaign_id))
    }

    pub async fn reservations(
        &self,
        tenant: &str,
        owner: Owner,
    ) -> Result<Vec<ReservationLink>, WorkflowError> {
        self.list(tenant, owner, RESERVATION).await
    }

    pub async fn payments(
        &self,
        tenant: &str,
        owner: Owner,
    ) -> Result<Vec<PaymentLink>, WorkflowError> {
        self.list(tenant, owner, PAYMENT).await
    }

    /// The provider reference recorded for a payment, under any owner.
    pub async fn provider_ref(
        &self,
        tenant: &str,
        payment_id: Uuid,
    ) -> Result<Option<String>, WorkflowError> {
        let reference: Option<Option<String>> = sqlx::query_scalar(PROVIDER_REF)
            .bind(tenant)
            .bind(PAYMENT)
            .bind(payment_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(reference.flatten())
    }

    /// Inserts the link; a known one keeps its detail unless the new one says more (a provider
    /// reference learnt later).
    async fn upsert<T: Serialize>(
        &self,
        tenant: &str,
        owner: Owner,
        kind: &str,
        target: Uuid,
        detail: &T,
    ) -> Result<(), WorkflowError> {
        let (owner_kind, owner_id) = owner.parts();
        let detail = serde_json::to_value(detail)
            .map_err(|error| WorkflowError::decode("link detail", error))?;
        sqlx::query(
            "INSERT INTO workflow_links (tenant_id, owner_kind, owner_id, link_kind, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, owner_kind, owner_id, link_kind, target) \
             DO UPDATE SET detail = workflow_links.detail || jsonb_strip_nulls(EXCLUDED.detail)",
        )
        .bind(tenant)
        .bind(owner_kind)
        .bind(owner_id)
        .bind(kind)
        .bind(target.to_string())
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list<T: for<'de> Deserialize<'de>>(
        &self,
        tenant: &str,
        owner: Owner,
        kind: &str,
    ) -> Result<Vec<T>, WorkflowError> {
        let (owner_kind, owner_id) = owner.parts();
        let rows: Vec<Value> = sqlx::query_scalar(
            "SELECT detail FROM workflow_links \
             WHERE tenant_id = $1 AND owner_kind = $2 AND owner_id = $3 AND link_kind = $4 \
             ORDER BY created_at, target",
        )
        .bind(tenant)
        .bind(owner_kind)
        .bind(owner_id)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|detail| {
                serde_json::from_value(detail)
                    .map_err(|error| WorkflowError::decode("link detail", error))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use commerce_devstack::testkit::TestDatabase;

    use super::*;

    #[tokio::test]
    async fn given_a_flash_sale_of_links_when_a_payment_reference_is_looked_up_then_an_index_finds_it()
     {
        let db = TestDatabase::create().await.expect("a database");
        let pool = db.pool();
        crate::migrate(pool).await.expect("the workflow tables");
        // 20,000 participants of one tenant, three links each, as a flash sale leaves them.
        sqlx::query(
            "INSERT INTO workflow_links (tenant_id, owner_kind, owner_id, link_kind, target) \
             SELECT 't', 'participant', gen_random_uuid(), kind, gen_random_uuid()::text \
               FROM generate_series(1, 20000), \
                    unnest(ARRAY['campaign', 'reservation', 'payment']) AS kind",
        )
        .execute(pool)
        .await
        .expect("the links");
        let links = Links::new(pool.clone());
        let payment_id = Uuid::new_v4();
        let link = PaymentLink {
            payment_id,
            provider_ref: Some("pi_42".to_owned()),
        };
        links
            .add_payment("t", Owner::Participant(Uuid::new_v4()), &link)
            .await
            .expect("the payment's link");
        sqlx::query("ANALYZE workflow_links")
            .execute(pool)
            .await
            .expect("statistics");

        let found = links.provider_ref("t", payment_id).await.expect("lookup");

        assert_eq!(found.as_deref(), Some("pi_42"));
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {PROVIDER_REF}"))
            .bind("t")
            .bind(PAYMENT)
            .bind(payment_id.to_string())
            .fetch_all(pool)
            .await
            .expect("the plan");
        let plan = plan.join("\n");
        assert!(plan.contains("workflow_links_by_target"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
}
