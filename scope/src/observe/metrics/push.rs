//! Pushing metrics to a Prometheus Pushgateway.
//!
//! A push is an HTTP `PUT` of Prometheus text to `<gateway>/metrics/job/<job>/<label>/<value>..`,
//! which replaces the whole group. [`Pushgateway`] is the client: its URL is checked when it is
//! built, it can send basic-auth credentials and headers of your own, and with the cargo feature
//! `tls` it reaches gateways over `https://` (rustls, with the system's roots plus any
//! certificates you add). [`push_to_gateway`] and [`push_text_to_gateway`] are the one-call
//! forms for a plain gateway. The client is `reqwest`, the only HTTP client of the metrics code,
//! hence the feature `pushgateway` of its own.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::core::error::BoxError;

/// How long one push may take unless [`PushgatewayBuilder::timeout`] says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a push to a Pushgateway failed, or why the client could not be built.
///
/// *Feature `pushgateway`.*
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use go_go_scope::metrics::{PushError, push_to_gateway};
/// let err = push_to_gateway("http://127.0.0.1:9091", "", "ci").await.unwrap_err();
/// assert!(matches!(err, PushError::InvalidGrouping(_)));
/// let err = push_to_gateway("http://", "job", "ci").await.unwrap_err();
/// assert!(matches!(err, PushError::InvalidUrl { .. }));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The job or a grouping label cannot form a Pushgateway grouping path.
    #[error("invalid Pushgateway grouping: {0}")]
    InvalidGrouping(&'static str),
    /// The gateway URL is not an `http://` or `https://` URL with a host, or is `https://`
    /// without the cargo feature `tls`.
    #[error("invalid Pushgateway URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// A header given to [`PushgatewayBuilder::header`] has an invalid name or value.
    #[error("invalid header `{name}` for the Pushgateway: {reason}")]
    InvalidHeader {
        /// The header's name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A certificate given to [`PushgatewayBuilder::root_certificate_pem`] could not be read,
    /// or the HTTP client could not be built with it.
    #[error("cannot set up TLS for the Pushgateway: {0}")]
    Tls(#[source] BoxError),
    /// The gateway could not be reached, or did not answer in time (10 s unless set).
    #[error("could not push to {url}: {source}")]
    Request {
        /// Where the push went.
        url: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// The gateway answered with an error status; `body` holds its explanation (for example a
    /// type conflict with another group, or `401` for missing or wrong credentials).
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

/// A Pushgateway client: the gateway's URL, checked once, and how to reach it (credentials,
/// headers, certificates, timeout).
///
/// *Feature `pushgateway`.*
///
/// ```no_run
/// use go_go_scope::metrics::Pushgateway;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), go_go_scope::metrics::PushError> {
/// let gateway = Pushgateway::builder("http://127.0.0.1:9091")
///     .basic_auth("ci", "s3cret")
///     .header("X-Tenant", "team-a")
///     .build()?;
/// gateway.push("nightly-batch", "worker-1").await?;
/// // Any grouping labels: values such as "", "." or "a/b" are sent base64-encoded.
/// gateway
///     .push_grouped("nightly-batch", &[("instance", "worker-1"), ("zone", "eu/west")], String::new())
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Pushgateway {
    /// The URL without a trailing `/`.
    base: String,
    client: reqwest::Client,
    basic_auth: Option<(String, Option<String>)>,
    headers: HeaderMap,
}

impl fmt::Debug for Pushgateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pushgateway")
            .field("url", &self.base)
            .field(
                "basic_auth_user",
                &self.basic_auth.as_ref().map(|(user, _)| user),
            )
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Pushgateway`]; nothing is checked until [`build`](Self::build).
///
/// *Feature `pushgateway`.*
#[derive(Clone)]
#[must_use = "a builder does nothing until build()"]
pub struct PushgatewayBuilder {
    url: String,
    basic_auth: Option<(String, Option<String>)>,
    headers: Vec<(String, String)>,
    #[cfg(feature = "tls")]
    roots: Vec<Vec<u8>>,
    timeout: Duration,
}

impl fmt::Debug for PushgatewayBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushgatewayBuilder")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Pushgateway {
    /// A builder for a client of the gateway at `url` (`http://host:9091`, or `https://..`
    /// with the feature `tls`; a path is kept as the gateway's base).
    pub fn builder(url: impl Into<String>) -> PushgatewayBuilder {
        PushgatewayBuilder {
            url: url.into(),
            basic_auth: None,
            headers: Vec::new(),
            #[cfg(feature = "tls")]
            roots: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A client of the gateway at `url` with no credentials or headers.
    ///
    /// ```
    /// use go_go_scope::metrics::{PushError, Pushgateway};
    ///
    /// assert!(Pushgateway::new("http://127.0.0.1:9091").is_ok());
    /// // A URL needs a host.
    /// assert!(matches!(Pushgateway::new("http://"), Err(PushError::InvalidUrl { .. })));
    /// assert!(matches!(Pushgateway::new("http:///127.0.0.1:1"), Err(PushError::InvalidUrl { .. })));
    /// ```
    ///
    /// # Errors
    /// As [`PushgatewayBuilder::build`].
    pub fn new(url: impl Into<String>) -> Result<Pushgateway, PushError> {
        Pushgateway::builder(url).build()
    }

    /// The gateway's URL, as pushes use it (no trailing `/`).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Pushes the process-wide registry ([`encode`](super::encode)), replacing the group
    /// `job`/`instance` (an empty `instance` leaves that label out).
    ///
    /// # Cancel safety
    /// A push is one HTTP `PUT` that replaces the whole group. Dropping the future mid-way
    /// abandons the request: the gateway keeps either the group as it was or the new one, never
    /// a mix, and pushing again is always safe.
    ///
    /// # Errors
    /// [`PushError::InvalidGrouping`] for an empty job or a label name the gateway cannot take;
    /// [`PushError::Request`] when the gateway cannot be reached in time;
    /// [`PushError::Rejected`] when it answers with an error status (`401` for missing or wrong
    /// credentials, `400` for a body it cannot parse).
    pub async fn push(&self, job: &str, instance: &str) -> Result<(), PushError> {
        self.push_text(job, instance, super::encode()).await
    }

    /// Pushes `body` (Prometheus text), replacing the group `job`/`instance` (an empty
    /// `instance` leaves that label out).
    ///
    /// # Cancel safety
    /// A push is one HTTP `PUT` that replaces the whole group. Dropping the future mid-way
    /// abandons the request: the gateway keeps either the group as it was or the new one, never
    /// a mix, and pushing again is always safe.
    ///
    /// # Errors
    /// [`PushError::InvalidGrouping`] for an empty job or a label name the gateway cannot take;
    /// [`PushError::Request`] when the gateway cannot be reached in time;
    /// [`PushError::Rejected`] when it answers with an error status (`401` for missing or wrong
    /// credentials, `400` for a body it cannot parse).
    pub async fn push_text(
        &self,
        job: &str,
        instance: &str,
        body: String,
    ) -> Result<(), PushError> {
        let instance = [("instance", instance)];
        let grouping: &[(&str, &str)] = if instance[0].1.is_empty() {
            &[]
        } else {
            &instance
        };
        self.push_grouped(job, grouping, body).await
    }

    /// Pushes `body` (Prometheus text), replacing the group named by `job` and the `grouping`
    /// labels (in the order given). Every value is sent as it is, the empty string included:
    /// values the gateway's paths cannot carry (`""`, `.`, `..`, anything with a `/`) are sent
    /// in its `@base64` form.
    ///
    /// # Cancel safety
    /// A push is one HTTP `PUT` that replaces the whole group. Dropping the future mid-way
    /// abandons the request: the gateway keeps either the group as it was or the new one, never
    /// a mix, and pushing again is always safe.
    ///
    /// # Errors
    /// [`PushError::InvalidGrouping`] for an empty job or a label name the gateway cannot take;
    /// [`PushError::Request`] when the gateway cannot be reached in time;
    /// [`PushError::Rejected`] when it answers with an error status (`401` for missing or wrong
    /// credentials, `400` for a body it cannot parse).
    pub async fn push_grouped(
        &self,
        job: &str,
        grouping: &[(&str, &str)],
        body: String,
    ) -> Result<(), PushError> {
        let target = grouping_url(&self.base, job, grouping)?;
        let mut request = self
            .client
            .put(&target)
            .headers(self.headers.clone())
            .header("Content-Type", "text/plain; version=0.0.4");
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, password.as_ref());
        }
        let response = request
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
}

impl PushgatewayBuilder {
    /// Sends HTTP basic-auth credentials with every push (the gateway's `basic_auth_users`).
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((user.into(), Some(password.into())));
        self
    }

    /// Sends this header with every push (a bearer token, a tenant id for a proxy); repeat
    /// for several. Checked by [`build`](Self::build).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// How long one push may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Trusts the PEM certificate(s) in `pem` besides the system's roots: for a gateway whose
    /// certificate your own authority (or the gateway itself) signed.
    ///
    /// *Feature `tls`.*
    #[cfg(feature = "tls")]
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(pem.into());
        self
    }

    /// Checks the URL, the headers and the certificates, and builds the client.
    ///
    /// ```
    /// use go_go_scope::metrics::{PushError, Pushgateway};
    ///
    /// let bad = Pushgateway::builder("http://127.0.0.1:9091").header("bad header", "x").build();
    /// assert!(matches!(bad, Err(PushError::InvalidHeader { .. })));
    /// ```
    ///
    /// # Errors
    /// [`PushError::InvalidUrl`] for a URL that is not `http://` or `https://` with a host (or
    /// has a query), or is `https://` without the feature `tls`;
    /// [`PushError::InvalidHeader`] for a header name or value HTTP cannot carry;
    /// [`PushError::Tls`] for a certificate that cannot be read.
    pub fn build(self) -> Result<Pushgateway, PushError> {
        let url = crate::util::endpoint::parse_http_url(&self.url).map_err(|reason| {
            PushError::InvalidUrl {
                url: self.url.clone(),
                reason,
            }
        })?;
        if url.query().is_some() {
            return Err(PushError::InvalidUrl {
                url: self.url,
                reason: "the gateway URL must not have a query (?..)".into(),
            });
        }
        let headers = crate::util::endpoint::header_map(&self.headers)
            .map_err(|(name, reason)| PushError::InvalidHeader { name, reason })?;
        #[cfg(feature = "tls")]
        let custom_roots = !self.roots.is_empty();
        #[cfg(not(feature = "tls"))]
        let custom_roots = false;
        let client = if !custom_roots && self.timeout == DEFAULT_TIMEOUT {
            shared_client().map_err(PushError::Tls)?.clone()
        } else {
            #[allow(unused_mut)]
            let mut builder = client_builder(self.timeout);
            #[cfg(feature = "tls")]
            for pem in &self.roots {
                let certificates = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| PushError::Tls(Box::new(e)))?;
                if certificates.is_empty() {
                    return Err(PushError::Tls("no PEM certificate found".into()));
                }
                for certificate in certificates {
                    builder = builder.add_root_certificate(certificate);
                }
            }
            builder.build().map_err(|e| PushError::Tls(Box::new(e)))?
        };
        Ok(Pushgateway {
            base: url.as_str().trim_end_matches('/').to_owned(),
            client,
            basic_auth: self.basic_auth,
            headers,
        })
    }
}

/// Pushes the process-wide registry ([`encode`](super::encode)) to the Pushgateway at `url`,
/// replacing the group `job`/`instance` (an empty `instance` leaves that label out). For
/// credentials, headers or `https://`, build a [`Pushgateway`].
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
///
/// # Cancel safety
/// As [`Pushgateway::push`].
///
/// # Errors
/// As [`Pushgateway::new`] for the URL, then as [`Pushgateway::push`].
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
///
/// # Cancel safety
/// As [`Pushgateway::push`].
///
/// # Errors
/// As [`Pushgateway::new`] for the URL, then as [`Pushgateway::push_text`].
pub async fn push_text_to_gateway(
    url: &str,
    job: &str,
    instance: &str,
    body: String,
) -> Result<(), PushError> {
    if job.is_empty() {
        return Err(PushError::InvalidGrouping("the job name must not be empty"));
    }
    Pushgateway::new(url)?.push_text(job, instance, body).await
}

fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    // No idle connections are kept: pushes are rare, and a pooled connection would belong to
    // the runtime that opened it.
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(0)
}

/// The client of gateways with default settings, made once.
fn shared_client() -> Result<&'static reqwest::Client, BoxError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let client = client_builder(DEFAULT_TIMEOUT).build()?;
    Ok(CLIENT.get_or_init(|| client))
}

/// `<base>/metrics/job/<job>[/<label>/<value>]..`, each value path-encoded or base64-encoded.
fn grouping_url(base: &str, job: &str, grouping: &[(&str, &str)]) -> Result<String, PushError> {
    if job.is_empty() {
        return Err(PushError::InvalidGrouping("the job name must not be empty"));
    }
    let mut target = base.trim_end_matches('/').to_owned();
    target.push_str("/metrics");
    push_label(&mut target, "job", job);
    for (name, value) in grouping {
        if !is_label_name(name) {
            return Err(PushError::InvalidGrouping(
                "a grouping label name must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __",
            ));
        }
        if *name == "job" {
            return Err(PushError::InvalidGrouping(
                "`job` is given as the job, not as a grouping label",
            ));
        }
        if grouping.iter().filter(|(other, _)| other == name).count() > 1 {
            return Err(PushError::InvalidGrouping(
                "a grouping label is given twice",
            ));
        }
        push_label(&mut target, name, value);
    }
    Ok(target)
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Appends `/<name>/<value>`, or `/<name>@base64/<value in base64url>` for the values a path
/// segment cannot carry: the empty string (written `=`), `.` and `..` (which HTTP paths
/// collapse) and anything holding a `/` (the Pushgateway's convention for such values).
fn push_label(target: &mut String, name: &str, value: &str) {
    target.push('/');
    target.push_str(name);
    if value.is_empty() || value == "." || value == ".." || value.contains('/') {
        target.push_str("@base64/");
        if value.is_empty() {
            target.push('=');
        } else {
            target.push_str(&base64url(value.as_bytes()));
        }
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

    fn url(job: &str, grouping: &[(&str, &str)]) -> String {
        grouping_url("http://gw:9091", job, grouping).unwrap()
    }

    #[test]
    fn grouping_paths_are_encoded() {
        assert_eq!(
            url("nightly", &[("instance", "ci")]),
            "http://gw:9091/metrics/job/nightly/instance/ci"
        );
        assert_eq!(url("a b", &[]), "http://gw:9091/metrics/job/a%20b");
        assert_eq!(
            url("j", &[("instance", "x/y")]),
            "http://gw:9091/metrics/job/j/instance@base64/eC95"
        );
        assert!(grouping_url("http://gw", "", &[]).is_err());
    }

    #[test]
    fn values_a_path_cannot_carry_are_base64_encoded() {
        // `.` and `..` would be collapsed by the gateway's path handling: `..` replaced the
        // job-only group, `.` left a broken group behind.
        assert_eq!(
            url("j", &[("instance", ".")]),
            "http://gw:9091/metrics/job/j/instance@base64/Lg=="
        );
        assert_eq!(
            url("j", &[("instance", "..")]),
            "http://gw:9091/metrics/job/j/instance@base64/Li4="
        );
        assert_eq!(
            url("j", &[("instance", "")]),
            "http://gw:9091/metrics/job/j/instance@base64/="
        );
        assert_eq!(url("..", &[]), "http://gw:9091/metrics/job@base64/Li4=");
        assert_eq!(
            url("j", &[("zone", "eu"), ("pod", "a.b")]),
            "http://gw:9091/metrics/job/j/zone/eu/pod/a.b"
        );
    }

    #[test]
    fn grouping_label_names_are_checked() {
        for bad in [
            &[("", "x")][..],
            &[("1a", "x")],
            &[("a-b", "x")],
            &[("__name", "x")],
            &[("job", "x")],
            &[("a", "x"), ("a", "y")],
        ] {
            assert!(
                matches!(
                    grouping_url("http://gw", "j", bad),
                    Err(PushError::InvalidGrouping(_))
                ),
                "{bad:?}"
            );
        }
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
