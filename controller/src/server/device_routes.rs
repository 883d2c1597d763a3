//! The EVE API v2 device routes. Every POST body is an `AuthContainer`; except for `register`
//! (signed with the onboarding certificate it carries) it must be signed by a registered device,
//! and a UUID in the path must be that device's.

use std::io::Read;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, RawPathParams, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use lichen_api::auth::AuthContainer;
use lichen_api::config::{ConfigRequest, ConfigResponse, EdgeDevConfig};
use lichen_api::envelope;
use lichen_api::register::ZRegisterMsg;
use lichen_api::uuid::{UuidRequest, UuidResponse};
use prost::Message;

use super::attest;
use super::devices::KnownDevice;
use super::report_index;
use super::{now_ms, ApiError, App};
use crate::device_config::{self, Served};
use crate::registration::{self, RegisterError, Registered};
use crate::store::{Telemetry, TelemetryKind};

/// Largest decompressed newlogs body accepted (guards against gzip bombs).
const MAX_NEWLOGS_BYTES: u64 = 64 << 20;

/// The device routes, relative to `/api/v2/edgedevice`.
pub(super) fn router() -> Router<Arc<App>> {
    let mut routes = Router::new()
        .route("/ping", get(|| async { StatusCode::OK }))
        .route("/certs", get(certs))
        .route("/register", post(register))
        .route("/uuid", post(uuid))
        .route("/config", post(config))
        .route("/id/{uuid}/config", post(config))
        .route(
            "/id/{uuid}/attest",
            post(|State(app): State<Arc<App>>, signed: SignedByDevice| attest::attest(app, signed)),
        );
    for kind in TelemetryKind::DEVICE {
        let handler = move |State(app): State<Arc<App>>, signed: SignedByDevice| {
            report(app, signed, kind, None)
        };
        routes = routes
            .route(&format!("/{}", kind.name()), post(handler))
            .route(&format!("/id/{{uuid}}/{}", kind.name()), post(handler));
    }
    for (route, kind) in [
        ("logs", TelemetryKind::AppLogs),
        ("newlogs", TelemetryKind::AppNewLogs),
    ] {
        let handler =
            move |State(app): State<Arc<App>>,
                  Path(instance): Path<String>,
                  signed: SignedByDevice| app_report(app, signed, instance, kind);
        routes = routes.route(
            &format!("/apps/instanceid/{{instance}}/{route}"),
            post(handler),
        );
    }
    routes.layer(axum::middleware::map_response(without_error_body))
}

/// An error response as the EVE API wants it: no body (a body would have to be a protobuf
/// message); the reason goes in the [`REASON_HEADER`](crate::client::REASON_HEADER) instead,
/// for people reading device logs.
async fn without_error_body(response: Response) -> Response {
    if !(response.status().is_client_error() || response.status().is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let reason: String = String::from_utf8_lossy(&text)
        .trim()
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .take(300)
        .collect();
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Ok(value) = header::HeaderValue::from_str(&reason) {
        parts.headers.insert(crate::client::REASON_HEADER, value);
    }
    Response::from_parts(parts, axum::body::Body::empty())
}

/// A decoded, not yet verified `AuthContainer` body of the right content type.
struct Envelope(AuthContainer);

impl<S: Send + Sync> FromRequest<S> for Envelope {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if content_type.is_none_or(|ct| !ct.starts_with(lichen_api::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("body must be {}", lichen_api::CONTENT_TYPE),
            ));
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
        let (container, _) = envelope::decode(&body)?;
        Ok(Self(container))
    }
}

/// A body signed by a registered device (the one in the path, if any), and its payload.
pub(super) struct SignedByDevice {
    pub(super) device: Arc<KnownDevice>,
    pub(super) payload: Vec<u8>,
}

impl FromRequest<Arc<App>> for SignedByDevice {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let path_uuid = RawPathParams::from_request_parts(&mut parts, app)
            .await
            .ok()
            .and_then(|params| {
                params
                    .iter()
                    .find(|(name, _)| *name == "uuid")
                    .map(|(_, value)| value.to_string())
            });
        let Envelope(container) =
            Envelope::from_request(Request::from_parts(parts, body), app).await?;
        let device = app
            .devices
            .find(&*app.store, &container.sender_cert_hash)
            .await?
            .ok_or_else(|| ApiError::unauthorized("signed by an unknown certificate"))?;
        let payload = envelope::open(&container, &device.key)?.to_vec();
        if let Some(uuid) = path_uuid {
            if uuid::Uuid::parse_str(&uuid).is_err() {
                return Err(ApiError::bad_request(format!("{uuid:?} is not a UUID")));
            }
            if uuid != device.uuid {
                // The EVE API: "Unknown Device: 400"; another device's UUID: 403.
                return Err(match app.store.device(&uuid).await? {
                    None => ApiError::bad_request(format!("unknown device {uuid}")),
                    Some(_) => ApiError::forbidden("signed by another device"),
                });
            }
        }
        device.seen(now_ms());
        Ok(Self { device, payload })
    }
}

/// Decodes a payload as `M`, or answers 422.
pub(super) fn decode<M: Message + Default>(payload: &[u8], what: &str) -> Result<M, ApiError> {
    M::decode(payload)
        .map_err(|error| ApiError::unprocessable(format!("payload is not a {what}: {error}")))
}

/// A 200 response carrying `message` in a signed envelope.
pub(super) fn signed(app: &App, message: &impl Message) -> Response {
    (
        [(header::CONTENT_TYPE, lichen_api::CONTENT_TYPE)],
        app.signer.seal_to_bytes(message),
    )
        .into_response()
}

async fn certs(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, lichen_api::CONTENT_TYPE)],
        app.certs_body.clone(),
    )
        .into_response()
}

async fn register(
    State(app): State<Arc<App>>,
    Envelope(container): Envelope,
) -> Result<StatusCode, ApiError> {
    if container.sender_cert.is_empty() {
        return Err(ApiError::unauthorized(
            "register must carry the onboarding certificate (senderCert)",
        ));
    }
    let bad_cert =
        |error: lichen_api::cert::CertError| ApiError::bad_request(format!("senderCert: {error}"));
    let pem = lichen_api::cert::decode_base64_pem(&container.sender_cert).map_err(bad_cert)?;
    let onboarding_der = lichen_api::cert::pem_to_der(&pem).map_err(bad_cert)?;
    let key = lichen_api::cert::public_key(&onboarding_der).map_err(bad_cert)?;
    let payload = envelope::open(&container, &key)?;
    let message: ZRegisterMsg = decode(payload, "ZRegisterMsg")?;
    let result = registration::register(&*app.store, &onboarding_der, &message).await;
    if let Err(RegisterError::NotAllowed) = result {
        let serial = [&message.serial, &message.soft_serial]
            .into_iter()
            .find(|serial| !serial.is_empty())
            .map_or("", |serial| serial.as_str());
        app.pending.record(
            &onboarding_der,
            &registration::onboarding_id(&onboarding_der),
            &lichen_api::cert::subject(&onboarding_der).unwrap_or_default(),
            serial,
            now_ms(),
        );
    }
    match result {
        Ok(Registered::Created(_)) => Ok(StatusCode::CREATED),
        Ok(Registered::Again(_)) => Ok(StatusCode::OK),
        Err(RegisterError::NotAllowed) => Err(ApiError::forbidden(
            "onboarding certificate or serial not admitted",
        )),
        Err(RegisterError::Conflict) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "another device certificate is registered with this onboarding certificate and serial",
        )),
        Err(RegisterError::BadDeviceCert(reason)) => {
            Err(ApiError::bad_request(format!("pemCert: {reason}")))
        }
        Err(RegisterError::Store(error)) => Err(error.into()),
    }
}

async fn uuid(
    State(app): State<Arc<App>>,
    signed_by: SignedByDevice,
) -> Result<Response, ApiError> {
    decode::<UuidRequest>(&signed_by.payload, "UuidRequest")?;
    // Manufacturer and product name are what the operator set in the device's configuration.
    let config = match app.store.config(&signed_by.device.uuid).await? {
        Some(stored) => EdgeDevConfig::decode(&stored.config[..]).map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("stored config: {error}"),
            )
        })?,
        None => EdgeDevConfig::default(),
    };
    let response = UuidResponse {
        uuid: signed_by.device.uuid.clone(),
        manufacturer: config.manufacturer,
        product_name: config.product_name,
    };
    Ok(signed(&app, &response))
}

async fn config(
    State(app): State<Arc<App>>,
    signed_by: SignedByDevice,
) -> Result<Response, ApiError> {
    let request: ConfigRequest = decode(&signed_by.payload, "ConfigRequest")?;
    let uuid = &signed_by.device.uuid;
    // A device deleted (perhaps through another controller sharing the store, so still in this
    // one's cache) is unknown.
    let Some(state) = app.store.config_request(uuid).await? else {
        app.devices.forget(uuid);
        return Err(ApiError::unauthorized("unknown device certificate"));
    };
    // Once a device has attested, its config requests must carry the token it was given.
    if !state.integrity_token.is_empty() && request.integrity_token != state.integrity_token {
        return Err(ApiError::forbidden(
            "integrity token does not match: attest again",
        ));
    }
    let served = match state.config {
        Some(stored) => Served {
            bytes: stored.config,
            hash: stored.hash,
        },
        None => device_config::serve(uuid, 0, EdgeDevConfig::default()),
    };
    if request.config_hash == served.hash {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let config = EdgeDevConfig::decode(&served.bytes[..]).map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored config: {error}"),
        )
    })?;
    let response = ConfigResponse {
        config: Some(config),
        config_hash: served.hash,
    };
    Ok(signed(&app, &response))
}

/// What the device with `uuid` is served: its stored configuration, or only its identity.
pub(super) async fn served_config(app: &App, uuid: &str) -> Result<Served, ApiError> {
    Ok(match app.store.config(uuid).await? {
        Some(stored) => Served {
            bytes: stored.config,
            hash: stored.hash,
        },
        None => device_config::serve(uuid, 0, EdgeDevConfig::default()),
    })
}

/// Stores a report; `object` (an app instance's logs) overrides what the report is about.
async fn report(
    app: Arc<App>,
    signed_by: SignedByDevice,
    kind: TelemetryKind,
    object: Option<String>,
) -> Result<StatusCode, ApiError> {
    let received_at_ms = now_ms();
    let indexed = report_index::index(kind, &signed_by.payload, received_at_ms)?;
    let report = Telemetry {
        uuid: signed_by.device.uuid.clone(),
        kind: kind as i32,
        seq: 0,
        received_at_ms,
        payload: signed_by.payload,
        object: object.unwrap_or(indexed.object),
        lines: indexed.lines,
    };
    let seq = app.store.add_telemetry(report).await?;
    app.reports.send_replace(seq);
    Ok(StatusCode::CREATED)
}

/// Stores an app instance's logs: the instance must be one of the apps in the device's
/// configuration (else 400, "Unknown Application Instance" in the EVE API).
async fn app_report(
    app: Arc<App>,
    signed_by: SignedByDevice,
    instance: String,
    kind: TelemetryKind,
) -> Result<StatusCode, ApiError> {
    if uuid::Uuid::parse_str(&instance).is_err() {
        return Err(ApiError::bad_request(format!("{instance:?} is not a UUID")));
    }
    let known = match app.store.config(&signed_by.device.uuid).await? {
        Some(stored) => EdgeDevConfig::decode(&stored.config[..])
            .map_err(|error| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("stored config: {error}"),
                )
            })?
            .apps
            .iter()
            .any(|config| {
                config
                    .uuidandversion
                    .as_ref()
                    .is_some_and(|id| id.uuid.eq_ignore_ascii_case(&instance))
            }),
        None => false,
    };
    if !known {
        return Err(ApiError::bad_request(format!(
            "no app instance {instance} in this device's configuration"
        )));
    }
    report(app, signed_by, kind, Some(instance.to_ascii_lowercase())).await
}

/// Decompresses a newlogs payload, refusing more than [`MAX_NEWLOGS_BYTES`].
pub(super) fn gunzip(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(payload)
        .take(MAX_NEWLOGS_BYTES + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MAX_NEWLOGS_BYTES {
        return Err(std::io::Error::other("too large once decompressed"));
    }
    Ok(text)
}
