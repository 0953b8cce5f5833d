//! Payment-provider webhooks: which providers are accepted and how their requests are
//! authenticated (HMAC-SHA256 of the raw body with the provider's shared secret, sent as
//! `X-Webhook-Signature: sha256=<hex>`, compared in constant time).
//!
//! `COMMERCE_WEBHOOK_SECRET` holds either one secret, for the built-in `sandbox` provider, or
//! a comma-separated list of `provider=secret`.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::problem::ApiError;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";
/// The provider a bare secret belongs to.
pub const SANDBOX_PROVIDER: &str = "sandbox";
const SIGNATURE_PREFIX: &str = "sha256=";

/// Shared secrets by provider name. `Debug` never shows them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WebhookSecrets(HashMap<String, Vec<u8>>);

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl WebhookSecrets {
    /// Parses `secret` or `provider=secret,provider=secret`; the error names what is wrong
    /// without repeating a secret.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(Self::default());
        }
        if !value.contains('=') {
            return Ok(Self::single(SANDBOX_PROVIDER, value.as_bytes()));
        }
        let mut secrets = HashMap::new();
        for entry in value.split(',') {
            let (provider, secret) = entry
                .split_once('=')
                .map(|(provider, secret)| (provider.trim(), secret.trim()))
                .filter(|(provider, secret)| !provider.is_empty() && !secret.is_empty())
                .ok_or_else(|| "each entry must be provider=secret".to_owned())?;
            secrets.insert(provider.to_owned(), secret.as_bytes().to_vec());
        }
        Ok(Self(secrets))
    }

    /// One provider's secret.
    pub fn single(provider: &str, secret: &[u8]) -> Self {
        Self(HashMap::from([(provider.to_owned(), secret.to_vec())]))
    }

    /// Checks a request of `provider`: 404 for a provider without a secret, 401 for a missing
    /// or wrong signature.
    pub fn verify(
        &self,
        provider: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), ApiError> {
        let secret = self
            .0
            .get(provider)
            .ok_or_else(|| ApiError::NotFound("webhook provider".to_owned()))?;
        let expected = signature
            .and_then(|value| value.trim().strip_prefix(SIGNATURE_PREFIX))
            .and_then(decode_hex)
            .ok_or(ApiError::Unauthorized)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| ApiError::Internal)?;
        mac.update(body);
        mac.verify_slice(&expected)
            .map_err(|_| ApiError::Unauthorized)
    }
}

/// The signature header value for `body` (for providers' test tools and this crate's tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{SIGNATURE_PREFIX}{hex}")
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_signed_body_when_verified_then_accepted_and_a_changed_body_is_not() {
        let secrets = WebhookSecrets::parse("whsec-test").expect("valid");
        let signature = sign(b"whsec-test", b"{\"a\":1}");
        assert_eq!(
            secrets.verify("sandbox", Some(&signature), b"{\"a\":1}"),
            Ok(())
        );
        assert_eq!(
            secrets.verify("sandbox", Some(&signature), b"{\"a\":2}"),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(
            secrets.verify("sandbox", None, b"{}"),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(
            secrets.verify("sandbox", Some("sha256=zz"), b"{}"),
            Err(ApiError::Unauthorized)
        );
    }

    #[test]
    fn given_a_provider_list_when_parsed_then_unknown_providers_are_not_found() {
        let secrets = WebhookSecrets::parse("stripe=s1, adyen=s2").expect("valid");
        assert!(matches!(
            secrets.verify("other", None, b""),
            Err(ApiError::NotFound(_))
        ));
        assert!(WebhookSecrets::parse("stripe=").is_err());
        assert!(!format!("{secrets:?}").contains("s1"));
    }
}
