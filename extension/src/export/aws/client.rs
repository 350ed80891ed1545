//! One signed call to an AWS JSON 1.1 API (Secrets Manager, SSM), on a pool of its own.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName};
use http::{HeaderValue, Method, Request, Uri};

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
        insert_signed(h, &signed);
        request
    };
    pool.send(&origin, &make).await
}

/// Add the headers of a signature.
pub(crate) fn insert_signed(h: &mut http::HeaderMap, signed: &crate::export::aws::sigv4::Signed) {
    if let Ok(v) = HeaderValue::from_str(&signed.amz_date) {
        h.insert(HeaderName::from_static("x-amz-date"), v);
    }
    if let Some(token) = &signed.security_token
        && let Ok(v) = HeaderValue::from_str(token)
    {
        h.insert(HeaderName::from_static("x-amz-security-token"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&signed.authorization) {
        h.insert(AUTHORIZATION, v);
    }
}
