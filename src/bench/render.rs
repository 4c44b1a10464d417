//! What a bench run shows: the table `strata bench` prints at the end, the
//! same content as Markdown (`--markdown FILE`, and the sections
//! `docs/ANALYSIS.md` embeds), the SVG chart (`--chart FILE`), and `strata
//! bench compare`.
//!
//! Open-loop figures are those of each workload's first round (the chart
//! and the comparison use the same round); the other rounds serve to
//! measure the noise. Latencies are in µs: `0.85`, `12.3`, `1,234`, then
//! `12.1 ms` and `3.20 s`.

use std::fmt::Write as _;
use std::io::IsTerminal as _;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::harness::{KNEE_SHORTFALL, Latency, Measurement, Mode, SweepStep, fmt_rate};
use super::model::{
    BenchRun, Comparison, Machine, ProfileRun, Ratio, Side, SweepRun, WorkloadRun, median,
};
use crate::error::{Error, Result};

/// The width tables are laid out to when standard output is not a
/// terminal (or the terminal does not say how wide it is): output written
/// to a file or a pipe is the same on every machine.
const TABLE_WIDTH: u16 = 160;

/// The chart's width, in pixels.
const CHART_WIDTH: u32 = 1200;

/// The width of the key beside a percentile plot, in pixels.
const LEGEND_WIDTH: u32 = 340;

/// The last finite tick of the percentile axis: 99.999% (five nines).
const NINES_MAX: f64 = 5.0;

// ---------------------------------------------------------------------------
// Numbers for people
// ---------------------------------------------------------------------------

/// A latency given in µs, for people: `0.85`, `12.3`, `1,234`, `12.1 ms`,
/// `3.20 s`; `–` when there is none.
pub fn fmt_us(us: f64) -> String {
    if !us.is_finite() || us < 0.0 {
        "–".to_owned()
    } else if us < 1.0 {
        format!("{us:.2}")
    } else if us < 99.95 {
        format!("{us:.1}")
    } else if us < 10_000.0 {
        fmt_rate(us)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// [`fmt_us`] with its unit: `12.3 µs`, `12.1 ms`.
pub fn fmt_us_unit(us: f64) -> String {
    let text = fmt_us(us);
    if text.ends_with('s') || text == "–" {
        text
    } else {
        format!("{text} µs")
    }
}

/// A ratio for people: `0.76×`, `14.2×`, `142×`; `–` when there is none.
pub fn fmt_ratio(ratio: f64) -> String {
    if !ratio.is_finite() || ratio <= 0.0 {
        "–".to_owned()
    } else if ratio < 10.0 {
        format!("{ratio:.2}×")
    } else if ratio < 100.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{ratio:.0}×")
    }
}

/// A relative change: `+12.3%`, `-50.0%`.
fn fmt_change(relative: f64) -> String {
    format!("{:+.1}%", relative * 100.0)
}

/// A latency of a distribution, `–` when nothing was recorded.
fn lat(l: &Latency, us: f64) -> String {
    if l.count == 0 {
        "–".to_owned()
    } else {
        fmt_us(us)
    }
}

fn fmt_bytes(bytes: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let gib = bytes as f64 / GIB;
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else {
        format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// The open-loop rate of a measurement, if it is one.
fn open_rate(m: &Measurement) -> Option<(f64, usize)> {
    match m.mode {
        Mode::Open { rate, connections } => Some((rate, connections)),
        Mode::Closed { .. } => None,
    }
}

fn concurrency(m: &Measurement) -> Option<usize> {
    match m.mode {
        Mode::Closed { concurrency } => Some(concurrency),
        Mode::Open { .. } => None,
    }
}

// ---------------------------------------------------------------------------
// Sections, shared by the terminal and Markdown
// ---------------------------------------------------------------------------

/// A table's content, rendered either for the terminal or as Markdown.
#[derive(Debug, Default)]
struct Grid {
    header: Vec<String>,
    /// Which columns are numbers (right-aligned).
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Grid {
    fn new(columns: &[(&str, bool)]) -> Grid {
        Grid {
            header: columns.iter().map(|(h, _)| (*h).to_owned()).collect(),
            right: columns.iter().map(|(_, r)| *r).collect(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn text(&self) -> String {
        let mut table = text_table(&self.header);
        for (i, right) in self.right.iter().enumerate() {
            if *right && let Some(column) = table.column_mut(i) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        for row in &self.rows {
            table.add_row(row.clone());
        }
        table.to_string()
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let cells = |row: &[String]| {
            row.iter()
                .map(|c| md_cell(c))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let _ = writeln!(out, "| {} |", cells(&self.header));
        let rule: Vec<&str> = self
            .right
            .iter()
            .map(|r| if *r { "---:" } else { "---" })
            .collect();
        let _ = writeln!(out, "| {} |", rule.join(" | "));
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", cells(row));
        }
        out
    }
}

/// Escapes what would break a Markdown table cell.
fn md_cell(text: &str) -> String {
    let text = text.replace('|', "\\|").replace(['\n', '\r'], " ");
    if text.is_empty() {
        " ".to_owned()
    } else {
        text
    }
}

/// A terminal table: the CLI's style, laid out to the terminal's width
/// when standard output is one and it says how wide (`COLUMNS`), else to
/// [`TABLE_WIDTH`].
fn text_table(header: &[String]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(table_width())
        .set_header(header.iter().cloned());
    table
}

fn table_width() -> u16 {
    if std::io::stdout().is_terminal()
        && let Some(columns) = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<u16>().ok())
            .filter(|c| *c >= 40)
    {
        return columns;
    }
    TABLE_WIDTH
}

/// One section of a profile: a sentence saying what it shows, a table,
/// and notes under it.
#[derive(Debug, Default)]
struct Section {
    title: &'static str,
    intro: String,
    grid: Option<Grid>,
    notes: Vec<String>,
}

impl Section {
    fn is_empty(&self) -> bool {
        self.grid.is_none() && self.notes.is_empty()
    }

    fn text(&self, out: &mut String) {
        if self.is_empty() {
            return;
        }
        out.push('\n');
        wrap(out, &format!("{}: {}", self.title, self.intro), "");
        if let Some(grid) = &self.grid {
            let _ = writeln!(out, "{}", grid.text());
        }
        for note in &self.notes {
            wrap(out, note, "  ");
        }
    }

    fn markdown(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.is_empty() {
            return String::new();
        }
        if !self.intro.is_empty() {
            parts.push(format!("{}.\n", upper_first(&self.intro)));
        }
        if let Some(grid) = &self.grid {
            parts.push(grid.markdown());
        }
        if !self.notes.is_empty() {
            parts.push(self.notes.iter().map(|n| format!("- {n}\n")).collect());
        }
        parts.join("\n")
    }
}

/// Writes `text` as lines of at most the table width, each starting with
/// `indent` (the lines after the first, with two spaces more).
fn wrap(out: &mut String, text: &str, indent: &str) {
    let width = usize::from(table_width());
    let mut line = String::from(indent);
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = format!("{indent}  ");
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The closed-loop concurrencies measured in a profile, ascending.
fn concurrencies(p: &ProfileRun) -> Vec<usize> {
    let mut out: Vec<usize> = p
        .workloads
        .iter()
        .flat_map(|w| w.closed.iter().filter_map(concurrency))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn workloads_section(p: &ProfileRun, with_titles: bool) -> Section {
    let mut section = Section {
        title: "workloads",
        ..Section::default()
    };
    if p.workloads.is_empty() {
        return section;
    }
    let levels = concurrencies(p);
    let rounds = p.workloads.iter().map(|w| w.open.len()).max().unwrap_or(0);
    let mut connections: Vec<usize> = p
        .workloads
        .iter()
        .filter_map(|w| w.open.first().and_then(open_rate).map(|(_, c)| c))
        .collect();
    connections.sort_unstable();
    connections.dedup();
    let one_pool = connections.len() == 1;
    section.intro = format!(
        "open loop at a fixed rate{}{}; latencies in µs, corrected for coordinated omission \
         (from each request's due time); \"p99 uncorr.\" is from when it was sent, what a \
         closed-loop tool reports; \"closed ×N\" is the throughput of N sessions each sending \
         its next request when the last answer ends; errors count every run of the workload",
        if one_pool {
            format!(" on {} connections", connections[0])
        } else {
            String::new()
        },
        if rounds > 1 {
            format!(", first of {rounds} rounds")
        } else {
            String::new()
        },
    );
    let mut columns: Vec<(String, bool)> = vec![("workload".into(), false)];
    if with_titles {
        columns.push(("what".into(), false));
    }
    columns.extend([
        ("engine".into(), false),
        ("open /s".into(), true),
        ("p50".into(), true),
        ("p99".into(), true),
        ("p99.9".into(), true),
        ("max".into(), true),
        ("p99 uncorr.".into(), true),
    ]);
    columns.extend(levels.iter().map(|c| (format!("closed ×{c} /s"), true)));
    columns.push(("errors".into(), true));
    let refs: Vec<(&str, bool)> = columns.iter().map(|(h, r)| (h.as_str(), *r)).collect();
    let mut grid = Grid::new(&refs);
    for w in &p.workloads {
        let mut row = vec![w.id.clone()];
        if with_titles {
            row.push(w.title.clone());
        }
        row.push(w.engine.clone());
        match w.open.first() {
            Some(open) => {
                let (rate, conn) = open_rate(open).unwrap_or((0.0, 0));
                let mut cell = fmt_rate(rate);
                if !one_pool {
                    let _ = write!(cell, " ({conn} conn.)");
                }
                if open.throughput < KNEE_SHORTFALL * rate {
                    let _ = write!(cell, " (got {})", fmt_rate(open.throughput));
                    section.notes.push(format!(
                        "{}: answered {} /s of the {} /s offered; its latencies include the \
                         queue that built up",
                        w.id,
                        fmt_rate(open.throughput),
                        fmt_rate(rate)
                    ));
                }
                let c = &open.corrected;
                row.extend([
                    cell,
                    lat(c, c.p50_us),
                    lat(c, c.p99_us),
                    lat(c, c.p999_us),
                    lat(c, c.max_us),
                    lat(&open.uncorrected, open.uncorrected.p99_us),
                ]);
                if let Some(late) = &open.dispatch_late
                    && late.count > 0
                    && late.p99_us > 50.0
                    && late.p99_us > 0.1 * c.p99_us
                {
                    section.notes.push(format!(
                        "{}: the load generator handed requests out up to {} late (p99): \
                         that much of the corrected latency is its own",
                        w.id,
                        fmt_us_unit(late.p99_us)
                    ));
                }
            }
            None => row.extend(std::iter::repeat_n("–".to_owned(), 6)),
        }
        for level in &levels {
            row.push(
                w.closed_at(*level)
                    .map_or_else(|| "–".to_owned(), |m| fmt_rate(m.throughput)),
            );
        }
        let all = || w.open.iter().chain(&w.closed);
        let errors: u64 = all().map(|m| m.errors).sum();
        let unfinished: u64 = all().map(|m| m.unfinished).sum();
        let mut cell = errors.to_string();
        if unfinished > 0 {
            let _ = write!(cell, " +{unfinished} unfinished");
        }
        row.push(cell);
        if let Some(first) = all().find_map(|m| m.first_error.as_deref()) {
            section
                .notes
                .push(format!("{}: {errors} errors, the first: {first}", w.id));
        } else if unfinished > 0 {
            section.notes.push(format!(
                "{}: {unfinished} requests still queued when the drain time ran out",
                w.id
            ));
        }
        grid.push(row);
    }
    section.grid = Some(grid);
    section
}

fn sweep_section(p: &ProfileRun) -> Section {
    let mut section = Section {
        title: "sweep",
        ..Section::default()
    };
    let Some(run) = &p.sweep else {
        return section;
    };
    section.intro = format!(
        "offered {} at rising rates on {} connections, open loop; p50 and p99 corrected, in µs",
        run.workload, run.connections
    );
    let mut grid = Grid::new(&[
        ("offered /s", true),
        ("achieved /s", true),
        ("p50", true),
        ("p99", true),
        ("errors", true),
        ("", false),
    ]);
    for (i, s) in run.sweep.steps.iter().enumerate() {
        let mut errors = s.errors.to_string();
        if s.unfinished > 0 {
            let _ = write!(errors, " +{} unfinished", s.unfinished);
        }
        grid.push(vec![
            fmt_rate(s.offered),
            fmt_rate(s.achieved),
            fmt_us(s.p50_us),
            fmt_us(s.p99_us),
            errors,
            if run.sweep.knee == Some(i) {
                "← knee".to_owned()
            } else {
                String::new()
            },
        ]);
    }
    section.notes.push(knee_sentence(run));
    section.grid = Some(grid);
    section
}

fn knee_sentence(run: &SweepRun) -> String {
    match run.sweep.knee.and_then(|k| run.sweep.steps.get(k)) {
        Some(k) => format!(
            "knee at {} /s offered: {} /s achieved, p99 {}; below it latency stays on its floor",
            fmt_rate(k.offered),
            fmt_rate(k.achieved),
            fmt_us_unit(k.p99_us)
        ),
        None => match run.sweep.steps.last() {
            Some(last) => format!(
                "no knee: latency stayed on its floor and throughput kept up to {} /s offered",
                fmt_rate(last.offered)
            ),
            None => "no steps ran".to_owned(),
        },
    }
}

/// Medians of a comparison's rounds: (strata, tool) for throughput, p50,
/// p99.
fn baseline_medians(c: &Comparison) -> [(f64, f64); 3] {
    let m = |rounds: &[Side], f: fn(&Side) -> f64| median(rounds.iter().map(f));
    [
        (
            m(&c.strata_rounds, |s| s.throughput),
            m(&c.baseline_rounds, |s| s.throughput),
        ),
        (
            m(&c.strata_rounds, |s| s.p50_us),
            m(&c.baseline_rounds, |s| s.p50_us),
        ),
        (
            m(&c.strata_rounds, |s| s.p99_us),
            m(&c.baseline_rounds, |s| s.p99_us),
        ),
    ]
}

fn baselines_section(p: &ProfileRun) -> Section {
    let mut section = Section {
        title: "baselines",
        ..Section::default()
    };
    if p.baselines.is_empty() {
        return section;
    }
    let rounds = p
        .baselines
        .iter()
        .map(|c| c.strata_rounds.len().min(c.baseline_rounds.len()))
        .max()
        .unwrap_or(0);
    section.intro = format!(
        "strata beside the native tools doing the same work, closed loop with the same \
         clients, medians of {rounds} interleaved rounds, latencies in µs; × is strata / tool \
         (above 1 for throughput, below 1 for latency: strata is faster)"
    );
    let mut grid = Grid::new(&[
        ("baseline", false),
        ("clients", true),
        ("strata /s", true),
        ("tool /s", true),
        ("×", true),
        ("strata p50", true),
        ("tool p50", true),
        ("× p50", true),
        ("strata p99", true),
        ("tool p99", true),
        ("× p99", true),
    ]);
    for c in &p.baselines {
        let [tp, p50, p99] = baseline_medians(c);
        grid.push(vec![
            c.id.clone(),
            c.clients.to_string(),
            fmt_rate(tp.0),
            fmt_rate(tp.1),
            fmt_ratio(c.throughput_ratio),
            fmt_us(p50.0),
            fmt_us(p50.1),
            fmt_ratio(c.p50_ratio),
            fmt_us(p99.0),
            fmt_us(p99.1),
            fmt_ratio(c.p99_ratio),
        ]);
        section.notes.push(format!(
            "{}: {}; strata: {}; tool: `{}`",
            c.id, c.title, c.strata, c.command
        ));
    }
    section.grid = Some(grid);
    section
}

/// Whether `value` meets an expectation written `≥ 5×`, `>= 5`, `≤ 2×`:
/// `None` when the expectation is not of that form.
fn meets(value: f64, expectation: &str) -> Option<bool> {
    let e = expectation.trim();
    let (at_least, rest) = if let Some(rest) = e.strip_prefix('≥').or(e.strip_prefix(">=")) {
        (true, rest)
    } else if let Some(rest) = e.strip_prefix('≤').or(e.strip_prefix("<=")) {
        (false, rest)
    } else {
        return None;
    };
    let number: f64 = rest
        .trim()
        .trim_end_matches(['×', 'x'])
        .trim()
        .parse()
        .ok()?;
    Some(if at_least {
        value >= number
    } else {
        value <= number
    })
}

fn expectation_cell(r: &Ratio) -> String {
    match &r.expectation {
        None => "–".to_owned(),
        Some(e) => match meets(r.value, e) {
            Some(true) => format!("{e} (met)"),
            Some(false) => format!("{e} (NOT met)"),
            None => e.clone(),
        },
    }
}

fn ratios_section(p: &ProfileRun) -> Section {
    let mut section = Section {
        title: "ratios",
        ..Section::default()
    };
    if p.ratios.is_empty() {
        return section;
    }
    section.intro = "how many times faster the first is (above 1: faster)".to_owned();
    let mut grid = Grid::new(&[
        ("ratio", false),
        ("×", true),
        ("basis", false),
        ("expected", false),
    ]);
    for r in &p.ratios {
        grid.push(vec![
            r.title.clone(),
            fmt_ratio(r.value),
            r.basis.clone(),
            expectation_cell(r),
        ]);
    }
    section.grid = Some(grid);
    section
}

/// The ratio lines of the terminal output: `key-value read vs relational
/// read: 14.2× (basis; expected ≥ 5× (met))`.
fn ratio_lines(p: &ProfileRun, out: &mut String) {
    if p.ratios.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nratios: how many times faster the first is (above 1: faster)"
    );
    for r in &p.ratios {
        let mut line = format!("{}: {} ({}", r.title, fmt_ratio(r.value), r.basis);
        if r.expectation.is_some() {
            let _ = write!(line, "; expected {}", expectation_cell(r));
        }
        line.push(')');
        wrap(out, &line, "  ");
    }
}

fn skipped_section(p: &ProfileRun) -> Section {
    let mut section = Section {
        title: "skipped",
        ..Section::default()
    };
    if p.skipped.is_empty() {
        return section;
    }
    section.intro = "not run, and why".to_owned();
    let mut grid = Grid::new(&[("what", false), ("why", false)]);
    for s in &p.skipped {
        grid.push(vec![s.what.clone(), s.reason.clone()]);
    }
    section.grid = Some(grid);
    section
}

fn engines_line(p: &ProfileRun) -> String {
    let e = &p.engines;
    format!(
        "relational {}, documents {}, key-value {}, queue {}",
        e.relational, e.documents, e.kv, e.queue
    )
}

fn machine_line(m: &Machine) -> String {
    let mut parts = vec![format!("{} cores", m.cores)];
    if let Some(bytes) = m.memory_bytes {
        parts.push(fmt_bytes(bytes));
    }
    if let Some(cpu) = &m.cpu {
        parts.push(cpu.clone());
    }
    parts.push(m.os.clone());
    parts.push(format!("strata {}, {} build", m.strata_version, m.build));
    if let Some(load) = &m.load_average {
        parts.push(format!("load average {load}"));
    }
    parts.join("; ")
}

fn is_debug(m: &Machine) -> bool {
    m.build.eq_ignore_ascii_case("debug")
}

const DEBUG_WARNING: &str = "DEBUG BUILD: these figures are not representative (a debug build \
     is many times slower); build with `cargo build --release` and run again";

// ---------------------------------------------------------------------------
// The terminal table
// ---------------------------------------------------------------------------

/// What `strata bench` prints at the end: the machine, then per profile
/// its workloads, the sweep, the baselines, the ratios and what was
/// skipped. Tables are laid out to the terminal's width when standard
/// output is one and `COLUMNS` says it, else to 160 columns.
pub fn table(run: &BenchRun) -> String {
    let mut out = String::new();
    let debug = is_debug(&run.machine);
    if debug {
        let _ = writeln!(out, "!!! {DEBUG_WARNING} !!!\n");
    }
    let _ = writeln!(out, "strata bench, started {}", run.started_at);
    let _ = writeln!(out, "machine: {}", machine_line(&run.machine));
    if !run.machine.tools.is_empty() {
        let tools: Vec<String> = run
            .machine
            .tools
            .iter()
            .map(|t| format!("{} ({})", t.name, t.version))
            .collect();
        let _ = writeln!(out, "tools: {}", tools.join(", "));
    }
    let _ = writeln!(out, "command: {}", run.command);
    let _ = writeln!(
        out,
        "phases: {} s each{}",
        run.phase_seconds,
        if run.quick {
            " (--quick: rough figures)"
        } else {
            ""
        }
    );
    for p in &run.profiles {
        let _ = writeln!(out, "\n=== profile {} ({}) ===", p.profile, engines_line(p));
        if !p.engines.targets.is_empty() {
            let _ = writeln!(out, "targets: {}", p.engines.targets.join(", "));
        }
        workloads_section(p, false).text(&mut out);
        sweep_section(p).text(&mut out);
        baselines_section(p).text(&mut out);
        ratio_lines(p, &mut out);
        if !p.skipped.is_empty() {
            let _ = writeln!(out, "\nskipped:");
            for s in &p.skipped {
                let _ = writeln!(out, "  {}: {}", s.what, s.reason);
            }
        }
    }
    if debug {
        let _ = writeln!(out, "\n!!! {DEBUG_WARNING} !!!");
    }
    out
}

// ---------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------

/// The whole run as GitHub Markdown: a heading, the machine, then per
/// profile the sections of [`markdown_workloads`], [`markdown_sweep`],
/// [`markdown_baselines`], [`markdown_ratios`] and what was skipped.
pub fn markdown(run: &BenchRun) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# strata bench, {}\n", run.started_at);
    if is_debug(&run.machine) {
        let _ = writeln!(out, "> **{DEBUG_WARNING}.**\n");
    }
    let _ = writeln!(out, "- Machine: {}", machine_line(&run.machine));
    for t in &run.machine.tools {
        let _ = writeln!(out, "- Tool: {} ({})", t.name, t.version);
    }
    let _ = writeln!(out, "- Command: `{}`", run.command);
    let _ = writeln!(
        out,
        "- Phases: {} s each{}\n",
        run.phase_seconds,
        if run.quick {
            " (`--quick`: rough figures)"
        } else {
            ""
        }
    );
    for p in &run.profiles {
        let _ = writeln!(out, "## Profile `{}`\n", p.profile);
        let _ = writeln!(out, "Engines: {}.\n", engines_line(p));
        if !p.engines.targets.is_empty() {
            let _ = writeln!(out, "Targets: {}.\n", p.engines.targets.join(", "));
        }
        for (heading, body) in [
            ("Workloads", markdown_workloads(p)),
            ("Sweep", markdown_sweep(p)),
            ("Baselines", markdown_baselines(p)),
            ("Ratios", markdown_ratios(p)),
            ("Skipped", skipped_section(p).markdown()),
        ] {
            if !body.is_empty() {
                let _ = writeln!(out, "### {heading}\n\n{body}");
            }
        }
    }
    out
}

/// A profile's workloads as Markdown: a sentence saying what the columns
/// are, the table (one row per workload), then notes (errors, rates not
/// kept up with). Empty when the profile has none.
pub fn markdown_workloads(p: &ProfileRun) -> String {
    workloads_section(p, true).markdown()
}

/// A profile's sweep as Markdown: a sentence, the steps with `← knee` on
/// the knee, and where the knee is. Empty when no sweep ran.
pub fn markdown_sweep(p: &ProfileRun) -> String {
    sweep_section(p).markdown()
}

/// A profile's baselines as Markdown: a sentence, strata beside each tool
/// with the ratios, and each tool's command line. Empty when none ran.
pub fn markdown_baselines(p: &ProfileRun) -> String {
    baselines_section(p).markdown()
}

/// A profile's derived ratios as Markdown: a sentence and the table
/// (ratio, value, basis, expectation and whether it is met). Empty when
/// there are none.
pub fn markdown_ratios(p: &ProfileRun) -> String {
    ratios_section(p).markdown()
}

// ---------------------------------------------------------------------------
// The chart
// ---------------------------------------------------------------------------

fn drawing(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("cannot draw the bench chart: {e}"))
}

/// Distinct colours (Tableau 10); past ten, lines are dashed.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A percentile on the "nines" scale: 90% → 1, 99% → 2, ..., 100% (and
/// anything past five nines) → 5.
fn nines(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        return NINES_MAX;
    }
    (-(1.0 - percentile / 100.0).log10()).clamp(0.0, NINES_MAX)
}

/// The label of a tick of the nines axis; blank between whole nines.
fn nines_label(x: f64) -> String {
    if (x - x.round()).abs() > 1e-6 {
        return String::new();
    }
    match x.round() as i64 {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        3 => "99.9%".into(),
        4 => "99.99%".into(),
        5 => "99.999%".into(),
        _ => String::new(),
    }
}

/// A log axis over `lo..hi` (both above 0): from the power of ten at or
/// below `lo` (a log axis has ticks from its first power of ten on only),
/// to `hi`; and how many key points to ask for so each power of ten is
/// followed by its 2..9 multiples.
fn log_range(lo: f64, hi: f64) -> (f64, f64, usize) {
    let lo = 10f64.powf(lo.max(1e-3).log10().floor()) * 0.999;
    let hi = hi.max(lo * 2.0);
    // As the axis counts its decades.
    let decades = ((hi / lo).ln() / 10f64.ln()).floor().max(1.0) as usize;
    (lo, hi, 10 * decades + 1)
}

/// A tick of a latency axis: `20`, `500`, `2,000`, `20 ms`, `1 s`.
fn tick_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", trim_zeros(us / 1e6))
    } else if us >= 10_000.0 {
        format!("{} ms", trim_zeros(us / 1000.0))
    } else if us >= 100.0 {
        fmt_rate(us)
    } else {
        trim_zeros(us)
    }
}

/// A tick of a rate axis: `0.5`, `20`, `2,000`.
fn tick_rate(rate: f64) -> String {
    if rate >= 100.0 {
        fmt_rate(rate)
    } else {
        trim_zeros(rate)
    }
}

/// `2`, `0.5`, `1.25`: at most three decimals, no trailing zeros.
fn trim_zeros(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Whether `v` is 1, 2 or 5 × a power of ten (the labelled ticks of a log
/// axis; the others get a grid line only).
fn one_two_five(v: f64) -> bool {
    if v <= 0.0 {
        return false;
    }
    let mantissa = v / 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6 * m)
}

/// The SVG chart of a run, about 1200 px wide: per profile, corrected
/// latency by percentile (one line per workload, open loop, first round,
/// on the "nines" scale) and, when a sweep ran, its corrected p99 by
/// offered rate with the achieved throughput and the knee marked.
pub fn chart_svg(run: &BenchRun) -> Result<String> {
    // Panel heights: curves grow with their legend.
    let mut panels: Vec<(u32, Panel<'_>)> = Vec::new();
    for p in &run.profiles {
        let lines = p.workloads.iter().filter(|w| !w.open.is_empty()).count() as u32;
        panels.push((560.max(200 + 22 * lines), Panel::Curves(p)));
        if let Some(sweep) = &p.sweep {
            panels.push((460, Panel::Sweep(p, sweep)));
        }
    }
    const TITLE: u32 = 50;
    let height = TITLE + panels.iter().map(|(h, _)| h).sum::<u32>().max(100);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (CHART_WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing)?;
        let mut title = format!(
            "strata bench, {} ({} build, {} cores)",
            run.started_at, run.machine.build, run.machine.cores
        );
        if is_debug(&run.machine) {
            title.push_str(" — debug build: not representative");
        }
        let (head, mut rest) = root.split_vertically(TITLE);
        head.draw(&Text::new(
            title,
            (20, 15),
            ("sans-serif", 22).into_font().color(&BLACK),
        ))
        .map_err(drawing)?;
        if panels.is_empty() {
            rest.draw(&Text::new(
                "nothing was measured",
                (20, 20),
                ("sans-serif", 16).into_font(),
            ))
            .map_err(drawing)?;
        }
        for (h, panel) in &panels {
            let (area, below) = rest.split_vertically(*h);
            rest = below;
            match panel {
                Panel::Curves(p) => draw_curves(&area, p)?,
                Panel::Sweep(p, sweep) => draw_sweep(&area, p, sweep)?,
            }
        }
        root.present().map_err(drawing)?;
    }
    Ok(svg)
}

#[derive(Debug)]
enum Panel<'a> {
    Curves(&'a ProfileRun),
    Sweep(&'a ProfileRun, &'a SweepRun),
}

/// One workload's line in a percentile panel.
struct Curve<'a> {
    w: &'a WorkloadRun,
    /// Its open-loop rate.
    rate: f64,
    /// (nines, µs).
    points: Vec<(f64, f64)>,
}

fn draw_curves<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &ProfileRun) -> Result<()> {
    let caption = format!(
        "{}: corrected latency by percentile (open loop, first round)",
        p.profile
    );
    let series: Vec<Curve<'_>> = p
        .workloads
        .iter()
        .filter_map(|w| {
            let open = w.open.first()?;
            let rate = open_rate(open).map_or(0.0, |(r, _)| r);
            let points: Vec<(f64, f64)> = open
                .corrected
                .curve
                .iter()
                .filter(|[_, us]| us.is_finite() && *us > 0.0)
                .map(|[pct, us]| (nines(*pct), *us))
                .collect();
            (!points.is_empty()).then_some(Curve { w, rate, points })
        })
        .collect();
    let area = area.margin(10, 10, 10, 50);
    if series.is_empty() {
        area.draw(&Text::new(
            format!("{caption}: no open-loop runs"),
            (10, 10),
            ("sans-serif", 18).into_font(),
        ))
        .map_err(drawing)?;
        return Ok(());
    }
    let ys = series.iter().flat_map(|c| c.points.iter().map(|(_, y)| *y));
    let lo = ys.clone().fold(f64::INFINITY, f64::min);
    let hi = ys.fold(0.0, f64::max);
    let (y0, y1, y_ticks) = log_range(lo, hi * 1.3);
    // The key to the right of the plot, so it never hides a line.
    let (plot, key) = area.split_horizontally(area.dim_in_pixel().0.saturating_sub(LEGEND_WIDTH));
    let mut chart = ChartBuilder::on(&plot)
        .caption(caption, ("sans-serif", 20))
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..NINES_MAX, (y0..y1).log_scale())
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_labels(NINES_MAX as usize + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .y_labels(y_ticks)
        .y_label_formatter(&|y| {
            if one_two_five(*y) {
                tick_us(*y)
            } else {
                String::new()
            }
        })
        .x_desc("percentile")
        .y_desc("latency, µs (corrected, log scale)")
        .label_style(("sans-serif", 14))
        .max_light_lines(0)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(drawing)?;
    key.draw(&Text::new(
        "workload (engine, open-loop rate)",
        (10, 40),
        ("sans-serif", 13).into_font().color(&BLACK),
    ))
    .map_err(drawing)?;
    for (i, Curve { w, rate, points }) in series.into_iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let style = colour.stroke_width(2);
        let dashed = (i / COLOURS.len()) % 2 == 1;
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(points.clone(), 8, 5, style))
                .map_err(drawing)?;
        } else {
            chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(drawing)?;
        }
        chart
            .draw_series(points.iter().map(|pt| Circle::new(*pt, 3, colour.filled())))
            .map_err(drawing)?;
        let y = 64 + 20 * i as i32;
        let line = vec![(10, y), (40, y)];
        if dashed {
            key.draw(&plotters::element::DashedPathElement::new(
                line, 8, 5, style,
            ))
            .map_err(drawing)?;
        } else {
            key.draw(&PathElement::new(line, style)).map_err(drawing)?;
        }
        key.draw(&Text::new(
            format!("{} ({}, {} /s)", w.id, w.engine, fmt_rate(rate)),
            (48, y),
            ("sans-serif", 12)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(drawing)?;
    }
    Ok(())
}

fn draw_sweep<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &ProfileRun,
    run: &SweepRun,
) -> Result<()> {
    let caption = format!(
        "{}: sweep of {} on {} connections, corrected p99 by offered rate (labels: achieved /s)",
        p.profile, run.workload, run.connections
    );
    let area = area.margin(10, 10, 10, 50);
    let steps: Vec<&SweepStep> = run
        .sweep
        .steps
        .iter()
        .filter(|s| s.offered > 0.0 && s.p99_us > 0.0 && s.p50_us.is_finite())
        .collect();
    if steps.is_empty() {
        area.draw(&Text::new(
            format!("{caption}: no steps"),
            (10, 10),
            ("sans-serif", 18).into_font(),
        ))
        .map_err(drawing)?;
        return Ok(());
    }
    let (x0, x1, x_ticks) = log_range(
        steps
            .iter()
            .map(|s| s.offered)
            .fold(f64::INFINITY, f64::min),
        steps.iter().map(|s| s.offered).fold(0.0, f64::max) * 1.3,
    );
    let positive = |v: f64| if v > 0.0 { v } else { f64::INFINITY };
    let (y0, y1, y_ticks) = log_range(
        steps
            .iter()
            .map(|s| positive(s.p50_us).min(s.p99_us))
            .fold(f64::INFINITY, f64::min),
        steps.iter().map(|s| s.p99_us).fold(0.0, f64::max) * 1.5,
    );
    let mut chart = ChartBuilder::on(&area)
        .caption(caption, ("sans-serif", 20))
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_labels(x_ticks)
        .x_label_formatter(&|x| {
            if one_two_five(*x) {
                tick_rate(*x)
            } else {
                String::new()
            }
        })
        .y_labels(y_ticks)
        .y_label_formatter(&|y| {
            if one_two_five(*y) {
                tick_us(*y)
            } else {
                String::new()
            }
        })
        .x_desc("offered requests a second (log scale)")
        .y_desc("latency, µs (corrected, log scale)")
        .label_style(("sans-serif", 14))
        .max_light_lines(0)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(drawing)?;
    let p99_colour = COLOURS[0];
    let p50_colour = COLOURS[7];
    chart
        .draw_series(LineSeries::new(
            steps.iter().map(|s| (s.offered, s.p99_us)),
            p99_colour.stroke_width(2),
        ))
        .map_err(drawing)?
        .label("p99 (corrected)")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], p99_colour.stroke_width(2))
        });
    let p50: Vec<(f64, f64)> = steps
        .iter()
        .filter(|s| s.p50_us > 0.0)
        .map(|s| (s.offered, s.p50_us))
        .collect();
    chart
        .draw_series(DashedLineSeries::new(p50, 6, 4, p50_colour.stroke_width(1)))
        .map_err(drawing)?
        .label("p50 (corrected)")
        .legend(move |(x, y)| {
            plotters::element::DashedPathElement::new(
                vec![(x, y), (x + 20, y)],
                6,
                4,
                p50_colour.stroke_width(1),
            )
        });
    chart
        .draw_series(steps.iter().enumerate().map(|(i, s)| {
            EmptyElement::at((s.offered, s.p99_us))
                + Circle::new((0, 0), 4, p99_colour.filled())
                + Text::new(
                    format!("{} /s", fmt_rate(s.achieved)),
                    // The first point is on the y axis: its label to the right.
                    (if i == 0 { 6 } else { -20 }, -20),
                    ("sans-serif", 12).into_font().color(&BLACK),
                )
        }))
        .map_err(drawing)?;
    if let Some(k) = run.sweep.knee.and_then(|k| run.sweep.steps.get(k))
        && k.offered > 0.0
        && k.p99_us > 0.0
    {
        let red = RGBColor(214, 39, 40);
        // The label on the side with room: right of the knee in the left
        // half of the axis, left of it in the right half.
        let share = (k.offered / x0).ln() / (x1 / x0).ln();
        let (dx, h_pos) = if share > 0.5 {
            (-16, HPos::Right)
        } else {
            (16, HPos::Left)
        };
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((k.offered, k.p99_us))
                    + Circle::new((0, 0), 9, red.stroke_width(3))
                    + Text::new(
                        format!(
                            "knee: {} /s offered, {} /s achieved, p99 {}",
                            fmt_rate(k.offered),
                            fmt_rate(k.achieved),
                            fmt_us_unit(k.p99_us)
                        ),
                        (dx, 12),
                        ("sans-serif", 14)
                            .into_font()
                            .color(&red)
                            .pos(Pos::new(h_pos, VPos::Top)),
                    ),
            ))
            .map_err(drawing)?
            .label("knee")
            .legend(move |(x, y)| Circle::new((x + 10, y), 6, red.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(drawing)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Compare
// ---------------------------------------------------------------------------

/// A figure compared between two runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// The highest closed-loop throughput (first round), requests a
    /// second.
    ClosedThroughput,
    /// The open-loop corrected median (first round), µs.
    OpenP50,
    /// The open-loop corrected 99th percentile (first round), µs.
    OpenP99,
    /// A baseline's strata / tool throughput.
    BaselineThroughput,
    /// A baseline's strata / tool median latency.
    BaselineP50,
    /// A baseline's strata / tool 99th percentile.
    BaselineP99,
}

impl Figure {
    /// For people: `closed max /s`, `open p99`, `× p50`.
    pub fn name(self) -> &'static str {
        match self {
            Figure::ClosedThroughput => "closed max /s",
            Figure::OpenP50 => "open p50",
            Figure::OpenP99 => "open p99",
            Figure::BaselineThroughput => "× throughput",
            Figure::BaselineP50 => "× p50",
            Figure::BaselineP99 => "× p99",
        }
    }

    /// Whether a higher value is better (faster).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Figure::ClosedThroughput | Figure::BaselineThroughput)
    }

    fn format(self, v: f64) -> String {
        match self {
            Figure::ClosedThroughput => fmt_rate(v),
            Figure::OpenP50 | Figure::OpenP99 => fmt_us_unit(v),
            _ => fmt_ratio(v),
        }
    }
}

/// What a change amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Better beyond the noise.
    Faster,
    /// Worse beyond the noise: a regression.
    Slower,
    /// Within the noise (or the threshold).
    WithinNoise,
}

impl Verdict {
    /// `faster`, `slower`, `within noise`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::WithinNoise => "within noise",
        }
    }
}

/// One figure of one workload or baseline, in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The profile.
    pub profile: String,
    /// The workload's or the baseline's id.
    pub subject: String,
    /// The workload's engine; `None` for a baseline.
    pub engine: Option<String>,
    /// What is compared.
    pub figure: Figure,
    /// In the old run.
    pub old: f64,
    /// In the new run.
    pub new: f64,
    /// `(new - old) / old`.
    pub relative: f64,
    /// The relative spread of the figure across the rounds of the old run
    /// plus that of the new run (0 when each has a single round).
    pub noise: f64,
    /// What the change must exceed to count: `max(threshold, noise)`.
    pub bound: f64,
    /// Faster, slower or within the noise.
    pub verdict: Verdict,
}

/// A workload or baseline in one run only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    /// The profile.
    pub profile: String,
    /// The workload's or the baseline's id.
    pub subject: String,
    /// The workload's engine; `None` for a baseline.
    pub engine: Option<String>,
}

impl std::fmt::Display for Unmatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.engine {
            Some(engine) => write!(f, "{}: {} ({engine})", self.profile, self.subject),
            None => write!(f, "{}: baseline {}", self.profile, self.subject),
        }
    }
}

/// Two runs compared: what `strata bench compare OLD NEW` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareReport {
    /// The smallest relative change that counts, whatever the noise.
    pub threshold: f64,
    /// Each figure matched in both runs, in the order of the new run.
    pub changes: Vec<Change>,
    /// In the old run only.
    pub only_old: Vec<Unmatched>,
    /// In the new run only.
    pub only_new: Vec<Unmatched>,
    /// What else differs: machines, builds, open-loop rates, figures
    /// missing from one side.
    pub notes: Vec<String>,
    /// One line on each run: when, where, which build.
    pub runs: [String; 2],
}

/// The relative spread of `values`: `(max - min) / median`; 0 for fewer
/// than two.
fn spread(values: &[f64]) -> f64 {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return 0.0;
    }
    let mid = median(v.iter().copied());
    if mid <= 0.0 {
        return 0.0;
    }
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    (max - min) / mid
}

/// The closed-loop max throughput of each round: a round is the n-th
/// measurement at each concurrency.
fn closed_rounds(w: &WorkloadRun) -> Vec<f64> {
    let mut levels: Vec<usize> = w.closed.iter().filter_map(concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    let mut rounds: Vec<f64> = Vec::new();
    for level in levels {
        for (r, m) in w
            .closed
            .iter()
            .filter(|m| concurrency(m) == Some(level))
            .enumerate()
        {
            if r < rounds.len() {
                rounds[r] = rounds[r].max(m.throughput);
            } else {
                rounds.push(m.throughput);
            }
        }
    }
    rounds
}

fn run_line(run: &BenchRun) -> String {
    let m = &run.machine;
    format!(
        "started {}, strata {} ({} build), {} cores{}",
        run.started_at,
        m.strata_version,
        m.build,
        m.cores,
        m.cpu
            .as_deref()
            .map(|c| format!(", {c}"))
            .unwrap_or_default()
    )
}

fn machine_notes(old: &Machine, new: &Machine, notes: &mut Vec<String>) {
    if is_debug(old) || is_debug(new) {
        notes.push("a debug build is among the two: its figures are not representative".to_owned());
    }
    if old.build != new.build {
        notes.push(format!(
            "the builds differ: {} then {}",
            old.build, new.build
        ));
    }
    if old.cores != new.cores || old.cpu != new.cpu || old.memory_bytes != new.memory_bytes {
        notes.push(format!(
            "the machines differ: {} cores{} then {} cores{}; changes may be the machine's",
            old.cores,
            old.cpu
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            new.cores,
            new.cpu
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
        ));
    }
    for t in &new.tools {
        if let Some(o) = old.tools.iter().find(|o| o.name == t.name)
            && o.version != t.version
        {
            notes.push(format!(
                "{} changed version: {} then {}",
                t.name, o.version, t.version
            ));
        }
    }
}

struct Matcher<'a> {
    threshold: f64,
    profile: &'a str,
    changes: Vec<Change>,
    notes: Vec<String>,
}

impl Matcher<'_> {
    /// Compares one figure, `noise` being the spread of its rounds in
    /// both runs.
    fn figure(
        &mut self,
        subject: &str,
        engine: Option<&str>,
        figure: Figure,
        (old, new): (f64, f64),
        noise: f64,
    ) {
        if !(old.is_finite() && new.is_finite() && old > 0.0 && new > 0.0) {
            let label = match engine {
                Some(e) => format!("{}: {subject} ({e})", self.profile),
                None => format!("{}: baseline {subject}", self.profile),
            };
            self.notes.push(format!(
                "{label}: {} not compared ({} then {})",
                figure.name(),
                figure.format(old),
                figure.format(new)
            ));
            return;
        }
        let relative = (new - old) / old;
        let bound = self.threshold.max(noise);
        let verdict = if relative.abs() <= bound {
            Verdict::WithinNoise
        } else if (relative > 0.0) == figure.higher_is_better() {
            Verdict::Faster
        } else {
            Verdict::Slower
        };
        self.changes.push(Change {
            profile: self.profile.to_owned(),
            subject: subject.to_owned(),
            engine: engine.map(str::to_owned),
            figure,
            old,
            new,
            relative,
            noise,
            bound,
            verdict,
        });
    }

    /// Compares a figure measured once per round: the first rounds', with
    /// the spread of all rounds as the noise. A note when only one run
    /// has it.
    fn rounds(&mut self, w: &WorkloadRun, figure: Figure, old: &[f64], new: &[f64]) {
        match (old.first(), new.first()) {
            (Some(o), Some(n)) => self.figure(
                &w.id,
                Some(&w.engine),
                figure,
                (*o, *n),
                spread(old) + spread(new),
            ),
            (None, None) => {}
            (o, _) => self.notes.push(format!(
                "{}: {} ({}): {} measured in the {} run only",
                self.profile,
                w.id,
                w.engine,
                figure.name(),
                if o.is_some() { "old" } else { "new" }
            )),
        }
    }

    fn workload(&mut self, old: &WorkloadRun, new: &WorkloadRun) {
        self.rounds(
            new,
            Figure::ClosedThroughput,
            &closed_rounds(old),
            &closed_rounds(new),
        );
        if let (Some(o), Some(n)) = (old.open.first(), new.open.first())
            && o.mode != n.mode
        {
            self.notes.push(format!(
                "{}: {} ({}): the open-loop runs differ ({} then {}): latencies not \
                 compared, closed-loop throughput only",
                self.profile, new.id, new.engine, o.mode, n.mode
            ));
            return;
        }
        let p50 =
            |w: &WorkloadRun| -> Vec<f64> { w.open.iter().map(|m| m.corrected.p50_us).collect() };
        let p99 =
            |w: &WorkloadRun| -> Vec<f64> { w.open.iter().map(|m| m.corrected.p99_us).collect() };
        self.rounds(new, Figure::OpenP50, &p50(old), &p50(new));
        self.rounds(new, Figure::OpenP99, &p99(old), &p99(new));
    }

    /// Compares a baseline's stored ratios (of the medians); the noise is
    /// the spread of the ratios round by round.
    fn baseline(&mut self, old: &Comparison, new: &Comparison) {
        if old.command != new.command {
            self.notes.push(format!(
                "{}: baseline {}: the tool's command changed (`{}` then `{}`)",
                self.profile, new.id, old.command, new.command
            ));
        }
        let per_round = |c: &Comparison, f: fn(&Side) -> f64| -> Vec<f64> {
            c.strata_rounds
                .iter()
                .zip(&c.baseline_rounds)
                .map(|(s, b)| f(s) / f(b))
                .collect()
        };
        type Stored = fn(&Comparison) -> f64;
        type OfSide = fn(&Side) -> f64;
        let figures: [(Figure, Stored, OfSide); 3] = [
            (
                Figure::BaselineThroughput,
                |c| c.throughput_ratio,
                |s| s.throughput,
            ),
            (Figure::BaselineP50, |c| c.p50_ratio, |s| s.p50_us),
            (Figure::BaselineP99, |c| c.p99_ratio, |s| s.p99_us),
        ];
        for (figure, ratio, side) in figures {
            let noise = spread(&per_round(old, side)) + spread(&per_round(new, side));
            self.figure(&new.id, None, figure, (ratio(old), ratio(new)), noise);
        }
    }
}

/// Compares two runs: workloads matched by (profile, id, engine), their
/// closed-loop max throughput and open-loop corrected p50 and p99 (first
/// round; latencies only when both runs offered the same rate), and the
/// baselines' ratios matched by (profile, id). A change counts only when
/// its relative size exceeds `max(threshold, noise)`, the noise being the
/// relative spread (`(max - min) / median`) of the figure across the rounds
/// of each run, summed; with single rounds, the threshold alone.
pub fn compare(old: &BenchRun, new: &BenchRun, threshold: f64) -> CompareReport {
    let threshold = if threshold.is_finite() {
        threshold.abs()
    } else {
        0.0
    };
    let mut report = CompareReport {
        threshold,
        changes: Vec::new(),
        only_old: Vec::new(),
        only_new: Vec::new(),
        notes: Vec::new(),
        runs: [run_line(old), run_line(new)],
    };
    machine_notes(&old.machine, &new.machine, &mut report.notes);
    let unmatched_all = |p: &ProfileRun| -> Vec<Unmatched> {
        p.workloads
            .iter()
            .map(|w| Unmatched {
                profile: p.profile.clone(),
                subject: w.id.clone(),
                engine: Some(w.engine.clone()),
            })
            .chain(p.baselines.iter().map(|c| Unmatched {
                profile: p.profile.clone(),
                subject: c.id.clone(),
                engine: None,
            }))
            .collect()
    };
    for np in &new.profiles {
        let Some(op) = old.profiles.iter().find(|p| p.profile == np.profile) else {
            report.only_new.extend(unmatched_all(np));
            continue;
        };
        let mut m = Matcher {
            threshold,
            profile: &np.profile,
            changes: Vec::new(),
            notes: Vec::new(),
        };
        for nw in &np.workloads {
            match op
                .workloads
                .iter()
                .find(|w| w.id == nw.id && w.engine == nw.engine)
            {
                Some(ow) => m.workload(ow, nw),
                None => report.only_new.push(Unmatched {
                    profile: np.profile.clone(),
                    subject: nw.id.clone(),
                    engine: Some(nw.engine.clone()),
                }),
            }
        }
        for ow in &op.workloads {
            if !np
                .workloads
                .iter()
                .any(|w| w.id == ow.id && w.engine == ow.engine)
            {
                report.only_old.push(Unmatched {
                    profile: op.profile.clone(),
                    subject: ow.id.clone(),
                    engine: Some(ow.engine.clone()),
                });
            }
        }
        for nb in &np.baselines {
            match op.baselines.iter().find(|b| b.id == nb.id) {
                Some(ob) => m.baseline(ob, nb),
                None => report.only_new.push(Unmatched {
                    profile: np.profile.clone(),
                    subject: nb.id.clone(),
                    engine: None,
                }),
            }
        }
        for ob in &op.baselines {
            if !np.baselines.iter().any(|b| b.id == ob.id) {
                report.only_old.push(Unmatched {
                    profile: op.profile.clone(),
                    subject: ob.id.clone(),
                    engine: None,
                });
            }
        }
        report.changes.extend(m.changes);
        report.notes.extend(m.notes);
    }
    for op in &old.profiles {
        if !new.profiles.iter().any(|p| p.profile == op.profile) {
            report.only_old.extend(unmatched_all(op));
        }
    }
    report
}

impl CompareReport {
    /// How many figures got worse beyond the noise.
    pub fn regressions(&self) -> usize {
        self.count(Verdict::Slower)
    }

    fn count(&self, verdict: Verdict) -> usize {
        self.changes.iter().filter(|c| c.verdict == verdict).count()
    }

    /// For people: per profile, each figure old and new with its change,
    /// what it had to exceed and the verdict; then what is in one run
    /// only, the notes, and a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "old: {}", self.runs[0]);
        let _ = writeln!(out, "new: {}", self.runs[1]);
        let _ = writeln!(
            out,
            "a change counts when beyond max({:.0}%, the spread of the figure across the \
             rounds of both runs)",
            self.threshold * 100.0
        );
        let mut profiles: Vec<&str> = Vec::new();
        for c in &self.changes {
            if !profiles.contains(&c.profile.as_str()) {
                profiles.push(&c.profile);
            }
        }
        for profile in profiles {
            let _ = writeln!(out, "\nprofile {profile}:");
            let mut grid = Grid::new(&[
                ("workload", false),
                ("engine", false),
                ("figure", false),
                ("old", true),
                ("new", true),
                ("change", true),
                ("must exceed", true),
                ("", false),
            ]);
            for c in self.changes.iter().filter(|c| c.profile == profile) {
                let bound = if c.noise > self.threshold {
                    format!("±{:.1}% (noise)", c.bound * 100.0)
                } else {
                    format!("±{:.1}%", c.bound * 100.0)
                };
                grid.push(vec![
                    c.subject.clone(),
                    c.engine.clone().unwrap_or_else(|| "baseline".to_owned()),
                    c.figure.name().to_owned(),
                    c.figure.format(c.old),
                    c.figure.format(c.new),
                    fmt_change(c.relative),
                    bound,
                    match c.verdict {
                        Verdict::Slower => "SLOWER".to_owned(),
                        v => v.as_str().to_owned(),
                    },
                ]);
            }
            let _ = writeln!(out, "{}", grid.text());
        }
        for (which, list) in [("old", &self.only_old), ("new", &self.only_new)] {
            if !list.is_empty() {
                let _ = writeln!(out, "\nonly in the {which} run:");
                for u in list {
                    let _ = writeln!(out, "  {u}");
                }
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nnotes:");
            for n in &self.notes {
                wrap(&mut out, n, "  ");
            }
        }
        let _ = writeln!(
            out,
            "\n{} slower, {} faster, {} within noise; {} only in the old run, {} only in the new",
            self.count(Verdict::Slower),
            self.count(Verdict::Faster),
            self.count(Verdict::WithinNoise),
            self.only_old.len(),
            self.only_new.len()
        );
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::harness::{CURVE_PERCENTILES, Sweep};
    use super::super::model::{EngineSet, SCHEMA, Skipped, Store, ToolVersion};
    use super::*;

    /// A latency distribution with median `p50` (µs), rising to 40× at the
    /// maximum.
    pub(crate) fn latency(p50: f64) -> Latency {
        let at = |p: f64| {
            let x = nines(p);
            p50 * (1.0 + x * x * 1.5) * if p >= 100.0 { 1.3 } else { 1.0 }
        };
        Latency {
            count: 10_000,
            mean_us: p50 * 1.2,
            p50_us: p50,
            p90_us: at(90.0),
            p99_us: at(99.0),
            p999_us: at(99.9),
            max_us: at(100.0),
            curve: CURVE_PERCENTILES.iter().map(|p| [*p, at(*p)]).collect(),
        }
    }

    pub(crate) fn open(rate: f64, p50: f64, uncorrected_p50: f64) -> Measurement {
        Measurement {
            mode: Mode::Open {
                rate,
                connections: 8,
            },
            ok: (rate * 10.0) as u64,
            errors: 0,
            timeouts: 0,
            first_error: None,
            unfinished: 0,
            elapsed_s: 10.0,
            throughput: rate,
            corrected: latency(p50),
            uncorrected: latency(uncorrected_p50),
            dispatch_late: Some(latency(2.0)),
        }
    }

    pub(crate) fn closed(concurrency: usize, throughput: f64) -> Measurement {
        let l = latency(1e6 * concurrency as f64 / throughput);
        Measurement {
            mode: Mode::Closed { concurrency },
            ok: (throughput * 10.0) as u64,
            errors: 0,
            timeouts: 0,
            first_error: None,
            unfinished: 0,
            elapsed_s: 10.0,
            throughput,
            corrected: l.clone(),
            uncorrected: l,
            dispatch_late: None,
        }
    }

    pub(crate) fn workload(id: &str, engine: &str, p50: f64, max_tp: f64) -> WorkloadRun {
        WorkloadRun {
            id: id.to_owned(),
            title: format!("{id} for tests"),
            store: Store::Kv,
            engine: engine.to_owned(),
            items: 1,
            open: vec![open(1000.0, p50, p50 * 0.9)],
            closed: vec![
                closed(1, max_tp / 6.0),
                closed(8, max_tp),
                closed(64, max_tp * 0.97),
            ],
        }
    }

    fn side(throughput: f64, p50: f64) -> Side {
        Side {
            throughput,
            p50_us: p50,
            p99_us: p50 * 4.0,
            requests: (throughput * 10.0) as u64,
        }
    }

    /// A small run: one profile, two workloads, a sweep with a knee, a
    /// baseline, a ratio and a skipped item.
    pub(crate) fn sample_run() -> BenchRun {
        let mut slow = workload("relational.read", "sqlite", 840.0, 2_900.0);
        slow.store = Store::Relational;
        slow.open[0].errors = 2;
        slow.open[0].first_error = Some("database is locked".to_owned());
        let steps = [
            (1_000.0, 1_000.0, 30.0, 80.0),
            (2_000.0, 1_999.0, 31.0, 85.0),
            (4_000.0, 3_990.0, 35.0, 110.0),
            (8_000.0, 6_100.0, 900.0, 12_100.0),
            (16_000.0, 6_300.0, 4_000.0, 48_000.0),
        ]
        .map(|(offered, achieved, p50_us, p99_us)| SweepStep {
            offered,
            achieved,
            p50_us,
            p99_us,
            errors: 0,
            unfinished: 0,
        })
        .to_vec();
        let knee = super::super::harness::find_knee(&steps);
        BenchRun {
            schema: SCHEMA,
            started_at: "2025-01-02T03:04:05Z".to_owned(),
            command: "strata bench --quick".to_owned(),
            quick: true,
            phase_seconds: 2.0,
            machine: Machine {
                cores: 2,
                memory_bytes: Some(8 * 1024 * 1024 * 1024),
                cpu: Some("Test CPU @ 2.0GHz".to_owned()),
                os: "linux 6.1.0 x86_64".to_owned(),
                strata_version: "0.1.0".to_owned(),
                build: "release".to_owned(),
                load_average: Some("0.10 0.20 0.30".to_owned()),
                tools: vec![ToolVersion {
                    name: "redis-benchmark".to_owned(),
                    version: "7.0.15".to_owned(),
                }],
            },
            profiles: vec![ProfileRun {
                profile: "embedded".to_owned(),
                sandbox: String::new(),
                engines: EngineSet {
                    relational: "sqlite".to_owned(),
                    documents: "embedded".to_owned(),
                    kv: "embedded".to_owned(),
                    queue: "embedded".to_owned(),
                    targets: vec![],
                },
                config: serde_json::json!({}),
                workloads: vec![workload("kv.read", "embedded", 12.3, 41_000.0), slow],
                sweep: Some(SweepRun {
                    workload: "kv.read".to_owned(),
                    connections: 8,
                    sweep: Sweep { steps, knee },
                }),
                baselines: vec![Comparison {
                    id: "redis-get".to_owned(),
                    title: "KvStore GET vs redis-benchmark GET".to_owned(),
                    command: "redis-benchmark -t get -c 8 -n 100000".to_owned(),
                    strata: "KvStore::get on 8 clients".to_owned(),
                    clients: 8,
                    strata_rounds: vec![side(38_000.0, 180.0), side(38_400.0, 181.0)],
                    baseline_rounds: vec![side(50_000.0, 150.0), side(50_200.0, 149.0)],
                    throughput_ratio: 0.76,
                    p50_ratio: 1.2,
                    p99_ratio: 1.21,
                }],
                ratios: vec![Ratio {
                    id: "kv-vs-relational-read".to_owned(),
                    title: "key-value read vs relational read".to_owned(),
                    value: 14.2,
                    basis: "closed ×8 throughput, 41,000 vs 2,900 /s".to_owned(),
                    expectation: Some("≥ 5×".to_owned()),
                }],
                skipped: vec![Skipped {
                    what: "pgbench-select".to_owned(),
                    reason: "pgbench is not installed".to_owned(),
                }],
            }],
        }
    }

    #[test]
    fn latencies_and_ratios_print_for_people() {
        assert_eq!(fmt_us(0.853), "0.85");
        assert_eq!(fmt_us(12.34), "12.3");
        assert_eq!(fmt_us(1234.4), "1,234");
        assert_eq!(fmt_us(12_100.0), "12.1 ms");
        assert_eq!(fmt_us(3_200_000.0), "3.20 s");
        assert_eq!(fmt_ratio(0.7612), "0.76×");
        assert_eq!(fmt_ratio(14.23), "14.2×");
        assert_eq!(fmt_ratio(f64::NAN), "–");
        assert_eq!(meets(14.2, "≥ 5×"), Some(true));
        assert_eq!(meets(3.0, ">= 5"), Some(false));
        assert_eq!(meets(3.0, "about 5"), None);
    }

    #[test]
    fn table_shows_corrected_and_uncorrected_knee_baselines_ratios_and_skips() {
        let run = sample_run();
        let text = table(&run);
        let open = &run.profiles[0].workloads[0].open[0];
        let corrected = fmt_us(open.corrected.p99_us);
        let uncorrected = fmt_us(open.uncorrected.p99_us);
        assert_ne!(corrected, uncorrected);
        assert!(text.contains(&corrected), "{text}");
        assert!(text.contains(&uncorrected), "{text}");
        assert!(text.contains("p99 uncorr."), "{text}");
        assert!(text.contains("closed ×64 /s"), "{text}");
        assert!(text.contains("41,000"), "{text}");
        assert!(text.contains("← knee"), "{text}");
        let knee_row = text.lines().find(|l| l.contains("← knee")).unwrap_or("");
        assert!(
            knee_row.contains("8,000") && knee_row.contains("12.1 ms"),
            "{knee_row}"
        );
        assert!(text.contains("0.76×"), "{text}");
        assert!(
            text.contains(
                "key-value read vs relational read: 14.2× (closed ×8 throughput, 41,000 vs \
                 2,900 /s; expected ≥ 5× (met))"
            ),
            "{text}"
        );
        assert!(
            text.contains("pgbench-select: pgbench is not installed"),
            "{text}"
        );
        assert!(text.contains("database is locked"), "{text}");
        assert!(
            text.contains("2 cores") && text.contains("8.0 GiB"),
            "{text}"
        );
        assert!(!text.contains("DEBUG BUILD"), "{text}");
        // Laid out to a fixed width off a terminal: no line is wider.
        assert!(
            text.lines()
                .all(|l| l.chars().count() <= usize::from(TABLE_WIDTH)),
            "{text}"
        );
    }

    #[test]
    fn a_debug_build_is_flagged_loudly() {
        let mut run = sample_run();
        run.machine.build = "debug".to_owned();
        let text = table(&run);
        assert!(text.starts_with("!!! DEBUG BUILD"), "{text}");
        assert!(markdown(&run).contains("DEBUG BUILD"));
        assert!(chart_svg(&run).is_ok_and(|svg| svg.contains("debug build")));
    }

    #[test]
    fn markdown_has_table_rows() {
        let run = sample_run();
        let md = markdown(&run);
        assert!(md.starts_with("# strata bench"), "{md}");
        assert!(md.contains("## Profile `embedded`"), "{md}");
        let p = &run.profiles[0];
        let workloads = markdown_workloads(p);
        assert!(
            workloads.contains("| workload | what | engine |"),
            "{workloads}"
        );
        assert!(workloads.contains("| ---: |"), "{workloads}");
        assert!(
            workloads
                .lines()
                .any(|l| l.starts_with("| kv.read | kv.read for tests | embedded |")),
            "{workloads}"
        );
        assert!(markdown_sweep(p).contains("| ← knee |"), "{md}");
        assert!(markdown_baselines(p).contains("| redis-get | 8 |"), "{md}");
        assert!(
            markdown_ratios(p).contains("| key-value read vs relational read | 14.2× |"),
            "{md}"
        );
        assert!(
            md.contains("| pgbench-select | pgbench is not installed |"),
            "{md}"
        );
        let mut bare = p.clone();
        bare.sweep = None;
        bare.baselines.clear();
        bare.ratios.clear();
        assert_eq!(markdown_sweep(&bare), "");
        assert_eq!(markdown_baselines(&bare), "");
        assert_eq!(markdown_ratios(&bare), "");
    }

    #[test]
    fn chart_is_an_svg_with_text_and_lines() {
        let svg = match chart_svg(&sample_run()) {
            Ok(svg) => svg,
            Err(e) => panic!("{e}"),
        };
        assert!(
            svg.trim_start().starts_with("<svg"),
            "{}",
            &svg[..200.min(svg.len())]
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<text"), "no text drawn");
        assert!(svg.contains("kv.read (embedded, 1,000 /s)"), "no legend");
        assert!(svg.contains("relational.read"));
        assert!(
            svg.contains("99.9%") && svg.contains("99.999%"),
            "no nines ticks"
        );
        assert!(svg.contains("knee: 8,000 /s offered"), "no knee label");
        assert!(
            svg.contains("<polyline") || svg.contains("<path"),
            "no lines"
        );
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    #[test]
    fn chart_of_nothing_is_still_an_svg() {
        let mut run = sample_run();
        run.profiles.clear();
        assert!(chart_svg(&run).is_ok_and(|s| s.contains("nothing was measured")));
        let mut run = sample_run();
        for w in &mut run.profiles[0].workloads {
            w.open.clear();
        }
        run.profiles[0].sweep = None;
        assert!(chart_svg(&run).is_ok_and(|s| s.contains("no open-loop runs")));
    }

    fn with_closed(mut run: BenchRun, id: &str, factor: f64) -> BenchRun {
        for w in &mut run.profiles[0].workloads {
            if w.id == id {
                for m in &mut w.closed {
                    m.throughput *= factor;
                }
            }
        }
        run
    }

    #[test]
    fn compare_flags_a_halved_throughput_as_slower() {
        let old = sample_run();
        let new = with_closed(sample_run(), "kv.read", 0.5);
        let report = compare(&old, &new, 0.10);
        let change = report
            .changes
            .iter()
            .find(|c| c.subject == "kv.read" && c.figure == Figure::ClosedThroughput);
        assert!(
            change.is_some_and(|c| c.verdict == Verdict::Slower && (c.relative + 0.5).abs() < 1e-9),
            "{report:?}"
        );
        assert_eq!(report.regressions(), 1, "{}", report.render());
        let text = report.render();
        assert!(text.contains("SLOWER") && text.contains("-50.0%"), "{text}");
        // Twice the throughput is faster.
        let report = compare(&new, &old, 0.10);
        assert_eq!(report.regressions(), 0);
        assert!(report.changes.iter().any(|c| c.verdict == Verdict::Faster));
    }

    #[test]
    fn compare_keeps_a_small_change_within_noise() {
        let old = sample_run();
        let mut new = with_closed(sample_run(), "kv.read", 1.03);
        new.profiles[0].workloads[0].open[0].corrected.p99_us *= 0.97;
        let report = compare(&old, &new, 0.10);
        assert_eq!(report.regressions(), 0, "{}", report.render());
        assert!(
            report
                .changes
                .iter()
                .all(|c| c.verdict == Verdict::WithinNoise),
            "{report:?}"
        );
        assert!(report.render().contains("within noise"));
        // Without a threshold, a 3% change counts when the runs have a
        // single round...
        let report = compare(&old, &new, 0.0);
        assert!(
            report
                .changes
                .iter()
                .any(|c| c.subject == "kv.read" && c.verdict == Verdict::Faster)
        );
        // ...but not when the rounds spread by 5%.
        let mut noisy = new.clone();
        let mut second = noisy.profiles[0].workloads[0].open[0].clone();
        second.corrected.p99_us *= 1.05;
        noisy.profiles[0].workloads[0].open.push(second);
        let report = compare(&old, &noisy, 0.0);
        let p99 = report
            .changes
            .iter()
            .find(|c| c.subject == "kv.read" && c.figure == Figure::OpenP99);
        assert!(
            p99.is_some_and(|c| c.verdict == Verdict::WithinNoise && c.noise > 0.04),
            "{report:?}"
        );
    }

    #[test]
    fn compare_lists_workloads_in_one_run_only_and_different_rates() {
        let old = sample_run();
        let mut new = sample_run();
        new.profiles[0]
            .workloads
            .retain(|w| w.id != "relational.read");
        if let Mode::Open { rate, .. } = &mut new.profiles[0].workloads[0].open[0].mode {
            *rate = 2000.0;
        }
        let report = compare(&old, &new, 0.10);
        assert_eq!(
            report.only_old,
            vec![Unmatched {
                profile: "embedded".to_owned(),
                subject: "relational.read".to_owned(),
                engine: Some("sqlite".to_owned()),
            }]
        );
        assert!(report.only_new.is_empty());
        assert!(
            !report
                .changes
                .iter()
                .any(|c| c.subject == "kv.read" && c.figure == Figure::OpenP50),
            "latencies at different rates are not compared"
        );
        let text = report.render();
        assert!(text.contains("only in the old run"), "{text}");
        assert!(
            text.contains("embedded: relational.read (sqlite)"),
            "{text}"
        );
        assert!(text.contains("the open-loop runs differ"), "{text}");
    }

    #[test]
    fn compare_baselines_by_their_ratios() {
        let old = sample_run();
        let mut new = sample_run();
        new.profiles[0].baselines[0].throughput_ratio = 0.5;
        let report = compare(&old, &new, 0.10);
        let change = report
            .changes
            .iter()
            .find(|c| c.subject == "redis-get" && c.figure == Figure::BaselineThroughput);
        assert!(
            change.is_some_and(|c| c.verdict == Verdict::Slower && c.engine.is_none()),
            "{report:?}"
        );
        let p50 = report
            .changes
            .iter()
            .find(|c| c.subject == "redis-get" && c.figure == Figure::BaselineP50);
        assert!(p50.is_some_and(|c| c.verdict == Verdict::WithinNoise));
    }
}
