//! The limits of the API's input, as the JSON Schemas the OpenAPI document
//! publishes and as the extractors and checks that enforce them.
//!
//! Every schema here is built from the rules of [`crate::platform::names`]
//! and the platform's length constants, so the document states exactly
//! what the platform enforces: a request the document calls valid is never
//! answered 400, and one it calls invalid is never accepted. What JSON
//! Schema cannot say (that a dataset exists, that a page token came from
//! this filter, the grammar of the run filter language) is answered 404 or
//! 409, or, for the query languages, 400 naming the position.
//!
//! - [`ModelId`]: the schema component of a model id, and the extractor of
//!   a `{model_id}` path parameter: 400 `invalid_input` with `field:
//!   "model_id"` naming the pattern when it is not one.
//! - [`ConfigObject`] and [`ConfigValue`]: a client's config document, any
//!   JSON whose keys, at any depth, match
//!   [`CONFIG_KEY_PATTERN`](crate::platform::configs::CONFIG_KEY_PATTERN).
//! - Functions named after a field (for `#[schema(schema_with = ...)]`)
//!   and marker types (for `params((.. = inline(T), ..))`) for the rest.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use bson::{Bson, Document};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::error::{ApiError, ApiPath};
use crate::error::{Error, Result};
use crate::platform::configs::{CONFIG_KEY_PATTERN, MAX_CONFIG_DEPTH};
use crate::platform::names::{
    METRIC_NAME_PATTERN, MODEL_ID_MAX, MODEL_ID_PATTERN, NAME_PATTERN, TAG_KEY_PATTERN,
    TEXT_PATTERN, check_model_id, check_name,
};
use crate::platform::registry::aliases::ALIAS_MAX;
use crate::platform::registry::{
    CREATED_BY_MAX, DATASET_NAME_MAX, DESCRIPTION_MAX, FRAMEWORK_MAX, MODEL_NAME_MAX, TAG_VALUE_MAX,
};
use crate::platform::sagas::{SAGA_ID_PATTERN, is_valid_saga_id};
use crate::platform::search::{MAX_LEN as QUERY_MAX, QUERY_TEXT_PATTERN};

/// A model id ([`MODEL_ID_PATTERN`]), read from the `{model_id}` path
/// parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId(pub String);

impl ModelId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ModelId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ApiPath(id) = ApiPath::<String>::from_request_parts(parts, state).await?;
        check_model_id("model_id", &id)?;
        Ok(ModelId(id))
    }
}

impl PartialSchema for ModelId {
    fn schema() -> RefOr<Schema> {
        string(
            MODEL_ID_PATTERN,
            1,
            MODEL_ID_MAX,
            &format!(
                "A model id: an ASCII letter or digit, then up to 254 ASCII letters, digits, \
                 `.`, `_` or `-` ({MODEL_ID_PATTERN}). It links a model's training run, config \
                 document, counters and sagas on every engine."
            ),
        )
        .examples([json!("fraud-detector-v1")])
        .build()
        .into()
    }
}

impl ToSchema for ModelId {}

/// A client's config document: an object whose keys, at any depth, are not
/// empty, do not start with `$`, and hold no `.` and no control character,
/// nested at most 64 levels deep.
#[derive(Debug)]
pub struct ConfigObject;

impl PartialSchema for ConfigObject {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(format!(
                "Any JSON object whose keys, at any depth, match {CONFIG_KEY_PATTERN} (not \
                 empty, not starting with `$`, without `.` or control characters), nested at \
                 most {MAX_CONFIG_DEPTH} levels deep."
            )))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(CONFIG_KEY_PATTERN))
                    .build(),
            ))
            .additional_properties(Some(RefOr::Ref(Ref::from_schema_name("ConfigValue"))))
            .build()
            .into()
    }
}

impl ToSchema for ConfigObject {}

/// A value in a [`ConfigObject`]: any JSON value, objects again with keys
/// as [`ConfigObject`] requires.
#[derive(Debug)]
pub struct ConfigValue;

impl PartialSchema for ConfigValue {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(SchemaType::from_iter([
                Type::Null,
                Type::Boolean,
                Type::Number,
                Type::String,
            ])))
            .item(
                ArrayBuilder::new()
                    .items(Ref::from_schema_name("ConfigValue"))
                    .build(),
            )
            .item(RefOr::Ref(Ref::from_schema_name("ConfigObject")))
            .into()
    }
}

impl ToSchema for ConfigValue {}

/// A string schema: `pattern`, `min` to `max` characters.
fn string(pattern: &str, min: usize, max: usize, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .min_length((min > 0).then_some(min))
        .max_length(Some(max))
        .description(Some(description))
}

/// `object` that also accepts `null` (an optional field of a body).
fn or_null(mut object: Object) -> Object {
    object.schema_type = match object.schema_type {
        SchemaType::Type(t) => SchemaType::from_iter([t, Type::Null]),
        SchemaType::Array(mut types) => {
            types.push(Type::Null);
            SchemaType::Array(types)
        }
        SchemaType::AnyValue => SchemaType::AnyValue,
    };
    object
}

fn name(max: usize, what: &str) -> ObjectBuilder {
    string(
        NAME_PATTERN,
        1,
        max,
        &format!(
            "{what}: 1 to {max} characters, at least one of them not whitespace, no control \
             characters."
        ),
    )
}

fn text(max: usize, what: &str) -> ObjectBuilder {
    string(
        TEXT_PATTERN,
        0,
        max,
        &format!("{what}: at most {max} characters, no control characters."),
    )
}

/// A dataset's name.
pub(crate) fn dataset_name() -> Object {
    name(DATASET_NAME_MAX, "The dataset's unique name")
        .examples([json!("fraud-train-v1")])
        .build()
}

/// A dataset's description, optional.
pub(crate) fn description() -> Object {
    or_null(text(DESCRIPTION_MAX, "What the data is").build())
}

/// Who registered a dataset, optional.
pub(crate) fn created_by() -> Object {
    or_null(text(CREATED_BY_MAX, "Who registers it").build())
}

/// A model's name.
pub(crate) fn model_name() -> Object {
    name(MODEL_NAME_MAX, "The model's name")
        .examples([json!("fraud-detector")])
        .build()
}

/// A framework's name.
pub(crate) fn framework() -> Object {
    name(FRAMEWORK_MAX, "The framework")
        .examples([json!("pytorch")])
        .build()
}

/// Who moves an alias, optional.
pub(crate) fn moved_by() -> Object {
    or_null(
        name(
            crate::platform::registry::aliases::MOVED_BY_MAX,
            "Who moves it (default `api`)",
        )
        .build(),
    )
}

/// Why an alias moves, optional.
pub(crate) fn reason() -> Object {
    or_null(
        text(
            crate::platform::registry::aliases::REASON_MAX,
            "Why, for the audit trail",
        )
        .build(),
    )
}

/// Run tags: keys as [`TAG_KEY_PATTERN`], values text.
pub(crate) fn tags() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "Labels: keys match {TAG_KEY_PATTERN} (1 to 255 ASCII letters, digits, `_`, `-` \
             or `.`), values are at most {TAG_VALUE_MAX} characters without control characters."
        )))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(TAG_KEY_PATTERN))
                .build(),
        ))
        .additional_properties(Some(text(TAG_VALUE_MAX, "A tag's value")))
        .examples([json!({"team": "risk"})])
        .build()
}

/// New metrics: at least one, names as [`METRIC_NAME_PATTERN`], numbers.
pub(crate) fn metrics() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "Metric names matching {METRIC_NAME_PATTERN} (1 to 64 ASCII letters, digits or \
             `_`) and their values; at least one."
        )))
        .min_properties(Some(1))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(METRIC_NAME_PATTERN))
                .build(),
        ))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::Number)))
        .examples([json!({"f1": 0.91})])
        .build()
}

/// Stored metrics, in a config: names as [`METRIC_NAME_PATTERN`], numbers.
pub(crate) fn metrics_stored() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "Metric names matching {METRIC_NAME_PATTERN} and their values."
        )))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(METRIC_NAME_PATTERN))
                .build(),
        ))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::Number)))
        .build()
}

/// A config document, or `null` for none.
pub(crate) fn config_or_null() -> RefOr<Schema> {
    AnyOfBuilder::new()
        .item(RefOr::Ref(Ref::from_schema_name("ConfigObject")))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "The framework-specific configuration (layers, tokenizer, booster parameters, ...), \
             stored as `config` of the model's config document; `null` or absent: none.",
        ))
        .into()
}

/// How a run ends: `completed` or `failed`, optional.
pub(crate) fn run_end_status() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some([json!("completed"), json!("failed"), Value::Null]))
        .description(Some("`completed` (default) or `failed`."))
        .build()
}

/// The years a timestamp may be written with: 0001 to 9998, so that it
/// is a four-digit year in UTC whatever its offset.
const TIMESTAMP_PATTERN: &str =
    "^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-";

/// The longest timestamp, in characters: room for nanoseconds and an
/// offset (`9998-12-31T23:59:59.123456789+23:59` is 35).
const TIMESTAMP_MAX: usize = 40;

/// A timestamp, optional.
pub(crate) fn timestamp() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .pattern(Some(TIMESTAMP_PATTERN))
        .max_length(Some(TIMESTAMP_MAX))
        .description(Some(format!(
            "An RFC 3339 date-time written with a year from 0001 to 9998, at most \
             {TIMESTAMP_MAX} characters; now when absent."
        )))
        .build()
}

/// Reads an optional RFC 3339 timestamp whose written year is 0001 to
/// 9998 ([`TIMESTAMP_PATTERN`]), as UTC.
pub(crate) fn deserialize_timestamp<'de, D>(
    deserializer: D,
) -> std::result::Result<Option<DateTime<Utc>>, D::Error>
where
    D: Deserializer<'de>,
{
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if text.chars().count() > TIMESTAMP_MAX {
        return Err(serde::de::Error::custom(format!(
            "a date-time is at most {TIMESTAMP_MAX} characters"
        )));
    }
    let parsed = DateTime::parse_from_rfc3339(&text).map_err(|e| {
        serde::de::Error::custom(format!("`{text}` is not an RFC 3339 date-time: {e}"))
    })?;
    if !(1..=9998).contains(&parsed.year()) {
        return Err(serde::de::Error::custom(format!(
            "`{text}`: the year must be written as 0001 to 9998"
        )));
    }
    Ok(Some(parsed.with_timezone(&Utc)))
}

/// Reads an optional integer as JSON Schema's `integer` means it: a
/// number without a fractional part, so `3.0` is 3. Out of `T`'s range is
/// an error.
pub(crate) fn deserialize_integer<'de, D, T>(
    deserializer: D,
) -> std::result::Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    // 2^63 as f64: the first double past i64's range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let integer = match (number.as_i64(), number.as_f64()) {
        (Some(i), _) => Some(i),
        (None, Some(f)) if f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) => Some(f as i64),
        _ => None,
    };
    integer
        .and_then(|i| T::try_from(i).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("`{number}` is not an integer in range")))
}

/// [`deserialize_integer`] for a required field.
pub(crate) fn deserialize_required_integer<'de, D, T>(
    deserializer: D,
) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    deserialize_integer(deserializer)?
        .ok_or_else(|| serde::de::Error::custom("an integer is required, not `null`"))
}

/// Text of the run search language (a filter or an `order_by`).
fn query_text(description: &str) -> ObjectBuilder {
    string(QUERY_TEXT_PATTERN, 0, QUERY_MAX, description)
}

/// Marker types whose schemas describe parameters (`inline(T)` in
/// `params(...)`).
pub(crate) mod params {
    use super::*;

    macro_rules! param_schema {
        ($(#[$doc:meta])* $name:ident => $body:expr) => {
            $(#[$doc])*
            #[derive(Debug)]
            pub(crate) struct $name;

            impl PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    $body.into()
                }
            }

            impl ToSchema for $name {}
        };
    }

    param_schema!(
        /// A dead letter's id in a path.
        DeadLetterId => dead_letter_id()
    );
    param_schema!(
        /// A dataset's name in a path.
        DatasetName => dataset_name()
    );
    param_schema!(
        /// `model_name@alias` in a path.
        AliasName => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(alias_pattern()))
            .min_length(Some(3))
            .max_length(Some(MODEL_NAME_MAX + 1 + ALIAS_MAX))
            .description(Some(format!(
                "`model_name@alias`, split at the last `@`: a model name of 1 to \
                 {MODEL_NAME_MAX} characters, then an alias of 1 to {ALIAS_MAX} characters \
                 without `@`; each has a character that is not whitespace, neither has \
                 control characters."
            )))
            .examples([json!("fraud-detector@champion")])
            .build()
    );
    param_schema!(
        /// A feature view's name in a path.
        ViewName => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(crate::serving::features::FEATURE_NAME_PATTERN))
            .min_length(Some(1))
            .max_length(Some(64))
            .description(Some("The view's name: 1 to 64 letters, digits or `_`."))
            .examples([json!("user_activity")])
            .build()
    );
    param_schema!(
        /// An entity's id in a path.
        EntityId => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(crate::serving::features::ENTITY_ID_PATTERN))
            .min_length(Some(1))
            .max_length(Some(MODEL_ID_MAX))
            .description(Some("The entity's id: a letter or digit, then up to 254 letters, digits, `.`, `_` or `-`."))
            .examples([json!("user_1001")])
            .build()
    );
    param_schema!(
        /// A model id or `model_name@alias` in a path.
        ModelOrAlias => RefOr::T(Schema::AnyOf(AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(MODEL_ID_PATTERN))
                    .min_length(Some(1))
                    .max_length(Some(MODEL_ID_MAX))
                    .build(),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(alias_pattern()))
                    .min_length(Some(3))
                    .max_length(Some(MODEL_NAME_MAX + 1 + ALIAS_MAX))
                    .build(),
            )
            .description(Some("A model id, or `model_name@alias` (the model its artifact belongs to)."))
            .examples([json!("fraud-detector@champion")])
            .build()))
    );
    param_schema!(
        /// A saga's id in a path.
        SagaId => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(SAGA_ID_PATTERN))
            .min_length(Some(36))
            .max_length(Some(36))
            .description(Some("The saga's id, a lower-case UUID."))
            .build()
    );
}

/// A dead-letter filter's text (a queue's name, a piece of an error).
pub(crate) fn dead_letter_text() -> Object {
    string(
        QUERY_TEXT_PATTERN,
        1,
        200,
        "1 to 200 characters without control characters.",
    )
    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
    .build()
}

/// A dead letter's id: a lower-case UUID.
pub(crate) fn dead_letter_id() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(SAGA_ID_PATTERN))
        .min_length(Some(36))
        .max_length(Some(36))
        .description(Some("The dead letter's id, a lower-case UUID."))
        .build()
}

/// Dead letters' ids: 1 to 1000 of them.
pub(crate) fn dead_letter_ids() -> RefOr<Schema> {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(dead_letter_id())
        .min_items(Some(1))
        .max_items(Some(1000))
        .description(Some("Only these dead letters, by id."))
        .build()
        .into()
}

/// Checks a dead letter's id.
pub(crate) fn check_dead_letter_id(value: &str) -> Result<()> {
    if is_valid_saga_id(value) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "`{value}` is not a dead letter id (a lower-case UUID)"
        ))
        .with_field("id"))
    }
}

/// A filter of the run search language, in a query.
pub(crate) fn filter() -> Object {
    query_text(
        "Filter in the run search language, e.g. \
         `framework IN ('pytorch') OR accuracy > 0.95`; empty: every run. A filter that does \
         not parse is 400 naming the position.",
    )
    .examples([json!("framework IN ('pytorch') OR accuracy > 0.95")])
    .build()
}

/// Sort keys of a run search, in a query.
pub(crate) fn order_by() -> Object {
    query_text(
        "Sort keys, e.g. `accuracy DESC, model_id`, each field once; empty: `started_at DESC`.",
    )
    .examples([json!("accuracy DESC, model_id")])
    .build()
}

/// A run search's page token, in a query.
pub(crate) fn run_page_token() -> Object {
    string(
        "^[A-Za-z0-9_-]*$",
        0,
        QUERY_MAX,
        "`next_page_token` of the previous page, with the same filter and order; a token made \
         for another search is 400.",
    )
    .build()
}

/// The dataset list's page token, in a query: the last name of the
/// previous page.
pub(crate) fn dataset_page_token() -> Object {
    text(
        DATASET_NAME_MAX,
        "`next_page_token` of the previous page; empty: the first page",
    )
    .build()
}

/// A model id, in a query.
pub(crate) fn model_id_query() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name("ModelId"))
}

/// `model_name@alias` as a pattern: the model part a name, the alias part
/// a name without `@`, with both lengths checked by the lookahead.
fn alias_pattern() -> String {
    const TEXT: &str = r"[^\x00-\x1f\x7f-\x9f]";
    const SOLID: &str = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
    const ALIAS_TEXT: &str = r"[^@\x00-\x1f\x7f-\x9f]";
    const ALIAS_SOLID: &str =
        r"[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
    format!(
        "^(?={TEXT}{{1,{MODEL_NAME_MAX}}}@{ALIAS_TEXT}{{1,{ALIAS_MAX}}}$){TEXT}*{SOLID}{TEXT}*@{ALIAS_TEXT}*{ALIAS_SOLID}{ALIAS_TEXT}*$"
    )
}

/// Checks a dataset name from a path or a query.
pub(crate) fn check_dataset_name(value: &str) -> Result<()> {
    check_name("name", value, DATASET_NAME_MAX)
}

/// Checks a saga id from a path.
pub(crate) fn check_saga_id(value: &str) -> Result<()> {
    if is_valid_saga_id(value) {
        Ok(())
    } else {
        Err(
            Error::invalid(format!("`id` must be a saga id matching {SAGA_ID_PATTERN}"))
                .with_field("id"),
        )
    }
}

/// A JSON object as a BSON document, value for value: objects stay
/// documents (so `{"$date": ..}` stays a key, refused later, never an
/// extended-JSON date), integers are 64-bit when they fit and doubles when
/// they do not.
pub(crate) fn json_object_to_document(map: &serde_json::Map<String, Value>) -> Document {
    map.iter()
        .map(|(k, v)| (k.clone(), json_to_bson(v)))
        .collect()
}

fn json_to_bson(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(json_to_bson).collect()),
        Value::Object(map) => Bson::Document(json_object_to_document(map)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rust_regex(pattern: &str) -> regex::Regex {
        let rust = regex::Regex::new(r"\\u([0-9a-fA-F]{4})")
            .unwrap()
            .replace_all(pattern, r"\u{$1}");
        regex::Regex::new(&rust).unwrap()
    }

    #[test]
    fn the_alias_pattern_agrees_with_parsing() {
        // The `regex` crate has no lookahead: check the two halves the
        // pattern joins, and the lengths by hand.
        let pattern = alias_pattern();
        let (ahead, rest) = pattern
            .strip_prefix("^(?=")
            .and_then(|p| p.split_once(')'))
            .unwrap();
        let ahead = rust_regex(&format!("^{ahead}"));
        let rest = rust_regex(&format!("^{rest}"));
        for s in [
            "fraud-detector@champion",
            "a@b",
            "me@home@prod",
            "@a",
            "a@",
            " @a",
            "a@ ",
            "a\u{0}@b",
            "a@b\nc",
            "Fraud Detector CNN@champion",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([
            format!("{}@a", "m".repeat(255)),
            format!("{}@a", "m".repeat(256)),
            format!("m@{}", "a".repeat(100)),
            format!("m@{}", "a".repeat(101)),
        ]) {
            let parsed = s
                .parse::<crate::platform::registry::aliases::AliasRef>()
                .is_ok();
            assert_eq!(parsed, ahead.is_match(&s) && rest.is_match(&s), "{s:?}");
        }
    }

    #[test]
    fn timestamps_are_read_by_their_written_year() {
        #[derive(Deserialize)]
        struct At {
            #[serde(default, deserialize_with = "deserialize_timestamp")]
            at: Option<DateTime<Utc>>,
        }
        let read = |s: &str| serde_json::from_value::<At>(json!({ "at": s })).map(|a| a.at);
        assert!(read("9998-12-31T23:00:00-05:00").is_ok());
        assert!(read("0001-01-01T00:00:00+05:00").is_ok());
        assert!(read("9999-01-01T00:00:00Z").is_err());
        assert!(read("0000-06-01T00:00:00Z").is_err());
        assert!(read("2024-01-01T12:99:00Z").is_err());
        let pattern = regex::Regex::new(TIMESTAMP_PATTERN).unwrap();
        for year in 0..=9999 {
            let s = format!("{year:04}-06-01T00:00:00Z");
            assert_eq!(read(&s).is_ok(), pattern.is_match(&s), "{s}");
        }
    }
}
