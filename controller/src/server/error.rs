//! Errors of the HTTP routes: a status and a one-line reason, sent as plain text.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lichen_api::envelope::EnvelopeError;

use crate::store::StoreError;

/// An HTTP error response.
#[derive(Debug)]
pub struct ApiError {
    /// The status sent.
    pub status: StatusCode,
    /// Why, for the client's log.
    pub reason: String,
}

impl ApiError {
    /// An error with `status` and `reason`.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }

    /// 400: a bad path or field.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    /// 401: not signed, or not by a known certificate.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, reason)
    }

    /// 403: a known sender asking for what it may not have.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason)
    }

    /// 404.
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }

    /// 422: a body that is missing or cannot be decoded as the route's message.
    pub fn unprocessable(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            eprintln!("lichen-controller: {}: {}", self.status, self.reason);
        }
        (self.status, format!("{}\n", self.reason)).into_response()
    }
}

impl From<EnvelopeError> for ApiError {
    fn from(error: EnvelopeError) -> Self {
        let status = match error {
            EnvelopeError::Malformed | EnvelopeError::MissingPayload | EnvelopeError::Encrypted => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            EnvelopeError::Unsigned
            | EnvelopeError::UnsupportedAlgorithm
            | EnvelopeError::BadSignature => StatusCode::UNAUTHORIZED,
        };
        Self::new(status, error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::not_found("no such device"),
            StoreError::Conflict => Self::new(StatusCode::CONFLICT, error.to_string()),
            StoreError::Backend(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
        }
    }
}
