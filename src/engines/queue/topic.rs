//! Topic-exchange routing: matching a binding pattern against a routing key.
//!
//! # Contracts
//!
//! - Pattern and key are split into words on `.`, exactly as RabbitMQ splits
//!   them: the empty string has **zero** words, and every other string has one
//!   word more than it has dots, so `"a."` is `["a", ""]` and `"."` is
//!   `["", ""]`. Empty words are ordinary words: they match a literal empty
//!   word or `*`.
//! - A pattern word `*` matches exactly one word, `#` matches zero or more
//!   words, any other word matches only an identical word. `*` and `#` are
//!   special only as whole words (`a*` is a literal).
//! - Hence `#` matches every key including `""`, `a.#` matches `a`, `#.b`
//!   matches `b`, `a.#.b` matches `a.b`, and `*` does not match `""`.
//! - Matching takes O(pattern words × key words) time and O(key words)
//!   memory whatever the number of `#`: no backtracking.

/// Whether the topic binding `pattern` matches `routing_key`.
///
/// ```
/// use strata::engines::queue::topic::topic_matches;
/// assert!(topic_matches("stock.*.nyse", "stock.usd.nyse"));
/// assert!(topic_matches("stock.#", "stock"));
/// assert!(!topic_matches("stock.*", "stock"));
/// assert!(topic_matches("#", ""));
/// ```
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    // Without wildcard words the split is injective, so equal word lists
    // means equal strings: the common direct-like case needs no allocation.
    if !words(pattern).any(|w| w == "*" || w == "#") {
        return pattern == routing_key;
    }
    let key: Vec<&str> = words(routing_key).collect();
    // reachable[j]: the pattern words seen so far match the first j key words.
    let mut reachable = vec![false; key.len() + 1];
    reachable[0] = true;
    for word in words(pattern) {
        if word == "#" {
            // Zero or more words: reachable from any earlier reachable prefix.
            let mut seen = false;
            for slot in reachable.iter_mut() {
                seen |= *slot;
                *slot = seen;
            }
        } else {
            // Exactly one word; walk backwards so each slot reads the
            // previous pattern word's value of its left neighbour.
            for j in (1..=key.len()).rev() {
                reachable[j] = reachable[j - 1] && (word == "*" || word == key[j - 1]);
            }
            reachable[0] = false;
        }
        if !reachable.contains(&true) {
            return false;
        }
    }
    reachable[key.len()]
}

/// The words of a pattern or key, split as RabbitMQ splits them.
fn words(s: &str) -> impl Iterator<Item = &str> {
    // `"".split('.')` yields one empty word; RabbitMQ's split yields none.
    let source = if s.is_empty() {
        None
    } else {
        Some(s.split('.'))
    };
    source.into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, by plain recursion: exponential, fine for small inputs.
    fn reference(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| reference(rest, &key[skip..])),
            Some((&"*", rest)) => !key.is_empty() && reference(rest, &key[1..]),
            Some((word, rest)) => key.first() == Some(word) && reference(rest, &key[1..]),
        }
    }

    fn split(s: &str) -> Vec<&str> {
        words(s).collect()
    }

    #[test]
    fn splits_like_rabbitmq() {
        assert_eq!(split(""), Vec::<&str>::new());
        assert_eq!(split("a"), vec!["a"]);
        assert_eq!(split("a."), vec!["a", ""]);
        assert_eq!(split("."), vec!["", ""]);
        assert_eq!(split("a..b"), vec!["a", "", "b"]);
    }

    #[test]
    fn documented_cases() {
        let cases = [
            ("#", "", true),
            ("#", "a.b.c", true),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("a.#", "b", false),
            ("#.b", "b", true),
            ("#.b", "a.b", true),
            ("#.b", "a.c", false),
            ("a.#.b", "a.b", true),
            ("a.#.b", "a.x.y.b", true),
            ("a.#.b", "a.x.y", false),
            ("*", "a", true),
            ("*", "", false),
            ("*", "a.b", false),
            ("*.*", ".", true),
            ("a.*", "a.", true),
            ("a.*", "a", false),
            ("*.b.*", "a.b.c", true),
            ("#.#", "", true),
            ("#.*", "", false),
            ("#.*", "a", true),
            ("", "", true),
            ("", "a", false),
            ("a*", "ab", false),
            ("a*", "a*", true),
            ("stock.*.nyse", "stock.usd.nyse", true),
            ("stock.*.nyse", "stock.nyse", false),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(
                topic_matches(pattern, key),
                expected,
                "pattern {pattern:?} key {key:?}"
            );
        }
    }

    #[test]
    fn many_hashes_stay_fast() {
        // Naive backtracking would take about 40^20 steps on this input.
        let pattern = vec!["#"; 40].join(".") + ".z";
        let key = vec!["a"; 40].join(".");
        let started = std::time::Instant::now();
        assert!(!topic_matches(&pattern, &key));
        assert!(topic_matches(&pattern, &(key + ".z")));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    fn key_word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just(String::new())
        ]
    }

    fn pattern_word() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => key_word(),
            1 => Just("*".to_owned()),
            1 => Just("#".to_owned()),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop::collection::vec(key_word(), 0..6).prop_map(|w| w.join("."))
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop::collection::vec(pattern_word(), 0..6).prop_map(|w| w.join("."))
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(pattern in pattern(), key in key()) {
            prop_assert_eq!(
                topic_matches(&pattern, &key),
                reference(&split(&pattern), &split(&key))
            );
        }

        #[test]
        fn without_wildcards_only_the_identical_key_matches(pattern in key(), key in key()) {
            prop_assert_eq!(topic_matches(&pattern, &key), pattern == key);
        }

        #[test]
        fn hash_matches_any_key(key in key()) {
            prop_assert!(topic_matches("#", &key));
        }

        #[test]
        fn star_in_place_of_one_word_still_matches(
            key in key(),
            index in any::<prop::sample::Index>(),
        ) {
            // Split the key rather than join words: `[""]` has no key.
            let words: Vec<String> = words(&key).map(str::to_owned).collect();
            prop_assume!(!words.is_empty());
            let mut pattern = words.clone();
            pattern[index.index(words.len())] = "*".to_owned();
            prop_assert!(topic_matches(&pattern.join("."), &key));
        }

        #[test]
        fn hash_in_place_of_a_run_of_words_still_matches(
            key in key(),
            a in any::<prop::sample::Index>(),
            b in any::<prop::sample::Index>(),
        ) {
            let words: Vec<String> = words(&key).map(str::to_owned).collect();
            let (mut from, mut to) = (a.index(words.len() + 1), b.index(words.len() + 1));
            if from > to {
                std::mem::swap(&mut from, &mut to);
            }
            let mut pattern: Vec<String> = words[..from].to_vec();
            pattern.push("#".to_owned());
            pattern.extend_from_slice(&words[to..]);
            prop_assert!(topic_matches(&pattern.join("."), &key));
        }
    }
}
