//! Attestation as a simulated device does it: a software attestation key whose certificate the
//! device certificate issues, a nonce from the controller, and a TPM-style quote over it.

use http::StatusCode;
use lichen_api::attest::{
    ZAttestQuote, ZAttestReq, ZAttestReqType, ZAttestResponse, ZAttestResponseCode,
};
use lichen_api::certs::{ZCert, ZCertAttr, ZCertType};
use lichen_api::common::HashAlgorithm;

use super::device::{expect, SimDevice, SimError};
use crate::pki::Identity;

impl SimDevice {
    /// Sends an attest request and returns the controller's answer.
    pub async fn attest_request(&self, request: &ZAttestReq) -> Result<ZAttestResponse, SimError> {
        let reply = self.post_signed("attest", request).await?;
        let body = expect(reply, StatusCode::CREATED)?;
        self.open(&body)
    }

    /// A new software attestation key, certified by the device certificate.
    pub fn new_attestation_key(&self) -> Result<Identity, SimError> {
        self.identity
            .issue(
                &format!("lichen simulated device {}", self.serial),
                &format!("lichen simulated attestation key {}", self.serial),
            )
            .map_err(|error| SimError::Invalid(format!("attestation key: {error}")))
    }

    /// Posts `key`'s certificate as the device's attestation certificate.
    pub async fn post_attestation_cert(
        &self,
        key: &Identity,
        mutable: bool,
    ) -> Result<(), SimError> {
        let request = ZAttestReq {
            req_type: ZAttestReqType::AttestReqCert as i32,
            quote: None,
            certs: vec![ZCert {
                hash_algo: HashAlgorithm::Sha25632bytes as i32,
                cert_hash: Vec::new(),
                r#type: ZCertType::CertTypeDeviceRestrictedSigning as i32,
                cert: key.cert_pem.as_bytes().to_vec(),
                attributes: Some(ZCertAttr {
                    is_mutable: mutable,
                    is_tpm: false,
                }),
            }],
        };
        self.attest_request(&request).await.map(drop)
    }

    /// Asks for a nonce.
    pub async fn attestation_nonce(&self) -> Result<Vec<u8>, SimError> {
        let request = ZAttestReq {
            req_type: ZAttestReqType::AttestReqNonce as i32,
            ..ZAttestReq::default()
        };
        let response = self.attest_request(&request).await?;
        response
            .nonce
            .map(|nonce| nonce.nonce)
            .ok_or_else(|| SimError::Invalid("nonce response without a nonce".into()))
    }

    /// Sends a quote over `nonce` signed by `key`; keeps the integrity token on success.
    pub async fn quote(
        &mut self,
        key: &Identity,
        nonce: &[u8],
    ) -> Result<ZAttestResponseCode, SimError> {
        let (attest_data, signature) = crate::tpm::software_quote(&key.key, nonce);
        let request = ZAttestReq {
            req_type: ZAttestReqType::AttestReqQuote as i32,
            quote: Some(ZAttestQuote {
                attest_data,
                signature,
                ..ZAttestQuote::default()
            }),
            certs: Vec::new(),
        };
        let answer = self
            .attest_request(&request)
            .await?
            .quote_resp
            .ok_or_else(|| SimError::Invalid("quote response without a result".into()))?;
        let code = ZAttestResponseCode::try_from(answer.response)
            .map_err(|_| SimError::Invalid(format!("unknown quote result {}", answer.response)))?;
        if code == ZAttestResponseCode::Success {
            self.integrity_token = answer.integrity_token;
        }
        Ok(code)
    }

    /// The whole exchange with a new software key: certificate, nonce, quote.
    pub async fn attest(&mut self) -> Result<ZAttestResponseCode, SimError> {
        let key = self.new_attestation_key()?;
        self.post_attestation_cert(&key, true).await?;
        let nonce = self.attestation_nonce().await?;
        self.quote(&key, &nonce).await
    }
}
