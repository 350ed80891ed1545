//! Export over https to a backend whose certificate a private CA signed: trusted through
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`, refused without it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::delivery;
use crate::diag::Stats;
use crate::export::config::ExportConfig;
use crate::pipeline::Signals;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A test CA and a server certificate it signed for localhost and 127.0.0.1, made by the
/// openssl command. Returns (CA certificate, server certificate, server key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian package openssl) is needed to make test certificates");
        assert!(status.success(), "openssl {args:?} failed");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "1", "-subj", "/CN=contrail test CA"],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        p("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

/// An OTLP/HTTP backend on https that records the span names it receives.
async fn tls_backend(cert: &Path, key: &Path) -> (u16, Arc<Mutex<Vec<String>>>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let names = Arc::new(Mutex::new(Vec::new()));
    let seen = names.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate fails the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let traces = request.uri().path() == "/v1/traces";
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        // Contrail's own metrics go to /v1/metrics: acknowledged, not recorded.
                        let decoded = if traces {
                            ExportTraceServiceRequest::decode(body).unwrap()
                        } else {
                            ExportTraceServiceRequest::default()
                        };
                        for rs in decoded.resource_spans {
                            for ss in rs.scope_spans {
                                seen.lock()
                                    .unwrap()
                                    .extend(ss.spans.into_iter().map(|s| s.name));
                            }
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, names)
}

fn one_span(name: &str) -> Signals {
    Signals {
        spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: name.to_owned(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_export_trusts_the_configured_certificate_and_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let (port, names) = tls_backend(&cert, &key).await;
    let endpoint = format!("https://localhost:{port}");

    // Not trusted: the public web roots do not know this certificate.
    let (mut untrusted, stats) = delivery(&[("CONTRAIL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    untrusted.push(one_span("refused"));
    let outcome = untrusted
        .flush(Instant::now() + Duration::from_secs(2))
        .await;
    assert!(!outcome.complete, "{outcome:?}");
    assert!(Stats::get(&stats.export_failures) >= 1);

    let (mut trusted, _) = delivery(&[
        ("CONTRAIL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca.display().to_string()),
    ]);
    trusted.push(one_span("over-tls"));
    let outcome = trusted
        .flush(Instant::now() + Duration::from_secs(10))
        .await;
    assert!(outcome.complete, "{outcome:?}");
    assert_eq!(*names.lock().unwrap(), vec!["over-tls".to_owned()]);
}

#[test]
fn a_certificate_file_that_is_missing_or_not_pem_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for path in [dir.path().join("missing.pem"), not_pem] {
        let env: HashMap<String, String> = [(
            "CONTRAIL_EXPORTER_OTLP_CERTIFICATE".to_owned(),
            path.display().to_string(),
        )]
        .into();
        let errors = ExportConfig::from_env(&env).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].var, "CONTRAIL_EXPORTER_OTLP_CERTIFICATE");
    }
}
