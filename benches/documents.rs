//! Benchmarks of the embedded document store.
//!
//! - `indexed_lookup`: `find_one` by equality on an indexed field in a
//!   100,000-document collection (target: median ≤ 20 µs).
//! - `insert_one_no_fsync`: inserting one document with `fsync` off, for
//!   information (each insert still goes through the log writer thread).
//! - `million_read_latency_during_compaction`: 1,000,000 small documents;
//!   indexed reads sent in an open loop at a fixed rate, first with nothing
//!   else running, then while the log is compacted (three compactions back
//!   to back). Each read's latency is measured from the moment it was due
//!   to be sent, not from when it was sent, so a stall counts for every read
//!   it held up (coordinated omission corrected), and recorded in an HDR
//!   histogram; p50/p99/p99.9/max are printed for both phases.
//! - `million_memory_per_document`: heap bytes per stored document, counted
//!   by this binary's allocator, over 1,000,000 model configs (strata's
//!   three sample shapes, with `model_configs`' validator and indexes) and
//!   1,000,000 small events (one index), against the decoded documents
//!   alone and their BSON size.
//!
//! Run one with `cargo bench --bench documents -- indexed_lookup`; both
//! 1,000,000-document measurements with `cargo bench --bench documents --
//! million` (release build, about two minutes and 4 GiB of memory). Under
//! `cargo test --benches` they run once on 10,000 documents, as a smoke
//! test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use criterion::{Criterion, criterion_group};
use hdrhistogram::Histogram;
use strata::engines::document::embedded::{EmbeddedDocumentOptions, EmbeddedDocumentStore};
use strata::engines::document::{DocumentStore, DocumentStoreExt, FindOptions, IndexSpec};
use strata::platform::configs;

/// Counts live heap bytes, for `million_memory_per_document`.
struct CountingAllocator;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only observes sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn live_bytes() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

const DOCUMENTS: i64 = 100_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn indexed_lookup(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn DocumentStore> = Arc::new(
        EmbeddedDocumentStore::open(dir.path(), EmbeddedDocumentOptions::default()).expect("open"),
    );
    rt.block_on(async {
        store
            .create_index("model_configs", IndexSpec::new(doc! {"model_id": 1}))
            .await
            .expect("index");
        for chunk in 0..DOCUMENTS / 1000 {
            let docs = (chunk * 1000..(chunk + 1) * 1000)
                .map(|i| {
                    doc! {
                        "model_id": format!("model-{i:06}"),
                        "model_name": "resnet",
                        "framework": if i % 2 == 0 { "torch" } else { "jax" },
                        "config": {"lr": 0.001, "layers": i % 50, "tags": ["a", "b"]},
                    }
                })
                .collect();
            store
                .insert_many("model_configs", docs)
                .await
                .expect("insert");
        }
    });
    // Walk keys with a stride so lookups do not all hit one cache line.
    let next = AtomicI64::new(0);
    c.bench_function("indexed_lookup", |b| {
        b.to_async(&rt).iter(|| {
            let i = next.fetch_add(7919, Ordering::Relaxed) % DOCUMENTS;
            let store = Arc::clone(&store);
            async move {
                let found = store
                    .find_one(
                        "model_configs",
                        doc! {"model_id": format!("model-{i:06}")},
                        FindOptions::default(),
                    )
                    .await
                    .expect("find_one");
                assert!(found.is_some());
                found
            }
        })
    });
}

fn insert_one_no_fsync(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn DocumentStore> = Arc::new(
        EmbeddedDocumentStore::open(dir.path(), EmbeddedDocumentOptions { fsync: false })
            .expect("open"),
    );
    rt.block_on(async {
        store
            .create_index("events", IndexSpec::new(doc! {"user": 1}))
            .await
            .expect("index")
    });
    let next = AtomicI64::new(0);
    c.bench_function("insert_one_no_fsync", |b| {
        b.to_async(&rt).iter(|| {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let store = Arc::clone(&store);
            async move {
                store
                    .insert_one(
                        "events",
                        doc! {"user": i % 1000, "kind": "click", "n": i, "at": "2024-01-01"},
                    )
                    .await
                    .expect("insert")
            }
        })
    });
}

criterion_group!(benches, indexed_lookup, insert_one_no_fsync);

/// How big the 1,000,000-document measurements are: the real thing under
/// `cargo bench`, a smoke test under `cargo test --benches`.
#[derive(Debug, Clone, Copy)]
struct Scale {
    documents: i64,
    /// Reads per second sent by the open loop.
    rate: u64,
    /// How long the baseline phase sends reads.
    baseline: Duration,
    /// Compactions measured back to back.
    compactions: u32,
}

const FULL: Scale = Scale {
    documents: 1_000_000,
    rate: 5_000,
    baseline: Duration::from_secs(5),
    compactions: 3,
};

const SMOKE: Scale = Scale {
    documents: 10_000,
    rate: 1_000,
    baseline: Duration::from_millis(300),
    compactions: 1,
};

/// A small event, of the kind strata's pipelines store.
fn event(i: i64) -> Document {
    doc! {
        "key": format!("evt-{i:08}"),
        "user_id": i % 50_000,
        "kind": if i % 3 == 0 { "view" } else { "click" },
        "item": format!("item-{}", i % 5_000),
        "at": bson::DateTime::from_millis(1_700_000_000_000 + i),
        "props": {"page": "/models", "ms": i % 900},
    }
}

/// Reads `events` by its indexed `key` in an open loop: one read is due
/// every `1/rate` s from `start`, spawned on the runtime when due whatever
/// the earlier ones are doing, and its latency is taken from when it was
/// due. Runs until `done()` (checked before each read); returns the
/// histogram of latencies in nanoseconds.
fn open_loop(
    rt: &tokio::runtime::Runtime,
    store: &Arc<EmbeddedDocumentStore>,
    scale: Scale,
    done: &dyn Fn(Duration) -> bool,
) -> Histogram<u64> {
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).expect("histogram"),
    ));
    let interval = Duration::from_nanos(1_000_000_000 / scale.rate);
    let start = Instant::now();
    let mut reads = Vec::new();
    for n in 0u32.. {
        let due = start + interval * n;
        if done(due - start) {
            break;
        }
        // Sleep through most of the wait, spin the rest: the timer slack
        // of a sleep would otherwise shift when reads are sent.
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            let left = due - now;
            if left > Duration::from_micros(200) {
                std::thread::sleep(left - Duration::from_micros(150));
            } else {
                std::hint::spin_loop();
            }
        }
        let i = (i64::from(n) * 7919) % scale.documents;
        let store = Arc::clone(store);
        let recorded = Arc::clone(&histogram);
        reads.push(rt.spawn(async move {
            let found = store
                .find_one(
                    "events",
                    doc! {"key": format!("evt-{i:08}")},
                    FindOptions::default(),
                )
                .await
                .expect("find_one");
            assert!(found.is_some(), "evt-{i:08} not found");
            let latency = due.elapsed().as_nanos() as u64;
            recorded
                .lock()
                .expect("histogram lock")
                .saturating_record(latency);
        }));
    }
    rt.block_on(async {
        for read in reads {
            read.await.expect("read task");
        }
    });
    histogram.lock().expect("histogram lock").clone()
}

fn print_latencies(phase: &str, h: &Histogram<u64>, over: Duration) {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "  {phase:<20} {:>7} reads in {:>6.2} s   p50 {:>8.1} µs   p99 {:>8.1} µs   p99.9 {:>8.1} µs   max {:>8.1} µs",
        h.len(),
        over.as_secs_f64(),
        us(0.50),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1000.0,
    );
}

fn read_latency_during_compaction(scale: Scale) {
    println!(
        "million_read_latency_during_compaction: {} events, indexed reads at {}/s, open loop, latency from each read's due time",
        scale.documents, scale.rate
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        EmbeddedDocumentStore::open(dir.path(), EmbeddedDocumentOptions::default()).expect("open"),
    );
    let loaded = Instant::now();
    rt.block_on(async {
        store
            .create_index("events", IndexSpec::new(doc! {"key": 1}).unique())
            .await
            .expect("index");
        for chunk in 0..scale.documents / 1000 {
            let docs = (chunk * 1000..(chunk + 1) * 1000).map(event).collect();
            store.insert_many("events", docs).await.expect("insert");
        }
    });
    println!(
        "  loaded in {:.1} s; log {} MiB",
        loaded.elapsed().as_secs_f64(),
        store.log_len().expect("log length") >> 20
    );

    let baseline = open_loop(&rt, &store, scale, &|elapsed| elapsed >= scale.baseline);

    let mut during = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).expect("h");
    let mut compacting = Duration::ZERO;
    let mut durations = Vec::new();
    for _ in 0..scale.compactions {
        let started = Instant::now();
        let compaction = rt.spawn({
            let store = Arc::clone(&store);
            async move { store.compact().await }
        });
        let h = open_loop(&rt, &store, scale, &|_| compaction.is_finished());
        rt.block_on(compaction)
            .expect("compaction task")
            .expect("compaction");
        let took = started.elapsed();
        durations.push(took);
        compacting += took;
        during.add(&h).expect("merge histograms");
    }
    print_latencies("without compaction", &baseline, scale.baseline);
    print_latencies("during compaction", &during, compacting);
    let list: Vec<String> = durations
        .iter()
        .map(|d| format!("{:.2} s", d.as_secs_f64()))
        .collect();
    println!(
        "  compactions took {}; log after {} bytes",
        list.join(", "),
        store.log_len().expect("log length")
    );
}

/// Heap bytes held by what `build` returns, while it is kept.
fn heap_of<T>(build: impl FnOnce() -> T) -> (T, i64) {
    let before = live_bytes();
    let value = build();
    (value, live_bytes() - before)
}

fn model_config(i: i64, shapes: &[Document]) -> Document {
    let mut config = shapes[(i % shapes.len() as i64) as usize].clone();
    config.insert("model_id", format!("model-{i:08}"));
    config
}

fn memory_per_document(scale: Scale) {
    println!(
        "million_memory_per_document: {} documents of each kind, live heap counted by the allocator",
        scale.documents
    );
    let rt = runtime();
    let shapes = configs::seed_configs();
    let n = scale.documents;
    let sample = (n / 10).max(1);

    let measure = |kind: &str,
                   make: &dyn Fn(i64) -> Document,
                   setup: &dyn Fn(&EmbeddedDocumentStore)| {
        // The documents alone, decoded, as a sample.
        let (docs, docs_heap) = heap_of(|| (0..sample).map(make).collect::<Vec<_>>());
        let bson_bytes: usize = docs.iter().map(|d| d.to_vec().expect("bson").len()).sum();
        let per_doc_decoded = docs_heap / sample;
        drop(docs);

        let dir = tempfile::tempdir().expect("temp dir");
        let before = live_bytes();
        let store = EmbeddedDocumentStore::open(dir.path(), EmbeddedDocumentOptions::default())
            .expect("open");
        setup(&store);
        rt.block_on(async {
            for chunk in 0..n / 1000 {
                let docs = (chunk * 1000..(chunk + 1) * 1000).map(make).collect();
                store.insert_many(kind, docs).await.expect("insert");
            }
        });
        let stored = live_bytes() - before;
        println!(
            "  {kind:<14} {:>6} B per document in the store   {:>6} B decoded document alone   {:>5} B as BSON   ({:.2} GiB for {n})",
            stored / n,
            per_doc_decoded,
            bson_bytes as i64 / sample,
            stored as f64 / f64::from(1 << 30),
        );
        drop(store);
        stored / n
    };

    measure("model_configs", &|i| model_config(i, &shapes), &|store| {
        rt.block_on(configs::ensure_collections(store))
            .expect("model_configs collections")
    });
    let indexed = measure("events", &event, &|store| {
        rt.block_on(store.create_index("events", IndexSpec::new(doc! {"user_id": 1})))
            .expect("index");
    });
    let bare = measure("events_no_index", &event, &|_| {});
    println!(
        "  one secondary index on an integer field: {} B per document",
        indexed - bare
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let scale = if args.iter().any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.is_none_or(|f| name.contains(f.as_str()));
    if wanted("million_read_latency_during_compaction") {
        read_latency_during_compaction(scale);
    }
    if wanted("million_memory_per_document") {
        memory_per_document(scale);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
