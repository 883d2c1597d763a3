//! The attest route (`id/{uuid}/attest`): a device posts its attestation certificate (issued by
//! its device certificate), asks for a nonce, and sends a quote over it. A quote whose
//! TPMS_ATTEST carries the outstanding nonce and whose TPMT_SIGNATURE verifies with the
//! attestation key earns an integrity token; from then on the device's config requests must carry
//! it (else 403). A failed quote replaces the token with one the device does not know, so that
//! config requests fail until it attests again. PCR values are not yet compared with reference
//! values (there is no policy to compare them with), and storage keys are not supported.
//!
//! What the device controls here: every byte of the request. Certificates that do not parse, are
//! not issued by the device certificate or have an unknown type are refused (422 / 403);
//! `attestData` and `signature` are parsed by [`crate::tpm`], and anything malformed fails the
//! quote (`QUOTE_FAILED`), never the controller.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lichen_api::attest::{
    ZAttestNonceResp, ZAttestQuote, ZAttestQuoteResp, ZAttestReq, ZAttestReqType, ZAttestRespType,
    ZAttestResponse, ZAttestResponseCode,
};
use lichen_api::certs::ZCertType;
use p256::ecdsa::signature::Verifier;

use super::device_routes::{decode, signed, SignedByDevice};
use super::{ApiError, App};
use crate::store::{AttestCert, Attestation, StoreError};
use crate::tpm::{ecdsa_signature, quote_nonce};

/// Attempts at a read-modify-write of the attestation state before giving up.
const ATTEMPTS: usize = 5;

/// The route's handler.
pub(super) async fn attest(app: Arc<App>, signed_by: SignedByDevice) -> Result<Response, ApiError> {
    let request: ZAttestReq = decode(&signed_by.payload, "ZAttestReq")?;
    let uuid = signed_by.device.uuid.clone();
    let device_cert = app
        .store
        .device(&uuid)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown device certificate"))?
        .cert_der;
    for _ in 0..ATTEMPTS {
        let current = app.store.attestation(&uuid).await?.unwrap_or(Attestation {
            uuid: uuid.clone(),
            ..Attestation::default()
        });
        let (next, response) = step(&request, &current, &device_cert)?;
        let next = Attestation {
            version: current.version + 1,
            ..next
        };
        match app.store.put_attestation(next).await {
            Ok(()) => return Ok((StatusCode::CREATED, signed(&app, &response)).into_response()),
            Err(StoreError::Conflict) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "attestation state kept changing; try again",
    ))
}

fn response(kind: ZAttestRespType) -> ZAttestResponse {
    ZAttestResponse {
        resp_type: kind as i32,
        ..ZAttestResponse::default()
    }
}

fn random_bytes() -> Result<Vec<u8>, ApiError> {
    let mut bytes = vec![0; 32];
    getrandom::fill(&mut bytes).map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("randomness: {error}"),
        )
    })?;
    Ok(bytes)
}

/// The state after `request`, and the answer.
fn step(
    request: &ZAttestReq,
    current: &Attestation,
    device_cert: &[u8],
) -> Result<(Attestation, ZAttestResponse), ApiError> {
    let mut next = current.clone();
    match ZAttestReqType::try_from(request.req_type) {
        Ok(ZAttestReqType::AttestReqCert) => {
            for cert in &request.certs {
                let posted = checked_cert(cert, device_cert)?;
                match next
                    .certs
                    .iter_mut()
                    .find(|c| c.cert_type == posted.cert_type)
                {
                    Some(existing) if existing.pem == posted.pem => *existing = posted,
                    Some(existing) if !existing.mutable => {
                        return Err(ApiError::forbidden(
                            "an immutable attestation certificate of that type is registered",
                        ))
                    }
                    Some(existing) => *existing = posted,
                    None => next.certs.push(posted),
                }
            }
            Ok((next, response(ZAttestRespType::AttestRespCert)))
        }
        Ok(ZAttestReqType::AttestReqNonce) => {
            next.nonce = random_bytes()?;
            let mut answer = response(ZAttestRespType::AttestRespNonce);
            answer.nonce = Some(ZAttestNonceResp {
                nonce: next.nonce.clone(),
            });
            Ok((next, answer))
        }
        Ok(ZAttestReqType::AttestReqQuote) => {
            let quote = request
                .quote
                .as_ref()
                .ok_or_else(|| ApiError::unprocessable("a quote request without a quote"))?;
            let code = verify_quote(quote, current);
            // The nonce is used up either way; only success yields a token the device knows.
            next.nonce.clear();
            next.integrity_token = random_bytes()?;
            let mut answer = response(ZAttestRespType::AttestRespQuoteResp);
            answer.quote_resp = Some(ZAttestQuoteResp {
                response: code as i32,
                integrity_token: if code == ZAttestResponseCode::Success {
                    next.integrity_token.clone()
                } else {
                    Vec::new()
                },
            });
            Ok((next, answer))
        }
        Ok(ZAttestReqType::StoreKeys) => Err(ApiError::unprocessable(
            "storing keys is not supported by this controller",
        )),
        Ok(ZAttestReqType::AttestReqNone) | Err(_) => Err(ApiError::unprocessable(format!(
            "unknown attest request type {}",
            request.req_type
        ))),
    }
}

/// A posted certificate, if it is a device attestation type, parses, and was issued by the
/// device certificate.
fn checked_cert(
    cert: &lichen_api::certs::ZCert,
    device_cert: &[u8],
) -> Result<AttestCert, ApiError> {
    match ZCertType::try_from(cert.r#type) {
        Ok(
            ZCertType::CertTypeDeviceRestrictedSigning
            | ZCertType::CertTypeDeviceEndorsementRsa
            | ZCertType::CertTypeDeviceEcdhExchange,
        ) => {}
        _ => {
            return Err(ApiError::unprocessable(format!(
                "certificate type {} is not a device attestation type",
                cert.r#type
            )))
        }
    }
    let pem = String::from_utf8(cert.cert.clone())
        .map_err(|_| ApiError::unprocessable("an attestation certificate is not PEM"))?;
    let der = lichen_api::cert::pem_to_der(&pem)
        .map_err(|error| ApiError::unprocessable(format!("attestation certificate: {error}")))?;
    lichen_api::cert::verify_issued_by(&der, device_cert).map_err(|error| {
        ApiError::forbidden(format!(
            "attestation certificate not issued by the device certificate: {error}"
        ))
    })?;
    Ok(AttestCert {
        cert_type: cert.r#type,
        pem,
        mutable: cert.attributes.as_ref().is_some_and(|a| a.is_mutable),
    })
}

fn verify_quote(quote: &ZAttestQuote, state: &Attestation) -> ZAttestResponseCode {
    let Some(key) = state
        .certs
        .iter()
        .find(|cert| cert.cert_type == ZCertType::CertTypeDeviceRestrictedSigning as i32)
        .and_then(|cert| lichen_api::cert::pem_to_der(&cert.pem).ok())
        .and_then(|der| lichen_api::cert::public_key(&der).ok())
    else {
        return ZAttestResponseCode::NoCertFound;
    };
    let Some(nonce) = quote_nonce(&quote.attest_data) else {
        return ZAttestResponseCode::QuoteFailed;
    };
    if state.nonce.is_empty() || nonce != state.nonce {
        return ZAttestResponseCode::NonceMismatch;
    }
    match ecdsa_signature(&quote.signature) {
        Some(signature) if key.verify(&quote.attest_data, &signature).is_ok() => {
            ZAttestResponseCode::Success
        }
        _ => ZAttestResponseCode::QuoteFailed,
    }
}
