//! A seeded synthetic customer population with a planted signal, for
//! `strata seed --users N --events M`.
//!
//! Everything is generated from the seed alone (ChaCha8): the same seed,
//! `N` and `M` give the same users, orders and events on every machine and
//! backend. Events end at a fixed instant, [`reference_end`], never the
//! wall clock, so the analytics (which run on the data's own clock, the
//! latest order) give the same report on every run.
//!
//! The planted signal (docs/analytics.md):
//!
//! - Products come in categories; each customer has a latent preferred
//!   category that most of their purchases (85%) and views (70%) fall in,
//!   so co-purchases find the categories. Within a category a few
//!   products are much more popular than the rest.
//! - Each customer has a latent engagement λ (a log-normal rate of visits
//!   and purchases, `exp(N(0, 1))`). Some disengage at a random time in
//!   their second month to fourteenth month, with a probability that
//!   falls with engagement (`0.5 - 0.6 ln λ`, within 2% to 95%); from then
//!   on their rate decays exponentially (a 5-day time constant), so they
//!   buy nothing more: they churn. Recency sees a customer who has gone
//!   quiet; the purchase rate (frequency) also says who is likely to go,
//!   and who is quiet only by chance, so the full model ranks churners
//!   better than recency alone.
//! - Event times come from each customer's rate over the year before
//!   [`reference_end`]; the `M` events are shared out in proportion to
//!   each customer's expected activity. 40% of events are views, 30%
//!   clicks, 30% purchases; each purchase is also an order.

use bson::{Bson, Document, doc};
use chrono::{DateTime, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::engines::document::FindOptions;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::platform::customers::{NewUser, Order};

use super::churn::stable_hash;

/// The collection of raw events.
pub const EVENTS: &str = "events";

/// The largest `--users`.
pub const MAX_USERS: u64 = 1_000_000;

/// The largest `--events`.
pub const MAX_EVENTS: u64 = 20_000_000;

/// Events generated, written and reported per batch.
const BATCH: usize = 2000;

/// Product categories.
pub const CATEGORIES: [&str; 12] = [
    "books", "games", "music", "garden", "kitchen", "sports", "toys", "beauty", "tools", "pets",
    "office", "travel",
];

/// Products per category.
pub const PRODUCTS_PER_CATEGORY: u64 = 25;

const CITIES: [&str; 25] = [
    "New York",
    "San Francisco",
    "Chicago",
    "Austin",
    "London",
    "Manchester",
    "Edinburgh",
    "Berlin",
    "Munich",
    "Hamburg",
    "Paris",
    "Lyon",
    "Madrid",
    "Barcelona",
    "Rome",
    "Milan",
    "Amsterdam",
    "Rotterdam",
    "Tokyo",
    "Osaka",
    "Sao Paulo",
    "Rio de Janeiro",
    "Toronto",
    "Vancouver",
    "Montreal",
];

const SOURCES: [&str; 4] = ["organic", "ads", "referral", "email"];

/// Seconds in a day.
const DAY: i64 = 86_400;

/// Time constant of a disengaging customer's decaying rate, in days.
const DECAY_DAYS: f64 = 5.0;

/// The instant every generated event is before: 2026-12-01T00:00:00Z.
pub fn reference_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// What a seeding of the population added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PopulationReport {
    /// Users asked for.
    pub users: u64,
    /// Users written by this call (the others were there).
    pub users_added: u64,
    /// Events asked for.
    pub events: u64,
    /// Events written by this call.
    pub events_added: u64,
    /// Orders (purchase events) written by this call.
    pub orders_added: u64,
}

/// One customer's latent traits.
struct Latent {
    index: u64,
    category: usize,
    /// Events per day while engaged.
    rate: f64,
    signed_up: i64,
    /// When they start to disengage (seconds), `None` for never.
    decline: Option<i64>,
}

impl Latent {
    fn user_id(&self) -> String {
        user_id(self.index)
    }

    /// Expected events over the year (the integral of the rate).
    fn mass(&self, end: i64) -> f64 {
        let days = |s: i64| s as f64 / DAY as f64;
        match self.decline {
            Some(d) if d < end => {
                self.rate * days(d - self.signed_up)
                    + self.rate * DECAY_DAYS * (1.0 - (-days(end - d) / DECAY_DAYS).exp())
            }
            _ => self.rate * days(end - self.signed_up),
        }
    }
}

/// The id of the `index`th synthetic user (from 1): `u-000001`.
pub fn user_id(index: u64) -> String {
    format!("u-{index:06}")
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn latents(users: u64, seed: u64, end: i64) -> Vec<Latent> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let year = 365 * DAY;
    (1..=users)
        .map(|index| {
            let category = rng.random_range(0..CATEGORIES.len());
            let rate = normal(&mut rng).exp();
            let signed_up = end - year + rng.random_range(0..180 * DAY);
            // The less engaged, the likelier to drift away.
            let p_decline = (0.5 - 0.6 * rate.ln()).clamp(0.02, 0.95);
            let decline = rng
                .random_bool(p_decline)
                .then(|| signed_up + rng.random_range(30 * DAY..420 * DAY));
            Latent {
                index,
                category,
                rate,
                signed_up,
                decline,
            }
        })
        .collect()
}

/// `total` shared out in proportion to `weights`: floors, then the
/// remainder one each to the largest fractional parts (ties by position).
fn apportion(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 || weights.is_empty() {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut counts: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let given: u64 = counts.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let fa = exact[a] - exact[a].floor();
        let fb = exact[b] - exact[b].floor();
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &i in order.iter().take(total.saturating_sub(given) as usize) {
        counts[i] += 1;
    }
    counts
}

/// The product id of product `index` of `category`: `books-07`.
pub fn product_id(category: usize, index: u64) -> String {
    format!("{}-{index:02}", CATEGORIES[category])
}

/// A product's price, in cents, fixed by its id: 5.00 to 199.99.
fn price(product: &str) -> f64 {
    (500 + stable_hash(product) % 19_500) as f64 / 100.0
}

struct Event {
    id: String,
    user_id: String,
    kind: &'static str,
    category: usize,
    product: String,
    at: DateTime<Utc>,
}

/// One customer's `n` events, by time.
fn events_of(latent: &Latent, n: u64, seed: u64, end: i64) -> Vec<Event> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ latent.index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut times = Vec::with_capacity(n as usize);
    while (times.len() as u64) < n {
        let t = rng.random_range(latent.signed_up..end);
        let keep = match latent.decline {
            Some(d) if t > d => {
                let days = (t - d) as f64 / DAY as f64;
                rng.random::<f64>() < (-days / DECAY_DAYS).exp()
            }
            _ => true,
        };
        if keep {
            times.push(t);
        }
    }
    times.sort_unstable();
    times
        .into_iter()
        .enumerate()
        .map(|(k, t)| {
            let roll: f64 = rng.random();
            let kind = if roll < 0.4 {
                "view"
            } else if roll < 0.7 {
                "click"
            } else {
                "purchase"
            };
            let loyal = if kind == "purchase" { 0.85 } else { 0.7 };
            let category = if rng.random_bool(loyal) {
                latent.category
            } else {
                rng.random_range(0..CATEGORIES.len())
            };
            // A few products of each category are far more popular.
            let u: f64 = rng.random();
            let index = ((u * u) * PRODUCTS_PER_CATEGORY as f64) as u64;
            Event {
                id: format!("e{seed}-{:06}-{k:05}", latent.index),
                user_id: latent.user_id(),
                kind,
                category,
                product: product_id(category, index.min(PRODUCTS_PER_CATEGORY - 1)),
                at: Utc.timestamp_opt(t, 0).single().unwrap_or_default(),
            }
        })
        .collect()
}

/// Checks `--users` and `--events` against their bounds.
pub fn check_bounds(users: u64, events: u64) -> Result<()> {
    if users > MAX_USERS {
        return Err(
            Error::invalid(format!("--users must be at most {MAX_USERS}, got {users}"))
                .with_field("users"),
        );
    }
    if events > MAX_EVENTS {
        return Err(Error::invalid(format!(
            "--events must be at most {MAX_EVENTS}, got {events}"
        ))
        .with_field("events"));
    }
    if events > 0 && users == 0 {
        return Err(Error::invalid("--events needs --users above 0").with_field("users"));
    }
    Ok(())
}

/// Makes sure users `u-000001` to `u-N` exist with addresses, and writes
/// the `events` generated from `seed`: each purchase as an order (insert
/// or ignore by event id) and every event as a document of `events`
/// (those already there are skipped), in batches. `progress` hears the
/// number of events written so far. Running it again adds nothing.
pub async fn seed_population(
    platform: &Platform,
    users: u64,
    events: u64,
    seed: u64,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<PopulationReport> {
    check_bounds(users, events)?;
    let end = reference_end().timestamp();
    let latents = latents(users, seed, end);
    let customers = platform.customers();
    let new_users: Vec<NewUser> = latents
        .iter()
        .map(|l| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(l.index));
            NewUser {
                id: l.user_id(),
                email: format!("{}@example.com", l.user_id()),
                name: format!("Customer {}", l.index),
                city: CITIES[rng.random_range(0..CITIES.len())].to_owned(),
                source: SOURCES[rng.random_range(0..SOURCES.len())].to_owned(),
                signed_up_at: Utc
                    .timestamp_opt(l.signed_up, 0)
                    .single()
                    .unwrap_or_default(),
            }
        })
        .collect();
    let users_added = customers.import_users(&new_users).await?;

    let weights: Vec<f64> = latents.iter().map(|l| l.mass(end)).collect();
    let counts = apportion(events, &weights);
    let documents = platform.documents();
    let (mut events_added, mut orders_added, mut done) = (0, 0, 0);
    let mut pending: Vec<Event> = Vec::with_capacity(BATCH);
    for (latent, n) in latents.iter().zip(counts) {
        pending.extend(events_of(latent, n, seed, end));
        if pending.len() >= BATCH || latent.index == users {
            let batch = std::mem::take(&mut pending);
            let (e, o) = write_batch(platform, documents.as_ref(), &batch).await?;
            events_added += e;
            orders_added += o;
            done += batch.len() as u64;
            progress(done);
        }
    }
    Ok(PopulationReport {
        users,
        users_added,
        events,
        events_added,
        orders_added,
    })
}

async fn write_batch(
    platform: &Platform,
    documents: &dyn crate::engines::DocumentStore,
    batch: &[Event],
) -> Result<(u64, u64)> {
    if batch.is_empty() {
        return Ok((0, 0));
    }
    let orders: Vec<Order> = batch
        .iter()
        .filter(|e| e.kind == "purchase")
        .map(|e| Order {
            id: e.id.clone(),
            user_id: e.user_id.clone(),
            product_id: e.product.clone(),
            category: CATEGORIES[e.category].to_owned(),
            amount: price(&e.product),
            ordered_at: e.at,
        })
        .collect();
    let orders_added = platform.customers().record_orders(&orders).await?;
    // Events already stored (an earlier, perhaps interrupted, run) are
    // left as they are.
    let ids: Vec<Bson> = batch.iter().map(|e| Bson::String(e.id.clone())).collect();
    let present: std::collections::BTreeSet<String> = documents
        .find(
            EVENTS,
            doc! {"_id": {"$in": ids}},
            FindOptions {
                projection: Some(doc! {"_id": 1}),
                ..Default::default()
            },
        )
        .await?
        .iter()
        .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
        .collect();
    let fresh: Vec<Document> = batch
        .iter()
        .filter(|e| !present.contains(&e.id))
        .map(|e| {
            let mut d = doc! {
                "_id": &e.id,
                "user_id": &e.user_id,
                "type": e.kind,
                "product_id": &e.product,
                "category": CATEGORIES[e.category],
            };
            if e.kind == "purchase" {
                d.insert("amount", price(&e.product));
            }
            d.insert("at", bson::DateTime::from_millis(e.at.timestamp_millis()));
            d
        })
        .collect();
    let events_added = fresh.len() as u64;
    if !fresh.is_empty() {
        documents.insert_many(EVENTS, fresh).await?;
    }
    Ok((events_added, orders_added))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_gives_out_exactly_the_total() {
        let counts = apportion(10, &[1.0, 1.0, 1.0]);
        assert_eq!(counts.iter().sum::<u64>(), 10);
        assert_eq!(counts, vec![4, 3, 3]);
        assert_eq!(apportion(5, &[]), Vec::<u64>::new());
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let end = reference_end().timestamp();
        let a = latents(5, 7, end);
        let b = latents(5, 7, end);
        let ea: Vec<(String, String, i64)> = events_of(&a[2], 30, 7, end)
            .into_iter()
            .map(|e| (e.id, e.product, e.at.timestamp()))
            .collect();
        let eb: Vec<(String, String, i64)> = events_of(&b[2], 30, 7, end)
            .into_iter()
            .map(|e| (e.id, e.product, e.at.timestamp()))
            .collect();
        assert_eq!(ea, eb);
        assert!(ea.iter().all(|(_, _, t)| *t < end && *t >= a[2].signed_up));
    }
}
