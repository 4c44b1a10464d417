//! What ids, names and free text may hold, for every service and every
//! engine alike.
//!
//! Each rule is stated twice, once as a check and once as the
//! ECMA-262/JSON Schema pattern the API publishes, and the unit tests hold
//! the two to the same answers. Lengths count characters (Unicode scalar
//! values), as JSON Schema's `minLength`/`maxLength` do.
//!
//! - A **model id** ([`MODEL_ID_PATTERN`]) links a model's run row, its
//!   config document, its experiments, its counters and its sagas. It is
//!   plain ASCII so that it is the same key, compared the same way, in SQL,
//!   in documents, in key-value keys and in URLs.
//! - A **name** ([`NAME_PATTERN`]: dataset names, `model_name`, `framework`,
//!   aliases, `moved_by`, ...) is any text with at least one character that
//!   is not whitespace and no control character.
//! - **Text** ([`TEXT_PATTERN`]: descriptions, reasons, tag values, ...) is
//!   any text without control characters.
//!
//! Control characters (Unicode category Cc: U+0000 to U+001F and U+007F to
//! U+009F) are refused everywhere: PostgreSQL cannot store U+0000 in text,
//! BSON cannot hold it in a key, and none of them belongs in a name.

use crate::error::{Error, Result};

/// The pattern every model id matches: an ASCII letter or digit, then up to
/// 254 ASCII letters, digits, `.`, `_` or `-`. So 1 to 255 characters, no
/// whitespace, no control character, never `.` or `..`, and safe as a URL
/// path segment, a document field value and a key-value key.
pub const MODEL_ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$";

/// The longest model id, in characters.
pub const MODEL_ID_MAX: usize = 255;

/// The pattern of text without control characters.
pub const TEXT_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";

/// The pattern of a name: text without control characters that has at
/// least one character that is not whitespace (whitespace as Rust's
/// [`char::is_whitespace`] and `str::trim` see it).
pub const NAME_PATTERN: &str = concat!(
    r"^[^\x00-\x1f\x7f-\x9f]*",
    r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
    r"[^\x00-\x1f\x7f-\x9f]*$"
);

/// The pattern of a tag key: 1 to 255 ASCII letters, digits, `_`, `-` or
/// `.`, so that a run filter can name it as `tags.KEY`.
pub const TAG_KEY_PATTERN: &str = "^[A-Za-z0-9_.-]{1,255}$";

/// The pattern of a metric name: 1 to 64 ASCII letters, digits or `_`, so
/// that it can never be an operator or a path in the document engine.
pub const METRIC_NAME_PATTERN: &str = "^[A-Za-z0-9_]{1,64}$";

/// Whether `value` is a model id ([`MODEL_ID_PATTERN`]).
pub fn is_valid_model_id(value: &str) -> bool {
    let bytes = value.as_bytes();
    match bytes.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphanumeric()
                && rest.len() < MODEL_ID_MAX
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => false,
    }
}

/// Checks that `value` is a model id ([`MODEL_ID_PATTERN`]); the error is
/// invalid input naming `field` and the pattern.
pub fn check_model_id(field: &'static str, value: &str) -> Result<()> {
    if is_valid_model_id(value) {
        return Ok(());
    }
    let what = if value.is_empty() {
        "is empty".to_owned()
    } else if value.chars().count() > MODEL_ID_MAX {
        format!("is longer than {MODEL_ID_MAX} characters")
    } else {
        format!("`{}` is not one", value.escape_debug())
    };
    Err(Error::invalid(format!(
        "`{field}` must be a model id matching {MODEL_ID_PATTERN} (an ASCII letter or digit, \
         then up to 254 ASCII letters, digits, `.`, `_` or `-`): {what}"
    ))
    .with_field(field))
}

/// Checks text of at most `max` characters without control characters
/// ([`TEXT_PATTERN`]).
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<()> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(format!(
            "`{field}` must not contain control characters, found U+{:04X}",
            u32::from(c)
        ))
        .with_field(field));
    }
    if value.chars().count() > max {
        return Err(
            Error::invalid(format!("`{field}` is longer than {max} characters")).with_field(field),
        );
    }
    Ok(())
}

/// Checks a required name: 1 to `max` characters, not all whitespace, no
/// control characters ([`NAME_PATTERN`]).
pub fn check_name(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.chars().all(char::is_whitespace) {
        return Err(
            Error::invalid(format!("`{field}` must not be empty or only whitespace"))
                .with_field(field),
        );
    }
    check_text(field, value, max)
}

/// Optional text: checked as [`check_text`] when present.
pub fn check_optional_text(field: &'static str, value: Option<&str>, max: usize) -> Result<()> {
    value.map_or(Ok(()), |v| check_text(field, v, max))
}

/// Whether `key` can name a tag ([`TAG_KEY_PATTERN`]).
pub fn is_valid_tag_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 255
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether `name` can be a metric's field name ([`METRIC_NAME_PATTERN`]).
pub fn is_valid_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    /// Strings at the edges of every rule: empty, blank, control
    /// characters, non-ASCII whitespace, lengths around the limits.
    fn samples() -> Vec<String> {
        let mut out: Vec<String> = [
            "",
            " ",
            "\u{3000}",
            "\u{a0}x",
            "\u{feff}",
            "a",
            "A9",
            "fraud-detector-v1",
            "synthetic-000001",
            "demo-saga-sql-run",
            "demo-fraud-detector-v3",
            ".hidden",
            "..",
            "a..b",
            "-x",
            "_x",
            "a b",
            "a\u{0}b",
            "a\nb",
            "tab\there",
            "\u{7f}",
            "\u{85}",
            "\u{9f}x",
            "é",
            "ünïcode name",
            "名前",
            "a/b",
            "a@b",
            "f1_macro",
            "tags.team",
            "$where",
        ]
        .map(str::to_owned)
        .into();
        for n in [63, 64, 65, 254, 255, 256] {
            out.push("a".repeat(n));
            out.push(format!("a{}", "é".repeat(n - 1)));
        }
        out
    }

    fn full(pattern: &str) -> Regex {
        // The `regex` crate reads `\uXXXX` as `\u{XXXX}`; the published
        // pattern uses the ECMA-262 spelling.
        let rust = Regex::new(r"\\u([0-9a-fA-F]{4})")
            .unwrap()
            .replace_all(pattern, r"\u{$1}");
        Regex::new(&rust).unwrap()
    }

    #[test]
    fn model_id_check_and_pattern_agree() {
        let re = full(MODEL_ID_PATTERN);
        for s in samples() {
            assert_eq!(is_valid_model_id(&s), re.is_match(&s), "{s:?}");
            assert_eq!(check_model_id("model_id", &s).is_ok(), re.is_match(&s));
        }
        assert!(is_valid_model_id(&"a".repeat(255)));
        assert!(!is_valid_model_id(&"a".repeat(256)));
        let e = check_model_id("model_id", "a\u{0}b").unwrap_err();
        assert_eq!(e.field(), Some("model_id"));
        assert!(e.message().contains(MODEL_ID_PATTERN), "{}", e.message());
    }

    #[test]
    fn name_and_text_checks_agree_with_their_patterns() {
        let name = full(NAME_PATTERN);
        let text = full(TEXT_PATTERN);
        for s in samples() {
            let within = s.chars().count() <= 255;
            assert_eq!(
                check_name("name", &s, 255).is_ok(),
                name.is_match(&s) && within,
                "name {s:?}"
            );
            assert_eq!(
                check_text("text", &s, 255).is_ok(),
                text.is_match(&s) && within,
                "text {s:?}"
            );
        }
        // Every whitespace character Rust knows is either a control
        // character or excluded from the pattern's non-blank class.
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            if c.is_whitespace() && !c.is_control() {
                assert!(!name.is_match(&c.to_string()), "U+{:04X}", u32::from(c));
            }
            if c.is_control() {
                assert!(!text.is_match(&c.to_string()), "U+{:04X}", u32::from(c));
            }
        }
    }

    #[test]
    fn tag_keys_and_metric_names_agree_with_their_patterns() {
        let tag = full(TAG_KEY_PATTERN);
        let metric = full(METRIC_NAME_PATTERN);
        for s in samples() {
            assert_eq!(is_valid_tag_key(&s), tag.is_match(&s), "{s:?}");
            assert_eq!(is_valid_metric_name(&s), metric.is_match(&s), "{s:?}");
        }
    }
}
