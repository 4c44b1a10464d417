//! The dashboard: one HTML page at `/` and its script and style sheet
//! under `/assets/`, compiled into the binary (no build step). The page
//! reads the API as any client does (`/readyz`, `/v1/ops`, `/v1/cache`,
//! `/v1/leaderboard`, `/v1/runs`, `/v1/dead-letters`, `/v1/sagas`),
//! sending the token the user enters as `Authorization: Bearer ...`.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles
//! and requests only from this origin, no inline script), `nosniff`, and an
//! `ETag` from the content: `Cache-Control: no-cache` lets a browser keep
//! a copy and revalidate it (`304`), so a new binary's assets are seen at
//! once.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::error::{ApiError, ApiPath};
use crate::error::{Error, ErrorKind};

/// The Content-Security-Policy of every dashboard answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The pattern of an asset's name in a path.
pub const ASSET_PATTERN: &str = "^[A-Za-z0-9_-]{1,32}\\.[a-z]{1,8}$";

/// One file of the dashboard.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: &'static str,
}

/// 64-bit FNV-1a, at compile time: the assets' `ETag`s.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 hex digits + `"`.
const fn etag_of(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("dashboard/", $name));
        const TAG: [u8; 18] = etag_of(BODY);
        const ETAG: &str = match std::str::from_utf8(&TAG) {
            Ok(tag) => tag,
            Err(_) => panic!("an ETag is ASCII"),
        };
        Asset {
            name: $name,
            content_type: $content_type,
            body: BODY,
            etag: ETAG,
        }
    }};
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

const ASSETS: [Asset; 2] = [
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
];

/// The name of an asset in a path.
#[derive(Debug)]
pub(crate) struct AssetName;

impl PartialSchema for AssetName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(ASSET_PATTERN))
            .min_length(Some(3))
            .max_length(Some(41))
            .description(Some(
                "A file of the dashboard: `app.js` or `style.css`; any other is 404.",
            ))
            .examples([json!("app.js")])
            .build()
            .into()
    }
}

impl ToSchema for AssetName {}

/// `asset`, or `304` when the client's copy (`If-None-Match`) is current.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let current = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == asset.etag || t == "*")
        });
    let mut response = if current {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::ETAG, asset.etag),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The dashboard's page: engines, caches, runs, features, queues, dead
/// letters and sagas, from this API.
#[utoipa::path(get, path = "/", tag = "dashboard",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 304, description = "The client's copy (`If-None-Match`) is current")))]
pub async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

/// A file of the dashboard (its script, its style sheet).
#[utoipa::path(get, path = "/assets/{file}", tag = "dashboard",
    params(("file" = inline(AssetName), Path, description = "The file")),
    responses(
        (status = 200, description = "The file", content((String = "text/javascript"), (String = "text/css"))),
        (status = 304, description = "The client's copy (`If-None-Match`) is current"),
        (status = 404, description = "No such file", body = super::ErrorBody)))]
pub async fn asset(
    ApiPath(file): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(asset) => Ok(serve(asset, &headers)),
        None => Err(Error::new(
            ErrorKind::NotFound,
            format!("no dashboard file `{}`", file.escape_debug()),
        )
        .with_field("file")
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_by_content_and_are_quoted_hex() {
        let a = etag_of(b"a");
        let b = etag_of(b"b");
        assert_ne!(a, b);
        let tag = std::str::from_utf8(&a).unwrap();
        assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
        assert!(tag[1..17].chars().all(|c| c.is_ascii_hexdigit()), "{tag}");
        // FNV-1a's published value for "a".
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn every_asset_name_fits_its_pattern() {
        let pattern = regex::Regex::new(ASSET_PATTERN).unwrap();
        for asset in ASSETS.iter().chain([&INDEX]) {
            assert!(pattern.is_match(asset.name), "{}", asset.name);
            assert!(!asset.body.is_empty(), "{}", asset.name);
        }
    }
}
