//! The scenario's three pipelines assembled: onboarding, real-time
//! analytics and personalization, with their alerts.

use crate::config::AnalyticsConfig;
use crate::error::Result;
use crate::pipelines::{Pipelines, QueueSpec, Worker};
use crate::platform::Platform;
use crate::serving::Serving;

use super::Analytics;
use super::alerts::{self, AlertThresholds, Alerts, AlertsHandler};
use super::events::{self, EventsHandler};
use super::onboarding::{self, OnboardingHandler};
use super::personalize::{self, Personalization, PredictionHandler};

/// The services behind the scenario's pipelines. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Segments, churn, lifetime value, recommendations.
    pub analytics: Analytics,
    /// Recommendations served through the cache.
    pub personalization: Personalization,
    /// Error-rate and queue-depth alerts.
    pub alerts: Alerts,
    config: AnalyticsConfig,
}

impl Scenario {
    /// The services over the platform, serving and pipelines.
    pub fn open(
        platform: &Platform,
        pipelines: &Pipelines,
        config: &AnalyticsConfig,
    ) -> Result<Scenario> {
        let analytics = Analytics::new(platform, *config);
        let personalization = Personalization::new(platform, pipelines, &analytics)?;
        let alerts = Alerts::new(
            pipelines,
            platform.kv(),
            AlertThresholds {
                error_rate: config.alert_error_rate,
                min_events: config.alert_min_events,
                queue_depth: config.alert_queue_depth,
                window: config.alert_window,
            },
        );
        Ok(Scenario {
            analytics,
            personalization,
            alerts,
            config: *config,
        })
    }

    /// The queues of the scenario's consumers.
    pub fn queues() -> Vec<QueueSpec> {
        vec![
            onboarding::queue(),
            events::queue(),
            personalize::queue(),
            alerts::queue(),
        ]
    }

    /// Registers the scenario's consumers with `worker`.
    pub async fn register(
        &self,
        platform: &Platform,
        serving: &Serving,
        pipelines: &Pipelines,
        worker: Worker,
    ) -> Result<Worker> {
        Ok(worker
            .handle(
                onboarding::queue(),
                OnboardingHandler::new(platform, serving, pipelines, &self.personalization).await?,
            )
            .handle(
                events::queue(),
                EventsHandler::new(platform, self.alerts.clone(), self.config.event_retention)
                    .await?,
            )
            .handle(
                personalize::queue(),
                PredictionHandler::new(&self.personalization),
            )
            .handle(
                alerts::queue(),
                AlertsHandler::new(platform.documents()).await?,
            ))
    }
}
