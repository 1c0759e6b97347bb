//! Pushing metrics to a Prometheus Pushgateway.
//!
//! A push is an HTTP `PUT` of Prometheus text to `<gateway>/metrics/job/<job>/instance/<instance>`,
//! which replaces the whole group. The client is `reqwest`, without TLS: gateways are reached over
//! plain HTTP on a trusted network. It is the only HTTP client of the metrics code, hence the
//! feature `pushgateway` of its own.

use std::sync::OnceLock;
use std::time::Duration;

use crate::core::error::BoxError;

/// Why a push to a Pushgateway failed.
///
/// *Feature `pushgateway`.*
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use go_go_scope::metrics::{PushError, push_to_gateway};
/// let err = push_to_gateway("http://127.0.0.1:9091", "", "ci").await.unwrap_err();
/// assert!(matches!(err, PushError::InvalidGrouping(_)));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The job or the URL cannot form a Pushgateway grouping path.
    #[error("invalid Pushgateway grouping: {0}")]
    InvalidGrouping(&'static str),
    /// The gateway could not be reached, or did not answer in time (10 s).
    #[error("could not push to {url}: {source}")]
    Request {
        /// Where the push went.
        url: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// The gateway answered with an error status; `body` holds its explanation (for example a
    /// type conflict with another group).
    #[error("the Pushgateway at {url} answered {status}: {body}")]
    Rejected {
        /// Where the push went.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The gateway's message.
        body: String,
    },
}

/// Pushes the process-wide registry ([`encode`](super::encode)) to the Pushgateway at `url`,
/// replacing the group `job`/`instance` (an empty `instance` leaves that label out).
///
/// *Feature `pushgateway`.*
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), go_go_scope::metrics::PushError> {
/// let scope = go_go_scope::Scope::builder().name("batch").metrics(true).build().unwrap();
/// scope.spawn(async { /* the batch's work */ }).await;
/// scope.close().await.unwrap();
/// go_go_scope::metrics::push_to_gateway("http://127.0.0.1:9091", "nightly-batch", "worker-1").await?;
/// # Ok(())
/// # }
/// ```
pub async fn push_to_gateway(url: &str, job: &str, instance: &str) -> Result<(), PushError> {
    push_text_to_gateway(url, job, instance, super::encode()).await
}

/// Pushes `body` (Prometheus text, e.g. from [`export_metrics`](super::export_metrics)) to the
/// Pushgateway at `url`, replacing the group `job`/`instance`.
///
/// *Feature `pushgateway`.*
///
/// ```no_run
/// use go_go_scope::metrics::{ExportFormat, export_metrics, push_text_to_gateway};
/// # #[tokio::main]
/// # async fn main() -> Result<(), go_go_scope::metrics::PushError> {
/// let scope = go_go_scope::Scope::builder().metrics(true).build().unwrap();
/// scope.spawn(async {}).await;
/// let text = export_metrics(&scope.metrics().unwrap(), ExportFormat::Prometheus, "goscope");
/// push_text_to_gateway("http://127.0.0.1:9091", "one-scope", "", text).await?;
/// # scope.close().await.unwrap();
/// # Ok(())
/// # }
/// ```
pub async fn push_text_to_gateway(
    url: &str,
    job: &str,
    instance: &str,
    body: String,
) -> Result<(), PushError> {
    let target = grouping_url(url, job, instance)?;
    let client = client().map_err(|source| PushError::Request {
        url: target.clone(),
        source,
    })?;
    let response = client
        .put(&target)
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
        .map_err(|e| PushError::Request {
            url: target.clone(),
            source: Box::new(e),
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(PushError::Rejected {
        url: target,
        status: status.as_u16(),
        body: body.trim().to_owned(),
    })
}

fn client() -> Result<&'static reqwest::Client, BoxError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    // No idle connections are kept: pushes are rare, and a pooled connection would belong to
    // the runtime that opened it.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()?;
    Ok(CLIENT.get_or_init(|| client))
}

/// `<url>/metrics/job/<job>[/instance/<instance>]`, each value path-encoded.
fn grouping_url(url: &str, job: &str, instance: &str) -> Result<String, PushError> {
    if job.is_empty() {
        return Err(PushError::InvalidGrouping("the job name must not be empty"));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(PushError::InvalidGrouping(
            "the gateway URL must start with http:// or https://",
        ));
    }
    let mut target = url.trim_end_matches('/').to_owned();
    target.push_str("/metrics/job");
    push_segment(&mut target, job);
    if !instance.is_empty() {
        target.push_str("/instance");
        push_segment(&mut target, instance);
    }
    Ok(target)
}

/// Appends `/<value>`, or `@base64/<value in base64url>` when the value holds a `/` (the
/// Pushgateway's convention for such values).
fn push_segment(target: &mut String, value: &str) {
    if value.contains('/') {
        target.push_str("@base64/");
        target.push_str(&base64url(value.as_bytes()));
        return;
    }
    target.push('/');
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            target.push(char::from(byte));
        } else {
            target.push_str(&format!("%{byte:02X}"));
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0_u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_paths_are_encoded() {
        assert_eq!(
            grouping_url("http://gw:9091/", "nightly", "ci").unwrap(),
            "http://gw:9091/metrics/job/nightly/instance/ci"
        );
        assert_eq!(
            grouping_url("http://gw:9091", "a b", "").unwrap(),
            "http://gw:9091/metrics/job/a%20b"
        );
        assert_eq!(
            grouping_url("http://gw", "j", "x/y").unwrap(),
            "http://gw/metrics/job/j/instance@base64/eC95"
        );
        assert!(grouping_url("gw:9091", "j", "").is_err());
        assert!(grouping_url("http://gw", "", "").is_err());
    }

    #[test]
    fn base64url_matches_the_rfc_examples() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(input.as_bytes()), expected);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8=");
    }
}
