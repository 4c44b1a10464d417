//! Who may call the API, and from where: bearer tokens with scopes, the
//! `Host` check against DNS rebinding, and CORS.
//!
//! # Tokens
//!
//! While no valid API token exists (`strata token create`), requests need
//! none; `strata serve` then listens on loopback only, unless
//! `api.allow_unauthenticated` (see `cli::serve`). Once one exists, every
//! request but those of [`PUBLIC`] needs `Authorization: Bearer TOKEN`:
//!
//! - no token, or one that is unknown, revoked or malformed: 401, kind
//!   `unauthorized`, with `WWW-Authenticate: Bearer`;
//! - a token whose scope is too small: 403, kind `forbidden`.
//!
//! The scope a request needs ([`required_scope`]): `read` for GET and HEAD
//! and for the POSTs that only read (`/v1/features:batch`,
//! `/v1/models/{id}/predict`), `admin` for replaying and purging dead
//! letters, `write` for every other POST, PUT, PATCH and DELETE.
//!
//! Verification is cached for [`CACHE_TTL`] (5 s), and so is whether any
//! token exists: a token revoked by another process is refused within
//! that. A token is never written to a log or an answer: errors name only
//! what was wrong with it.
//!
//! # Host
//!
//! A page on another site can make a browser send requests to a server on
//! loopback by pointing a name of its own at 127.0.0.1 (DNS rebinding);
//! the request then names that site in `Host`. On a loopback address, or
//! whenever `api.allowed_hosts` is set, a request whose `Host` (port
//! ignored) is not `localhost`, `127.0.0.1`, `[::1]`, the listen address or
//! one of `api.allowed_hosts` is answered 421, kind `misdirected_request`.
//! `*` in the list turns the check off. A request without `Host` (not a
//! browser: browsers always send it) and the probes of [`PUBLIC`] are not
//! checked.
//!
//! # CORS
//!
//! Off unless `api.cors_origins` lists origins; then preflights from those
//! origins are answered and their requests' answers carry
//! `Access-Control-Allow-Origin` (tower-http's `CorsLayer`). Other origins
//! get no CORS header, so browsers keep their pages from reading answers.

use std::net::IpAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::ApiConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::platform::Tokens;
#[cfg(doc)]
use crate::platform::tokens::CACHE_TTL;
use crate::platform::tokens::Scope;

use super::ApiError;

/// Paths that need no token and are not Host-checked: the probes, and the
/// dashboard's page and static assets (a trailing `*` matches any rest).
/// The data they show comes from routes that do need one.
pub const PUBLIC: &[&str] = &["/healthz", "/readyz", "/", "/assets/*"];

/// Whether `path` is one of [`PUBLIC`].
pub fn is_public(path: &str) -> bool {
    PUBLIC.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => path == *p,
    })
}

/// The scope a request needs; `None` for [`PUBLIC`] paths.
pub fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    if is_public(path) {
        return None;
    }
    if path == "/v1/dead-letters/replay" || path == "/v1/dead-letters/purge" {
        return Some(Scope::Admin);
    }
    let reads_only = *method == Method::POST
        && (path == "/v1/features:batch"
            || (path.starts_with("/v1/models/") && path.ends_with("/predict")));
    let writes = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method);
    Some(if writes && !reads_only {
        Scope::Write
    } else {
        Scope::Read
    })
}

/// Checks the `api` keys the router reads (origins, host names), naming
/// the key at fault: `strata serve` calls it before it starts.
pub fn check_config(config: &ApiConfig) -> Result<()> {
    for origin in &config.cors_origins {
        let parsed = url::Url::parse(origin).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.username().is_empty()
                && u.path() == "/"
                && u.query().is_none()
                && !origin.ends_with('/')
        });
        if parsed.is_none() || HeaderValue::from_str(origin).is_err() {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "api.cors_origins: `{origin}` is not an origin (`https://host` or `http://host:port`, no path)"
                ),
            ));
        }
    }
    for host in &config.allowed_hosts {
        if host != "*" && (host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/')) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("api.allowed_hosts: `{host}` is not a host name (or `*`)"),
            ));
        }
    }
    Ok(())
}

/// Whether `listen` (`HOST:PORT`) is a loopback address: `127.0.0.0/8`,
/// `[::1]` or `localhost`.
pub fn is_loopback(listen: &str) -> bool {
    let host = strip_port(listen);
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `router` with the token check: innermost of the access checks, so that
/// rate limits count refused requests too.
pub(crate) fn require_tokens(router: Router, tokens: Tokens, config: &ApiConfig) -> Router {
    let guard = Guard {
        tokens,
        // Off loopback, requests need a token even when none exists
        // (all were revoked while serving), unless allowed.
        always: !is_loopback(&config.listen) && !config.allow_unauthenticated,
    };
    router.layer(middleware::from_fn_with_state(guard, authorize))
}

/// `router` with the `Host` check and CORS (outermost: a preflight is
/// answered before any check, and refusals carry CORS headers so that an
/// allowed page can read them).
pub(crate) fn check_origin(router: Router, config: &ApiConfig) -> Router {
    let router = match HostCheck::new(config) {
        Some(hosts) => router.layer(middleware::from_fn_with_state(hosts, check_host)),
        None => router,
    };
    match cors(config) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

#[derive(Debug, Clone)]
struct Guard {
    tokens: Tokens,
    always: bool,
}

async fn authorize(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Some(needed) = required_scope(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    match guard.tokens.any_active().await {
        Ok(false) if !guard.always => return next.run(request).await,
        Ok(_) => {}
        Err(e) => return unavailable(e),
    }
    let Some(token) = bearer(&request) else {
        return unauthorized(
            "this request needs an API token: `Authorization: Bearer TOKEN` (strata token create)",
            None,
        );
    };
    let principal = match guard.tokens.verify(token).await {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            return unauthorized(
                "the API token is not valid (unknown, malformed or revoked)",
                Some("invalid_token"),
            );
        }
        Err(e) => return unavailable(e),
    };
    if !principal.scope.allows(needed) {
        let mut response = ApiError::from(Error::new(
            ErrorKind::Forbidden,
            format!(
                "this request needs a token of scope `{needed}`; this one (id {}) has `{}`",
                principal.id, principal.scope
            ),
        ))
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&format!(
            "Bearer error=\"insufficient_scope\", scope=\"{needed}\""
        )) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        return response;
    }
    let mut request = request;
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The token of `Authorization: Bearer TOKEN` (scheme in any case).
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn unauthorized(message: &str, error: Option<&str>) -> Response {
    let mut response = ApiError::from(Error::new(ErrorKind::Unauthorized, message)).into_response();
    let challenge = match error {
        Some(error) => format!("Bearer realm=\"strata\", error=\"{error}\""),
        None => "Bearer realm=\"strata\"".to_owned(),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The token store cannot answer: 503, failing closed. The error (which
/// never holds the token: only its digest is queried) goes to the log.
fn unavailable(e: Error) -> Response {
    tracing::warn!("API tokens not checked: {e}");
    ApiError::from(Error::new(
        ErrorKind::Unavailable,
        "the API tokens cannot be checked now",
    ))
    .into_response()
}

/// The host names a request may name, lower case, without ports.
#[derive(Debug, Clone)]
struct HostCheck {
    allowed: Vec<String>,
}

impl HostCheck {
    /// `None` when nothing is checked: `*` is listed, or the list is empty
    /// and the address is not loopback.
    fn new(config: &ApiConfig) -> Option<HostCheck> {
        if config.allowed_hosts.iter().any(|h| h == "*")
            || (config.allowed_hosts.is_empty() && !is_loopback(&config.listen))
        {
            return None;
        }
        let allowed = ["localhost", "127.0.0.1", "[::1]", config.listen.as_str()]
            .into_iter()
            .chain(config.allowed_hosts.iter().map(String::as_str))
            .map(normalize)
            .collect();
        Some(HostCheck { allowed })
    }

    fn allows(&self, host: &str) -> bool {
        let host = normalize(host);
        self.allowed.contains(&host)
    }
}

/// `host` without its port, lower case, without a trailing dot.
fn normalize(host: &str) -> String {
    strip_port(host.trim())
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// `HOST` of `HOST:PORT`, `[V6]:PORT` or a bare host.
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => authority,
    }
}

async fn check_host(State(hosts): State<HostCheck>, request: Request, next: Next) -> Response {
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let named = request
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .into_iter()
        .chain(request.uri().host());
    for host in named {
        if !hosts.allows(host) {
            return ApiError::misdirected().into_response();
        }
    }
    next.run(request).await
}

/// The CORS layer for `api.cors_origins`; `None` when none is listed.
fn cors(config: &ApiConfig) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(o) {
            Ok(value) => Some(value),
            Err(_) => {
                // `strata serve` refuses such a list before it starts.
                tracing::warn!("api.cors_origins: `{o}` ignored: not a header value");
                None
            }
        })
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_method_with_the_listed_exceptions() {
        let cases = [
            (Method::GET, "/v1/runs", Some(Scope::Read)),
            (Method::HEAD, "/v1/runs", Some(Scope::Read)),
            (Method::GET, "/metrics", Some(Scope::Read)),
            (Method::POST, "/v1/runs", Some(Scope::Write)),
            (Method::PUT, "/v1/aliases/a", Some(Scope::Write)),
            (Method::PATCH, "/v1/models/m/config", Some(Scope::Write)),
            (Method::DELETE, "/v1/runs/m", Some(Scope::Write)),
            (Method::POST, "/v1/features:batch", Some(Scope::Read)),
            (Method::POST, "/v1/models/fd-1/predict", Some(Scope::Read)),
            (Method::POST, "/v1/dead-letters/replay", Some(Scope::Admin)),
            (Method::POST, "/v1/dead-letters/purge", Some(Scope::Admin)),
            (Method::GET, "/v1/dead-letters", Some(Scope::Read)),
            (Method::GET, "/healthz", None),
            (Method::GET, "/readyz", None),
            (Method::GET, "/", None),
            (Method::GET, "/assets/app.js", None),
        ];
        for (method, path, scope) in cases {
            assert_eq!(required_scope(&method, path), scope, "{method} {path}");
        }
    }

    #[test]
    fn loopback_addresses_are_told_apart() {
        for listen in [
            "127.0.0.1:8080",
            "127.1.2.3:0",
            "[::1]:80",
            "localhost:8080",
        ] {
            assert!(is_loopback(listen), "{listen}");
        }
        for listen in ["0.0.0.0:8080", "[::]:80", "10.0.0.5:1", "example.com:80"] {
            assert!(!is_loopback(listen), "{listen}");
        }
    }

    #[test]
    fn hosts_match_without_port_or_case() {
        let config = ApiConfig {
            listen: "127.0.0.1:9000".into(),
            allowed_hosts: vec!["Strata.Example".into()],
            ..ApiConfig::default()
        };
        let check = HostCheck::new(&config).expect("a check");
        for ok in [
            "localhost",
            "localhost:1234",
            "127.0.0.1:9",
            "[::1]:8080",
            "strata.example",
            "STRATA.example.:443",
        ] {
            assert!(check.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "[::2]",
            "127.0.0.2",
        ] {
            assert!(!check.allows(bad), "{bad}");
        }
        let open = ApiConfig {
            listen: "0.0.0.0:80".into(),
            ..ApiConfig::default()
        };
        assert!(HostCheck::new(&open).is_none());
    }

    #[test]
    fn origins_and_hosts_are_checked_by_key() {
        let with = |origins: &[&str], hosts: &[&str]| ApiConfig {
            cors_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            ..ApiConfig::default()
        };
        assert!(check_config(&with(&["https://a.example", "http://b:8080"], &["*"])).is_ok());
        for bad in [
            "a.example",
            "https://a.example/",
            "https://a.example/x",
            "ftp://a",
        ] {
            let e = check_config(&with(&[bad], &[])).expect_err(bad);
            assert!(e.to_string().contains("api.cors_origins"), "{e}");
        }
        let e = check_config(&with(&[], &["a b"])).expect_err("a space");
        assert!(e.to_string().contains("api.allowed_hosts"), "{e}");
    }
}
