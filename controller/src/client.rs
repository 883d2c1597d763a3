//! A small HTTPS client for the controller's routes, trusting only the controller's root
//! certificate. The admin CLI and the device simulator use it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::{pem::PemObject, CertificateDer};

/// The header in which the controller gives the reason for a device API error.
pub const REASON_HEADER: &str = "x-lichen-reason";

/// What went wrong with a request.
#[derive(Debug)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

/// A response: its status and body.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The reason for an error, from the [`REASON_HEADER`] (the device API's errors have no
    /// body, as the EVE API asks).
    pub reason: Option<String>,
    /// The total count of a paged list (`X-Total-Count`), if given.
    pub total: Option<u64>,
    /// The whole body.
    pub body: Bytes,
}

/// An HTTPS client bound to one controller URL. Cloning shares its connection pool;
/// [`HttpsClient::fork`] makes one with its own.
#[derive(Clone)]
pub struct HttpsClient {
    base_url: String,
    connector: HttpsConnector<HttpConnector>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// When set, requests go one at a time (over one connection), as through a proxy's single
    /// upstream connection; see [`HttpsClient::fork_single`].
    single: Option<Arc<tokio::sync::Semaphore>>,
}

impl HttpsClient {
    /// A client for `base_url` (e.g. `https://127.0.0.1:8443`) that trusts only the certificates
    /// in `ca_pem`.
    pub fn new(base_url: &str, ca_pem: &str) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert =
                cert.map_err(|error| ClientError(format!("reading the CA certificate: {error}")))?;
            roots
                .add(cert)
                .map_err(|error| ClientError(format!("bad CA certificate: {error}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| ClientError(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client = pooled(connector.clone());
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            connector,
            client,
            single: None,
        })
    }

    /// A client of the same controller with its own connections (sharing the TLS setup), as
    /// each real device has its own.
    pub fn fork(&self) -> Self {
        Self {
            base_url: self.base_url.clone(),
            connector: self.connector.clone(),
            client: pooled(self.connector.clone()),
            single: None,
        }
    }

    /// Like [`Self::fork`], but its clones send one request at a time over one connection
    /// (the others wait), however many callers share it.
    pub fn fork_single(&self) -> Self {
        Self {
            single: Some(Arc::new(tokio::sync::Semaphore::new(1))),
            ..self.fork()
        }
    }

    /// Sends a request to `path` with an optional body of `content_type` and bearer token.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        bearer: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url));
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request
            .body(body)
            .map_err(|error| ClientError(error.to_string()))?;
        let _turn = match &self.single {
            Some(single) => Some(
                single
                    .acquire()
                    .await
                    .map_err(|_| ClientError("closed".into()))?,
            ),
            None => None,
        };
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| ClientError(format!("{path}: {}", error_chain(&error))))?;
        let status = response.status();
        let reason = response
            .headers()
            .get(REASON_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let total = response
            .headers()
            .get("x-total-count")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| ClientError(format!("{path}: reading the response: {error}")))?
            .to_bytes();
        Ok(Reply {
            status,
            reason,
            total,
            body,
        })
    }
}

fn pooled(
    connector: HttpsConnector<HttpConnector>,
) -> Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
    // One idle connection per client: a device sends one request at a time, and a client that
    // briefly needed a second connection does not keep it (file descriptors are counted).
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1)
        .build(connector)
}

/// An error with its causes, for messages people read.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
