//! The request id that ties together what one request or one message
//! caused: the API's middleware runs each request inside [`scope`]; the
//! publisher stamps the id of the request it publishes for on the message
//! ([`HEADER`]); the worker handles each message inside the span of the id
//! it carries. Logs name it (`request_id`), and the API returns it
//! (`X-Request-Id`).

use std::future::Future;

/// The message header carrying the request id of the request that
/// published the message.
pub const HEADER: &str = "x-strata-request-id";

/// The message header carrying when the message was first published, in
/// milliseconds since the Unix epoch (for the consumer lag).
pub const PUBLISHED_AT: &str = "x-strata-published-at";

/// The longest request id kept; a longer one given by a client is replaced.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `work` with `id` as the current request id.
pub async fn scope<F: Future>(id: String, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}

/// The request id of the task, if it runs inside [`scope`].
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Whether `id`, given by a client, can be used as a request id: 1 to
/// [`MAX_LEN`] visible ASCII characters (it goes into logs and headers).
pub fn is_valid(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The trace id of a W3C `traceparent` header
/// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), if it is
/// one; an all-zero trace id is invalid by the specification.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2))
    .then_some(trace)
}

/// A new request id: a UUID v7 (time-ordered) without dashes.
pub fn generate() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_as_the_specification_says() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")),
            Some(id)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn client_ids_must_be_short_visible_ascii() {
        assert!(is_valid("abc-123"));
        assert!(!is_valid(""));
        assert!(!is_valid("a b"));
        assert!(!is_valid("é"));
        assert!(!is_valid(&"a".repeat(MAX_LEN + 1)));
        assert!(is_valid(&generate()));
    }

    #[tokio::test]
    async fn the_id_is_current_inside_its_scope_only() {
        assert_eq!(current(), None);
        let inside = scope("r1".into(), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("r1"));
        assert_eq!(current(), None);
    }
}
