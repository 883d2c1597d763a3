//! The HTTPS server: EVE API v2 device routes under `/api/v2/edgedevice`, the admin API under
//! `/api/admin/v1` and the web UI under `/ui/`, on one TLS 1.3 listener.

mod admin_routes;
mod attest;
mod connections;
mod datastore_routes;
mod device_routes;
mod device_status;
mod devices;
mod error;
mod housekeeping;
mod limits;
mod listener;
mod metrics_series;
mod pending;
mod report_index;
mod report_json;
mod ui;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::DefaultBodyLimit;
use axum::Router;
use lichen_api::envelope::Signer;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use error::ApiError;
pub use limits::Limits;

use crate::pki::Pki;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{legacy, Retention, Store};
use devices::DeviceCache;

/// How to run the controller.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where certificates, the admin token and the store live.
    pub state_dir: PathBuf,
    /// The address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Extra DNS names or IP addresses for a new server certificate.
    pub server_names: Vec<String>,
    /// The largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// The PostgreSQL database to use (`postgresql://` URL or `key=value` pairs); `None`: SQLite
    /// in the state directory.
    pub database_url: Option<String>,
    /// What is kept of reports, applied every `retention_interval`.
    pub retention: Retention,
    /// How often retention is applied.
    pub retention_interval: Duration,
    /// How often last-contact times are written to the store.
    pub contact_interval: Duration,
    /// Timeouts and caps on connections.
    pub limits: Limits,
    /// The largest file the admin may upload to the datastore.
    pub max_upload_bytes: usize,
    /// How devices reach the datastore over HTTPS (`https://host:port`); default: the first
    /// server name (else the listen address) and the port listened on.
    pub datastore_url: Option<String>,
    /// Where to serve the datastore in plain HTTP too (`DsHttp`), if anywhere.
    pub datastore_http: Option<SocketAddr>,
}

impl Options {
    /// Defaults for a state directory and listen address.
    pub fn new(state_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            state_dir,
            listen,
            server_names: Vec::new(),
            max_body_bytes: 1 << 20,
            database_url: None,
            retention: Retention::default(),
            retention_interval: Duration::from_secs(60),
            contact_interval: Duration::from_secs(10),
            limits: Limits::default(),
            max_upload_bytes: 1 << 30,
            datastore_url: None,
            datastore_http: None,
        }
    }
}

/// What the routes share.
pub(crate) struct App {
    store: Arc<dyn Store>,
    /// Signs every response envelope.
    signer: Signer,
    /// The signed `ZControllerCert` served by the certs route.
    certs_body: Vec<u8>,
    admin_token: String,
    devices: DeviceCache,
    /// The sequence number of the newest report, for followers.
    reports: watch::Sender<u64>,
    /// Serializes configuration changes, so that versions increase one by one.
    config_writes: tokio::sync::Mutex<()>,
    /// Refused register attempts, for operators to admit.
    pending: pending::PendingQueue,
    /// Web UI sessions.
    sessions: ui::session::Sessions,
    /// App images served to devices.
    datastore: crate::datastore::Datastore,
    /// The datastore's HTTPS and (if served) plain HTTP URLs, as devices reach them.
    datastore_urls: (String, Option<String>),
}

/// A running controller.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The root certificate devices and admins trust (PEM).
    pub ca_pem: String,
    /// The admin bearer token.
    pub admin_token: String,
    /// The address of the plain HTTP datastore, when served.
    pub datastore_http_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    housekeeping: tokio::task::JoinHandle<()>,
    datastore_http: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, drops open connections and waits until the store is closed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.housekeeping.await;
        if let Some(task) = self.datastore_http {
            let _ = task.await;
        }
    }
}

/// Starts the controller: creates or loads its certificates, admin token and store, and serves.
pub async fn start(options: Options) -> io::Result<Running> {
    let pki = Pki::load_or_create(&options.state_dir, &options.server_names)?;
    let admin_token = crate::admin_token::load_or_create(&options.state_dir)?;
    let store = open_store(&options.state_dir, options.database_url.as_deref()).await?;
    let datastore = crate::datastore::Datastore::open(&options.state_dir)?;
    let listener = TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let plain = match options.datastore_http {
        Some(listen) => Some(TcpListener::bind(listen).await?),
        None => None,
    };
    let datastore_http_addr = plain.as_ref().map(|l| l.local_addr()).transpose()?;
    let host = options
        .server_names
        .first()
        .cloned()
        .unwrap_or_else(|| url_host(addr.ip()));
    let datastore_urls = (
        options
            .datastore_url
            .clone()
            .unwrap_or_else(|| format!("https://{host}:{}", addr.port())),
        datastore_http_addr.map(|plain| format!("http://{host}:{}", plain.port())),
    );
    let app = Arc::new(App::new(
        store,
        &pki,
        admin_token.clone(),
        datastore,
        datastore_urls,
    ));
    let router = Router::new()
        .nest(lichen_api::API_PREFIX, device_routes::router())
        .nest(
            admin_routes::PREFIX,
            admin_routes::router(Arc::clone(&app), options.max_upload_bytes),
        )
        .merge(datastore_routes::router())
        .merge(ui::router())
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(Arc::clone(&app));

    let acceptor = tls_acceptor(&pki)?;
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(listener::serve(
        listener,
        acceptor,
        router,
        options.limits,
        stopped.clone(),
    ));
    let datastore_http = plain.map(|plain| {
        let router = datastore_routes::router().with_state(Arc::clone(&app));
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(plain, router)
                .with_graceful_shutdown(stop)
                .await
            {
                eprintln!("lichen-controller: plain HTTP datastore: {error}");
            }
        })
    });
    let housekeeping = tokio::spawn(housekeeping::run(
        app,
        housekeeping::Schedule {
            retention: options.retention,
            retention_interval: options.retention_interval,
            contact_interval: options.contact_interval,
        },
        stopped,
    ));
    Ok(Running {
        addr,
        ca_pem: pki.ca.cert_pem,
        admin_token,
        datastore_http_addr,
        stop,
        server,
        housekeeping,
        datastore_http,
    })
}

/// Opens the PostgreSQL store, or the SQLite one in `state_dir`; refuses to start over a store
/// of an earlier version.
async fn open_store(
    state_dir: &std::path::Path,
    database_url: Option<&str>,
) -> io::Result<Arc<dyn Store>> {
    if let Some(url) = database_url {
        let store = PostgresStore::open(url)
            .await
            .map_err(|error| io::Error::other(error.to_string()))?;
        return Ok(Arc::new(store));
    }
    let old_log = legacy::log_path(state_dir);
    if old_log.exists() && !state_dir.join(crate::store::sqlite::FILE_NAME).exists() {
        return Err(io::Error::other(format!(
            "{} holds the store of an earlier version: run `lichen-controller migrate --state-dir {}` first",
            old_log.display(),
            state_dir.display()
        )));
    }
    let store =
        SqliteStore::open(state_dir).map_err(|error| io::Error::other(error.to_string()))?;
    Ok(Arc::new(store))
}

impl App {
    fn new(
        store: Arc<dyn Store>,
        pki: &Pki,
        admin_token: String,
        datastore: crate::datastore::Datastore,
        datastore_urls: (String, Option<String>),
    ) -> Self {
        use lichen_api::certs::{ZCert, ZCertType, ZControllerCert};
        use lichen_api::common::HashAlgorithm;
        // The controller's certificates are hashed over their PEM text, as EVE does.
        let signing_pem = pki.signing.cert_pem.as_bytes();
        let signer = Signer::new(
            pki.signing.key.clone(),
            signing_pem,
            HashAlgorithm::Sha25632bytes,
        );
        let certs = ZControllerCert {
            certs: vec![ZCert {
                hash_algo: HashAlgorithm::Sha25632bytes as i32,
                cert_hash: signer.cert_hash().to_vec(),
                r#type: ZCertType::CertTypeControllerSigning as i32,
                cert: signing_pem.to_vec(),
                attributes: None,
            }],
        };
        let certs_body = signer.seal_to_bytes(&certs);
        Self {
            store,
            signer,
            certs_body,
            sessions: ui::session::Sessions::new(&admin_token),
            admin_token,
            devices: DeviceCache::default(),
            reports: watch::channel(0).0,
            config_writes: tokio::sync::Mutex::new(()),
            pending: pending::PendingQueue::default(),
            datastore,
            datastore_urls,
        }
    }
}

fn tls_acceptor(pki: &Pki) -> io::Result<TlsAcceptor> {
    let chain = [&pki.server.cert_pem, &pki.ca.cert_pem]
        .into_iter()
        .map(|pem| CertificateDer::from_pem_slice(pem.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io::Error::other)?;
    let key =
        PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).map_err(io::Error::other)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(io::Error::other)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// An IP address as the host of a URL (IPv6 in brackets).
fn url_host(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
