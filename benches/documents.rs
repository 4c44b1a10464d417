//! Benchmarks of the embedded document store.
//!
//! - `indexed_lookup`: `find_one` by equality on an indexed field in a
//!   100,000-document collection (target: median ≤ 20 µs).
//! - `insert_one_no_fsync`: inserting one document with `fsync` off, for
//!   information (each insert is still one `write(2)` to the log).
//!
//! Run one with `cargo bench --bench documents -- indexed_lookup`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bson::doc;
use criterion::{Criterion, criterion_group, criterion_main};
use strata::engines::document::embedded::{EmbeddedDocumentOptions, EmbeddedDocumentStore};
use strata::engines::document::{DocumentStore, DocumentStoreExt, FindOptions, IndexSpec};

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
criterion_main!(benches);
