//! Section 8: the three-tier cache: a miss, then hits per tier, as two
//! strata instances would see them, and an invalidation crossing over.

use std::time::{Duration, Instant};

use super::Out;
use crate::cache::{Backplane, CHANNEL, Lookup, TieredCache};
use crate::cli::output;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::retry::RetryPolicy;

/// The demo's cache: the framework comparison, an SQL aggregate.
const NAME: &str = "demo_frameworks";
const KEY: &str = "frameworks";

pub(super) async fn section(platform: &Platform, out: &mut Out<'_>) -> Result<()> {
    let started = out.section(
        8,
        "The three-tier cache",
        "L1 in this process (moka), L2 in the key-value engine, L3 the loader (here an SQL \
         aggregate). Instance B has its own L1 and backplane subscription, as a second \
         strata process would; both share L2.",
    )?;
    let settings = platform.caches().defaults();
    let a: TieredCache<String> = platform.caches().create(NAME, settings)?;
    // A second instance: its own L1 and its own end of the backplane.
    let backplane_b = Backplane::start(platform.kv(), CHANNEL, RetryPolicy::default());
    if !backplane_b.connected(Duration::from_secs(5)).await {
        return Err(Error::internal(
            "the demo's second backplane did not subscribe",
        ));
    }
    let mut builder = TieredCache::<String>::builder(NAME)
        .settings(settings)
        .backplane(&backplane_b);
    builder = builder.l2(platform.kv());
    let b = builder.build()?;
    a.clear().await;

    let mut table = output::table(&["step", "instance", "answered by", "took"]);
    let mut step = |what: &str, who: &str, lookup: &Lookup<String>, took: Duration| {
        table.add_row(vec![
            what.to_owned(),
            who.to_owned(),
            lookup.tier.to_string(),
            format!("{:.1} ms", took.as_secs_f64() * 1000.0),
        ]);
    };
    let lookup = timed(load(platform, &a)).await?;
    step("cold: nothing cached", "A", &lookup.0, lookup.1);
    let lookup = timed(load(platform, &a)).await?;
    step("again", "A", &lookup.0, lookup.1);
    let lookup = timed(load(platform, &b)).await?;
    step("first read on B", "B", &lookup.0, lookup.1);
    let lookup = timed(load(platform, &b)).await?;
    step("again on B", "B", &lookup.0, lookup.1);
    let before = backplane_b.status().received;
    a.invalidate(KEY).await;
    if !backplane_b
        .wait_until(|s| s.received > before, Duration::from_secs(5))
        .await
    {
        return Err(Error::internal("the invalidation did not reach instance B"));
    }
    let lookup = timed(load(platform, &b)).await?;
    step("after A invalidated it", "B", &lookup.0, lookup.1);
    out.table(table)?;
    let answer = load(platform, &b).await?.value.unwrap_or_default();
    out.line(format!("cached value: {answer}"))?;
    out.line(
        "B heard A's invalidation on the backplane (key-value publish/subscribe) and dropped \
         its L1 entry; an instance whose subscription drops or lags clears its whole L1.",
    )?;
    a.clear().await;
    out.took(started)
}

async fn timed<T>(f: impl Future<Output = Result<T>>) -> Result<(T, Duration)> {
    let started = Instant::now();
    let value = f.await?;
    Ok((value, started.elapsed()))
}

/// The framework comparison, as one line of text, through `cache`.
async fn load(platform: &Platform, cache: &TieredCache<String>) -> Result<Lookup<String>> {
    let registry = platform.registry().clone();
    cache
        .get_or_load(KEY, move || async move {
            let rows = registry.framework_comparison().await?;
            let text = rows
                .iter()
                .map(|r| format!("{} {}", r.framework, r.runs))
                .collect::<Vec<_>>()
                .join(", ");
            Ok(Some(format!("runs per framework: {text}")))
        })
        .await
}
