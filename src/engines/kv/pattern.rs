//! Redis glob patterns, as `SCAN ... MATCH`, `KEYS` and `PSUBSCRIBE` read
//! them (Redis's `stringmatchlen`).
//!
//! # What MUST hold
//!
//! - Matching is byte-wise, as in Redis: `?` matches one byte, not one
//!   character, so `?` does not match a two-byte UTF-8 character.
//! - `*` matches any run of bytes (also empty), `?` exactly one byte,
//!   `[abc]` one of the listed bytes, `[a-z]` a byte in the range (a reversed
//!   range `[z-a]` is the same range), `[^...]` any byte not in the class.
//!   Redis negates with `^` only: `[!a]` is the class of `!` and `a`.
//! - `\x` matches `x` literally, outside and inside a class. A trailing
//!   `\` matches a literal backslash.
//! - Redis's quirks are kept, so that the embedded store and Redis select
//!   the same keys: an unterminated class `[abc` is a class running to the
//!   end of the pattern; `[a-]` is the range from `a` to `]`; `[^` matches
//!   any one byte; a pattern nesting more than 1000 `*` groups matches
//!   nothing; the empty key is matched only by the empty pattern and by
//!   exactly `*` (which `SCAN` and `KEYS` treat as "everything" without
//!   matching), not by `**` or `a*`.
//! - Byte ranges compare bytes as unsigned. Redis on x86 compares C `char`s,
//!   which are signed, so a range with an endpoint at or above `0x80` can
//!   select differently there; ASCII ranges agree everywhere.
//! - Matching never backtracks exponentially: once the rest of the pattern
//!   after a `*` failed from every position, earlier `*`s are not retried
//!   (the same pruning as Redis's `skipLongerMatches`).

/// Redis stops matching (and answers "no match") past this many nested
/// `*` groups, protecting itself from abusive patterns; so do we.
const MAX_NESTING: u32 = 1000;

/// Whether `key` matches the Redis glob `pattern`, byte-wise.
///
/// ```
/// use strata::engines::kv::pattern::glob_match;
/// assert!(glob_match("user:*:profile", "user:42:profile"));
/// assert!(glob_match("h[ae]llo", "hallo"));
/// assert!(!glob_match("h[^e]llo", "hello"));
/// assert!(glob_match(r"literal\*", "literal*"));
/// assert!(!glob_match(r"literal\*", "literally"));
/// ```
pub fn glob_match(pattern: &str, key: &str) -> bool {
    // Redis's matcher never matches the empty key (its loop needs a byte of
    // key to start), but `SCAN`/`KEYS` skip matching altogether for the
    // pattern `*`, so that one pattern does select the empty key.
    if pattern == "*" {
        return true;
    }
    let mut skip_longer = false;
    match_from(
        pattern.as_bytes(),
        0,
        key.as_bytes(),
        0,
        &mut skip_longer,
        0,
    )
}

/// The byte at `i`, or 0 past the end: Redis reads its NUL-terminated
/// buffer there, and the quirks listed in the module docs follow from it.
fn at(bytes: &[u8], i: usize) -> u8 {
    bytes.get(i).copied().unwrap_or(0)
}

/// A line-by-line port of `stringmatchlen_impl` (case-sensitive), with
/// indexes instead of pointer arithmetic. `pi`/`si` are the positions in the
/// pattern and the string.
fn match_from(
    pat: &[u8],
    mut pi: usize,
    s: &[u8],
    mut si: usize,
    skip_longer: &mut bool,
    nesting: u32,
) -> bool {
    if nesting > MAX_NESTING {
        return false;
    }
    while pi < pat.len() && si < s.len() {
        match pat[pi] {
            b'*' => {
                while at(pat, pi + 1) == b'*' {
                    pi += 1;
                }
                if pat.len() - pi == 1 {
                    return true;
                }
                while si < s.len() {
                    if match_from(pat, pi + 1, s, si, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    si += 1;
                }
                // The rest of the pattern fails from every position of the
                // rest of the string; a longer match for an earlier `*` only
                // starts the rest later, so it cannot succeed either.
                *skip_longer = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let negated = at(pat, pi) == b'^';
                if negated {
                    pi += 1;
                }
                let c = s[si];
                let mut matched = false;
                loop {
                    let left = pat.len() - pi;
                    if at(pat, pi) == b'\\' && left >= 2 {
                        pi += 1;
                        if pat[pi] == c {
                            matched = true;
                        }
                    } else if at(pat, pi) == b']' {
                        break;
                    } else if left == 0 {
                        // Unterminated class: step back so that the advance
                        // below lands exactly on the end of the pattern.
                        pi -= 1;
                        break;
                    } else if left >= 3 && pat[pi + 1] == b'-' {
                        let (mut start, mut end) = (pat[pi], pat[pi + 2]);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        pi += 2;
                        if (start..=end).contains(&c) {
                            matched = true;
                        }
                    } else if pat[pi] == c {
                        matched = true;
                    }
                    pi += 1;
                }
                if negated {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                si += 1;
            }
            b'\\' => {
                if pat.len() - pi >= 2 {
                    pi += 1;
                }
                if pat[pi] != s[si] {
                    return false;
                }
                si += 1;
            }
            literal => {
                if literal != s[si] {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == s.len() {
            while at(pat, pi) == b'*' {
                pi += 1;
            }
            break;
        }
    }
    pi == pat.len() && si == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn redis_examples() {
        // The examples of the Redis `KEYS` documentation.
        for key in ["hello", "hallo", "hxllo"] {
            assert!(glob_match("h?llo", key), "{key}");
        }
        assert!(glob_match("h*llo", "hllo"));
        assert!(glob_match("h*llo", "heeeello"));
        assert!(glob_match("h[ae]llo", "hello"));
        assert!(glob_match("h[ae]llo", "hallo"));
        assert!(!glob_match("h[ae]llo", "hillo"));
        assert!(glob_match("h[^e]llo", "hallo"));
        assert!(glob_match("h[^e]llo", "hbllo"));
        assert!(!glob_match("h[^e]llo", "hello"));
        assert!(glob_match("h[a-b]llo", "hallo"));
        assert!(glob_match("h[a-b]llo", "hbllo"));
        assert!(!glob_match("h[a-b]llo", "hcllo"));
    }

    #[test]
    fn quirks_match_redis() {
        // Negation is `^` only.
        assert!(glob_match("[!a]", "!"));
        assert!(glob_match("[!a]", "a"));
        assert!(!glob_match("[!a]", "b"));
        // Reversed range.
        assert!(glob_match("[z-a]", "m"));
        // `[a-]` is the range a..=']' (0x61 down to 0x5d).
        assert!(glob_match("[a-]", "_"));
        assert!(!glob_match("[a-]", "-"));
        // Unterminated class runs to the end of the pattern.
        assert!(glob_match("[abc", "b"));
        assert!(!glob_match("[abc", "d"));
        assert!(!glob_match("[", "a"));
        assert!(glob_match("[^", "x"));
        // Escapes inside a class, and a trailing backslash.
        assert!(glob_match(r"[\]]", "]"));
        assert!(glob_match(r"[\-]", "-"));
        assert!(glob_match(r"a\", r"a\"));
        // Empty pattern and key.
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("**", ""));
        assert!(!glob_match("[a]*", ""));
        assert!(!glob_match("?", ""));
    }

    #[test]
    fn matching_is_bytewise() {
        assert!(!glob_match("?", "é"));
        assert!(glob_match("??", "é"));
        assert!(glob_match("caf?", "cafe"));
        assert!(glob_match("caf*", "café"));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let key = "a".repeat(60);
        let pattern = format!("{}b", "a*".repeat(30));
        let started = std::time::Instant::now();
        assert!(!glob_match(&pattern, &key));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn deeply_nested_pattern_matches_nothing() {
        let pattern = "a*".repeat(1100);
        let key = "a".repeat(1100);
        assert!(!glob_match(&pattern, &key));
        let pattern = "a*".repeat(900);
        let key = "a".repeat(900);
        assert!(glob_match(&pattern, &key));
    }

    /// One piece of a generated pattern, rendered both as a Redis glob and
    /// as an equivalent regular expression.
    #[derive(Debug, Clone)]
    enum Token {
        Literal(u8),
        AnyOne,
        AnyRun,
        Class {
            negated: bool,
            items: Vec<ClassItem>,
        },
    }

    #[derive(Debug, Clone)]
    enum ClassItem {
        Byte(u8),
        Range(u8, u8),
    }

    /// Bytes of generated keys: letters plus every special character, so
    /// escaped specials get exercised.
    const ALPHABET: &[u8] = b"abc*?[]^-\\";

    fn alphabet_byte() -> impl Strategy<Value = u8> {
        proptest::sample::select(ALPHABET)
    }

    fn letter() -> impl Strategy<Value = u8> {
        proptest::sample::select(&b"abcd"[..])
    }

    fn token() -> impl Strategy<Value = Token> {
        let item = prop_oneof![
            letter().prop_map(ClassItem::Byte),
            (letter(), letter()).prop_map(|(a, b)| ClassItem::Range(a, b)),
        ];
        prop_oneof![
            4 => alphabet_byte().prop_map(Token::Literal),
            1 => Just(Token::AnyOne),
            2 => Just(Token::AnyRun),
            1 => (any::<bool>(), proptest::collection::vec(item, 1..4))
                .prop_map(|(negated, items)| Token::Class { negated, items }),
        ]
    }

    fn render_glob(tokens: &[Token]) -> String {
        let mut out = String::new();
        for token in tokens {
            match token {
                Token::Literal(b) => {
                    if b"*?[]^-\\".contains(b) {
                        out.push('\\');
                    }
                    out.push(*b as char);
                }
                Token::AnyOne => out.push('?'),
                Token::AnyRun => out.push('*'),
                Token::Class { negated, items } => {
                    out.push('[');
                    if *negated {
                        out.push('^');
                    }
                    for item in items {
                        match item {
                            ClassItem::Byte(b) => out.push(*b as char),
                            ClassItem::Range(a, b) => {
                                out.push(*a as char);
                                out.push('-');
                                out.push(*b as char);
                            }
                        }
                    }
                    out.push(']');
                }
            }
        }
        out
    }

    fn render_regex(tokens: &[Token]) -> regex::bytes::Regex {
        let mut out = String::from("(?s-u)^");
        for token in tokens {
            match token {
                Token::Literal(b) => out.push_str(&regex::escape(&(*b as char).to_string())),
                Token::AnyOne => out.push('.'),
                Token::AnyRun => out.push_str(".*"),
                Token::Class { negated, items } => {
                    out.push('[');
                    if *negated {
                        out.push('^');
                    }
                    for item in items {
                        match item {
                            ClassItem::Byte(b) => out.push(*b as char),
                            ClassItem::Range(a, b) => {
                                out.push(*a.min(b) as char);
                                out.push('-');
                                out.push(*a.max(b) as char);
                            }
                        }
                    }
                    out.push(']');
                }
            }
        }
        out.push('$');
        regex::bytes::Regex::new(&out).expect("generated regex is valid")
    }

    fn key() -> impl Strategy<Value = String> {
        proptest::collection::vec(alphabet_byte(), 0..10)
            .prop_map(|bytes| String::from_utf8(bytes).expect("ascii"))
    }

    proptest! {
        #[test]
        fn plain_pattern_matches_only_itself(pattern in "[a-z0-9:_.]{0,12}", key in "[a-z0-9:_.]{0,12}") {
            prop_assert!(glob_match(&pattern, &pattern));
            prop_assert_eq!(glob_match(&pattern, &key), pattern == key);
        }

        #[test]
        fn star_matches_everything(key in any::<String>()) {
            prop_assert!(glob_match("*", &key));
        }

        #[test]
        fn fully_escaped_string_matches_only_itself(s in any::<String>(), other in any::<String>()) {
            let escaped: String = s.chars().flat_map(|c| ['\\', c]).collect();
            // Escaping every *byte* is what a byte-wise matcher would need
            // for multi-byte characters; escaping every char also works
            // because the continuation bytes are not special.
            prop_assert!(glob_match(&escaped, &s));
            prop_assert_eq!(glob_match(&escaped, &other), s == other);
        }

        #[test]
        fn agrees_with_regex_translation(
            tokens in proptest::collection::vec(token(), 0..8),
            keys in proptest::collection::vec(key(), 1..8),
        ) {
            let glob = render_glob(&tokens);
            let regex = render_regex(&tokens);
            for key in &keys {
                // Redis's quirk: the empty key is matched only by the empty
                // pattern and by exactly `*`.
                let expected = if key.is_empty() {
                    glob.is_empty() || glob == "*"
                } else {
                    regex.is_match(key.as_bytes())
                };
                prop_assert_eq!(
                    glob_match(&glob, key),
                    expected,
                    "pattern {:?} key {:?}", glob, key
                );
            }
        }

        #[test]
        fn generated_pattern_matches_its_own_expansion(
            tokens in proptest::collection::vec(token(), 0..8),
        ) {
            // Build a key the pattern must match, so matches are not rare.
            let mut key = String::new();
            for token in &tokens {
                match token {
                    Token::Literal(b) => key.push(*b as char),
                    Token::AnyOne => key.push('x'),
                    Token::AnyRun => key.push_str("ab"),
                    Token::Class { negated: false, items } => match &items[0] {
                        ClassItem::Byte(b) => key.push(*b as char),
                        ClassItem::Range(a, _) => key.push(*a as char),
                    },
                    Token::Class { negated: true, .. } => key.push('z'),
                }
            }
            let glob = render_glob(&tokens);
            prop_assert!(glob_match(&glob, &key), "pattern {:?} key {:?}", glob, key);
            prop_assert!(render_regex(&tokens).is_match(key.as_bytes()));
        }
    }
}
