//! The export request of one attempt, built without I/O.
//!
//! The request target is in **origin form** (`POST /v1/traces HTTP/1.1` and a `Host` header),
//! as RFC 9112 §3.2.1 requires of a request to an origin server: the absolute form
//! (`POST http://host:port/v1/traces`) is for proxies, and a strict origin server (Python's
//! `http.server`, for one) answers it 404. `Host` is the endpoint's host, with its port when the
//! port is not the scheme's default (RFC 9110 §7.2); user information in the URL never goes
//! into it.
//!
//! Headers, in order, each replacing an earlier one of the same name: `Host`, `Content-Type`
//! (the protocol's), `Content-Encoding: gzip` when compressing, `User-Agent: contrail/VERSION`,
//! then the configured `OTEL_EXPORTER_OTLP_[{SIGNAL}_]HEADERS`.

use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST, USER_AGENT};
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, HeaderValue, Method, Request};

use crate::export::body::Chunks;
use crate::export::config::{Compression, SignalConfig};

/// Everything of a signal's export request but its body, computed once.
#[derive(Debug, Clone)]
pub(crate) struct RequestTemplate {
    /// The origin-form target: path and query.
    target: Uri,
    headers: HeaderMap,
}

impl RequestTemplate {
    /// The template for `config`; `None` when it has no (usable) endpoint.
    pub(crate) fn new(config: &SignalConfig) -> Option<RequestTemplate> {
        let endpoint = config.endpoint.as_ref()?;
        let mut headers = HeaderMap::new();
        headers.insert(HOST, host_header(endpoint)?);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(config.protocol.content_type()),
        );
        if config.compression == Compression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("contrail/", env!("CARGO_PKG_VERSION"))),
        );
        for (name, value) in &config.headers {
            headers.insert(name.clone(), value.clone());
        }
        Some(RequestTemplate {
            target: origin_form(endpoint),
            headers,
        })
    }

    /// The headers every request of the signal carries, in the order sent.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The origin-form target: path and query.
    pub(crate) fn target(&self) -> &str {
        self.target.path_and_query().map_or("/", |pq| pq.as_str())
    }

    /// The request of one attempt, carrying `body`.
    pub(crate) fn request(&self, body: Chunks) -> Request<Chunks> {
        let mut request = Request::new(body);
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.target.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// The path and query of `endpoint`, `/` when it has no path.
fn origin_form(endpoint: &Uri) -> Uri {
    let path_and_query = endpoint
        .path_and_query()
        .map(PathAndQuery::as_str)
        .filter(|pq| pq.starts_with('/'))
        .unwrap_or("/");
    Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .unwrap_or_else(|_| Uri::from_static("/"))
}

/// `host[:port]` of `endpoint`: the port only when it is not the scheme's default.
pub(crate) fn host_header(endpoint: &Uri) -> Option<HeaderValue> {
    let host = endpoint.host()?;
    let default_port = if endpoint.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let value = match endpoint.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::config::Protocol;

    fn template(endpoint: &str) -> RequestTemplate {
        let config = SignalConfig {
            endpoint: Some(endpoint.parse().unwrap()),
            ..SignalConfig::default()
        };
        RequestTemplate::new(&config).unwrap()
    }

    #[test]
    fn the_target_is_in_origin_form_and_host_names_a_port_that_is_not_the_default() {
        let cases = [
            (
                "http://collector:4318/v1/traces",
                "/v1/traces",
                "collector:4318",
            ),
            (
                "https://otlp.example.com/base/v1/logs?tenant=a",
                "/base/v1/logs?tenant=a",
                "otlp.example.com",
            ),
            (
                "https://otlp.example.com:8443/v1/metrics",
                "/v1/metrics",
                "otlp.example.com:8443",
            ),
            ("http://backend:80/v1/traces", "/v1/traces", "backend"),
            ("https://backend:443", "/", "backend"),
            ("http://[::1]:9000/v1/logs", "/v1/logs", "[::1]:9000"),
            (
                "http://user:secret@127.0.0.1:4319/v1/traces",
                "/v1/traces",
                "127.0.0.1:4319",
            ),
        ];
        for (endpoint, target, host) in cases {
            let request = template(endpoint).request(Chunks::default());
            assert_eq!(request.method(), Method::POST, "{endpoint}");
            assert_eq!(request.uri().to_string(), target, "{endpoint}");
            assert!(request.uri().authority().is_none(), "{endpoint}");
            assert_eq!(request.headers()[HOST], host, "{endpoint}");
        }
    }

    #[test]
    fn headers_follow_the_protocol_and_the_configuration() {
        let config = SignalConfig {
            endpoint: Some("http://collector:4318/v1/logs".parse().unwrap()),
            protocol: Protocol::HttpJson,
            compression: Compression::Gzip,
            headers: vec![
                ("x-api-key".parse().unwrap(), "k".parse().unwrap()),
                (USER_AGENT, "custom".parse().unwrap()),
            ],
            ..SignalConfig::default()
        };
        let request = RequestTemplate::new(&config)
            .unwrap()
            .request(Chunks::default());
        let h = request.headers();
        assert_eq!(h[CONTENT_TYPE], "application/json");
        assert_eq!(h[CONTENT_ENCODING], "gzip");
        assert_eq!(h["x-api-key"], "k");
        assert_eq!(h[USER_AGENT], "custom", "configured headers win");

        let plain = template("http://collector:4318/v1/logs").request(Chunks::default());
        assert_eq!(plain.headers()[CONTENT_TYPE], "application/x-protobuf");
        assert!(plain.headers().get(CONTENT_ENCODING).is_none());
        assert!(
            plain.headers()[USER_AGENT]
                .to_str()
                .unwrap()
                .starts_with("contrail/")
        );
    }

    #[test]
    fn no_endpoint_no_template() {
        assert!(RequestTemplate::new(&SignalConfig::default()).is_none());
    }
}
