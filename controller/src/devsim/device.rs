//! One simulated device.

use std::sync::Arc;

use http::{Method, StatusCode};
use lichen_api::auth::AuthContainer;
use lichen_api::certs::{ZCertType, ZControllerCert};
use lichen_api::common::HashAlgorithm;
use lichen_api::config::{ConfigRequest, ConfigResponse, EdgeDevConfig};
use lichen_api::envelope::{self, Signer};
use lichen_api::register::ZRegisterMsg;
use lichen_api::uuid::{UuidRequest, UuidResponse};
use p256::ecdsa::VerifyingKey;
use prost::Message;

use crate::client::{ClientError, HttpsClient, Reply};
use crate::pki::Identity;

/// What went wrong talking to the controller.
#[derive(Debug)]
pub enum SimError {
    /// The request did not complete.
    Client(ClientError),
    /// The controller answered with an unexpected status.
    Status(StatusCode, String),
    /// A response failed verification or decoding.
    Invalid(String),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Client(error) => write!(f, "{error}"),
            Self::Status(status, body) => write!(f, "HTTP {status}: {}", body.trim()),
            Self::Invalid(reason) => write!(f, "invalid response: {reason}"),
        }
    }
}

impl std::error::Error for SimError {}

impl From<ClientError> for SimError {
    fn from(error: ClientError) -> Self {
        Self::Client(error)
    }
}

/// The result of a configuration poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigPoll {
    /// The controller has nothing new (HTTP 304).
    Unchanged,
    /// A new configuration arrived, with this version.
    Changed(String),
}

/// The controller's signing certificate, as checked against the root.
#[derive(Clone)]
struct ControllerKey {
    cert_hash: Vec<u8>,
    key: VerifyingKey,
}

/// A simulated device.
pub struct SimDevice {
    /// Its serial.
    pub serial: String,
    client: HttpsClient,
    root_der: Arc<Vec<u8>>,
    device: Signer,
    device_cert_pem: String,
    onboarding: Signer,
    controller: Option<ControllerKey>,
    uuid: Option<String>,
    config: EdgeDevConfig,
    config_hash: String,
    /// Its device certificate and key.
    pub(crate) identity: Identity,
    /// The token from its last successful attestation, sent in config requests.
    pub integrity_token: Vec<u8>,
}

impl SimDevice {
    /// A device with a new key and self-signed certificate, that will onboard with `onboarding`
    /// and trusts the controller root `root_der`.
    pub fn new(
        client: HttpsClient,
        root_der: Arc<Vec<u8>>,
        onboarding: &Identity,
        serial: &str,
    ) -> std::io::Result<Self> {
        let identity = Identity::self_signed(&format!("lichen simulated device {serial}"))?;
        Ok(Self::with_identity(
            client, root_der, onboarding, serial, identity,
        ))
    }

    /// A device with an existing device certificate and key (a device keeps them across
    /// restarts; registering again with them gets 200).
    pub fn with_identity(
        client: HttpsClient,
        root_der: Arc<Vec<u8>>,
        onboarding: &Identity,
        serial: &str,
        identity: Identity,
    ) -> Self {
        // Device certificates are identified by the SHA-256 of their DER.
        let device = Signer::new(
            identity.key.clone(),
            &identity.cert_der,
            HashAlgorithm::Sha25632bytes,
        );
        let onboarding = Signer::new(
            onboarding.key.clone(),
            &onboarding.cert_der,
            HashAlgorithm::Sha25632bytes,
        )
        .with_sender_cert(&onboarding.cert_pem);
        Self {
            serial: serial.to_owned(),
            client,
            root_der,
            device,
            device_cert_pem: identity.cert_pem.clone(),
            onboarding,
            controller: None,
            uuid: None,
            config: EdgeDevConfig::default(),
            config_hash: String::new(),
            identity,
            integrity_token: Vec::new(),
        }
    }

    /// The UUID the controller gave it, once it has received its first configuration.
    pub fn uuid(&self) -> Option<&str> {
        self.uuid.as_deref()
    }

    /// The configuration it last received.
    pub fn config(&self) -> &EdgeDevConfig {
        &self.config
    }

    /// The signer of its requests (tests use it to build odd bodies).
    pub fn signer(&self) -> &Signer {
        &self.device
    }

    /// Fetches the controller's certificates and keeps the signing one, after checking that the
    /// root issued it and that it signed the response.
    pub async fn fetch_certs(&mut self) -> Result<(), SimError> {
        let reply = self
            .client
            .send(Method::GET, &route("certs"), None, None)
            .await?;
        let body = expect(reply, StatusCode::OK)?;
        let container = decode_container(&body)?;
        let payload = container
            .protected_payload
            .as_ref()
            .map(|body| &body.payload[..])
            .unwrap_or_default();
        let certs = ZControllerCert::decode(payload).map_err(invalid)?;
        let cert = certs
            .certs
            .iter()
            .find(|cert| cert.r#type == ZCertType::CertTypeControllerSigning as i32)
            .ok_or_else(|| SimError::Invalid("no controller signing certificate".into()))?;
        let algo = HashAlgorithm::try_from(cert.hash_algo).map_err(invalid)?;
        if !lichen_api::cert::hash_matches(&cert.cert, algo, &cert.cert_hash) {
            return Err(SimError::Invalid("certificate hash does not match".into()));
        }
        let pem = std::str::from_utf8(&cert.cert).map_err(invalid)?;
        let der = lichen_api::cert::pem_to_der(pem).map_err(invalid)?;
        lichen_api::cert::verify_issued_by(&der, &self.root_der).map_err(invalid)?;
        let signing = ControllerKey {
            cert_hash: lichen_api::cert::cert_hash(&cert.cert, HashAlgorithm::Sha25632bytes)
                .unwrap_or_default(),
            key: lichen_api::cert::public_key(&der).map_err(invalid)?,
        };
        open_from(&signing, &container)?;
        self.controller = Some(signing);
        Ok(())
    }

    /// Registers with the onboarding certificate. Returns 201 (new) or 200 (again); other
    /// statuses are errors.
    pub async fn register(&self) -> Result<StatusCode, SimError> {
        let message = ZRegisterMsg {
            pem_cert: lichen_api::cert::encode_base64_pem(&self.device_cert_pem),
            serial: self.serial.clone(),
            ..Default::default()
        };
        let body = self.onboarding.seal_to_bytes(&message);
        let reply = self.post_raw("register", body).await?;
        match reply.status {
            StatusCode::CREATED | StatusCode::OK => Ok(reply.status),
            status => Err(SimError::Status(
                status,
                String::from_utf8_lossy(&reply.body).into_owned(),
            )),
        }
    }

    /// Asks the controller for its UUID, manufacturer and product name (route `uuid`).
    pub async fn fetch_uuid(&mut self) -> Result<UuidResponse, SimError> {
        let reply = self.post_signed("uuid", &UuidRequest {}).await?;
        let body = expect(reply, StatusCode::OK)?;
        let response: UuidResponse = self.open(&body)?;
        self.uuid = Some(response.uuid.clone());
        Ok(response)
    }

    /// Polls the configuration, sending the hash of the one it has.
    pub async fn poll_config(&mut self) -> Result<ConfigPoll, SimError> {
        let request = ConfigRequest {
            config_hash: self.config_hash.clone(),
            integrity_token: self.integrity_token.clone(),
        };
        let reply = self.post_signed("config", &request).await?;
        if reply.status == StatusCode::NOT_MODIFIED {
            return Ok(ConfigPoll::Unchanged);
        }
        let body = expect(reply, StatusCode::OK)?;
        let response: ConfigResponse = self.open(&body)?;
        let config = response
            .config
            .ok_or_else(|| SimError::Invalid("no config in the response".into()))?;
        let id = config.id.clone().unwrap_or_default();
        if id.uuid.is_empty() {
            return Err(SimError::Invalid("config without the device UUID".into()));
        }
        self.uuid = Some(id.uuid);
        self.config = config;
        self.config_hash = response.config_hash;
        Ok(ConfigPoll::Changed(id.version))
    }

    /// Posts a report message to `route` (`info`, `metrics`, `logs`, `flowlog`), expecting 201.
    pub async fn post_report(&self, route: &str, message: &impl Message) -> Result<(), SimError> {
        let reply = self.post_signed(route, message).await?;
        expect(reply, StatusCode::CREATED).map(drop)
    }

    /// Posts `message`, signed by this device, to its route (with its UUID once known).
    pub async fn post_signed(
        &self,
        route: &str,
        message: &impl Message,
    ) -> Result<Reply, SimError> {
        self.post_raw(route, self.device.seal_to_bytes(message))
            .await
    }

    /// Posts any body to the device route `route` (with its UUID once known).
    pub async fn post_raw(&self, route: &str, body: Vec<u8>) -> Result<Reply, SimError> {
        let path = match (&self.uuid, route) {
            (_, "register" | "uuid") | (None, _) => self::route(route),
            (_, app) if app.starts_with("apps/") => self::route(route),
            (Some(uuid), _) => self::route(&format!("id/{uuid}/{route}")),
        };
        Ok(self
            .client
            .send(
                Method::POST,
                &path,
                Some((lichen_api::CONTENT_TYPE, body)),
                None,
            )
            .await?)
    }

    /// Verifies a controller envelope and decodes its payload.
    pub(crate) fn open<M: Message + Default>(&self, body: &[u8]) -> Result<M, SimError> {
        let controller = self
            .controller
            .as_ref()
            .ok_or_else(|| SimError::Invalid("certs not fetched".into()))?;
        let container = decode_container(body)?;
        M::decode(open_from(controller, &container)?).map_err(invalid)
    }
}

fn route(path: &str) -> String {
    format!("{}/{path}", lichen_api::API_PREFIX)
}

fn decode_container(body: &[u8]) -> Result<AuthContainer, SimError> {
    envelope::decode(body)
        .map(|(container, _)| container)
        .map_err(invalid)
}

fn open_from<'a>(
    controller: &ControllerKey,
    container: &'a AuthContainer,
) -> Result<&'a [u8], SimError> {
    if !controller
        .cert_hash
        .starts_with(&container.sender_cert_hash)
    {
        return Err(SimError::Invalid(
            "signed by an unknown controller certificate".into(),
        ));
    }
    envelope::open(container, &controller.key).map_err(invalid)
}

pub(super) fn expect(reply: Reply, status: StatusCode) -> Result<bytes::Bytes, SimError> {
    if reply.status == status {
        Ok(reply.body)
    } else {
        let reason = reply
            .reason
            .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned());
        Err(SimError::Status(reply.status, reason))
    }
}

fn invalid(error: impl std::fmt::Display) -> SimError {
    SimError::Invalid(error.to_string())
}
