//! `strata demo` against one insta snapshot (`tests/snapshots/`), on the
//! embedded profile and, with `STRATA_TEST_FULL=1`, on the full profile:
//! fresh engines give the same output on both once the `engines:` line, ids,
//! timestamps and timings are redacted. A second run on the same engines
//! must succeed too, having cleaned up after the first.
//!
//! After a deliberate change to the demo: `cargo insta review`, or run with
//! `INSTA_UPDATE=always` and review the diff of the `.snap` file.

mod common;

use strata::cli::demo::{DEMO_MODEL, run_demo};
use strata::engines::Engines;
use strata::platform::Platform;
use strata::platform::configs;
use strata::platform::registry;

use common::engines::{Env, run_case, setup_embedded};

/// The full profile with RabbitMQ too: the pipeline sections run on the
/// real broker, on a topology of their own.
async fn setup_full() -> Option<Env> {
    common::engines::setup_full_rabbit("demo").await
}

async fn demo_text(engines: &Engines) -> String {
    let platform = Platform::with_engines(engines.clone(), Default::default())
        .await
        .expect("open the platform");
    let mut out = Vec::new();
    run_demo(&platform, &mut out).await.expect("the demo runs");
    String::from_utf8(out).expect("the demo writes UTF-8")
}

/// The same settings for every profile: what legitimately differs between
/// backends and runs is redacted, nothing else.
fn assert_demo_snapshot(text: &str) {
    insta::with_settings!({
        filters => vec![
            (r"(?m)^engines: .*$", "engines: [engines]"),
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "[timestamp]"),
            (r"#\d+", "#[id]"),
            (r"\d+\.\d ms", "[time] ms"),
        ],
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("demo", text);
    });
}

async fn demo_output_matches_the_snapshot(engines: Engines) {
    let first = demo_text(&engines).await;
    assert_demo_snapshot(&first);

    // Run again: it succeeds, seeds nothing new, and leaves no demo model.
    let second = demo_text(&engines).await;
    assert!(second.contains("Where the data lives"), "{second}");
    let err = registry::run_by_model_id(&engines.relational, DEMO_MODEL)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), strata::ErrorKind::NotFound);
    assert!(
        configs::config_of(engines.documents.as_ref(), DEMO_MODEL)
            .await
            .unwrap()
            .is_none()
    );
}

mod embedded {
    use super::*;

    #[tokio::test]
    async fn demo_output_matches_the_snapshot() {
        run_case(setup_embedded(), super::demo_output_matches_the_snapshot).await
    }
}

mod full {
    use super::*;

    #[tokio::test]
    async fn demo_output_matches_the_snapshot() {
        run_case(setup_full(), super::demo_output_matches_the_snapshot).await
    }
}
