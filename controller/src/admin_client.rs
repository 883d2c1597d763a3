//! [`AdminClient`]: a typed client of the admin API (see [`crate::admin_api`]), used by the
//! admin CLI, the tests and the benchmark.

use std::time::Duration;

use http::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::admin_api::{
    Admit, ConfigCheck, ConfigSet, DatastoreUpload, DeviceStatus, DeviceSummary, LogLine,
    MetricPoint, NewOnboarding, OnboardingEntry, PendingRegistration, Reports,
};
use crate::client::{ClientError, HttpsClient};

/// A client of the admin API.
#[derive(Clone)]
pub struct AdminClient {
    client: HttpsClient,
    token: String,
}

/// Where the admin API is mounted.
const PREFIX: &str = "/api/admin/v1";

impl AdminClient {
    /// A client of the controller at `url`, trusting `ca_pem`, authenticating with `token`.
    pub fn new(url: &str, ca_pem: &str, token: &str) -> Result<Self, ClientError> {
        Ok(Self {
            client: HttpsClient::new(url, ca_pem)?,
            token: token.trim().to_owned(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        expected: StatusCode,
    ) -> Result<T, ClientError> {
        let reply = self
            .client
            .send(method, &format!("{PREFIX}{path}"), body, Some(&self.token))
            .await?;
        if reply.status != expected {
            let reason = String::from_utf8_lossy(&reply.body);
            return Err(ClientError(format!("{}: {}", reply.status, reason.trim())));
        }
        let body = if reply.body.is_empty() {
            &b"null"[..]
        } else {
            &reply.body[..]
        };
        serde_json::from_slice(body)
            .map_err(|error| ClientError(format!("unexpected response: {error}")))
    }

    fn json(value: &impl serde::Serialize) -> Option<(&'static str, Vec<u8>)> {
        Some((
            "application/json",
            serde_json::to_vec(value).expect("serializable"),
        ))
    }

    /// Admits devices with the onboarding certificate `cert_pem` and these serial patterns.
    pub async fn add_onboarding(
        &self,
        cert_pem: &str,
        serials: &[String],
    ) -> Result<OnboardingEntry, ClientError> {
        let new = NewOnboarding {
            cert_pem: cert_pem.to_owned(),
            serials: serials.to_vec(),
        };
        self.call(
            Method::POST,
            "/onboarding",
            Self::json(&new),
            StatusCode::CREATED,
        )
        .await
    }

    /// Every onboarding certificate.
    pub async fn onboarding(&self) -> Result<Vec<OnboardingEntry>, ClientError> {
        self.call(Method::GET, "/onboarding", None, StatusCode::OK)
            .await
    }

    /// Removes an onboarding certificate.
    pub async fn remove_onboarding(&self, id: &str) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &format!("/onboarding/{id}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await
    }

    /// Register attempts refused because they are not admitted, most recent first.
    pub async fn pending(&self) -> Result<Vec<PendingRegistration>, ClientError> {
        self.call(Method::GET, "/onboarding/pending", None, StatusCode::OK)
            .await
    }

    /// Admits a queued register attempt: its serial, or the `serials` patterns if any.
    pub async fn admit(
        &self,
        id: &str,
        serials: &[String],
    ) -> Result<OnboardingEntry, ClientError> {
        let admit = Admit {
            serials: serials.to_vec(),
        };
        self.call(
            Method::POST,
            &format!("/onboarding/pending/{id}/admit"),
            Self::json(&admit),
            StatusCode::OK,
        )
        .await
    }

    /// A page of devices (by UUID) with their reported status, and how many there are.
    pub async fn devices_page(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<DeviceSummary>, u64), ClientError> {
        let path = format!("{PREFIX}/devices?with_status=true&offset={offset}&limit={limit}");
        let reply = self
            .client
            .send(Method::GET, &path, None, Some(&self.token))
            .await?;
        if reply.status != StatusCode::OK {
            return Err(ClientError(format!("{}: {:?}", reply.status, reply.body)));
        }
        let devices = serde_json::from_slice(&reply.body)
            .map_err(|error| ClientError(format!("unexpected response: {error}")))?;
        let total = reply
            .total
            .ok_or_else(|| ClientError("no X-Total-Count".into()))?;
        Ok((devices, total))
    }

    /// Every device.
    pub async fn devices(&self) -> Result<Vec<DeviceSummary>, ClientError> {
        self.call(Method::GET, "/devices", None, StatusCode::OK)
            .await
    }

    /// Devices heard from within `seen_within` (if given) and not within `silent_for` (if
    /// given), by last contact as the store has it (written every few seconds).
    pub async fn devices_by_contact(
        &self,
        seen_within: Option<Duration>,
        silent_for: Option<Duration>,
    ) -> Result<Vec<DeviceSummary>, ClientError> {
        let now = crate::server::now_ms();
        let ago = |within: Duration| now.saturating_sub(within.as_millis() as u64);
        let mut path = "/devices?".to_owned();
        if let Some(within) = seen_within {
            path.push_str(&format!("seen_since_ms={}&", ago(within)));
        }
        if let Some(silent) = silent_for {
            path.push_str(&format!("not_seen_since_ms={}&", ago(silent)));
        }
        self.call(
            Method::GET,
            path.trim_end_matches(['?', '&']),
            None,
            StatusCode::OK,
        )
        .await
    }

    /// One device.
    pub async fn device(&self, uuid: &str) -> Result<DeviceSummary, ClientError> {
        self.call(
            Method::GET,
            &format!("/devices/{uuid}"),
            None,
            StatusCode::OK,
        )
        .await
    }

    /// Deletes a device, its configuration and its reports.
    pub async fn delete_device(&self, uuid: &str) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &format!("/devices/{uuid}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await
    }

    /// Uploads a file to the controller's datastore.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<DatastoreUpload, ClientError> {
        self.call(
            Method::POST,
            "/datastore",
            Some(("application/octet-stream", bytes)),
            StatusCode::CREATED,
        )
        .await
    }

    /// The configuration a device is served, in proto3 JSON.
    pub async fn config(&self, uuid: &str) -> Result<serde_json::Value, ClientError> {
        self.call(
            Method::GET,
            &format!("/devices/{uuid}/config"),
            None,
            StatusCode::OK,
        )
        .await
    }

    /// Replaces a device's configuration with a configuration file's text (YAML or JSON).
    pub async fn set_config(&self, uuid: &str, text: &str) -> Result<ConfigSet, ClientError> {
        let body = Some(("application/yaml", text.as_bytes().to_vec()));
        self.call(
            Method::PUT,
            &format!("/devices/{uuid}/config"),
            body,
            StatusCode::OK,
        )
        .await
    }

    /// Replaces a device's configuration only if it is still at `version` (else 409).
    pub async fn set_config_at(
        &self,
        uuid: &str,
        text: &str,
        version: u64,
    ) -> Result<ConfigSet, ClientError> {
        let body = Some(("application/yaml", text.as_bytes().to_vec()));
        self.call(
            Method::PUT,
            &format!("/devices/{uuid}/config?expect_version={version}"),
            body,
            StatusCode::OK,
        )
        .await
    }

    /// Checks a configuration file against a device's current configuration, changing nothing.
    pub async fn check_config(&self, uuid: &str, text: &str) -> Result<ConfigCheck, ClientError> {
        let body = Some(("application/yaml", text.as_bytes().to_vec()));
        self.call(
            Method::POST,
            &format!("/devices/{uuid}/config/check"),
            body,
            StatusCode::OK,
        )
        .await
    }

    /// What a device says about itself: the newest info of each object.
    pub async fn status(&self, uuid: &str) -> Result<DeviceStatus, ClientError> {
        self.call(
            Method::GET,
            &format!("/devices/{uuid}/status"),
            None,
            StatusCode::OK,
        )
        .await
    }

    /// Reports of `kinds` (all if empty) after `after`, waiting up to `wait` for one.
    pub async fn reports(
        &self,
        uuid: &str,
        kinds: &[String],
        after: u64,
        wait: Duration,
    ) -> Result<Reports, ClientError> {
        let mut path = format!(
            "/devices/{uuid}/reports?after={after}&wait_ms={}",
            wait.as_millis()
        );
        if !kinds.is_empty() {
            path.push_str(&format!("&kinds={}", kinds.join(",")));
        }
        self.call(Method::GET, &path, None, StatusCode::OK).await
    }

    /// A device's metrics as time series, oldest first: the newest `limit` points.
    pub async fn metrics(&self, uuid: &str, limit: usize) -> Result<Vec<MetricPoint>, ClientError> {
        let path = format!("/devices/{uuid}/metrics?limit={limit}");
        self.call(Method::GET, &path, None, StatusCode::OK).await
    }

    /// A device's log lines with one of `severities` (empty: any) and containing `text`, logged
    /// in the last `within` (if given), newest first, at most `limit`.
    pub async fn logs(
        &self,
        uuid: &str,
        severities: &[String],
        text: Option<&str>,
        within: Option<Duration>,
        limit: usize,
    ) -> Result<Vec<LogLine>, ClientError> {
        let mut path = format!("/devices/{uuid}/logs?newest_first=true&limit={limit}");
        if !severities.is_empty() {
            path.push_str(&format!(
                "&severity={}",
                query_escape(&severities.join(","))
            ));
        }
        if let Some(text) = text {
            path.push_str(&format!("&text={}", query_escape(text)));
        }
        if let Some(within) = within {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let since = now.saturating_sub(within).as_millis();
            path.push_str(&format!("&since_ms={since}"));
        }
        self.call(Method::GET, &path, None, StatusCode::OK).await
    }
}

/// `text` percent-encoded for a URL query value.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
