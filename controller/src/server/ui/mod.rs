//! The web UI: a small page and script bundled into the binary (no third-party resources),
//! served under `/ui/`, which call the admin API with a session cookie (see [`session`]).
//!
//! Routes: `GET /` redirects to `/ui/`; `GET /ui/`, `/ui/app.js`, `/ui/app.css` are the assets;
//! `POST /ui/login` (`{"token": "<admin token>"}`) sets the session cookie and answers the CSRF
//! token; `GET /ui/session` answers the CSRF token of a valid session (401 otherwise);
//! `POST /ui/logout` ends it.
//!
//! Every asset is sent with a Content-Security-Policy that allows only this origin's scripts
//! and styles (no inline script), so that a device-supplied string the page failed to escape
//! still could not run; the page itself only ever inserts such strings as text.

pub mod session;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{now_ms, ApiError, App};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The policy every UI response carries.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The UI's routes (at the root of the listener).
pub(super) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/ui/login", post(login))
        .route("/ui/session", get(session_info))
        .route("/ui/logout", post(logout))
}

/// Headers every UI response carries.
fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    hardened(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// A login request.
#[derive(Deserialize)]
struct Login {
    token: String,
}

/// What the page needs to know about its session.
#[derive(Serialize)]
struct SessionInfo {
    /// Send as `X-CSRF-Token` with every request that changes something.
    csrf: String,
    /// When the session ends (ms since the Unix epoch).
    expires_ms: u64,
}

fn info(app: &App, cookie: &str) -> SessionInfo {
    SessionInfo {
        csrf: app.sessions.csrf(cookie),
        expires_ms: cookie
            .split('.')
            .next()
            .and_then(|e| e.parse().ok())
            .unwrap_or(0),
    }
}

async fn login(State(app): State<Arc<App>>, Json(login): Json<Login>) -> Response {
    if !crate::admin_token::matches(&app.admin_token, login.token.trim()) {
        return hardened(ApiError::unauthorized("wrong admin token").into_response());
    }
    let cookie = app.sessions.issue(now_ms());
    let mut response = Json(info(&app, &cookie)).into_response();
    if let Ok(value) = HeaderValue::from_str(&session::set_cookie(&cookie)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    hardened(response)
}

async fn session_info(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match session::cookie_of(&headers) {
        Some(cookie) if app.sessions.valid(cookie, now_ms()) => {
            hardened(Json(info(&app, cookie)).into_response())
        }
        _ => hardened(ApiError::unauthorized("not logged in").into_response()),
    }
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(error) = session_caller(&app, &headers, true) {
        return hardened(error.into_response());
    }
    if let Some(cookie) = session::cookie_of(&headers) {
        app.sessions.revoke(cookie, now_ms());
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    hardened(response)
}

/// Checks that a request comes from a logged-in page: a valid session cookie and, when it
/// `changes` something, that session's CSRF token in [`session::CSRF_HEADER`].
pub(super) fn session_caller(
    app: &App,
    headers: &HeaderMap,
    changes: bool,
) -> Result<(), ApiError> {
    let cookie = session::cookie_of(headers)
        .filter(|cookie| app.sessions.valid(cookie, now_ms()))
        .ok_or_else(|| {
            ApiError::unauthorized("admin token required (Authorization: Bearer ...) or a session")
        })?;
    if changes {
        let token = headers
            .get(session::CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !app.sessions.csrf_matches(cookie, token) {
            return Err(ApiError::forbidden("missing or wrong CSRF token"));
        }
    }
    Ok(())
}
