//! Redaction of credentials in connection URLs: the one place that decides
//! what of a URL may be shown. Configuration output, `Debug`, error
//! messages, `strata doctor`, engine targets and logs all go through
//! [`redact_url`] (or [`scrub`] for text that may quote a URL).
//!
//! The URL is not parsed by a URL parser, since a password with an
//! unescaped `#`, `?`, `/` or `@` makes a parser read part of it as a
//! fragment, a query, a path or a host, and show it. Instead the text is
//! cut conservatively: anything that could be a credential is replaced,
//! at the price of sometimes hiding more than needed.
//!
//! - Userinfo runs from after `scheme://` to the *last* `@` of the whole
//!   string. Its user name (up to the first `:`, `/`, `?`, `#`, `[`, `]`)
//!   is shown; everything after it is replaced (`user:<redacted>@`).
//! - Query parameters: the value is shown only when the parameter's name
//!   (percent-decoded, any case) is one of a list of known harmless
//!   settings ([`SHOWN_PARAMETERS`]: `sslmode`, `authSource`, `mode`, ...)
//!   and the value holds only plain characters; any other value is
//!   replaced, so `password`, `sslpassword`, `PassWord`, `pass%77ord`,
//!   `tlsCertificateKeyFilePassword`, `authMechanismProperties`,
//!   `proxyPassword` and names not invented yet are all hidden. A bare
//!   parameter without `=` is hidden unless its name is on the list.
//! - A fragment (`#...`) is replaced whole: no driver reads one, so one
//!   can only come from a password that was cut.
//! - `scheme:rest` without `//` is shown only for `sqlite:` (a file
//!   name); otherwise its rest is replaced.
//! - A string without a `scheme:` prefix is shown only when it has none
//!   of `@ : = ? # &`; otherwise it is replaced whole.

use std::borrow::Cow;

/// The string printed in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Query parameters whose values are settings, not credentials, for the
/// drivers strata uses (sqlx PostgreSQL and SQLite, the MongoDB driver,
/// redis-rs, lapin). Compared lower-case, after percent-decoding.
pub const SHOWN_PARAMETERS: &[&str] = &[
    // PostgreSQL (sqlx). `sslkey` and `options` are left out: the first is
    // named like a secret, the second can carry anything.
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "application_name",
    // SQLite (sqlx).
    "mode",
    "cache",
    "immutable",
    "vfs",
    // MongoDB.
    "appname",
    "authsource",
    "authmechanism",
    "replicaset",
    "tls",
    "ssl",
    "tlsinsecure",
    "tlsallowinvalidcertificates",
    "tlsallowinvalidhostnames",
    "tlscafile",
    "directconnection",
    "loadbalanced",
    "retrywrites",
    "retryreads",
    "w",
    "wtimeoutms",
    "journal",
    "readpreference",
    "readpreferencetags",
    "readconcernlevel",
    "maxstalenessseconds",
    "maxpoolsize",
    "minpoolsize",
    "maxidletimems",
    "maxconnecting",
    "waitqueuetimeoutms",
    "connecttimeoutms",
    "sockettimeoutms",
    "serverselectiontimeoutms",
    "heartbeatfrequencyms",
    "localthresholdms",
    "compressors",
    "zlibcompressionlevel",
    "srvmaxhosts",
    "srvservicename",
    // Redis.
    "protocol",
    "db",
    // AMQP (lapin).
    "heartbeat",
    "connection_timeout",
    "channel_max",
    "frame_max",
    "auth_mechanism",
];

/// `url` with every credential replaced by `<redacted>` (see the module
/// docs for what counts as one). Never fails: a string that is not a URL
/// at all is replaced whole unless it plainly holds nothing secret.
pub fn redact_url(url: &str) -> String {
    match pieces(url) {
        Some(pieces) => pieces
            .iter()
            .map(|p| match p {
                Piece::Shown(text) => *text,
                Piece::Hidden { shown_as, .. } => shown_as,
            })
            .collect(),
        None if url.contains(['@', ':', '=', '?', '#', '&']) => REDACTED.to_owned(),
        None => url.to_owned(),
    }
}

/// Every credential in `url`, as written and percent-decoded, longest
/// first: what must not appear in a message about this URL. A string
/// that is not a URL is a secret whole.
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets: Vec<String> = match pieces(url) {
        Some(pieces) => pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Hidden { secret, .. } => Some(*secret),
                Piece::Shown(_) => None,
            })
            .filter(|s| !s.is_empty())
            .flat_map(|s| {
                let decoded = decode(s).into_owned();
                [s.to_owned(), decoded]
            })
            .collect(),
        None if url.contains(['@', ':', '=', '?', '#', '&']) => vec![url.to_owned()],
        None => Vec::new(),
    };
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    secrets.dedup();
    secrets
}

/// `text` (a driver's or a server's message) with `url` and each of its
/// credentials replaced, in case the message quotes them.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = if url.is_empty() {
        text.to_owned()
    } else {
        text.replace(url, &redact_url(url))
    };
    for secret in url_secrets(url) {
        out = out.replace(&secret, REDACTED);
    }
    out
}

/// A part of a URL: shown as written, or hidden.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Shown(&'a str),
    Hidden {
        /// The credential itself.
        secret: &'a str,
        /// What is printed in its place.
        shown_as: &'static str,
    },
}

fn hidden(secret: &str) -> Piece<'_> {
    Piece::Hidden {
        secret,
        shown_as: REDACTED,
    }
}

/// Cuts `url` into shown and hidden pieces; `None` when it has no
/// `scheme:` prefix.
fn pieces(url: &str) -> Option<Vec<Piece<'_>>> {
    let colon = url.find(':')?;
    let scheme = &url[..colon];
    let mut chars = scheme.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_with_letter || !chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return None;
    }
    let mut out = vec![Piece::Shown(&url[..=colon])];
    let mut rest = &url[colon + 1..];
    match rest.strip_prefix("//") {
        Some(after) => {
            out.push(Piece::Shown("//"));
            rest = after;
        }
        // `sqlite:PATH` and `sqlite::memory:` name files; any other
        // `scheme:rest` without `//` has no known shape, so its rest may
        // be anything.
        None if !scheme.eq_ignore_ascii_case("sqlite") && !rest.is_empty() => {
            out.push(hidden(rest));
            return Some(out);
        }
        None => {}
    }

    // Userinfo: up to the last `@` anywhere, since an unescaped `@`, `/`,
    // `?` or `#` may sit inside a password.
    if let Some(at) = rest.rfind('@') {
        let userinfo = &rest[..at];
        let user_end = userinfo
            .find([':', '/', '?', '#', '[', ']'])
            .unwrap_or(userinfo.len());
        out.push(Piece::Shown(&userinfo[..user_end]));
        let after_user = &userinfo[user_end..];
        if !after_user.is_empty() {
            out.push(Piece::Hidden {
                secret: after_user.strip_prefix(':').unwrap_or(after_user),
                shown_as: ":<redacted>",
            });
        }
        out.push(Piece::Shown("@"));
        rest = &rest[at + 1..];
    }

    // Hosts and path.
    let host_path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    out.push(Piece::Shown(&rest[..host_path_end]));
    rest = &rest[host_path_end..];

    if let Some(after) = rest.strip_prefix('?') {
        out.push(Piece::Shown("?"));
        let query_end = after.find('#').unwrap_or(after.len());
        for (i, pair) in after[..query_end].split('&').enumerate() {
            if i > 0 {
                out.push(Piece::Shown("&"));
            }
            match pair.split_once('=') {
                Some((name, value)) if is_shown_parameter(name) && is_plain(value) => {
                    out.push(Piece::Shown(pair));
                }
                Some((name, value)) => {
                    out.push(Piece::Shown(name));
                    out.push(Piece::Shown("="));
                    out.push(hidden(value));
                }
                None if pair.is_empty() || is_shown_parameter(pair) => out.push(Piece::Shown(pair)),
                None => out.push(hidden(pair)),
            }
        }
        rest = &after[query_end..];
    }

    if let Some(fragment) = rest.strip_prefix('#') {
        out.push(Piece::Shown("#"));
        out.push(hidden(fragment));
    }
    Some(out)
}

/// Whether a query parameter's value may be shown: its name, decoded and
/// lower-cased, is on [`SHOWN_PARAMETERS`].
fn is_shown_parameter(name: &str) -> bool {
    let name = decode(name).to_ascii_lowercase();
    SHOWN_PARAMETERS.contains(&name.as_str())
}

/// Values of shown parameters hold only these characters; anything else
/// (`;`, `=`, quotes, spaces) hints at text a driver might split
/// differently, and is hidden.
fn is_plain(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~/:,%+".contains(c))
}

/// Percent- and `+`-decoding, as drivers read query strings.
fn decode(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    // As the value of a one-pair query, so that `=` stays in it.
    let query = format!("x={}", text.replace('&', "%26"));
    match url::form_urlencoded::parse(query.as_bytes()).next() {
        Some((_, value)) => Cow::Owned(value.into_owned()),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (URL, what it must print as, secrets that must not appear).
    const CASES: &[(&str, &str, &[&str])] = &[
        // Userinfo passwords.
        (
            "postgres://strata:hunter2@127.0.0.1:5432/strata",
            "postgres://strata:<redacted>@127.0.0.1:5432/strata",
            &["hunter2"],
        ),
        (
            "postgres://u:p%40ss%2Fw0rd@h/db",
            "postgres://u:<redacted>@h/db",
            &["p%40ss", "p@ss/w0rd"],
        ),
        (
            "postgres://u:pa#ss@host/db",
            "postgres://u:<redacted>@host/db",
            &["pa#ss", "ss@host"],
        ),
        (
            "postgres://u:12#tail@host/db",
            "postgres://u:<redacted>@host/db",
            &["12#tail", "tail"],
        ),
        (
            "postgres://u:pa?ss@host/db",
            "postgres://u:<redacted>@host/db",
            &["pa?ss", "ss@"],
        ),
        (
            "postgres://u:p@ss@host/db",
            "postgres://u:<redacted>@host/db",
            &["p@ss"],
        ),
        (
            "postgres://u:pa/ss@host/db",
            "postgres://u:<redacted>@host/db",
            &["pa/ss"],
        ),
        (
            "redis://:only-password@127.0.0.1:6379/0",
            "redis://:<redacted>@127.0.0.1:6379/0",
            &["only-password"],
        ),
        (
            "rediss://default:s3cr3t@cache.example:6380",
            "rediss://default:<redacted>@cache.example:6380",
            &["s3cr3t"],
        ),
        (
            "amqp://strata:rabbit-pw@127.0.0.1:5672/%2f",
            "amqp://strata:<redacted>@127.0.0.1:5672/%2f",
            &["rabbit-pw"],
        ),
        (
            "mongodb://u:p@h1:27017,h2:27017/?replicaSet=rs0&authSource=admin",
            "mongodb://u:<redacted>@h1:27017,h2:27017/?replicaSet=rs0&authSource=admin",
            &[":p@"],
        ),
        (
            "mongodb://u:p@h1,h2/",
            "mongodb://u:<redacted>@h1,h2/",
            &[":p@"],
        ),
        (
            "postgres://u:v6-pw@[::1]:5432/db",
            "postgres://u:<redacted>@[::1]:5432/db",
            &["v6-pw"],
        ),
        ("postgres://[::1]:5432/db", "postgres://[::1]:5432/db", &[]),
        (
            "mongodb+srv://u:srv-pw@cluster0.example.net/db?retryWrites=true",
            "mongodb+srv://u:<redacted>@cluster0.example.net/db?retryWrites=true",
            &["srv-pw"],
        ),
        // Query-string credentials, any case or encoding.
        (
            "postgres://u@host/db?password=qs-pw",
            "postgres://u@host/db?password=<redacted>",
            &["qs-pw"],
        ),
        (
            "postgres://u@host/db?sslmode=require&PassWord=Cased&sslpassword=ssl-pw",
            "postgres://u@host/db?sslmode=require&PassWord=<redacted>&sslpassword=<redacted>",
            &["Cased", "ssl-pw"],
        ),
        (
            "postgres://u@host/db?pass%77ord=enc-pw",
            "postgres://u@host/db?pass%77ord=<redacted>",
            &["enc-pw"],
        ),
        (
            "postgres://u@host/db?password=a#b&sslmode=x",
            "postgres://u@host/db?password=<redacted>#<redacted>",
            &["=a", "b&sslmode"],
        ),
        (
            "postgres://u@host/db?options=-c%20password%3Dx",
            "postgres://u@host/db?options=<redacted>",
            &["password%3Dx"],
        ),
        (
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok",
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=<redacted>",
            &["tok"],
        ),
        (
            "mongodb://h/?tlsCertificateKeyFilePassword=kp&proxyPassword=pp&proxyUsername=pu",
            "mongodb://h/?tlsCertificateKeyFilePassword=<redacted>&proxyPassword=<redacted>&proxyUsername=<redacted>",
            &["=kp", "=pp", "=pu"],
        ),
        (
            "redis+unix:///run/redis.sock?db=2&pass=unix-pw",
            "redis+unix:///run/redis.sock?db=2&pass=<redacted>",
            &["unix-pw"],
        ),
        (
            "amqp://u@h/%2f?heartbeat=10&auth_mechanism=plain&token=t0k",
            "amqp://u@h/%2f?heartbeat=10&auth_mechanism=plain&token=<redacted>",
            &["t0k"],
        ),
        (
            "postgres://u@h/db?a-bare-secret",
            "postgres://u@h/db?<redacted>",
            &["a-bare-secret"],
        ),
        (
            "postgres://u@h/db?sslmode=require;password=x",
            "postgres://u@h/db?sslmode=<redacted>",
            &["password=x"],
        ),
        // `@` in the query moves the userinfo cut: more is hidden, nothing
        // leaks.
        (
            "postgres://h/db?password=se@cret",
            "postgres://h:<redacted>@cret",
            &["se@cret", "se"],
        ),
        // Nothing secret: shown as written.
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379", &[]),
        (
            "postgres://strata@127.0.0.1:55432/strata",
            "postgres://strata@127.0.0.1:55432/strata",
            &[],
        ),
        (
            "sqlite:///tmp/data/strata.db?mode=rwc",
            "sqlite:///tmp/data/strata.db?mode=rwc",
            &[],
        ),
        ("sqlite::memory:", "sqlite::memory:", &[]),
        // Not URLs.
        ("not a url with a :secret@", REDACTED, &["secret"]),
        ("user:pw", "user:<redacted>", &["pw"]),
        ("sqlite:data/strata.db", "sqlite:data/strata.db", &[]),
        ("127.0.0.1:5432", REDACTED, &[]),
        ("./data/strata.db", "./data/strata.db", &[]),
        ("", "", &[]),
    ];

    #[test]
    fn every_url_form_is_redacted() {
        for (url, expected, secrets) in CASES {
            let shown = redact_url(url);
            assert_eq!(&shown, expected, "redact_url({url:?})");
            for secret in *secrets {
                assert!(
                    !shown.contains(secret),
                    "{secret:?} leaked from {url:?}: {shown}"
                );
            }
        }
    }

    #[test]
    fn secrets_are_listed_raw_and_decoded_and_scrubbed_from_messages() {
        let url = "postgres://u:p%40ss@h/db?password=x%2By&sslmode=require";
        let secrets = url_secrets(url);
        for expected in ["p%40ss", "p@ss", "x%2By", "x+y"] {
            assert!(secrets.contains(&expected.to_owned()), "{secrets:?}");
        }
        assert!(!secrets.iter().any(|s| s == "require"), "{secrets:?}");
        let message = format!("cannot connect to {url}: password p@ss refused");
        let scrubbed = scrub(&message, url);
        assert!(
            !scrubbed.contains("p@ss") && !scrubbed.contains("x%2By"),
            "{scrubbed}"
        );
        assert!(
            scrubbed.contains("postgres://u:<redacted>@h/db"),
            "{scrubbed}"
        );
        assert_eq!(url_secrets("redis://127.0.0.1:6379"), Vec::<String>::new());
    }
}
