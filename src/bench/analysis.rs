//! What follows from a bench run: the decision matrix (which engine for
//! which use, and why, citing what was measured), `docs/ANALYSIS.md`
//! (`strata bench report`) and what `strata explain` prints.
//!
//! What MUST hold:
//!
//! - Every figure is read from the run by workload id ([`decision_matrix`]
//!   never holds a number of its own). A workload that was not measured,
//!   or whose every request failed, is simply not cited: the row keeps its
//!   qualitative reason.
//! - The output is a function of the input: no clock, no environment, no
//!   map iterated in an unspecified order. The same JSON files give the
//!   same `ANALYSIS.md`, byte for byte.
//! - Where each kind of data lives comes from [`crate::platform::routes`],
//!   the table `strata demo` closes with, not from a copy of it.
//!
//! The figures cited: a workload's p99 (and p50, p99.9) is the median over
//! its open-loop rounds of the corrected percentile (coordinated omission
//! corrected, see [`super::harness`]); a workload measured closed loop
//! only gives the median over its rounds at the lowest concurrency. Its
//! throughput is the highest closed-loop rate. The full tables (every
//! round, the percentile curves, the sweep's steps) are the bench's own
//! output ([`super::render`]); this module keeps what the analysis needs.

use std::fmt::Write as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use super::harness::{Measurement, Mode, fmt_rate};
use super::model::{BenchRun, ProfileRun, WorkloadRun, median};
use crate::config::Config;
use crate::platform::routes::{self, EngineKind, ROUTES};

/// One row of the decision matrix: a use, the engine chosen for it, and
/// why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What the data is used for (`online feature reads`).
    pub use_case: &'static str,
    /// The engine chosen (`key-value`, `relational`, `three-tier cache`).
    pub engine: &'static str,
    /// Why: the qualitative reason, followed by the measured figures when
    /// a run was given and measured them.
    pub reason: String,
    /// The ids of the workloads whose figures `reason` cites (empty: the
    /// reason is qualitative only).
    pub cites: Vec<String>,
}

/// What a decision cites from a run.
#[derive(Debug, Clone, Copy)]
enum Evidence {
    /// `a` against `b`: "key read (redis) p99 41 µs vs relational read
    /// (postgres) 390 µs (9.5× faster)"; `a` alone when `b` was not
    /// measured, nothing when `a` was not.
    Versus {
        a: &'static str,
        a_label: &'static str,
        b: &'static str,
        b_label: &'static str,
    },
    /// One workload's p99, per item too when a request carries several.
    P99 {
        id: &'static str,
        label: &'static str,
    },
    /// One workload's p99 and its highest throughput.
    P99Throughput {
        id: &'static str,
        label: &'static str,
    },
}

/// A row of the matrix before any figure: the use, the engine, the
/// qualitative reason and what to cite.
struct Spec {
    use_case: &'static str,
    engine: &'static str,
    why: &'static str,
    evidence: &'static [Evidence],
}

const SPECS: &[Spec] = &[
    Spec {
        use_case: "online feature reads",
        engine: "key-value (L1 in front)",
        why: "an entity's features of a view are one hash, read by key; a batch of \
              entities is one pipelined round trip; a write keeps the newest value only \
              (hset_if_newer)",
        evidence: &[
            Evidence::Versus {
                a: "kv.read",
                a_label: "key read",
                b: "relational.read",
                b_label: "relational row read",
            },
            Evidence::P99 {
                id: "kv.batch_read",
                label: "batch key read",
            },
            Evidence::P99 {
                id: "http.features",
                label: "features over HTTP",
            },
            Evidence::P99 {
                id: "http.features_batch",
                label: "batch of features over HTTP",
            },
        ],
    },
    Spec {
        use_case: "cached predictions",
        engine: "key-value, through the three-tier cache",
        why: "a prediction is kept under the model, its scorer's version and a hash of \
              the features, for serving.prediction_ttl; every instance shares L2, repeats \
              are answered by L1, and new features invalidate it everywhere",
        evidence: &[
            Evidence::P99 {
                id: "http.predict",
                label: "prediction over HTTP",
            },
            Evidence::Versus {
                a: "cache.l2",
                a_label: "L2 hit",
                b: "cache.miss",
                b_label: "miss loaded from L3",
            },
        ],
    },
    Spec {
        use_case: "leaderboards and counters",
        engine: "key-value",
        why: "a sorted set keeps the ranking as scores arrive (the best score only, \
              atomically); counters are atomic increments read on every model view: \
              counts, not records",
        evidence: &[Evidence::Versus {
            a: "kv.write",
            a_label: "key write",
            b: "relational.write",
            b_label: "relational write",
        }],
    },
    Spec {
        use_case: "rate limits and locks",
        engine: "key-value",
        why: "a GCRA window and a fenced lock are one atomic script each, shared by every \
              instance and expiring by themselves; the fencing token is checked by the \
              relational engine in the transaction it guards",
        evidence: &[Evidence::P99 {
            id: "kv.write",
            label: "key write",
        }],
    },
    Spec {
        use_case: "datasets, training runs, artifacts, deployments, aliases",
        engine: "relational",
        why: "foreign keys, a unique model_id and status checks; transactions (a saga's \
              step and an outbox event commit with the change); JOINs, GROUP BY and \
              window functions",
        evidence: &[
            Evidence::Versus {
                a: "relational.join",
                a_label: "join + group by",
                b: "documents.aggregate",
                b_label: "document aggregation pipeline",
            },
            Evidence::P99 {
                id: "relational.write",
                label: "write transaction",
            },
            Evidence::P99 {
                id: "relational.batch_write",
                label: "batch write",
            },
        ],
    },
    Spec {
        use_case: "run search",
        engine: "relational",
        why: "the filter language compiles to SQL over indexes; every sort order is read \
              off an index, pages are keyset pages",
        evidence: &[Evidence::P99Throughput {
            id: "search.runs",
            label: "run search",
        }],
    },
    Spec {
        use_case: "model configs and experiments",
        engine: "documents",
        why: "each framework's config has its own nested shape; new metrics arrive with \
              $set, without a migration; a validator checks what must be there",
        evidence: &[
            Evidence::Versus {
                a: "documents.read",
                a_label: "document read",
                b: "relational.read",
                b_label: "relational row read",
            },
            Evidence::P99 {
                id: "documents.write",
                label: "document write",
            },
        ],
    },
    Spec {
        use_case: "events",
        engine: "documents (TTL index), through the queue",
        why: "raw events are schema-loose and append-mostly; they arrive through the queue, \
              so a burst never waits on a store, and a TTL index deletes them after \
              analytics.event_retention",
        evidence: &[
            Evidence::P99 {
                id: "documents.batch_write",
                label: "batch insert",
            },
            Evidence::P99 {
                id: "queue.roundtrip",
                label: "publish → consume → ack",
            },
        ],
    },
    Spec {
        use_case: "pipelines and tasks",
        engine: "queue",
        why: "work leaves the request path: acknowledged after its handler, retried with \
              backoff, dead-lettered when it keeps failing, shared by every worker",
        evidence: &[Evidence::P99Throughput {
            id: "queue.roundtrip",
            label: "publish → consume → ack",
        }],
    },
    Spec {
        use_case: "hot reads of anything (model info, runs, feature views)",
        engine: "three-tier cache (L1 moka → L2 key-value → L3 engine)",
        why: "one get_or_load path, single-flight per key; L1 answers in the process, L2 \
              is shared by every instance, an invalidation reaches every L1 over the \
              backplane",
        evidence: &[
            Evidence::Versus {
                a: "cache.l1",
                a_label: "L1 hit",
                b: "cache.miss",
                b_label: "miss loaded from L3",
            },
            Evidence::Versus {
                a: "cache.l2",
                a_label: "L2 hit",
                b: "cache.miss",
                b_label: "miss loaded from L3",
            },
        ],
    },
];

/// The decision matrix: for each use, the engine and why. With a
/// profile's run, each reason cites what that run measured (looked up by
/// workload id); a figure not measured is left out, and a row with none
/// keeps its qualitative reason alone.
pub fn decision_matrix(run: Option<&ProfileRun>) -> Vec<Decision> {
    SPECS
        .iter()
        .map(|spec| {
            let mut pieces = Vec::new();
            let mut cites: Vec<String> = Vec::new();
            if let Some(run) = run {
                for evidence in spec.evidence {
                    if let Some((text, ids)) = cite(run, evidence) {
                        pieces.push(text);
                        for id in ids {
                            if !cites.iter().any(|c| c == id) {
                                cites.push(id.to_owned());
                            }
                        }
                    }
                }
            }
            let reason = if pieces.is_empty() {
                spec.why.to_owned()
            } else {
                format!("{}. Measured: {}", spec.why, pieces.join("; "))
            };
            Decision {
                use_case: spec.use_case,
                engine: spec.engine,
                reason,
                cites,
            }
        })
        .collect()
}

/// The text citing `evidence` from `run`, and the workload ids it used;
/// `None` when the run did not measure it.
fn cite(run: &ProfileRun, evidence: &Evidence) -> Option<(String, Vec<&'static str>)> {
    match *evidence {
        Evidence::Versus {
            a,
            a_label,
            b,
            b_label,
        } => {
            let (wa, fa) = measured(run, a)?;
            let first = format!("{} p99 {}", labelled(a_label, wa), us(fa.p99_us));
            match measured(run, b) {
                Some((wb, fb)) => Some((
                    format!(
                        "{first} vs {} {} ({})",
                        labelled(b_label, wb),
                        us(fb.p99_us),
                        faster(fa.p99_us, fb.p99_us)
                    ),
                    vec![a, b],
                )),
                None => Some((first, vec![a])),
            }
        }
        Evidence::P99 { id, label } => {
            let (w, f) = measured(run, id)?;
            Some((
                format!(
                    "{} p99 {}{}",
                    labelled(label, w),
                    us(f.p99_us),
                    per_item(w, &f)
                ),
                vec![id],
            ))
        }
        Evidence::P99Throughput { id, label } => {
            let (w, f) = measured(run, id)?;
            let mut text = format!(
                "{} p99 {}{}",
                labelled(label, w),
                us(f.p99_us),
                per_item(w, &f)
            );
            if f.throughput > 0.0 {
                let _ = write!(text, ", up to {} requests/s", fmt_rate(f.throughput));
            }
            Some((text, vec![id]))
        }
    }
}

/// `key read (redis)`.
fn labelled(label: &str, w: &WorkloadRun) -> String {
    format!("{label} ({})", w.engine)
}

/// ` for 100 items (1.8 µs an item)` for a request of several items.
fn per_item(w: &WorkloadRun, f: &Figures) -> String {
    if w.items > 1 {
        format!(
            " for {} items ({} an item)",
            w.items,
            us(f.p99_us / f64::from(w.items))
        )
    } else {
        String::new()
    }
}

/// `9.5× faster` when `a` is below `b`, `2.0× slower` when above.
fn faster(a: f64, b: f64) -> String {
    if a <= b {
        format!("{} faster", times(b / a.max(f64::MIN_POSITIVE)))
    } else {
        format!("{} slower", times(a / b.max(f64::MIN_POSITIVE)))
    }
}

/// What the analysis cites of one workload.
#[derive(Debug, Clone, PartialEq)]
struct Figures {
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    /// The highest closed-loop throughput, 0 when none ran.
    throughput: f64,
    /// `open` or `closed ×N`: where the percentiles come from.
    basis: String,
}

/// The workload `id` of `run` and its figures, when it answered at least
/// once.
fn measured<'a>(run: &'a ProfileRun, id: &str) -> Option<(&'a WorkloadRun, Figures)> {
    let w = run.workloads.iter().find(|w| w.id == id)?;
    Some((w, figures(w)?))
}

fn figures(w: &WorkloadRun) -> Option<Figures> {
    let open: Vec<&Measurement> = w.open.iter().filter(|m| m.ok > 0).collect();
    let (rounds, basis) = if open.is_empty() {
        let lowest = w
            .closed
            .iter()
            .filter(|m| m.ok > 0)
            .filter_map(|m| match m.mode {
                Mode::Closed { concurrency } => Some(concurrency),
                Mode::Open { .. } => None,
            })
            .min()?;
        let rounds: Vec<&Measurement> = w
            .closed
            .iter()
            .filter(|m| {
                m.ok > 0 && matches!(m.mode, Mode::Closed { concurrency } if concurrency == lowest)
            })
            .collect();
        (rounds, format!("closed ×{lowest}"))
    } else {
        (open, "open".to_owned())
    };
    let p99_us = median(rounds.iter().map(|m| m.corrected.p99_us));
    if !(p99_us.is_finite() && p99_us > 0.0) {
        return None;
    }
    Some(Figures {
        p50_us: median(rounds.iter().map(|m| m.corrected.p50_us)),
        p99_us,
        p999_us: median(rounds.iter().map(|m| m.corrected.p999_us)),
        throughput: w.max_throughput(),
        basis,
    })
}

/// A latency for people: `4.2 µs`, `41 µs`, `1.3 ms`, `2.50 s`.
fn us(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.1} µs")
    } else if value < 1000.0 {
        format!("{value:.0} µs")
    } else if value < 100_000.0 {
        format!("{:.1} ms", value / 1000.0)
    } else if value < 1_000_000.0 {
        format!("{:.0} ms", value / 1000.0)
    } else {
        format!("{:.2} s", value / 1e6)
    }
}

/// A ratio for people: `9.5×`, `12×`.
fn times(ratio: f64) -> String {
    if ratio < 10.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{ratio:.0}×")
    }
}

// ---------------------------------------------------------------------
// docs/ANALYSIS.md

/// The whole of `docs/ANALYSIS.md` for `runs`, read from `source_files`
/// (the same order; the names are quoted, and given to the `strata bench
/// report` command that regenerates it).
pub fn analysis_markdown(runs: &[BenchRun], source_files: &[String]) -> String {
    let mut out = String::new();
    let files = if source_files.is_empty() {
        "no file".to_owned()
    } else {
        source_files
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let report = report_command(source_files);
    out.push_str("# strata: what the bench measured, and what follows from it\n\n");
    let _ = writeln!(
        out,
        "<!-- Generated by `{report}`. Do not edit by hand: change src/bench/analysis.rs \
         or run the bench again, then generate it again. -->\n"
    );
    let _ = writeln!(
        out,
        "> Generated by `strata bench report` from {files}. Do not edit it by hand: \
         `{report}` writes it again.\n"
    );
    out.push_str(
        "Every figure below is read from those files. Latencies are the median over a \
         workload's open-loop rounds of the percentile measured from each request's due \
         time (coordinated omission corrected); a workload measured closed loop only gives \
         its rounds at the lowest concurrency (the `basis` column says which). Throughput \
         is the highest closed-loop rate. Every round, the percentile curves and the \
         sweep's steps are in the bench's own output.\n\n",
    );

    machine_section(&mut out, runs, source_files);
    results_section(&mut out, runs, source_files);
    reproduce_section(&mut out, runs, &report);
    matrix_section(&mut out, runs, source_files);
    tradeoffs_section(&mut out);
    architecture_section(&mut out);
    migration_section(&mut out);
    out
}

/// `strata bench report FILE...`, each name quoted for the shell when it
/// needs it.
fn report_command(source_files: &[String]) -> String {
    let mut command = "strata bench report".to_owned();
    for file in source_files {
        command.push(' ');
        command.push_str(&shell_word(file));
    }
    command
}

/// `word`, in single quotes unless it is plainly safe for a shell.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The file run `i` came from, for headings.
fn source_of(source_files: &[String], i: usize) -> String {
    source_files
        .get(i)
        .map_or_else(|| format!("run {}", i + 1), |f| format!("`{f}`"))
}

/// A Markdown table cell: no pipe or line break breaks the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn md_table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        header.iter().map(|_| "---|").collect::<String>()
    );
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

fn machine_section(out: &mut String, runs: &[BenchRun], source_files: &[String]) {
    out.push_str("## Machine and build\n\n");
    if runs.is_empty() {
        out.push_str("No run was given.\n\n");
        return;
    }
    for (i, run) in runs.iter().enumerate() {
        let m = &run.machine;
        let _ = writeln!(out, "### {}\n", source_of(source_files, i));
        let mut rows = vec![
            vec!["started".to_owned(), run.started_at.clone()],
            vec!["command".to_owned(), format!("`{}`", run.command)],
            vec![
                "phases".to_owned(),
                format!(
                    "{} s each{}",
                    trim_float(run.phase_seconds),
                    if run.quick { " (`--quick`)" } else { "" }
                ),
            ],
            vec!["cores".to_owned(), m.cores.to_string()],
            vec![
                "memory".to_owned(),
                m.memory_bytes
                    .map_or_else(|| "-".to_owned(), |b| bytesize::ByteSize(b).to_string()),
            ],
            vec![
                "CPU".to_owned(),
                m.cpu.clone().unwrap_or_else(|| "-".into()),
            ],
            vec!["system".to_owned(), m.os.clone()],
            vec!["strata".to_owned(), m.strata_version.clone()],
            vec!["build".to_owned(), m.build.clone()],
            vec![
                "load average at the start".to_owned(),
                m.load_average.clone().unwrap_or_else(|| "-".into()),
            ],
        ];
        for tool in &m.tools {
            rows.push(vec![format!("`{}`", tool.name), tool.version.clone()]);
        }
        md_table(out, &["", ""], &rows);
        if m.build != "release" {
            let _ = writeln!(
                out,
                "**A {} build**: much slower than a release build; its figures compare \
                 engines with each other, not with other software.\n",
                m.build
            );
        }
        if run.quick {
            out.push_str(
                "**A quick run** (`--quick`): short phases, so the tail percentiles rest on \
                 few requests.\n\n",
            );
        }
    }
}

/// `2` or `2.5`, never `2.0`.
fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

fn results_section(out: &mut String, runs: &[BenchRun], source_files: &[String]) {
    out.push_str("## Measured results\n\n");
    if runs.iter().all(|r| r.profiles.is_empty()) {
        out.push_str("No profile was measured.\n\n");
        return;
    }
    for (i, run) in runs.iter().enumerate() {
        for p in &run.profiles {
            let _ = writeln!(
                out,
                "### Profile `{}` ({})\n",
                p.profile,
                source_of(source_files, i)
            );
            let e = &p.engines;
            let _ = writeln!(
                out,
                "Engines: relational {}, documents {}, key-value {}, queue {}.\n",
                e.relational, e.documents, e.kv, e.queue
            );
            for target in &e.targets {
                let _ = writeln!(out, "- {target}");
            }
            if !e.targets.is_empty() {
                out.push('\n');
            }
            let rows: Vec<Vec<String>> = p
                .workloads
                .iter()
                .map(|w| {
                    let errors: u64 = w.open.iter().chain(&w.closed).map(|m| m.errors).sum();
                    let f = figures(w);
                    let lat = |pick: fn(&Figures) -> f64| {
                        f.as_ref().map_or_else(|| "-".to_owned(), |f| us(pick(f)))
                    };
                    vec![
                        format!("`{}`", w.id),
                        w.title.clone(),
                        w.engine.clone(),
                        w.items.to_string(),
                        lat(|f| f.p50_us),
                        lat(|f| f.p99_us),
                        lat(|f| f.p999_us),
                        f.as_ref()
                            .map_or_else(|| "-".to_owned(), |f| f.basis.clone()),
                        if w.closed.is_empty() {
                            "-".to_owned()
                        } else {
                            format!("{} /s", fmt_rate(w.max_throughput()))
                        },
                        errors.to_string(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                out.push_str("No workload was measured.\n\n");
            } else {
                md_table(
                    out,
                    &[
                        "workload",
                        "what",
                        "engine",
                        "items",
                        "p50",
                        "p99",
                        "p99.9",
                        "basis",
                        "highest throughput",
                        "errors",
                    ],
                    &rows,
                );
            }
            if !p.ratios.is_empty() {
                let rows: Vec<Vec<String>> = p
                    .ratios
                    .iter()
                    .map(|r| {
                        vec![
                            r.title.clone(),
                            times(r.value),
                            r.basis.clone(),
                            r.expectation.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                md_table(out, &["comparison", "first is", "basis", "expected"], &rows);
            }
            if !p.baselines.is_empty() {
                let rows: Vec<Vec<String>> = p
                    .baselines
                    .iter()
                    .map(|b| {
                        vec![
                            b.title.clone(),
                            b.clients.to_string(),
                            format!("{:.2}", b.throughput_ratio),
                            format!("{:.2}", b.p50_ratio),
                            format!("{:.2}", b.p99_ratio),
                            format!("`{}`", b.command),
                        ]
                    })
                    .collect();
                out.push_str(
                    "Beside the native tools (strata ÷ tool, medians of interleaved rounds; \
                     a throughput above 1 and latencies below 1 favour strata):\n\n",
                );
                md_table(
                    out,
                    &[
                        "comparison",
                        "clients",
                        "throughput",
                        "p50",
                        "p99",
                        "tool's command",
                    ],
                    &rows,
                );
            }
            if let Some(sweep) = &p.sweep {
                let steps = &sweep.sweep.steps;
                let text = match sweep.sweep.knee.and_then(|k| steps.get(k)) {
                    Some(knee) => format!(
                        "Sweep of `{}` ({} sessions): the knee at {} /s offered ({} /s \
                         achieved, p99 {}).",
                        sweep.workload,
                        sweep.connections,
                        fmt_rate(knee.offered),
                        fmt_rate(knee.achieved),
                        us(knee.p99_us)
                    ),
                    None => format!(
                        "Sweep of `{}` ({} sessions): no knee up to {} /s offered.",
                        sweep.workload,
                        sweep.connections,
                        steps
                            .last()
                            .map_or_else(|| "0".to_owned(), |s| fmt_rate(s.offered))
                    ),
                };
                let _ = writeln!(out, "{text}\n");
            }
            if !p.skipped.is_empty() {
                out.push_str("Not run:\n\n");
                for s in &p.skipped {
                    let _ = writeln!(out, "- `{}`: {}", s.what, s.reason);
                }
                out.push('\n');
            }
        }
    }
}

fn reproduce_section(out: &mut String, runs: &[BenchRun], report: &str) {
    out.push_str("## Reproduce\n\n");
    out.push_str(
        "The runs, each as its command line was recorded, then this page from their \
         JSON:\n\n```sh\n",
    );
    for run in runs {
        let _ = writeln!(out, "{}", run.command);
    }
    let _ = writeln!(out, "{report}\n```\n");
}

fn matrix_section(out: &mut String, runs: &[BenchRun], source_files: &[String]) {
    out.push_str("## Decision matrix\n\n");
    out.push_str(
        "Which engine each use goes to, and why. Each reason cites what the profile \
         measured (p99 by default; `×` compares with the engine the data does not go to); \
         a figure the run did not measure is left out.\n\n",
    );
    let mut any = false;
    for (i, run) in runs.iter().enumerate() {
        for p in &run.profiles {
            any = true;
            let _ = writeln!(
                out,
                "### Profile `{}` ({})\n",
                p.profile,
                source_of(source_files, i)
            );
            matrix_table(out, &decision_matrix(Some(p)));
        }
    }
    if !any {
        out.push_str("No profile was measured: the reasons alone.\n\n");
        matrix_table(out, &decision_matrix(None));
    }
}

fn matrix_table(out: &mut String, matrix: &[Decision]) {
    let rows: Vec<Vec<String>> = matrix
        .iter()
        .map(|d| vec![d.use_case.to_owned(), d.engine.to_owned(), d.reason.clone()])
        .collect();
    md_table(out, &["use", "engine", "why"], &rows);
}

/// What each engine is good and bad at.
struct Tradeoff {
    engine: &'static str,
    role: &'static str,
    good: &'static str,
    bad: &'static str,
    memory: &'static str,
    durability: &'static str,
    instances: &'static str,
}

const TRADEOFFS: &[Tradeoff] = &[
    Tradeoff {
        engine: "SQLite",
        role: "the relational engine of the embedded profile (the default)",
        good: "no server and no network: a statement is a call into the library; the same \
               SQL as PostgreSQL (constraints, transactions, JOINs, window functions) over \
               one file; readers run alongside the writer (WAL)",
        bad: "one writer at a time: writes queue on the database lock (5-second busy \
              timeout); the planner does not price a partial sort's early stop, so some \
              multi-key run searches sort every match",
        memory: "its page cache, inside the strata process",
        durability: "WAL, synchronous = NORMAL: a committed transaction survives the process \
                     being killed; the last ones may be lost on power loss",
        instances: "one host; the embedded profile is one strata process per data dir",
    },
    Tradeoff {
        engine: "PostgreSQL",
        role: "the relational engine of the full profile",
        good: "many concurrent writers (MVCC, row locks); one database for every strata \
               process; incremental sorts and planner statistics",
        bad: "every statement is a network round trip on a pooled connection; a cold pool \
              makes the first burst wait for connections (relational.min_connections); \
              each instance holds connections of the server's max_connections",
        memory: "the server's shared buffers, outside strata",
        durability: "the server's write-ahead log: durable on commit",
        instances: "shared by any number of strata processes",
    },
    Tradeoff {
        engine: "Embedded document store",
        role: "the document engine of the embedded profile (the default)",
        good: "MongoDB's filter, update and aggregation subset inside the process, with \
               indexes, unique and TTL indexes, validators; no round trip",
        bad: "the whole store is in memory as decoded documents, many times its BSON size \
              (docs/engines.md gives the bytes per document); compactions lengthen the read \
              tail; an operator outside the subset is refused (Unsupported)",
        memory: "every document and index entry, inside the strata process",
        durability: "checksummed log, snapshot and manifest: no acknowledged write is lost \
                     when the process is killed; documents.fsync = true for power loss",
        instances: "one process per data dir (the directory is locked)",
    },
    Tradeoff {
        engine: "MongoDB",
        role: "the document engine of the full profile",
        good: "the same documents for every strata process; data larger than memory; the \
               same query subset, checked by strata before it is sent",
        bad: "a network round trip per operation; the MongoDB-compatible server of \
              scripts/services.sh differs in the places docs/engines.md lists",
        memory: "the server's cache, outside strata",
        durability: "the server's journal",
        instances: "shared by any number of strata processes",
    },
    Tradeoff {
        engine: "Embedded key-value store",
        role: "the key-value engine of the embedded profile (the default)",
        good: "Redis's commands and strata's atomic scripts (GCRA, fenced locks, best score, \
               newer-only writes) as calls in the process: no socket, no encoding",
        bad: "no persistence: empty after a restart; least recently used keys are evicted \
              beyond kv.max_memory; publish/subscribe reaches this process only",
        memory: "inside the strata process, up to kv.max_memory",
        durability: "none: a cache, as Redis without persistence",
        instances: "one process: its L2, leaderboard, rate limits and locks are that \
                    process's own",
    },
    Tradeoff {
        engine: "Redis",
        role: "the key-value engine of the full profile",
        good: "one L2, leaderboard, rate-limit state and lock table for every instance; \
               publish/subscribe carries the cache's invalidations to every L1; a pipeline \
               or a script is one round trip",
        bad: "a network round trip per command or pipeline; bounded by the server's memory \
              and its maxmemory policy",
        memory: "the server's, outside strata",
        durability: "the server's persistence settings; strata treats what it keeps there \
                     as rebuildable",
        instances: "shared; kv.key_prefix separates deployments on one server",
    },
    Tradeoff {
        engine: "Embedded broker",
        role: "the queue engine of the embedded profile (the default)",
        good: "AMQP 0-9-1's routing (direct, topic, fanout, headers), acknowledgements, \
               priorities, TTLs and dead-lettering inside the process",
        bad: "messages live in memory: those not yet handled die with the process; only \
              that process's workers consume",
        memory: "every queued message, inside the strata process",
        durability: "none for messages; dead letters, the outbox and what handlers wrote are \
                     in the other engines and stay",
        instances: "one process",
    },
    Tradeoff {
        engine: "RabbitMQ",
        role: "the queue engine of the full profile",
        good: "durable queues and persistent messages survive a restart; many `strata \
               worker` processes share a queue; publisher confirms",
        bad: "a round trip and a confirmation per publish batch; a lost connection ends the \
              consumers (the next operation reconnects)",
        memory: "the broker's memory and disk, outside strata",
        durability: "durable queues, persistent messages",
        instances: "shared by any number of strata processes",
    },
];

fn tradeoffs_section(out: &mut String) {
    out.push_str("## Engine trade-offs\n\n");
    out.push_str(
        "Each engine kind has an embedded implementation (the default: no service at all) \
         and a real one (the full profile); the same code runs on both. What each is good \
         and bad at:\n\n",
    );
    for t in TRADEOFFS {
        let _ = writeln!(out, "### {}: {}\n", t.engine, t.role);
        let _ = writeln!(out, "- **Good at**: {}.", t.good);
        let _ = writeln!(out, "- **Bad at**: {}.", t.bad);
        let _ = writeln!(out, "- **Memory**: {}.", t.memory);
        let _ = writeln!(out, "- **Durability**: {}.", t.durability);
        let _ = writeln!(out, "- **Instances**: {}.\n", t.instances);
    }
}

const DIAGRAM: &str = r"```text
   HTTP clients                               operators
        │                                         │
   api (axum, strata serve)              cli (strata demo, seed, migrate, bench, ...)
        └────────────────────┬────────────────────┘
                             ▼
   serving: features, predictions, leaderboard, rate limits, fenced locks
   pipelines: worker, outbox relay · analytics
                             ▼
   platform services: registry, configs, models, sagas, migration, read model
                             ▼
   cache (TieredCache: get_or_load, single-flight, fail-safe)
     L1 moka, in each process ──miss──▶ L2 key-value engine ──miss──▶ L3 loader (a query)
     backplane: invalidations over key-value publish/subscribe reach every instance's L1
                             ▼
   ┌─────────────────────┬─────────────────────┬─────────────────────┬─────────────────────┐
   │ relational          │ documents           │ key-value           │ queue               │
   │ SQLite or PostgreSQL│ embedded or MongoDB │ embedded or Redis   │ embedded or RabbitMQ│
   ├─────────────────────┼─────────────────────┼─────────────────────┼─────────────────────┤
   │ datasets, runs,     │ model configs,      │ features, cached    │ tasks, events       │
   │ artifacts, aliases, │ experiments, raw    │ predictions, L2,    │ between the API,    │
   │ deployments, sagas, │ events (TTL),       │ leaderboard,        │ workers and         │
   │ outbox, customers,  │ profiles, read      │ counters, rate      │ pipelines; retries, │
   │ orders, fences      │ model, dead letters │ limits, locks       │ dead-lettering      │
   └─────────────────────┴─────────────────────┴─────────────────────┴─────────────────────┘
```";

fn architecture_section(out: &mut String) {
    out.push_str("## The hybrid architecture\n\n");
    out.push_str(
        "Layers point down only; the services name no backend, and the configuration \
         chooses each engine kind on its own (PostgreSQL with the embedded key-value store \
         is a valid setup).\n\n",
    );
    out.push_str(DIAGRAM);
    out.push_str("\n\nWhich data goes where (the table `strata demo` ends with, and more):\n\n");
    let mut rows = Vec::new();
    for engine in EngineKind::ALL {
        for route in ROUTES.iter().filter(|r| r.engine == engine) {
            rows.push(vec![
                engine.as_str().to_owned(),
                route.data.to_owned(),
                route.why.to_owned(),
            ]);
        }
    }
    md_table(out, &["engine", "data", "why"], &rows);
}

fn migration_section(out: &mut String) {
    out.push_str("## Migration: from the embedded profile to the real services\n\n");
    out.push_str(
        "**The switch is configuration.** `--profile full` (or `STRATA_PROFILE=full`) \
         layers `config/full.toml` over the defaults: PostgreSQL, MongoDB, Redis and \
         RabbitMQ on the ports `scripts/services.sh up` and `docker-compose.yml` use. Each \
         engine kind switches on its own (`relational.url`, `documents.kind`, `kv.kind`, \
         `queue.kind`, with their URLs; passwords from the environment: \
         `STRATA_RELATIONAL__PASSWORD`, `STRATA_DOCUMENTS__PASSWORD`, `STRATA_KV__PASSWORD`, \
         `STRATA_QUEUE__PASSWORD`), so engines can move one at a time. No code \
         changes, and the answers stay the same: every engine's conformance suite and the \
         `strata demo` snapshot run on both profiles.\n\n",
    );
    out.push_str("Steps:\n\n");
    out.push_str(
        "1. Measure where you are: the bench on the embedded profile, as under \
         [Reproduce](#reproduce).\n\
         2. Start the services (`scripts/services.sh up` on loopback, or \
         `docker-compose.yml`) and check them: `strata --profile full doctor` pings each \
         engine and reports the relational schema (missing, pending or current) without \
         writing anything.\n\
         3. Apply the schema on the new engines: `strata --profile full migrate schema` \
         (`serve`, `seed` and `demo` apply it too when they start).\n\
         4. Dual-run: the same bench command with `--profile full`, then `strata bench \
         compare` of the two JSON files and `strata bench report` of both, which puts \
         both profiles in this page. The decision matrix above then cites each profile's \
         own figures.\n\
         5. Switch `strata serve` and `strata worker` to the profile. With every engine a \
         shared service, several processes can run side by side: the cache's backplane, \
         rate limits and locks then span them.\n\n",
    );
    out.push_str("What is kept and what is not:\n\n");
    out.push_str(
        "- **Key-value**: the embedded store is in memory only, so there is nothing to \
         carry over: on Redis the caches refill from their sources, features and \
         leaderboard scores come back as they are written again, counters count from \
         zero, rate-limit windows and locks start free. The same happens at every restart \
         of the embedded profile.\n\
         - **Queue**: the embedded broker's messages live in memory. Stop `strata serve` \
         and `strata worker` with SIGTERM so that running handlers finish and acknowledge \
         (`pipelines.shutdown_grace`); messages still queued are lost with the process. \
         Dead letters are documents and the outbox is a relational table: they stay with \
         those engines, and unsent outbox events are published by the relay on the new \
         broker as long as the relational engine keeps them.\n\
         - **Relational and documents**: they persist in the data dir (`strata.db`, \
         `documents/`), which the switch leaves untouched, so switching back is the same \
         configuration change. strata has no command that copies a data dir into \
         PostgreSQL or MongoDB: the new engines start empty (`strata seed` loads the \
         sample data); history to keep is copied with the databases' own tools.\n\n",
    );
    out.push_str(
        "**Runs into documents** (`strata migrate`, on whichever engines are configured): \
         the relational engine stays the source of truth for training runs, and their \
         metadata can be copied beside the configs.\n\n\
         ```sh\n\
         strata migrate runs-to-docs --batch 500   # into training_runs_migrated: upserts by source id, resumes after its checkpoint\n\
         strata migrate verify                     # counts and per-record checksums; exit 1 listing every drifted record\n\
         strata migrate reconcile                  # repairs recorded dual-write failures and every drift, from the runs\n\
         strata migrate rebuild-read-model         # recomputes model_views from the runs and aliases\n\
         ```\n",
    );
}

// ---------------------------------------------------------------------
// strata explain

/// The width `strata explain` wraps its tables to, whatever the terminal.
const EXPLAIN_WIDTH: u16 = 120;

fn text_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(EXPLAIN_WIDTH)
        .set_header(header.iter().copied());
    table
}

/// What `strata explain` prints: where each kind of data lives on
/// `config` (its engines and targets, no credential shown), then the
/// decision matrix, citing `run`'s figures when one is given: those of
/// its profile on the same engines as `config`, else of its first.
pub fn explain(config: &Config, run: Option<&BenchRun>) -> String {
    let mut out = String::new();
    out.push_str("Where each kind of data lives on this configuration\n");
    out.push_str("===================================================\n");
    let placements: Vec<routes::Placement> = EngineKind::ALL
        .iter()
        .map(|e| routes::placement(config, *e))
        .collect();
    for p in &placements {
        let _ = writeln!(out, "{:<10}  {p}", p.engine.as_str());
    }
    out.push('\n');
    let mut table = text_table(&["data", "engine", "why"]);
    for route in ROUTES {
        let engine = placements
            .iter()
            .find(|p| p.engine == route.engine)
            .map_or_else(
                || route.engine.to_string(),
                |p| format!("{} ({p})", p.engine),
            );
        table.add_row(vec![route.data.to_owned(), engine, route.why.to_owned()]);
    }
    let _ = writeln!(out, "{table}");

    out.push('\n');
    out.push_str("Which engine for what, and why\n");
    out.push_str("==============================\n");
    let profile = run.and_then(|run| {
        let same = run.profiles.iter().find(|p| {
            let e = &p.engines;
            [&e.relational, &e.documents, &e.kv, &e.queue]
                .iter()
                .zip(&placements)
                .all(|(kind, placement)| kind.as_str() == placement.backend)
        });
        same.or_else(|| run.profiles.first())
            .map(|p| (run, p, same.is_some()))
    });
    match profile {
        Some((run, p, same)) => {
            let _ = writeln!(
                out,
                "Figures: profile `{}` of the bench run started {} (`{}`){}.",
                p.profile,
                run.started_at,
                run.command,
                if same {
                    ""
                } else {
                    "; its engines are not the configured ones"
                }
            );
        }
        None if run.is_some() => {
            out.push_str("The bench run given measured no profile: the reasons alone.\n");
        }
        None => out.push_str("No bench run given: the reasons alone.\n"),
    }
    let mut table = text_table(&["use", "engine", "why"]);
    for d in decision_matrix(profile.map(|(_, p, _)| p)) {
        table.add_row(vec![d.use_case.to_owned(), d.engine.to_owned(), d.reason]);
    }
    let _ = writeln!(out, "{table}");
    out
}

#[cfg(test)]
mod tests {
    use super::super::harness::Latency;
    use super::super::model::{EngineSet, Machine, Ratio, Store, ToolVersion};
    use super::*;

    /// A measurement of `mode` whose percentiles are `p99_us` and
    /// fractions of it.
    fn measurement(mode: Mode, p99_us: f64, throughput: f64) -> Measurement {
        let latency = Latency {
            count: 1000,
            mean_us: p99_us / 3.0,
            p50_us: p99_us / 4.0,
            p90_us: p99_us / 2.0,
            p99_us,
            p999_us: p99_us * 2.0,
            max_us: p99_us * 3.0,
            curve: Vec::new(),
        };
        Measurement {
            mode,
            ok: 1000,
            errors: 0,
            timeouts: 0,
            first_error: None,
            unfinished: 0,
            elapsed_s: 1.0,
            throughput,
            corrected: latency.clone(),
            uncorrected: latency,
            dispatch_late: None,
        }
    }

    /// A workload measured in three open rounds (p99 of `p99_us`, once
    /// much worse: the median ignores it) and one closed run.
    fn workload(id: &str, store: Store, engine: &str, items: u32, p99_us: f64) -> WorkloadRun {
        let open = |p99| {
            measurement(
                Mode::Open {
                    rate: 1000.0,
                    connections: 4,
                },
                p99,
                1000.0,
            )
        };
        WorkloadRun {
            id: id.to_owned(),
            title: format!("the {id} workload"),
            store,
            engine: engine.to_owned(),
            items,
            open: vec![open(p99_us), open(p99_us * 10.0), open(p99_us)],
            closed: vec![measurement(
                Mode::Closed { concurrency: 8 },
                p99_us * 2.0,
                1e6 / p99_us,
            )],
        }
    }

    fn profile(workloads: Vec<WorkloadRun>) -> ProfileRun {
        ProfileRun {
            profile: "embedded".into(),
            sandbox: String::new(),
            engines: EngineSet {
                relational: "sqlite".into(),
                documents: "embedded".into(),
                kv: "embedded".into(),
                queue: "embedded".into(),
                targets: vec!["relational: ./data/strata.db".into()],
            },
            config: serde_json::json!({}),
            workloads,
            sweep: None,
            baselines: Vec::new(),
            ratios: vec![Ratio {
                id: "kv-vs-relational-read".into(),
                title: "key-value read vs relational read".into(),
                value: 9.5,
                basis: "p99".into(),
                expectation: Some("≥ 5×".into()),
            }],
            skipped: Vec::new(),
        }
    }

    fn synthetic_profile() -> ProfileRun {
        profile(vec![
            workload("kv.read", Store::Kv, "embedded", 1, 41.0),
            workload("kv.batch_read", Store::Kv, "embedded", 100, 180.0),
            workload("relational.read", Store::Relational, "sqlite", 1, 390.0),
            workload("cache.l1", Store::Cache, "moka", 1, 3.0),
            workload("cache.miss", Store::Cache, "sqlite", 1, 450.0),
            workload("queue.roundtrip", Store::Queue, "embedded", 1, 95.0),
        ])
    }

    fn bench_run(profiles: Vec<ProfileRun>) -> BenchRun {
        BenchRun {
            schema: super::super::model::SCHEMA,
            started_at: "2026-12-01T10:00:00Z".into(),
            command: "strata bench --json embedded.json".into(),
            quick: false,
            phase_seconds: 5.0,
            machine: Machine {
                cores: 2,
                memory_bytes: Some(8 << 30),
                cpu: Some("a test CPU".into()),
                os: "linux 6.1.0 x86_64".into(),
                strata_version: "0.1.0".into(),
                build: "release".into(),
                load_average: Some("0.10 0.20 0.30".into()),
                tools: vec![ToolVersion {
                    name: "redis-benchmark".into(),
                    version: "not found".into(),
                }],
            },
            profiles,
        }
    }

    fn row<'a>(matrix: &'a [Decision], use_case: &str) -> &'a Decision {
        matrix
            .iter()
            .find(|d| d.use_case == use_case)
            .unwrap_or_else(|| panic!("no row for {use_case}: {matrix:?}"))
    }

    #[test]
    fn the_matrix_cites_the_measured_key_read_against_the_relational_read() {
        let p = synthetic_profile();
        let matrix = decision_matrix(Some(&p));
        let features = row(&matrix, "online feature reads");
        assert!(
            features.reason.contains(
                "key read (embedded) p99 41 µs vs relational row read (sqlite) 390 µs (9.5× faster)"
            ),
            "{}",
            features.reason
        );
        assert!(
            features
                .reason
                .contains("batch key read (embedded) p99 180 µs for 100 items (1.8 µs an item)"),
            "{}",
            features.reason
        );
        assert_eq!(
            features.cites,
            ["kv.read", "relational.read", "kv.batch_read"]
        );
        let hot = row(
            &matrix,
            "hot reads of anything (model info, runs, feature views)",
        );
        assert!(
            hot.reason.contains(
                "L1 hit (moka) p99 3.0 µs vs miss loaded from L3 (sqlite) 450 µs (150× faster)"
            ),
            "{}",
            hot.reason
        );
        let tasks = row(&matrix, "pipelines and tasks");
        assert!(
            tasks.reason.contains("p99 95 µs, up to 10,526 requests/s"),
            "{}",
            tasks.reason
        );
    }

    #[test]
    fn a_missing_workload_falls_back_to_the_qualitative_reason() {
        let qualitative = decision_matrix(None);
        assert!(qualitative.iter().all(|d| d.cites.is_empty()));
        assert!(qualitative.iter().all(|d| !d.reason.contains("Measured")));

        let mut p = synthetic_profile();
        p.workloads.retain(|w| w.id != "kv.read");
        let matrix = decision_matrix(Some(&p));
        let features = row(&matrix, "online feature reads");
        assert!(
            !features.reason.contains("relational row read"),
            "{}",
            features.reason
        );
        assert!(!features.cites.iter().any(|c| c == "kv.read"));
        assert!(!features.cites.iter().any(|c| c == "relational.read"));

        // Nothing measured for a row: its reason alone, as without a run.
        let configs = row(&matrix, "model configs and experiments");
        let without = row(&qualitative, "model configs and experiments");
        assert_eq!(configs, without);

        // The other side missing: the measured side alone.
        p.workloads.retain(|w| w.id != "cache.miss");
        let matrix = decision_matrix(Some(&p));
        let hot = row(
            &matrix,
            "hot reads of anything (model info, runs, feature views)",
        );
        assert!(
            hot.reason.contains("L1 hit (moka) p99 3.0 µs"),
            "{}",
            hot.reason
        );
        assert!(!hot.reason.contains(" vs "), "{}", hot.reason);
        assert_eq!(hot.cites, ["cache.l1"]);

        // A workload whose every request failed is not cited.
        for w in &mut p.workloads {
            for m in w.open.iter_mut().chain(&mut w.closed) {
                m.ok = 0;
            }
        }
        assert_eq!(decision_matrix(Some(&p)), qualitative);
    }

    #[test]
    fn a_workload_measured_closed_loop_only_cites_its_lowest_concurrency() {
        let mut w = workload("kv.read", Store::Kv, "redis", 1, 41.0);
        w.open.clear();
        w.closed
            .push(measurement(Mode::Closed { concurrency: 1 }, 30.0, 100.0));
        let f = figures(&w).expect("closed figures");
        assert_eq!(f.basis, "closed ×1");
        assert_eq!(f.p99_us, 30.0);
    }

    #[test]
    fn the_analysis_is_deterministic_and_has_every_section() {
        let runs = vec![bench_run(vec![synthetic_profile()])];
        let files = vec!["bench/embedded.json".to_owned()];
        let first = analysis_markdown(&runs, &files);
        let second = analysis_markdown(&runs.clone(), &files.clone());
        assert_eq!(first, second);
        for section in [
            "## Machine and build",
            "## Measured results",
            "## Reproduce",
            "## Decision matrix",
            "## Engine trade-offs",
            "## The hybrid architecture",
            "## Migration: from the embedded profile to the real services",
        ] {
            assert!(first.contains(section), "no {section:?} in\n{first}");
        }
        assert!(first.contains("Do not edit"), "{first}");
        assert!(first.contains("`bench/embedded.json`"), "{first}");
        assert!(
            first.contains(
                "strata bench --json embedded.json\nstrata bench report bench/embedded.json\n"
            ),
            "{first}"
        );
        assert!(first.contains("390 µs (9.5× faster)"), "{first}");
        for engine in [
            "SQLite",
            "PostgreSQL",
            "Embedded document store",
            "MongoDB",
            "Embedded key-value store",
            "Redis",
            "Embedded broker",
            "RabbitMQ",
        ] {
            assert!(first.contains(&format!("### {engine}: ")), "{engine}");
        }
        for command in ["strata migrate runs-to-docs", "strata migrate verify"] {
            assert!(first.contains(command), "{command}");
        }
        // Every route of the demo's table is in the architecture.
        for route in routes::demo_routes() {
            assert!(first.contains(route.data), "{}", route.data);
        }
        // Another input, another page.
        let other = analysis_markdown(&runs, &["elsewhere.json".to_owned()]);
        assert_ne!(first, other);
        assert!(other.contains("`elsewhere.json`"));
    }

    #[test]
    fn file_names_are_quoted_for_the_shell_and_cells_for_markdown() {
        assert_eq!(
            report_command(&["a b.json".into(), "c.json".into()]),
            "strata bench report 'a b.json' c.json"
        );
        assert_eq!(cell("a | b\nc"), "a \\| b c");
        let empty = analysis_markdown(&[], &[]);
        assert!(empty.contains("No profile was measured: the reasons alone."));
    }

    /// `text` with the tables' borders gone and every run of white space
    /// one space, so that a phrase wrapped in a cell is found whole.
    fn flat(text: &str) -> String {
        text.replace(|c: char| "│┆┌┐└┘├┤┬┴┼─═╞╡╪".contains(c), " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn explain_names_the_configured_engines_and_cites_a_run() {
        let config = Config::default();
        let text = explain(&config, None);
        let db = config.data_dir.join("strata.db").display().to_string();
        let docs = config.documents_dir().display().to_string();
        assert!(
            text.contains(&format!("relational  sqlite {db}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("documents   embedded {docs}\n")),
            "{text}"
        );
        assert!(
            text.contains("kv          embedded in-process, max "),
            "{text}"
        );
        assert!(text.contains("queue       embedded in-process\n"), "{text}");
        let flat_text = flat(&text);
        assert!(
            flat_text.contains(&format!("relational (sqlite {db})")),
            "{flat_text}"
        );
        assert!(flat_text.contains(&format!("documents (embedded {docs})")));
        assert!(flat_text.contains("queue (embedded in-process)"));
        assert!(text.contains("No bench run given"), "{text}");
        assert!(flat_text.contains("online feature reads"), "{text}");
        assert!(!text.contains("Measured"), "{text}");

        let run = bench_run(vec![synthetic_profile()]);
        let text = explain(&config, Some(&run));
        let flat_text = flat(&text);
        assert!(flat_text.contains("profile `embedded`"), "{text}");
        assert!(!flat_text.contains("not the configured ones"), "{text}");
        assert!(
            flat_text.contains(
                "key read (embedded) p99 41 µs vs relational row read (sqlite) 390 µs (9.5× faster)"
            ),
            "{flat_text}"
        );
        assert_eq!(text, explain(&config, Some(&run)));

        // A run on other engines is still cited, and says so.
        let mut other = synthetic_profile();
        other.profile = "full".into();
        other.engines.relational = "postgres".into();
        let text = explain(&config, Some(&bench_run(vec![other])));
        assert!(flat(&text).contains("profile `full`"), "{text}");
        assert!(flat(&text).contains("not the configured ones"), "{text}");
    }
}
