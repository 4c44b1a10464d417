//! The `strata` command.
//!
//! Exit status: 0 on success, 1 when an engine or operation failed, 2 for
//! bad input or configuration (a malformed filter, an unsupported operator,
//! an unknown engine kind). Errors print as one line on standard error,
//! never as a panic or a backtrace.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Sources};
use crate::error::{Error, ErrorKind, Result};

mod analytics;
mod bench;
mod chaos;
pub mod demo;
mod dlq;
mod doctor;
mod inspect;
mod migrate;
mod output;
mod seed;
mod serve;
mod token;
mod worker;

/// strata: the data plane of an ML platform, on embedded engines or on
/// PostgreSQL + MongoDB + Redis + RabbitMQ, switched by configuration.
#[derive(Debug, Parser)]
#[command(name = "strata", version, propagate_version = true)]
#[command(
    after_help = "Configuration is read from built-in defaults, config/default.toml, \
config/<profile>.toml, STRATA_* environment variables (STRATA_KV__URL=...), --config FILE \
and flags, later ones winning. `strata config` prints the result with secrets redacted."
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Profile to layer over config/default.toml (`full` = every real service).
    #[arg(long, global = true, env = "STRATA_PROFILE", value_name = "NAME")]
    profile: Option<String>,
    /// Extra configuration file, applied after the environment.
    #[arg(long = "config", global = true, value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Directory holding default.toml and the profiles.
    #[arg(
        long,
        global = true,
        env = "STRATA_CONFIG_DIR",
        value_name = "DIR",
        hide_env_values = true
    )]
    config_dir: Option<PathBuf>,
    /// Where the embedded engines keep their data (default ./data).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Log every SQL statement to standard error (relational.log_statements).
    #[arg(long, global = true)]
    log_sql: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The main job: load the sample data, then walk through every
    /// capability on the configured engines, ending with where each kind of
    /// data lives.
    Demo,
    /// Connect to every configured engine and report its health.
    Doctor,
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Inspect the document engine.
    #[command(subcommand)]
    Docs(inspect::DocsCommand),
    /// Inspect the key-value engine.
    #[command(subcommand)]
    Kv(inspect::KvCommand),
    /// Run one read-only SQL statement on the relational engine.
    ///
    /// Nothing it runs can write: SQLite is opened read-only (an existing
    /// database only; a missing data dir or database is reported, never
    /// created), PostgreSQL runs it in a READ ONLY transaction. The
    /// database's own parser must find exactly one statement. The statement
    /// is stopped after --timeout, and at most --max-rows rows are printed
    /// (the output says when it was cut).
    Sql(inspect::SqlArgs),
    /// Inspect the queue engine.
    #[command(subcommand)]
    Queue(inspect::QueueCommand),
    /// Load the sample data (datasets, runs, artifacts, configs,
    /// experiments) idempotently; `--runs N` adds seeded synthetic runs.
    Seed(seed::SeedArgs),
    /// Customer analytics: segments, churn, lifetime value,
    /// recommendations (docs/analytics.md).
    #[command(subcommand)]
    Analytics(analytics::AnalyticsCommand),
    /// Serve the HTTP API (`--listen ADDR` overrides api.listen).
    ///
    /// Bounds from the `api` section: api.max_connections served at once
    /// (more wait to be accepted), api.header_read_timeout for a request's
    /// headers to arrive (also how long an idle kept-alive connection is
    /// kept), api.body_limit, api.request_timeout. SIGINT or SIGTERM stop
    /// accepting and let requests in flight finish.
    ///
    /// Access (docs/operations.md, "Security"): once an API token exists
    /// (`strata token create`) requests need one; without one strata serves
    /// on loopback only (api.allow_unauthenticated overrides). api.tls.cert
    /// and api.tls.key serve HTTPS; api.allowed_hosts and api.cors_origins
    /// say which hosts and browser origins may call.
    Serve(serve::ServeArgs),
    /// The HTTP API's bearer tokens: create (shown once), list, revoke.
    ///
    /// While none exists the API needs no token and `strata serve` listens
    /// on loopback only; once one does, every request but /healthz and
    /// /readyz needs `Authorization: Bearer TOKEN` of a sufficient scope
    /// (read ⊂ write ⊂ admin).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Copy training runs into the document engine, verify, reconcile.
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
    /// Run every pipeline consumer and the outbox relay until SIGINT or
    /// SIGTERM (what `strata serve` also runs, unless `--no-worker`).
    Worker(worker::WorkerArgs),
    /// The pipelines' dead letters: list, show, replay, purge.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Measure every engine, cache tier and endpoint: open loop at a fixed
    /// rate (latency from each request's intended send time), closed loop
    /// for the maximum throughput, a sweep for the knee, beside
    /// redis-benchmark and pgbench when the full profile is benched.
    ///
    /// Runs in a sandbox of its own (a temporary data dir; on the real
    /// services its own database, key prefix and queues, removed at the
    /// end). Exit status 1 when a workload's answers were wrong or failed
    /// (requests that time out are reported, not counted as failures).
    /// `strata bench compare OLD NEW` and `strata bench report FILES` work
    /// on the JSON of --json-file (docs/ANALYSIS.md is generated that way).
    Bench(bench::BenchArgs),
    /// Print which engine keeps each kind of data in this configuration,
    /// and the decision matrix behind it (with measured figures from
    /// `--from` a bench run's JSON).
    Explain(bench::ExplainArgs),
    /// Holds a sandbox for scripts/chaos.sh (see src/cli/chaos.rs).
    #[command(hide = true)]
    ChaosSandbox,
}

/// Parses the command line, runs the command and returns the exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_status(&e))
        }
    }
}

/// 2 for errors in what the user gave us, 1 for failures of the system.
fn exit_status(error: &Error) -> u8 {
    match error.kind() {
        ErrorKind::InvalidInput | ErrorKind::Unsupported | ErrorKind::Config => 2,
        _ => 1,
    }
}

/// Logs go to standard error, filtered by `STRATA_LOG` (default `warn`,
/// with lapin off: it logs expected outcomes such as an unroutable publish
/// or a 404 on a passive declare at WARN/ERROR, and strata reports those
/// itself as results or errors; and with sqlx's URL parser at `error`: it
/// warns of an unknown URL parameter by printing its value, which may be a
/// misspelt password); `--log-sql` adds the statements sqlx logs under
/// `sqlx::query`. `log.format` picks text or JSON lines; JSON lines carry
/// the fields of the spans they happened in (a request's `request_id`,
/// method and route; a message's queue, id and request id).
///
/// With `telemetry` (the loaded configuration), spans are also exported to
/// an OpenTelemetry collector when the `otel` feature is built in and an
/// endpoint is set ([`crate::telemetry`]), filtered on their own (strata's
/// spans at INFO, whatever `STRATA_LOG` says); the [`Exporter`] returned
/// flushes them at the end. An endpoint that cannot be used is an error,
/// after logs are set up.
///
/// [`Exporter`]: crate::telemetry::Exporter
fn init_tracing(
    log_sql: bool,
    format: crate::config::LogFormat,
    telemetry: Option<&crate::config::TelemetryConfig>,
) -> Result<crate::telemetry::Exporter> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let mut filter =
        tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,lapin=off,sqlx_postgres::options::parse=error")
        });
    if log_sql && let Ok(directive) = "sqlx::query=info".parse() {
        filter = filter.add_directive(directive);
    }
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        crate::config::LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        crate::config::LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let (otel, exporter, failure) = match telemetry.map(crate::telemetry::layer) {
        Some(Ok((layer, exporter))) => (layer, exporter, None),
        Some(Err(e)) => (None, Default::default(), Some(e)),
        None => (None, Default::default(), None),
    };
    // A second initialisation (tests running several commands in one
    // process) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init();
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(telemetry) = telemetry {
        crate::telemetry::warn_if_unsupported(telemetry);
    }
    Ok(exporter)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let sources = Sources {
        config_dir: cli.global.config_dir.clone(),
        profile: cli.global.profile.clone(),
        config_file: cli.global.config_file.clone(),
        data_dir: cli.global.data_dir.clone(),
        log_statements: cli.global.log_sql,
        environment: Default::default(),
    };
    let json = cli.global.json;
    if let Command::Bench(args) = cli.command {
        // Loads each profile it benches itself.
        init_tracing(cli.global.log_sql, crate::config::LogFormat::Text, None)?;
        return bench::run(&sources, args, json).await;
    }
    let config = match Config::load(&sources) {
        Ok(config) => config,
        Err(e) => {
            init_tracing(cli.global.log_sql, crate::config::LogFormat::Text, None)?;
            return Err(e);
        }
    };
    let exporter = init_tracing(
        cli.global.log_sql,
        config.log.format,
        Some(&config.telemetry),
    )?;
    let result = match cli.command {
        Command::Demo => demo::run(&config, json).await,
        Command::Doctor => doctor::run(&config, json).await,
        Command::Config => {
            if json {
                output::print_json(&config.to_redacted_json()?)?;
            } else {
                print!("{}", config.to_redacted_toml()?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Docs(cmd) => inspect::docs(&config, cmd, json).await,
        Command::Kv(cmd) => inspect::kv(&config, cmd, json).await,
        Command::Sql(args) => inspect::sql(&config, args, json).await,
        Command::Queue(cmd) => inspect::queue(&config, cmd, json).await,
        Command::Seed(args) => seed::run(&config, args, json).await,
        Command::Analytics(cmd) => analytics::run(&config, cmd, json).await,
        Command::Serve(args) => serve::run(&config, args).await,
        Command::Token(cmd) => token::run(&config, cmd, json).await,
        Command::Migrate(cmd) => migrate::run(&config, cmd, json).await,
        Command::Worker(args) => worker::run(&config, args).await,
        Command::Dlq(cmd) => dlq::run(&config, cmd, json).await,
        Command::Explain(args) => bench::explain(&config, args),
        Command::ChaosSandbox => chaos::sandbox(&config).await,
        Command::Bench(_) => Err(Error::internal("bench is run above")),
    };
    exporter.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
