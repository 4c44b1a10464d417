//! User onboarding: `POST /v1/users` publishes a signup (`user.signup`);
//! its consumer validates it (invalid data is dead-lettered with the
//! reason, to be fixed and replayed), resolves the city to its country
//! (relational `cities → countries`), stores the user and the address in
//! one SQL transaction, writes a profile document, computes the initial
//! features into the feature store (view `user_profile`), caches the
//! profile, and queues the first prediction task.
//!
//! Every step is idempotent (the user's id keys each of them), so a
//! signup delivered twice, or replayed, onboards the user once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bson::doc;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::cache::TieredCache;
use crate::engines::DocumentStore;
use crate::error::{Error, ErrorKind, Result};
use crate::pipelines::{Handler, Outcome, Pipelines, Priority, QueueSpec, Task};
use crate::platform::Platform;
use crate::platform::customers::{Customers, NewUser, Profile};
use crate::serving::Serving;
use crate::serving::features::{FeatureSpec, FeatureType, FeatureView};

use super::personalize::{self, Personalization};

/// The collection of profile documents.
pub const PROFILES: &str = "profiles";

/// The feature view of the initial features.
pub const VIEW: &str = "user_profile";

/// The queue of the onboarding consumer.
pub fn queue() -> QueueSpec {
    QueueSpec::events("onboarding", "user.signup")
}

/// A signup as a client sends it. Only its shape is checked on the way
/// in; the consumer checks the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Signup {
    /// The user's id (1 to 64 of `A-Z a-z 0-9 . _ -`); generated when
    /// absent. Sending the same signup twice onboards the user once.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$", max_length = 64)]
    pub id: Option<String>,
    /// Email address.
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    /// Display name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// The city they live in (one strata knows; any case).
    #[schema(min_length = 1, max_length = 100)]
    pub city: String,
    /// Where they came from, e.g. `ads`; `organic` when absent.
    #[schema(min_length = 1, max_length = 64)]
    pub source: Option<String>,
}

/// A signup on its way to the consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignupMessage {
    /// The user's id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// City.
    pub city: String,
    /// Source.
    pub source: String,
    /// When it was received.
    pub at: DateTime<Utc>,
}

/// Whether `id` is a user id: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn is_user_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Publishes a signup; returns the user's id once the broker has it.
pub async fn submit(pipelines: &Pipelines, signup: Signup) -> Result<String> {
    let id = signup
        .id
        .unwrap_or_else(|| format!("u-{}", uuid::Uuid::now_v7().simple()));
    if !is_user_id(&id) {
        return Err(Error::invalid(format!(
            "`{id}` is not a user id (1 to 64 of A-Z a-z 0-9 . _ -)"
        ))
        .with_field("id"));
    }
    for (field, value, max) in [
        ("email", &signup.email, 254),
        ("name", &signup.name, 200),
        ("city", &signup.city, 100),
    ] {
        if value.is_empty() || value.chars().count() > max {
            return Err(
                Error::invalid(format!("`{field}` must be 1 to {max} characters"))
                    .with_field(field),
            );
        }
    }
    let source = signup.source.unwrap_or_else(|| "organic".into());
    if source.is_empty() || source.chars().count() > 64 {
        return Err(Error::invalid("`source` must be 1 to 64 characters").with_field("source"));
    }
    let message = SignupMessage {
        id: id.clone(),
        email: signup.email,
        name: signup.name,
        city: signup.city,
        source,
        at: crate::platform::now(),
    };
    let payload = serde_json::to_value(&message).map_err(|e| Error::internal(e.to_string()))?;
    pipelines
        .publish_events(vec![(
            "user.signup".into(),
            payload,
            Some(format!("signup-{id}")),
        )])
        .await
        .pop()
        .unwrap_or_else(|| Err(Error::internal("no publish result")))?;
    Ok(id)
}

/// The view of the initial features: declared (or updated) at start.
pub fn view() -> FeatureView {
    let f = |name: &str, kind| FeatureSpec {
        name: name.into(),
        kind,
    };
    FeatureView {
        name: VIEW.into(),
        entity: "user".into(),
        features: vec![
            f("country", FeatureType::String),
            f("source", FeatureType::String),
            f("orders", FeatureType::Int),
            f("revenue", FeatureType::Float),
            f("days_since_signup", FeatureType::Int),
        ],
        ttl: Duration::from_secs(7 * 86_400),
        description: Some("A user's profile features, written at onboarding".into()),
    }
}

/// The consumer of `user.signup`.
#[derive(Clone)]
pub struct OnboardingHandler {
    customers: Customers,
    documents: Arc<dyn DocumentStore>,
    serving: Serving,
    pipelines: Pipelines,
    profiles: TieredCache<Profile>,
    personalization: Personalization,
}

impl std::fmt::Debug for OnboardingHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnboardingHandler").finish_non_exhaustive()
    }
}

impl OnboardingHandler {
    /// The handler; declares the feature view.
    pub async fn new(
        platform: &Platform,
        serving: &Serving,
        pipelines: &Pipelines,
        personalization: &Personalization,
    ) -> Result<Self> {
        serving.features().put_view(view()).await?;
        Ok(OnboardingHandler {
            customers: platform.customers().clone(),
            documents: platform.documents(),
            serving: serving.clone(),
            pipelines: pipelines.clone(),
            profiles: personalization.profiles().clone(),
            personalization: personalization.clone(),
        })
    }

    async fn onboard(&self, signup: &SignupMessage) -> Result<()> {
        let email = signup.email.trim();
        check_email(email)?;
        let Some(_city) = self.customers.resolve_city(&signup.city).await? else {
            return Err(Error::invalid(format!(
                "city `{}` is unknown; strata knows the cities of its reference list",
                signup.city
            ))
            .with_field("city"));
        };
        let created = self
            .customers
            .create_user(NewUser {
                id: signup.id.clone(),
                email: email.to_owned(),
                name: signup.name.trim().to_owned(),
                city: signup.city.clone(),
                source: signup.source.clone(),
                signed_up_at: signup.at,
            })
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => {
                // The same user onboarded by an earlier delivery is done.
                let same = self
                    .customers
                    .profile(&signup.id)
                    .await?
                    .is_some_and(|p| p.email == email.to_lowercase());
                if !same {
                    return Err(Error::invalid(format!(
                        "user `{}` or email `{email}` belongs to another user: {}",
                        signup.id,
                        e.message()
                    ))
                    .with_field("email"));
                }
            }
            Err(e) => return Err(e),
        }
        let profile = self.customers.profile(&signup.id).await?.ok_or_else(|| {
            Error::internal(format!(
                "user {} is missing right after it was stored",
                signup.id
            ))
        })?;
        let document = doc! {
            "_id": &profile.id,
            "email": &profile.email,
            "name": &profile.name,
            "source": &profile.source,
            "city": &profile.city.city,
            "country": &profile.city.country,
            "country_code": &profile.city.country_code,
            "signed_up_at": bson::DateTime::from_millis(profile.signed_up_at.timestamp_millis()),
            "onboarded_at": bson::DateTime::from_millis(crate::platform::now().timestamp_millis()),
        };
        self.documents
            .replace_one(PROFILES, doc! {"_id": &profile.id}, document, true)
            .await?;
        let days = (crate::platform::now() - profile.signed_up_at)
            .num_days()
            .max(0);
        let values: BTreeMap<String, serde_json::Value> = [
            ("country", json!(profile.city.country_code)),
            ("source", json!(profile.source)),
            ("orders", json!(profile.orders)),
            ("revenue", json!(profile.revenue)),
            ("days_since_signup", json!(days)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        self.serving
            .write_features(VIEW, &profile.id, &values, Some(profile.signed_up_at))
            .await?;
        self.profiles.set(&profile.id, profile.clone(), &[]).await?;
        // A "no such user" remembered before the signup is forgotten.
        self.personalization.forget(&profile.id).await;
        personalize::queue_prediction(&self.pipelines, &profile.id, "signup", Priority::Normal)
            .await?;
        Ok(())
    }
}

/// A plausible email address: one `@`, something before it, a dotted
/// domain after it, no spaces, at most 254 characters.
pub fn check_email(email: &str) -> Result<()> {
    let bad =
        || Err(Error::invalid(format!("`{email}` is not an email address")).with_field("email"));
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad();
    }
    let Some((local, domain)) = email.split_once('@') else {
        return bad();
    };
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return bad();
    }
    Ok(())
}

#[async_trait]
impl Handler for OnboardingHandler {
    async fn handle(&self, task: Task) -> Outcome {
        let signup: SignupMessage = match task.json() {
            Ok(s) => s,
            Err(e) => return Outcome::invalid(e),
        };
        Outcome::of(self.onboard(&signup).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_for_their_shape() {
        for good in ["a@b.co", "first.last+tag@mail.example.org"] {
            check_email(good).unwrap();
        }
        for bad in [
            "", "nobody", "a@b", "@b.co", "a@@b.co", "a b@c.de", "a@.b.co", "a@b..co", "a@b.co.",
        ] {
            let err = check_email(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }
}
