//! The admin API (see [`crate::admin_api`] for its routes and documents).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use lichen_api::config::EdgeDevConfig;
use prost::Message;
use serde::Deserialize;

use super::device_routes::served_config;
use super::{report_json, ApiError, App};
use crate::admin_api::{
    Admit, ConfigCheck, ConfigSet, DeviceStatus, DeviceSummary, LogLine, NewOnboarding,
    OnboardingEntry, PendingRegistration, Reports,
};
use crate::device_config;
use crate::registration::onboarding_id;
use crate::store::StoreError;
use crate::store::{Device, DeviceConfig, Onboarding, TelemetryKind, TelemetryQuery};

/// Where the admin API is mounted.
pub(super) const PREFIX: &str = "/api/admin/v1";
/// Longest a reports request waits for news.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Most reports in one page.
const PAGE: usize = 200;

pub(super) fn router(app: Arc<App>, max_upload_bytes: usize) -> Router<Arc<App>> {
    Router::new()
        .route(
            "/datastore",
            post(super::datastore_routes::upload)
                .layer(axum::extract::DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route("/onboarding", get(list_onboarding).post(add_onboarding))
        .route("/onboarding/{id}", delete(remove_onboarding))
        .route("/onboarding/pending", get(list_pending))
        .route("/onboarding/pending/{id}", delete(dismiss_pending))
        .route("/onboarding/pending/{id}/admit", post(admit_pending))
        .route("/devices", get(list_devices))
        .route("/devices/{uuid}", get(show_device).delete(delete_device))
        .route("/devices/{uuid}/status", get(device_status))
        .route("/devices/{uuid}/config", get(get_config).put(set_config))
        .route("/devices/{uuid}/config/check", post(check_config))
        .route("/devices/{uuid}/reports", get(reports))
        .route("/devices/{uuid}/logs", get(logs))
        .route("/devices/{uuid}/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(app, require_admin))
}

/// Lets in requests with the admin token (`Authorization: Bearer`), or from a web UI session
/// (with its CSRF token when the method changes something).
async fn require_admin(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match given {
        Some(token) if crate::admin_token::matches(&app.admin_token, token.trim()) => {
            Ok(next.run(request).await)
        }
        Some(_) => Err(ApiError::unauthorized("wrong admin token")),
        None => {
            let changes = !matches!(*request.method(), http::Method::GET | http::Method::HEAD);
            super::ui::session_caller(&app, request.headers(), changes)?;
            Ok(next.run(request).await)
        }
    }
}

fn entry(onboarding: Onboarding) -> OnboardingEntry {
    let cert_pem = lichen_api::cert::der_to_pem(&onboarding.cert_der).unwrap_or_default();
    OnboardingEntry {
        id: onboarding.id,
        subject: onboarding.subject,
        serials: onboarding.serials,
        cert_pem,
    }
}

async fn list_onboarding(
    State(app): State<Arc<App>>,
) -> Result<Json<Vec<OnboardingEntry>>, ApiError> {
    Ok(Json(
        app.store
            .onboarding()
            .await?
            .into_iter()
            .map(entry)
            .collect(),
    ))
}

async fn add_onboarding(
    State(app): State<Arc<App>>,
    Json(new): Json<NewOnboarding>,
) -> Result<(StatusCode, Json<OnboardingEntry>), ApiError> {
    let bad =
        |error: lichen_api::cert::CertError| ApiError::bad_request(format!("cert_pem: {error}"));
    let cert_der = lichen_api::cert::pem_to_der(&new.cert_pem).map_err(bad)?;
    lichen_api::cert::public_key(&cert_der).map_err(bad)?;
    if new.serials.is_empty() || new.serials.iter().any(|serial| serial.is_empty()) {
        return Err(ApiError::bad_request(
            "serials: give at least one non-empty pattern (\"*\" admits all)",
        ));
    }
    let onboarding = Onboarding {
        id: onboarding_id(&cert_der),
        subject: lichen_api::cert::subject(&cert_der).map_err(bad)?,
        cert_der,
        serials: new.serials,
    };
    app.store.put_onboarding(onboarding.clone()).await?;
    Ok((StatusCode::CREATED, Json(entry(onboarding))))
}

async fn remove_onboarding(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.store
        .remove_onboarding(&id)
        .await
        .map_err(not_found("onboarding certificate"))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_pending(State(app): State<Arc<App>>) -> Json<Vec<PendingRegistration>> {
    Json(app.pending.list())
}

async fn dismiss_pending(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if app.pending.remove(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such register attempt"))
    }
}

/// Admits a queued register attempt: its onboarding certificate, with the serials it already
/// admits plus the attempt's serial (or the patterns given).
async fn admit_pending(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Json(admit): Json<Admit>,
) -> Result<Json<OnboardingEntry>, ApiError> {
    let pending = app
        .pending
        .get(&id)
        .ok_or_else(|| ApiError::not_found("no such register attempt"))?;
    if admit.serials.iter().any(|serial| serial.is_empty()) {
        return Err(ApiError::bad_request("serials: patterns must not be empty"));
    }
    let mut serials = match app
        .store
        .onboarding()
        .await?
        .into_iter()
        .find(|entry| entry.id == pending.shown.onboarding_id)
    {
        Some(existing) => existing.serials,
        None => Vec::new(),
    };
    let wanted = if admit.serials.is_empty() {
        vec![pending.shown.serial.clone()]
    } else {
        admit.serials
    };
    for serial in wanted {
        if !serials.contains(&serial) {
            serials.push(serial);
        }
    }
    let onboarding = Onboarding {
        id: pending.shown.onboarding_id.clone(),
        subject: lichen_api::cert::subject(&pending.cert_der).unwrap_or_default(),
        cert_der: pending.cert_der,
        serials,
    };
    app.store.put_onboarding(onboarding.clone()).await?;
    app.pending.remove(&id);
    Ok(Json(entry(onboarding)))
}

fn not_found(what: &'static str) -> impl Fn(crate::store::StoreError) -> ApiError {
    move |error| match error {
        crate::store::StoreError::NotFound => ApiError::not_found(format!("no such {what}")),
        other => other.into(),
    }
}

async fn summary(app: &App, device: Device, with_status: bool) -> Result<DeviceSummary, ApiError> {
    let status = if with_status {
        Some(super::device_status::brief(app, &device.uuid).await?)
    } else {
        None
    };
    let config = app.store.config(&device.uuid).await?;
    let served = match &config {
        Some(config) => config.hash.clone(),
        None => served_config(app, &device.uuid).await?.hash,
    };
    Ok(DeviceSummary {
        last_seen_ms: app
            .devices
            .last_seen_ms(&device.uuid)
            .max(Some(device.last_seen_ms).filter(|ms| *ms > 0)),
        subject: lichen_api::cert::subject(&device.cert_der).unwrap_or_default(),
        config_version: config.map_or(0, |config| config.version),
        config_hash: served,
        uuid: device.uuid,
        serial: device.serial,
        onboarding_id: device.onboarding_id,
        registered_at: device.registered_at,
        status,
    })
}

/// Query of the devices route: by last contact (as written to the store, every few seconds).
#[derive(Deserialize)]
struct ContactFilter {
    seen_since_ms: Option<u64>,
    not_seen_since_ms: Option<u64>,
    /// Include what each device's newest device info says.
    #[serde(default)]
    with_status: bool,
    /// Skip this many devices (in UUID order) ...
    #[serde(default)]
    offset: usize,
    /// ... and list at most this many (default: all). The total is in [`TOTAL_HEADER`].
    limit: Option<usize>,
}

/// The header of the devices route giving how many devices matched before paging.
const TOTAL_HEADER: &str = "x-total-count";

async fn list_devices(
    State(app): State<Arc<App>>,
    Query(filter): Query<ContactFilter>,
) -> Result<([(&'static str, String); 1], Json<Vec<DeviceSummary>>), ApiError> {
    let query = crate::store::ContactQuery {
        seen_since: filter.seen_since_ms,
        not_seen_since: filter.not_seen_since_ms,
    };
    let devices = app.store.devices_by_contact(query).await?;
    let total = devices.len();
    let mut summaries = Vec::new();
    for device in devices
        .into_iter()
        .skip(filter.offset)
        .take(filter.limit.unwrap_or(usize::MAX))
    {
        summaries.push(summary(&app, device, filter.with_status).await?);
    }
    Ok(([(TOTAL_HEADER, total.to_string())], Json(summaries)))
}

async fn find_device(app: &App, uuid: &str) -> Result<Device, ApiError> {
    app.store
        .device(uuid)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no device {uuid}")))
}

async fn show_device(
    State(app): State<Arc<App>>,
    Path(uuid): Path<String>,
) -> Result<Json<DeviceSummary>, ApiError> {
    let device = find_device(&app, &uuid).await?;
    Ok(Json(summary(&app, device, true).await?))
}

async fn device_status(
    State(app): State<Arc<App>>,
    Path(uuid): Path<String>,
) -> Result<Json<DeviceStatus>, ApiError> {
    find_device(&app, &uuid).await?;
    Ok(Json(super::device_status::status(&app, &uuid).await?))
}

async fn delete_device(
    State(app): State<Arc<App>>,
    Path(uuid): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.store
        .remove_device(&uuid)
        .await
        .map_err(not_found("device"))?;
    app.devices.forget(&uuid);
    Ok(StatusCode::NO_CONTENT)
}

async fn get_config(
    State(app): State<Arc<App>>,
    Path(uuid): Path<String>,
) -> Result<Json<EdgeDevConfig>, ApiError> {
    find_device(&app, &uuid).await?;
    let served = served_config(&app, &uuid).await?;
    let config = EdgeDevConfig::decode(&served.bytes[..])
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    Ok(Json(config))
}

/// The configuration device `uuid` is served, decoded.
async fn current_config(app: &App, uuid: &str) -> Result<(u64, EdgeDevConfig), ApiError> {
    let version = app
        .store
        .config(uuid)
        .await?
        .map_or(0, |config| config.version);
    let served = served_config(app, uuid).await?;
    let config = EdgeDevConfig::decode(&served.bytes[..])
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    Ok((version, config))
}

/// A configuration as YAML without its `id` (which the controller sets), for comparing.
fn yaml_without_id(mut config: EdgeDevConfig) -> String {
    config.id = None;
    device_config::to_yaml(&config)
}

/// Checks a configuration file as `set_config` would, and shows it beside the current one.
async fn check_config(
    State(app): State<Arc<App>>,
    Path(uuid): Path<String>,
    text: String,
) -> Result<Json<ConfigCheck>, ApiError> {
    find_device(&app, &uuid).await?;
    let (current_version, current) = current_config(&app, &uuid).await?;
    let (problems, proposed_yaml) = match device_config::parse(&text) {
        Err(error) => (vec![error], String::new()),
        Ok(config) => (
            device_config::validate(&config, &uuid)
                .err()
                .unwrap_or_default(),
            yaml_without_id(config),
        ),
    };
    Ok(Json(ConfigCheck {
        problems,
        current_version,
        current_yaml: yaml_without_id(current),
        proposed_yaml,
    }))
}

/// Query of the set-config route.
#[derive(Deserialize)]
struct SetConfigQuery {
    /// Refuse (409) unless this is the current version: the change was reviewed against it.
    expect_version: Option<u64>,
}

async fn set_config(
    State(app): State<Arc<App>>,
    Path(uuid): Path<String>,
    Query(query): Query<SetConfigQuery>,
    text: String,
) -> Result<Json<ConfigSet>, ApiError> {
    find_device(&app, &uuid).await?;
    let config = device_config::parse(&text).map_err(ApiError::unprocessable)?;
    device_config::validate(&config, &uuid)
        .map_err(|problems| ApiError::unprocessable(problems.join("\n")))?;
    let _one_at_a_time = app.config_writes.lock().await;
    // Another controller sharing the store may write a version between our read and write:
    // the store refuses ours then, and we number it again (unless a version was expected).
    let mut attempts = 0;
    let (version, served) = loop {
        let current = app
            .store
            .config(&uuid)
            .await?
            .map_or(0, |config| config.version);
        if query
            .expect_version
            .is_some_and(|expected| expected != current)
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "the configuration is at version {current} now, not {}: review the change again",
                    query.expect_version.unwrap_or_default()
                ),
            ));
        }
        let version = current + 1;
        let served = device_config::serve(&uuid, version, config.clone());
        let stored = DeviceConfig {
            uuid: uuid.clone(),
            version,
            config: served.bytes.clone(),
            hash: served.hash.clone(),
        };
        match app.store.set_config(stored).await {
            Ok(()) => break (version, served),
            Err(StoreError::Conflict) if attempts < 10 => attempts += 1,
            Err(error) => return Err(not_found("device")(error)),
        }
    };
    Ok(Json(ConfigSet {
        version,
        hash: served.hash,
    }))
}

/// Query of the reports route.
#[derive(Deserialize)]
struct ReportsQuery {
    #[serde(default)]
    after: u64,
    kinds: Option<String>,
    #[serde(default)]
    wait_ms: u64,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    object: Option<String>,
    #[serde(default)]
    newest_first: bool,
}

/// Query of the logs route.
#[derive(Deserialize)]
struct LogsQuery {
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    /// Comma-separated severities.
    severity: Option<String>,
    text: Option<String>,
    #[serde(default)]
    newest_first: bool,
    limit: Option<usize>,
}

/// Query of the metrics route.
#[derive(Deserialize)]
struct MetricsQuery {
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    limit: Option<usize>,
}

/// A device's metrics as time series (oldest first): the newest `limit` points in the range.
async fn metrics(
    State(app): State<Arc<App>>,
    Path(uuid): Path<String>,
    Query(query): Query<MetricsQuery>,
) -> Result<Json<Vec<crate::admin_api::MetricPoint>>, ApiError> {
    find_device(&app, &uuid).await?;
    let mut reports = app
        .store
        .telemetry(TelemetryQuery {
            since_ms: query.since_ms,
            until_ms: query.until_ms,
            newest_first: true,
            ..TelemetryQuery::device(
                &uuid,
                &[TelemetryKind::Metrics],
                query.limit.unwrap_or(PAGE).min(10 * PAGE),
            )
        })
        .await?;
    reports.reverse();
    Ok(Json(super::metrics_series::series(&reports)))
}

/// A device's log lines (from `logs` and `newlogs` reports), filtered.
async fn logs(
    State(app): State<Arc<App>>,
    Path(uuid): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Json<Vec<LogLine>>, ApiError> {
    find_device(&app, &uuid).await?;
    let severities = query
        .severity
        .iter()
        .flat_map(|list| list.split(','))
        .map(|severity| severity.trim().to_owned())
        .filter(|severity| !severity.is_empty())
        .collect();
    let lines = app
        .store
        .logs(crate::store::LogQuery {
            uuid: Some(uuid),
            since_ms: query.since_ms,
            until_ms: query.until_ms,
            severities,
            text: query.text.filter(|text| !text.is_empty()),
            newest_first: query.newest_first,
            limit: query.limit.unwrap_or(PAGE).min(10 * PAGE),
        })
        .await?;
    Ok(Json(
        lines
            .into_iter()
            .map(|line| LogLine {
                seq: line.seq,
                at_ms: line.at_ms,
                severity: line.severity,
                source: line.source,
                text: line.text,
            })
            .collect(),
    ))
}

async fn reports(
    State(app): State<Arc<App>>,
    Path(uuid): Path<String>,
    Query(query): Query<ReportsQuery>,
) -> Result<Json<Reports>, ApiError> {
    find_device(&app, &uuid).await?;
    let kinds = match &query.kinds {
        None => TelemetryKind::ALL.to_vec(),
        Some(names) => names
            .split(',')
            .map(|name| {
                TelemetryKind::from_name(name.trim())
                    .ok_or_else(|| ApiError::bad_request(format!("unknown kind {name:?}")))
            })
            .collect::<Result<_, _>>()?,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(query.wait_ms).min(MAX_WAIT);
    let mut news = app.reports.subscribe();
    loop {
        news.mark_unchanged();
        let found = app
            .store
            .telemetry(TelemetryQuery {
                uuid: Some(uuid.clone()),
                kinds: kinds.clone(),
                after_seq: query.after,
                since_ms: query.since_ms,
                until_ms: query.until_ms,
                object: query.object.clone(),
                newest_first: query.newest_first,
                limit: PAGE,
            })
            .await?;
        if !found.is_empty()
            || tokio::time::timeout_at(deadline, news.changed())
                .await
                .is_err()
        {
            return Ok(Json(Reports {
                reports: found.into_iter().map(report_json::to_report).collect(),
            }));
        }
    }
}
