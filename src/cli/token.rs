//! `strata token`: the HTTP API's bearer tokens: create, list, revoke.
//!
//! Opens the relational engine alone, so it runs beside a `strata serve`
//! (a running server sees a new or revoked token within 5 s; see
//! [`crate::api::auth`]).

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::output;
use crate::config::Config;
use crate::error::Result;
use crate::platform::Tokens;
use crate::platform::tokens::{Scope, TokenInfo};

/// What to do with the API tokens.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print it: it is shown this once and stored only
    /// as its SHA-256, so keep it now (a lost token is revoked and replaced).
    ///
    /// Once any token exists, every API request but /healthz and /readyz
    /// needs `Authorization: Bearer TOKEN`.
    Create {
        /// What it may do: `read` (GET, batch features, predictions),
        /// `write` (also every other change), `admin` (also replaying and
        /// purging dead letters).
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// A name for people (1 to 100 characters), e.g. who holds it.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// List every token, valid and revoked (never the tokens themselves).
    List,
    /// Revoke a token by id (from `strata token list`); a running server
    /// refuses it within 5 s. Revoking a revoked token changes nothing.
    Revoke {
        /// Its id.
        id: i64,
    },
}

/// A token's scope on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ScopeArg {
    /// GET and HEAD, batch features, predictions.
    Read,
    /// Also every other POST, PUT, PATCH and DELETE.
    Write,
    /// Also replaying and purging dead letters.
    Admin,
}

impl From<ScopeArg> for Scope {
    fn from(scope: ScopeArg) -> Scope {
        match scope {
            ScopeArg::Read => Scope::Read,
            ScopeArg::Write => Scope::Write,
            ScopeArg::Admin => Scope::Admin,
        }
    }
}

fn info_json(info: &TokenInfo) -> Result<serde_json::Value> {
    serde_json::to_value(info)
        .map_err(|e| crate::error::Error::internal(format!("cannot render a token: {e}")))
}

pub(crate) async fn run(config: &Config, command: TokenCommand, json: bool) -> Result<ExitCode> {
    let tokens = Tokens::open(config).await?;
    match command {
        TokenCommand::Create { scope, name } => {
            let new = tokens.create(scope.into(), name.as_deref()).await?;
            if json {
                let mut value = info_json(&new.info)?;
                if let Some(object) = value.as_object_mut() {
                    object.insert("token".to_owned(), new.token.clone().into());
                }
                output::print_json(&value)?;
            } else {
                println!("{}", new.token);
                eprintln!(
                    "strata: token {} (scope {}) created; it is shown only this once: \
                     send it as `Authorization: Bearer TOKEN`",
                    new.info.id, new.info.scope
                );
            }
        }
        TokenCommand::List => {
            let all = tokens.list().await?;
            if json {
                let items = all.iter().map(info_json).collect::<Result<Vec<_>>>()?;
                output::print_json(&serde_json::Value::Array(items))?;
            } else {
                let mut table =
                    output::table(&["id", "name", "scope", "created", "last used", "revoked"]);
                let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| "-".to_owned())
                };
                for t in &all {
                    table.add_row(vec![
                        t.id.to_string(),
                        t.name.clone().unwrap_or_default(),
                        t.scope.to_string(),
                        time(Some(t.created_at)),
                        time(t.last_used_at),
                        time(t.revoked_at),
                    ]);
                }
                println!("{table}");
                let valid = all.iter().filter(|t| t.revoked_at.is_none()).count();
                println!("{valid} valid of {} tokens", all.len());
            }
        }
        TokenCommand::Revoke { id } => {
            let (info, revoked) = tokens.revoke(id).await?;
            if json {
                let mut value = info_json(&info)?;
                if let Some(object) = value.as_object_mut() {
                    object.insert("revoked_now".to_owned(), revoked.into());
                }
                output::print_json(&value)?;
            } else if revoked {
                println!("token {id} revoked");
            } else {
                println!("token {id} was already revoked");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
