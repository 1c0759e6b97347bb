//! Endpoint URLs of the HTTP exporters (the Pushgateway push, the OTLP span exporter), checked
//! once when the exporter is built: an `http://` or `https://` URL with a host.

use std::borrow::Cow;

/// `text` as an `http://` or `https://` URL with a host, or why it is not one.
///
/// Stricter than a URL parser, which accepts `http:///host` (extra slashes are skipped) and
/// fills in hosts for some inputs: here the authority must follow `://` directly. An `https://`
/// URL needs the cargo feature `tls`.
pub(crate) fn parse_http_url(text: &str) -> Result<reqwest::Url, Cow<'static, str>> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err("the URL must start with http:// or https://".into());
    };
    let https = scheme.eq_ignore_ascii_case("https");
    if !https && !scheme.eq_ignore_ascii_case("http") {
        return Err("the URL must start with http:// or https://".into());
    }
    if rest.is_empty() || rest.starts_with(['/', '\\', '?', '#', ':']) || rest.starts_with('@') {
        return Err("the URL has no host".into());
    }
    let url = reqwest::Url::parse(text).map_err(|e| Cow::Owned(format!("not a URL: {e}")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if url.fragment().is_some() {
        return Err("the URL must not have a fragment (#..)".into());
    }
    if https && !cfg!(feature = "tls") {
        return Err("an https:// URL needs the cargo feature `tls` of go-go-scope".into());
    }
    Ok(url)
}

/// Headers checked once: names and values HTTP accepts; values are marked sensitive (kept out
/// of `Debug` output), as they often hold credentials.
pub(crate) fn header_map(
    headers: &[(String, String)],
) -> Result<reqwest::header::HeaderMap, (String, &'static str)> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| (name.clone(), "not a valid header name"))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            (
                name.clone(),
                "the value holds a character headers cannot carry",
            )
        })?;
        value.set_sensitive(true);
        map.append(key, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_needs_a_scheme_and_a_host() {
        for bad in [
            "",
            "http://",
            "https://",
            "http:///127.0.0.1:1",
            "http:////gw",
            "http://:9091",
            "http://@gw",
            "http://?x=1",
            "localhost:9091",
            "ftp://gw",
            "gw/metrics",
            "http://gw:99999",
            "http://gw#frag",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad:?} was accepted");
        }
        for good in [
            "http://gw",
            "http://gw:9091/",
            "HTTP://127.0.0.1:9091/base",
            "http://[::1]:4318/v1/traces",
        ] {
            assert!(parse_http_url(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn https_needs_the_tls_feature() {
        let parsed = parse_http_url("https://gw:9091");
        assert_eq!(parsed.is_ok(), cfg!(feature = "tls"), "{parsed:?}");
    }
}
