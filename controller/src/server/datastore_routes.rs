//! The datastore's routes: devices download app images (`GET`/`HEAD /datastore/{sha256}`, with
//! byte ranges, behind the datastore's HTTP Basic credentials); the admin uploads them
//! (`POST /api/admin/v1/datastore`, behind the admin token; see [`super::admin_routes`]).
//!
//! The same download routes are served over TLS on the controller's listener and, when asked
//! for (`--datastore-http`), in plain HTTP on another address, for `DsHttp` datastores.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{ApiError, App};
use crate::admin_api::{DatastoreLocation, DatastoreUpload};
use crate::datastore::{self, Datastore, Range};

/// Bytes read from the file per piece of the response body.
const PIECE: usize = 64 * 1024;

/// The download routes, under `/datastore`.
pub(super) fn router() -> Router<Arc<App>> {
    Router::new().route(&format!("/{}/{{name}}", datastore::DIR), get(download))
}

/// `GET` (and `HEAD`, which axum answers from it without the body) of one file.
async fn download(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve_file(&app.datastore, &name, &method, &headers).await
}

/// Answers a download of `name` from `store`.
pub(super) async fn serve_file(
    store: &Datastore,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if !store.authorized(authorization) {
        let mut response =
            ApiError::unauthorized("the datastore's credentials are needed").into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"lichen datastore\""),
        );
        return Ok(response);
    }
    let (path, size) = store
        .find(name)
        .ok_or_else(|| ApiError::not_found("no such file in the datastore"))?;
    let requested = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok());
    let (status, start, length) = match datastore::range(requested, size) {
        Range::Whole => (StatusCode::OK, 0, size),
        Range::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Range::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the file has {size} bytes"),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ASCII"),
            );
            return Ok(response);
        }
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
        Body::from_stream(futures_util::stream::unfold(
            (file, length),
            |(mut file, left)| async move {
                if left == 0 {
                    return None;
                }
                let mut piece = vec![0u8; PIECE.min(left as usize)];
                match file.read(&mut piece).await {
                    // The file shrank under us: end the body short, which the client sees as
                    // a truncated response (Content-Length was promised).
                    Ok(0) => Some((
                        Err(std::io::Error::other("datastore file shrank")),
                        (file, 0),
                    )),
                    Ok(n) => {
                        piece.truncate(n);
                        Some((Ok(Bytes::from(piece)), (file, left - n as u64)))
                    }
                    Err(error) => Some((Err(error), (file, 0))),
                }
            },
        ))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let value = |text: String| HeaderValue::from_str(&text).expect("ASCII");
    headers.insert(header::CONTENT_LENGTH, value(length.to_string()));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::ETAG, value(format!("\"{name}\"")));
    if status == StatusCode::PARTIAL_CONTENT {
        headers.insert(
            header::CONTENT_RANGE,
            value(format!("bytes {start}-{}/{size}", start + length - 1)),
        );
    }
    Ok(response)
}

/// `POST /api/admin/v1/datastore`: stores the body, answers where devices find it.
pub(super) async fn upload(
    State(app): State<Arc<App>>,
    body: Bytes,
) -> Result<(StatusCode, Json<DatastoreUpload>), ApiError> {
    let store = app.datastore.clone();
    let stored = tokio::task::spawn_blocking(move || store.put(&body))
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    let identity = app.datastore.identity();
    Ok((
        StatusCode::CREATED,
        Json(DatastoreUpload {
            stored,
            location: DatastoreLocation {
                id: identity.id.clone(),
                https_url: app.datastore_urls.0.clone(),
                http_url: app.datastore_urls.1.clone(),
                dpath: datastore::DIR.to_owned(),
                api_key: datastore::API_KEY.to_owned(),
                password: identity.password.clone(),
            },
        }),
    ))
}
