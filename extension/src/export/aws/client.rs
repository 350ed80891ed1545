//! One signed call to an AWS JSON 1.1 API (Secrets Manager, SSM), on a pool of its own, and
//! the field lookups its answers (and the credentials endpoint's) are read by.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName};
use http::{HeaderValue, Method, Request, Uri};
use serde_json::Value;

use crate::export::aws::sigv4::{Credentials, Signer, sha256_hex};
use crate::export::body::Chunks;
use crate::export::conn::{ConnError, Origin, Pool, Response};
use crate::export::request::host_header;

/// `POST {endpoint}` with `X-Amz-Target: {target}` and `body`, signed for `signer`.
pub(crate) async fn call(
    pool: &mut Pool,
    signer: &mut Signer,
    credentials: &Credentials,
    endpoint: &Uri,
    target: &str,
    body: Vec<u8>,
) -> Result<Response, ConnError> {
    let origin = Origin::of(endpoint).ok_or(ConnError::Lost)?;
    let host = host_header(endpoint).ok_or(ConnError::Lost)?;
    let path = endpoint
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let hash = sha256_hex([body.as_slice()]);
    let host_str = host.to_str().unwrap_or_default().to_owned();
    let signed = signer.sign(
        credentials,
        SystemTime::now(),
        "POST",
        &path,
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("host", &host_str),
            ("x-amz-target", target),
        ],
        &hash,
    );
    let body = Bytes::from(body);
    let target = HeaderValue::from_str(target).map_err(|_| ConnError::Lost)?;
    let signed = signed_headers_of(&signed);
    let make = || {
        let mut request = Request::new(Chunks::from(body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = path.parse().unwrap_or_else(|_| Uri::from_static("/"));
        let h = request.headers_mut();
        h.insert(HOST, host.clone());
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        h.insert(HeaderName::from_static("x-amz-target"), target.clone());
        for (name, value) in &signed {
            h.insert(name.clone(), value.clone());
        }
        request
    };
    pool.send(&origin, &make).await
}

/// The headers of a signature, in the order sent: `X-Amz-Date`, `X-Amz-Security-Token` when
/// the credentials have one, and `Authorization`.
pub(crate) fn signed_headers_of(
    signed: &crate::export::aws::sigv4::Signed,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(3);
    let values = [
        (
            HeaderName::from_static("x-amz-date"),
            Some(signed.amz_date.as_str()),
        ),
        (
            HeaderName::from_static("x-amz-security-token"),
            signed.security_token.as_deref(),
        ),
        (AUTHORIZATION, Some(signed.authorization.as_str())),
    ];
    for (name, value) in values {
        if let Some(Ok(v)) = value.map(HeaderValue::from_str) {
            out.push((name, v));
        }
    }
    out
}

/// Field `key` of a JSON object (`None` for anything else). One copy of the map lookup for
/// every field the answers are read by, instead of one inlined at each.
#[inline(never)]
pub(crate) fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.get(key)
}

/// The string at `key` of a JSON object, empty when it is absent or not a string.
pub(crate) fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    field(v, key).and_then(Value::as_str).unwrap_or_default()
}
