//! `$jsonSchema` collection validators.
//!
//! # Contracts
//!
//! - A validator is `{"$jsonSchema": {...}}` and nothing else: any other
//!   top-level key (a query-filter validator, `$and`, ...) is `Unsupported`
//!   naming it.
//! - Keywords supported, at any depth: `bsonType` (a name or an array of
//!   names: `object array string int long double decimal number bool date
//!   objectId null binData timestamp regex minKey maxKey`), `required`,
//!   `properties`, `enum`, `minimum`/`maximum` with `exclusiveMinimum`/
//!   `exclusiveMaximum` (booleans), `minLength`/`maxLength`, `pattern`,
//!   `items` (one schema), `minItems`/`maxItems`, `additionalProperties`
//!   (boolean). `title` and `description` are annotations, ignored as
//!   MongoDB ignores them. Any other keyword is `Unsupported`, named.
//! - As in JSON Schema, a keyword constrains only values of its kind:
//!   `minimum` ignores strings, `properties` ignores non-documents; only
//!   `bsonType` and `enum` constrain every value.
//! - [`Validator::validate`] fails with `InvalidInput`, a message starting
//!   "Document failed validation", and [`Error::field`] set to the dot path
//!   of the failing field (array elements by index: `tags.2`); for a missing
//!   required field, that field's path.

use bson::{Bson, Document};
use regex::Regex;

use crate::error::{Error, Result};

use super::compare::{as_num, bson_equal, compare_num};
use super::path::type_name;

/// A parsed validator.
#[derive(Debug, Clone, PartialEq)]
pub struct Validator {
    schema: Schema,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Schema {
    bson_types: Option<Vec<String>>,
    required: Vec<String>,
    properties: Vec<(String, Schema)>,
    additional_properties: Option<bool>,
    enumeration: Option<Vec<Bson>>,
    minimum: Option<(Bson, bool)>,
    maximum: Option<(Bson, bool)>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<Pattern>,
    items: Option<Box<Schema>>,
    min_items: Option<u64>,
    max_items: Option<u64>,
}

#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    re: Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

const TYPE_ALIASES: &[&str] = &[
    "object",
    "array",
    "string",
    "int",
    "long",
    "double",
    "decimal",
    "number",
    "bool",
    "date",
    "objectId",
    "null",
    "binData",
    "timestamp",
    "regex",
    "minKey",
    "maxKey",
];

fn type_matches(alias: &str, value: &Bson) -> bool {
    match alias {
        "number" => matches!(
            value,
            Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_)
        ),
        other => type_name(value) == other,
    }
}

impl Validator {
    /// Parses `{"$jsonSchema": {...}}`; keywords outside `bsonType`,
    /// `required`, `properties` (and the ones documented in this module) are
    /// `Unsupported`.
    pub fn parse(validator: &Document) -> Result<Validator> {
        let mut schema = None;
        for (key, value) in validator {
            if key != "$jsonSchema" {
                return Err(Error::unsupported(format!(
                    "unsupported validator `{key}`: only `$jsonSchema` validators are supported"
                )));
            }
            let Bson::Document(d) = value else {
                return Err(Error::invalid("$jsonSchema must be an object"));
            };
            schema = Some(parse_schema(d, "")?);
        }
        let schema = schema.ok_or_else(|| Error::invalid("a validator needs `$jsonSchema`"))?;
        Ok(Validator { schema })
    }

    /// Checks a document; `InvalidInput` with the failing field set
    /// (`Error::field`) when it fails.
    pub fn validate(&self, doc: &Document) -> Result<()> {
        check_document(&self.schema, doc, "")
    }
}

fn keyword_error(at: &str, keyword: &str, what: &str) -> Error {
    let place = if at.is_empty() {
        String::new()
    } else {
        format!(" at `{at}`")
    };
    Error::invalid(format!("$jsonSchema keyword `{keyword}`{place} {what}"))
}

fn non_negative(value: &Bson, at: &str, keyword: &str) -> Result<u64> {
    let n = match value {
        Bson::Int32(i) => u64::try_from(*i).ok(),
        Bson::Int64(i) => u64::try_from(*i).ok(),
        Bson::Double(d) if d.fract() == 0.0 && *d >= 0.0 => Some(*d as u64),
        _ => None,
    };
    n.ok_or_else(|| keyword_error(at, keyword, "must be a non-negative integer"))
}

fn flag(value: &Bson, at: &str, keyword: &str) -> Result<bool> {
    match value {
        Bson::Boolean(b) => Ok(*b),
        _ => Err(keyword_error(at, keyword, "must be a boolean")),
    }
}

fn parse_schema(d: &Document, at: &str) -> Result<Schema> {
    let mut s = Schema::default();
    let mut exclusive_min = false;
    let mut exclusive_max = false;
    for (keyword, value) in d {
        match keyword.as_str() {
            "title" | "description" => {}
            "bsonType" => {
                let names: Vec<&Bson> = match value {
                    Bson::Array(items) => items.iter().collect(),
                    single => vec![single],
                };
                let mut types = Vec::with_capacity(names.len());
                for name in names {
                    let Bson::String(name) = name else {
                        return Err(keyword_error(at, "bsonType", "must name types as strings"));
                    };
                    if !TYPE_ALIASES.contains(&name.as_str()) {
                        return Err(keyword_error(
                            at,
                            "bsonType",
                            &format!("names an unknown type `{name}`"),
                        ));
                    }
                    types.push(name.clone());
                }
                s.bson_types = Some(types);
            }
            "required" => {
                let Bson::Array(items) = value else {
                    return Err(keyword_error(at, "required", "must be an array of strings"));
                };
                for item in items {
                    let Bson::String(name) = item else {
                        return Err(keyword_error(at, "required", "must be an array of strings"));
                    };
                    if s.required.contains(name) {
                        return Err(keyword_error(at, "required", "must not repeat a name"));
                    }
                    s.required.push(name.clone());
                }
            }
            "properties" => {
                let Bson::Document(props) = value else {
                    return Err(keyword_error(at, "properties", "must be an object"));
                };
                for (name, sub) in props {
                    let Bson::Document(sub) = sub else {
                        return Err(keyword_error(
                            at,
                            "properties",
                            &format!("needs an object for `{name}`"),
                        ));
                    };
                    s.properties
                        .push((name.clone(), parse_schema(sub, &join(at, name))?));
                }
            }
            "additionalProperties" => match value {
                Bson::Boolean(b) => s.additional_properties = Some(*b),
                _ => {
                    return Err(Error::unsupported(format!(
                        "unsupported $jsonSchema `additionalProperties` with a schema{}; only a boolean is supported",
                        if at.is_empty() {
                            String::new()
                        } else {
                            format!(" at `{at}`")
                        }
                    )));
                }
            },
            "enum" => {
                let Bson::Array(items) = value else {
                    return Err(keyword_error(at, "enum", "must be an array"));
                };
                if items.is_empty() {
                    return Err(keyword_error(at, "enum", "must not be empty"));
                }
                s.enumeration = Some(items.clone());
            }
            "minimum" | "maximum" => {
                if as_num(value).is_none() {
                    return Err(keyword_error(at, keyword, "must be a number"));
                }
                if keyword == "minimum" {
                    s.minimum = Some((value.clone(), false));
                } else {
                    s.maximum = Some((value.clone(), false));
                }
            }
            "exclusiveMinimum" => exclusive_min = flag(value, at, keyword)?,
            "exclusiveMaximum" => exclusive_max = flag(value, at, keyword)?,
            "minLength" => s.min_length = Some(non_negative(value, at, keyword)?),
            "maxLength" => s.max_length = Some(non_negative(value, at, keyword)?),
            "minItems" => s.min_items = Some(non_negative(value, at, keyword)?),
            "maxItems" => s.max_items = Some(non_negative(value, at, keyword)?),
            "pattern" => {
                let Bson::String(source) = value else {
                    return Err(keyword_error(at, "pattern", "must be a string"));
                };
                let re = Regex::new(source).map_err(|e| {
                    keyword_error(at, "pattern", &format!("is not a valid regex: {e}"))
                        .with_source(e)
                })?;
                s.pattern = Some(Pattern {
                    source: source.clone(),
                    re,
                });
            }
            "items" => match value {
                Bson::Document(sub) => {
                    s.items = Some(Box::new(parse_schema(sub, &join(at, "items"))?));
                }
                _ => {
                    return Err(Error::unsupported(
                        "unsupported $jsonSchema `items` as an array of schemas; only one schema is supported",
                    ));
                }
            },
            other => {
                return Err(Error::unsupported(format!(
                    "unsupported $jsonSchema keyword `{other}`"
                )));
            }
        }
    }
    if exclusive_min {
        match s.minimum.as_mut() {
            Some((_, exclusive)) => *exclusive = true,
            None => return Err(keyword_error(at, "exclusiveMinimum", "needs `minimum`")),
        }
    }
    if exclusive_max {
        match s.maximum.as_mut() {
            Some((_, exclusive)) => *exclusive = true,
            None => return Err(keyword_error(at, "exclusiveMaximum", "needs `maximum`")),
        }
    }
    Ok(s)
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn fail(at: &str, why: String) -> Error {
    let field = if at.is_empty() { "(document)" } else { at };
    Error::invalid(format!("Document failed validation: field `{field}` {why}")).with_field(field)
}

fn check_document(s: &Schema, doc: &Document, at: &str) -> Result<()> {
    for name in &s.required {
        if !doc.contains_key(name) {
            let path = join(at, name);
            return Err(fail(&path, "is required but missing".to_string()));
        }
    }
    for (name, value) in doc {
        match s.properties.iter().find(|(n, _)| n == name) {
            Some((_, sub)) => check_value(sub, value, &join(at, name))?,
            // No exemption for `_id`: under `additionalProperties: false`
            // it must be listed in `properties`, as the server requires.
            None if s.additional_properties == Some(false) => {
                return Err(fail(
                    &join(at, name),
                    "is not allowed by additionalProperties".to_string(),
                ));
            }
            None => {}
        }
    }
    Ok(())
}

fn check_value(s: &Schema, value: &Bson, at: &str) -> Result<()> {
    if let Some(types) = &s.bson_types
        && !types.iter().any(|t| type_matches(t, value))
    {
        return Err(fail(
            at,
            format!(
                "has type {} but the schema requires {}",
                type_name(value),
                types.join(" or ")
            ),
        ));
    }
    if let Some(allowed) = &s.enumeration
        && !allowed.iter().any(|a| bson_equal(a, value))
    {
        return Err(fail(
            at,
            format!("value {value} is not one of the enum values"),
        ));
    }
    if let Some(n) = as_num(value) {
        if let Some((min, exclusive)) = &s.minimum
            && let Some(m) = as_num(min)
        {
            let o = compare_num(n, m);
            if o.is_lt() || (*exclusive && o.is_eq()) {
                return Err(fail(
                    at,
                    format!("value {value} is below the minimum {min}"),
                ));
            }
        }
        if let Some((max, exclusive)) = &s.maximum
            && let Some(m) = as_num(max)
        {
            let o = compare_num(n, m);
            if o.is_gt() || (*exclusive && o.is_eq()) {
                return Err(fail(
                    at,
                    format!("value {value} is above the maximum {max}"),
                ));
            }
        }
    }
    match value {
        Bson::String(text) => {
            let len = text.chars().count() as u64;
            if s.min_length.is_some_and(|m| len < m) || s.max_length.is_some_and(|m| len > m) {
                return Err(fail(
                    at,
                    format!("has a length of {len} outside the allowed one"),
                ));
            }
            if let Some(p) = &s.pattern
                && !p.re.is_match(text)
            {
                return Err(fail(
                    at,
                    format!("does not match the pattern `{}`", p.source),
                ));
            }
        }
        Bson::Array(items) => {
            let len = items.len() as u64;
            if s.min_items.is_some_and(|m| len < m) || s.max_items.is_some_and(|m| len > m) {
                return Err(fail(
                    at,
                    format!("has {len} items, outside the allowed count"),
                ));
            }
            if let Some(item_schema) = &s.items {
                for (i, item) in items.iter().enumerate() {
                    check_value(item_schema, item, &join(at, &i.to_string()))?;
                }
            }
        }
        Bson::Document(d) => check_document(s, d, at)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use bson::doc;

    fn validator() -> Validator {
        Validator::parse(&doc! {"$jsonSchema": {
            "bsonType": "object",
            "title": "model config",
            "required": ["name", "framework"],
            "properties": {
                "name": {"bsonType": "string", "minLength": 1, "description": "the name"},
                "framework": {"enum": ["torch", "jax"]},
                "epochs": {"bsonType": ["int", "long"], "minimum": 1, "maximum": 1000},
                "lr": {"bsonType": "number", "minimum": 0, "exclusiveMinimum": true},
                "tags": {"bsonType": "array", "items": {"bsonType": "string"}, "maxItems": 3},
                "owner": {"bsonType": "object", "required": ["email"], "properties": {
                    "email": {"bsonType": "string", "pattern": "@"}
                }},
                "note": {"bsonType": ["string", "null"]}
            }
        }})
        .unwrap()
    }

    fn failing_field(d: Document) -> String {
        let e = validator().validate(&d).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.message().starts_with("Document failed validation"),
            "{}",
            e.message()
        );
        e.field().unwrap().to_string()
    }

    #[test]
    fn valid_documents_pass() {
        let v = validator();
        v.validate(&doc! {"name": "r", "framework": "torch"})
            .unwrap();
        v.validate(&doc! {
            "_id": 1, "name": "r", "framework": "jax", "epochs": 10i64, "lr": 0.1,
            "tags": ["a"], "owner": {"email": "a@b"}, "note": null, "extra": true
        })
        .unwrap();
    }

    #[test]
    fn failures_name_the_field() {
        assert_eq!(failing_field(doc! {"framework": "torch"}), "name");
        assert_eq!(
            failing_field(doc! {"name": 5, "framework": "torch"}),
            "name"
        );
        assert_eq!(
            failing_field(doc! {"name": "", "framework": "torch"}),
            "name"
        );
        assert_eq!(
            failing_field(doc! {"name": "r", "framework": "tf"}),
            "framework"
        );
        assert_eq!(
            failing_field(doc! {"name": "r", "framework": "jax", "epochs": 0}),
            "epochs"
        );
        assert_eq!(
            failing_field(doc! {"name": "r", "framework": "jax", "epochs": 5.0}),
            "epochs"
        );
        assert_eq!(
            failing_field(doc! {"name": "r", "framework": "jax", "lr": 0}),
            "lr"
        );
        assert_eq!(
            failing_field(doc! {"name": "r", "framework": "jax", "tags": ["a", 1]}),
            "tags.1"
        );
        assert_eq!(
            failing_field(doc! {"name": "r", "framework": "jax", "tags": ["a", "b", "c", "d"]}),
            "tags"
        );
        assert_eq!(
            failing_field(doc! {"name": "r", "framework": "jax", "owner": {}}),
            "owner.email"
        );
        assert_eq!(
            failing_field(doc! {"name": "r", "framework": "jax", "owner": {"email": "x"}}),
            "owner.email"
        );
        assert_eq!(
            failing_field(doc! {"name": "r", "framework": "jax", "owner": "me"}),
            "owner"
        );
    }

    #[test]
    fn additional_properties_false_rejects_unknown_fields() {
        let v = Validator::parse(&doc! {"$jsonSchema": {
            "properties": {"_id": {}, "a": {}}, "additionalProperties": false
        }})
        .unwrap();
        v.validate(&doc! {"_id": 1, "a": 1}).unwrap();
        assert_eq!(
            v.validate(&doc! {"_id": 1, "b": 1}).unwrap_err().field(),
            Some("b")
        );
    }

    #[test]
    fn parse_rejects_other_validators_and_keywords() {
        let e = Validator::parse(&doc! {"a": {"$gt": 1}}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.message().contains("`a`"));
        for (kw, value) in [
            ("anyOf", Bson::Array(vec![])),
            ("oneOf", Bson::Array(vec![])),
            ("type", Bson::String("object".into())),
            ("uniqueItems", Bson::Boolean(true)),
            ("patternProperties", Bson::Document(doc! {})),
        ] {
            let e = Validator::parse(&doc! {"$jsonSchema": {"properties": {"x": {kw: value}}}})
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{kw}");
            assert!(e.message().contains(&format!("`{kw}`")), "{}", e.message());
        }
        for bad in [
            doc! {"$jsonSchema": 1},
            doc! {"$jsonSchema": {"bsonType": "strin"}},
            doc! {"$jsonSchema": {"required": "a"}},
            doc! {"$jsonSchema": {"properties": {"a": 1}}},
            doc! {"$jsonSchema": {"minimum": "1"}},
            doc! {"$jsonSchema": {"exclusiveMinimum": true}},
            doc! {},
        ] {
            assert_eq!(
                Validator::parse(&bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }
}
