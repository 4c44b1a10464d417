//! Customer analytics: segments, churn, lifetime value and
//! recommendations, trained from the customers' orders in the relational
//! engine and stored as one model document.
//!
//! The analytics run on the data's own clock: `as_of` is the time of the
//! latest order, not the wall clock, so the same data gives the same
//! model and report on every run and every backend (docs/analytics.md).
//!
//! What MUST hold:
//!
//! - Every result is a function of the stored data and the configuration
//!   alone: no randomness, no wall clock (except the model's
//!   `trained_at`), no hash-map iteration order (maps are `BTreeMap`s,
//!   rankings break ties by id).
//! - Reads are set queries ([`Customers`]): a fixed number of statements
//!   whatever the number of customers.
//! - [`Analytics::train`] replaces the one model document
//!   (`analytics_models`, `_id: "current"`) whole; [`Analytics::load`]
//!   reads it back equal.
//! - No data yet (no order) is [`ErrorKind::NotFound`], as is scoring
//!   without a stored model or for an unknown user.
//!
//! # Layout
//!
//! - [`churn`]: RFM features, the logistic regression, AUC, the split.
//! - [`ltv`]: the lifetime value formula.
//! - [`segments`]: `DORMANT`, `AT_RISK`, `VIP`, `ACTIVE` and their order.
//! - [`recommend`]: co-purchases, popularity, precision@k.
//! - [`report`]: [`AnalyticsReport`], as tables and JSON.
//! - [`population`]: the seeded synthetic customers and their events,
//!   with the signal the models should find.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bson::doc;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::AnalyticsConfig;
use crate::engines::DocumentStore;
use crate::engines::document::DocumentStoreExt;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::platform::customers::{CustomerHistory, Customers, Purchase};

pub mod alerts;
pub mod churn;
pub mod events;
pub mod ltv;
pub mod onboarding;
pub mod personalize;
pub mod population;
pub mod recommend;
pub mod report;
pub mod scenario;
pub mod segments;

pub use churn::{ChurnModel, Rfm};
pub use recommend::CoPurchase;
pub use report::AnalyticsReport;
pub use segments::{Segment, Thresholds};

/// The collection of the stored model.
pub const MODELS: &str = "analytics_models";

/// The `_id` of the current model.
pub const CURRENT: &str = "current";

/// Recommendations per customer.
pub const RECOMMENDATIONS: usize = 10;

/// A trained model: everything [`Analytics::score_user`] needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsModel {
    /// The data's instant it was trained at (the latest order's time).
    pub as_of: DateTime<Utc>,
    /// When it was trained (wall clock).
    pub trained_at: DateTime<Utc>,
    /// The churn model.
    pub churn: ChurnModel,
    /// The churn label window, in days.
    pub churn_window_days: f64,
    /// The thresholds of the segments and the lifetime value.
    pub thresholds: Thresholds,
    /// Each product's most co-purchased products.
    pub co_purchases: BTreeMap<String, Vec<CoPurchase>>,
    /// Each segment's most bought products (by its name, e.g. `VIP`).
    pub popular_by_segment: BTreeMap<String, Vec<String>>,
    /// The most bought products overall.
    pub popular: Vec<String>,
}

/// What the model says of one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserScores {
    /// The customer.
    pub user_id: String,
    /// Their segment.
    pub segment: Segment,
    /// The probability they buy nothing in the next churn window.
    pub churn_probability: f64,
    /// Their lifetime value.
    pub ltv: f64,
    /// Products to recommend, best first.
    pub recommendations: Vec<String>,
}

/// A model with the report of its training.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The model.
    pub model: AnalyticsModel,
    /// How it was trained and how well it does.
    pub report: AnalyticsReport,
}

/// The analytics service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Analytics {
    customers: Customers,
    documents: Arc<dyn DocumentStore>,
    config: AnalyticsConfig,
}

/// A customer's features, churn probability and lifetime value at `as_of`.
fn standing(
    history: &CustomerHistory,
    as_of: DateTime<Utc>,
    churn: &ChurnModel,
    thresholds: &Thresholds,
) -> (Rfm, f64, f64) {
    let rfm = Rfm::of(history, as_of);
    let p = churn.probability(&rfm);
    let tenure = churn::days_between(history.signed_up_at, as_of);
    let ltv = ltv::lifetime_value(
        churn::cents(history.revenue),
        history.orders,
        tenure,
        thresholds.lifetime_years,
    );
    (rfm, p, ltv)
}

fn baskets<'a>(
    purchases: impl IntoIterator<Item = &'a Purchase>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut baskets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in purchases {
        baskets
            .entry(p.user_id.clone())
            .or_default()
            .insert(p.product_id.clone());
    }
    baskets
}

impl Analytics {
    /// The service over the platform's customers and document engine.
    pub fn new(platform: &Platform, config: AnalyticsConfig) -> Analytics {
        Analytics {
            customers: platform.customers().clone(),
            documents: platform.documents(),
            config,
        }
    }

    async fn as_of(&self) -> Result<DateTime<Utc>> {
        self.customers.latest_order_at().await?.ok_or_else(|| {
            Error::not_found(
                "no orders yet: the analytics need customers with orders \
                 (`strata seed --users N --events M`, or record orders)",
            )
        })
    }

    /// Trains every model from the orders up to the latest one and
    /// evaluates it, without storing anything. NotFound when there is no
    /// order yet.
    pub async fn evaluate(&self) -> Result<Evaluation> {
        let as_of = self.as_of().await?;
        let window = chrono::Duration::from_std(self.config.churn_window)
            .map_err(|e| Error::invalid(format!("analytics.churn_window: {e}")))?;
        let cutoff = as_of - window;
        let now = self.customers.customer_history(as_of).await?;
        let before = self.customers.customer_history(cutoff).await?;
        let orders_now: BTreeMap<&str, i64> =
            now.iter().map(|h| (h.user_id.as_str(), h.orders)).collect();

        // Churn: features at the cutoff, labelled by the window after it.
        let (mut train_x, mut train_y, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for h in &before {
            let rfm = Rfm::of(h, cutoff);
            let churned = orders_now.get(h.user_id.as_str()).copied().unwrap_or(0) <= h.orders;
            if churn::held_out(&h.user_id, self.config.holdout_percent) {
                test.push((rfm, churned));
            } else {
                train_x.push(rfm);
                train_y.push(churned);
            }
        }
        let churn_model = ChurnModel::fit(&train_x, &train_y);
        let labels: Vec<bool> = test.iter().map(|(_, y)| *y).collect();
        let scores: Vec<f64> = test
            .iter()
            .map(|(x, _)| churn_model.probability(x))
            .collect();
        let recency: Vec<f64> = test.iter().map(|(x, _)| x.recency_days).collect();
        let churn_eval = report::ChurnEvaluation {
            cutoff,
            window_days: churn::days_between(cutoff, as_of),
            train_users: train_x.len() as i64,
            test_users: test.len() as i64,
            test_churn_rate: if test.is_empty() {
                0.0
            } else {
                labels.iter().filter(|&&y| y).count() as f64 / test.len() as f64
            },
            auc: churn::auc(&scores, &labels),
            recency_auc: churn::auc(&recency, &labels),
            weights: churn_model.weights.clone(),
        };

        // Every customer's standing at as_of, then the VIP cutoff.
        let mut thresholds = Thresholds {
            dormant_after_days: self.config.dormant_after.as_secs_f64() / 86_400.0,
            at_risk_probability: self.config.at_risk_probability,
            vip_ltv_cutoff: f64::INFINITY,
            lifetime_years: self.config.lifetime_years,
        };
        let computed: Vec<(Rfm, f64, f64)> = now
            .iter()
            .map(|h| standing(h, as_of, &churn_model, &thresholds))
            .collect();
        let ltvs: Vec<f64> = computed.iter().map(|(_, _, v)| *v).collect();
        thresholds.vip_ltv_cutoff =
            segments::vip_cutoff(&ltvs, self.config.vip_fraction, self.config.vip_ltv);
        let mut segment_of: BTreeMap<&str, Segment> = BTreeMap::new();
        let mut lines: BTreeMap<Segment, (i64, f64)> =
            Segment::ALL.iter().map(|s| (*s, (0, 0.0))).collect();
        for (h, (rfm, p, ltv)) in now.iter().zip(&computed) {
            let segment = segments::classify(rfm.recency_days, *p, *ltv, &thresholds);
            segment_of.insert(&h.user_id, segment);
            let line = lines.entry(segment).or_default();
            line.0 += 1;
            line.1 += churn::cents(h.revenue);
        }

        // Recommendations: co-purchases and popularity from every order,
        // evaluated on each customer's last purchase, held out.
        let purchases = self.customers.purchases(as_of, None).await?;
        let all = baskets(&purchases);
        let co = recommend::co_purchases(&all, self.config.co_purchases_top);
        let popular = recommend::popular(all.values(), self.config.popular_top);
        let popular_by_segment = self.popular_by_segment(&all, &segment_of);
        let recs_eval = self.evaluate_recommendations(&purchases, &segment_of);

        let revenue: f64 = now.iter().map(|h| churn::cents(h.revenue)).sum();
        let report = AnalyticsReport {
            as_of,
            users: now.len() as i64,
            orders: now.iter().map(|h| h.orders).sum(),
            revenue: churn::cents(revenue),
            segments: lines
                .into_iter()
                .map(|(segment, (users, revenue))| report::SegmentLine {
                    segment,
                    users,
                    revenue: churn::cents(revenue),
                })
                .collect(),
            countries: self.customers.revenue_by_country().await?,
            churn: churn_eval,
            recommendations: recs_eval,
        };
        let model = AnalyticsModel {
            as_of,
            trained_at: crate::platform::now(),
            churn_window_days: report.churn.window_days,
            churn: churn_model,
            thresholds,
            co_purchases: co,
            popular_by_segment,
            popular,
        };
        Ok(Evaluation { model, report })
    }

    fn popular_by_segment(
        &self,
        baskets: &BTreeMap<String, BTreeSet<String>>,
        segment_of: &BTreeMap<&str, Segment>,
    ) -> BTreeMap<String, Vec<String>> {
        Segment::ALL
            .iter()
            .map(|segment| {
                let members = baskets
                    .iter()
                    .filter(|(user, _)| segment_of.get(user.as_str()) == Some(segment))
                    .map(|(_, basket)| basket);
                (
                    segment.as_str().to_owned(),
                    recommend::popular(members, self.config.popular_top),
                )
            })
            .collect()
    }

    /// Precision@10 of co-purchases and of popularity on each customer's
    /// last purchase (ordered by time then order id), for the customers
    /// whose last purchase was of a product new to them; both trained on
    /// every other purchase.
    fn evaluate_recommendations(
        &self,
        purchases: &[Purchase],
        segment_of: &BTreeMap<&str, Segment>,
    ) -> report::RecommendationEvaluation {
        // `purchases` is ordered by user, time, id: a user's last is the
        // last of their run.
        let mut last: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, p) in purchases.iter().enumerate() {
            last.insert(&p.user_id, i);
        }
        let held: BTreeSet<usize> = last.values().copied().collect();
        let training = baskets(
            purchases
                .iter()
                .enumerate()
                .filter(|(i, _)| !held.contains(i))
                .map(|(_, p)| p),
        );
        let co = recommend::co_purchases(&training, self.config.co_purchases_top);
        let popular_all = recommend::popular(training.values(), usize::MAX);
        let by_segment = self.popular_by_segment(&training, segment_of);
        let empty = BTreeSet::new();
        let (mut users, mut precision, mut baseline) = (0i64, 0.0, 0.0);
        for (user, &i) in &last {
            let bought = training.get(*user).unwrap_or(&empty);
            let target = &purchases[i].product_id;
            if bought.is_empty() || bought.contains(target) {
                continue;
            }
            let held_out: BTreeSet<String> = [target.clone()].into();
            let fallback = segment_of
                .get(user)
                .and_then(|s| by_segment.get(s.as_str()))
                .cloned()
                .unwrap_or_default();
            let recs = recommend::recommend(&co, bought, &fallback, RECOMMENDATIONS);
            let pop = recommend::recommend(&BTreeMap::new(), bought, &popular_all, RECOMMENDATIONS);
            users += 1;
            precision += recommend::precision_at(RECOMMENDATIONS, &recs, &held_out);
            baseline += recommend::precision_at(RECOMMENDATIONS, &pop, &held_out);
        }
        let n = users.max(1) as f64;
        report::RecommendationEvaluation {
            k: RECOMMENDATIONS as i64,
            users,
            precision: precision / n,
            popularity_precision: baseline / n,
        }
    }

    /// [`Analytics::evaluate`], then stores the model as the one document
    /// `analytics_models/current`, replacing the previous one.
    pub async fn train(&self) -> Result<Evaluation> {
        let evaluation = self.evaluate().await?;
        let mut document = bson::serialize_to_document(&evaluation.model)
            .map_err(|e| Error::internal(format!("cannot encode the analytics model: {e}")))?;
        document.insert("_id", CURRENT);
        self.documents
            .replace_one(MODELS, doc! {"_id": CURRENT}, document, true)
            .await?;
        Ok(evaluation)
    }

    /// The stored model, `None` before the first [`Analytics::train`].
    pub async fn load(&self) -> Result<Option<AnalyticsModel>> {
        let Some(mut document) = self
            .documents
            .find_one(MODELS, doc! {"_id": CURRENT}, Default::default())
            .await?
        else {
            return Ok(None);
        };
        document.remove("_id");
        bson::deserialize_from_document(document)
            .map(Some)
            .map_err(|e| Error::internal(format!("cannot decode the analytics model: {e}")))
    }

    /// One customer's segment, churn probability, lifetime value and
    /// recommendations, from the stored model and their orders up to the
    /// latest order's time. NotFound without a stored model or for an
    /// unknown user.
    pub async fn score_user(&self, user_id: &str) -> Result<UserScores> {
        let model = self.load().await?.ok_or_else(|| {
            Error::not_found("no analytics model yet: run `strata analytics train`")
        })?;
        let as_of = self.as_of().await?.max(model.as_of);
        let history = self
            .customers
            .user_history(user_id, as_of)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("no user {user_id:?}")).with_field("user_id")
            })?;
        let (rfm, p, ltv) = standing(&history, as_of, &model.churn, &model.thresholds);
        let segment = segments::classify(rfm.recency_days, p, ltv, &model.thresholds);
        let purchases = self.customers.purchases(as_of, Some(user_id)).await?;
        let bought: BTreeSet<String> = purchases.into_iter().map(|p| p.product_id).collect();
        let fallback = model
            .popular_by_segment
            .get(segment.as_str())
            .unwrap_or(&model.popular);
        let recommendations =
            recommend::recommend(&model.co_purchases, &bought, fallback, RECOMMENDATIONS);
        Ok(UserScores {
            user_id: user_id.to_owned(),
            segment,
            churn_probability: p,
            ltv,
            recommendations,
        })
    }
}
