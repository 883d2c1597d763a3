//! The last good configuration, as kept in the vault (`topics::zedagent::CHECKPOINT`): the
//! config response exactly as the controller signed it, and the signing certificate.
//!
//! **A checkpoint may be anything** when read back (an old disk, another controller's, bytes
//! damaged in between): [`open`] verifies the certificate against the pinned root and the
//! response's signature again, and decodes it, before anything in it is used; otherwise it is
//! an error and the device waits for the controller.

use lichen_api::config::ConfigResponse;
use topics::zedagent::Checkpoint;

use crate::controller::{ControllerError, SigningCert};

/// A checkpoint of `response` (a config response body) signed by `signer`.
pub fn seal(signer: &SigningCert, response: &[u8]) -> Checkpoint {
    Checkpoint {
        signer_pem: signer.pem().into(),
        response: response.into(),
    }
}

/// The configuration in `checkpoint`, verified against `root_der` at `now_unix`, with the
/// signing certificate that vouched for it.
pub fn open(
    checkpoint: &Checkpoint,
    root_der: &[u8],
    now_unix: Option<u64>,
) -> Result<(ConfigResponse, SigningCert), ControllerError> {
    let signer = SigningCert::verify(&checkpoint.signer_pem, root_der, now_unix)?;
    let response = signer.open_message::<ConfigResponse>(&checkpoint.response, "ConfigResponse")?;
    if response.config.is_none() {
        return Err(ControllerError::Decode("ConfigResponse without a config"));
    }
    Ok((response, signer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::tests::{certs_body, controller, NOW};
    use lichen_api::config::EdgeDevConfig;
    use lichen_api::config::UuiDandVersion as UuidAndVersion;

    fn response() -> ConfigResponse {
        ConfigResponse {
            config: Some(EdgeDevConfig {
                id: Some(UuidAndVersion {
                    uuid: "u-1".into(),
                    version: "3".into(),
                }),
                ..Default::default()
            }),
            config_hash: "h3".into(),
        }
    }

    #[test]
    fn a_checkpoint_opens_again_and_a_damaged_one_does_not() {
        let c = controller();
        let signing =
            SigningCert::from_certs(&certs_body(&c.signing_pem, &c.signer), &c.root_der, NOW)
                .unwrap();
        let body = c.signer.seal_to_bytes(&response());
        let checkpoint = seal(&signing, &body);
        let (opened, _) = open(&checkpoint, &c.root_der, NOW).unwrap();
        assert_eq!(opened, response());

        let other = controller();
        assert!(open(&checkpoint, &other.root_der, NOW).is_err());
        for i in 0..checkpoint.response.len() {
            let mut damaged = checkpoint.clone();
            damaged.response[i] ^= 0x10;
            assert!(open(&damaged, &c.root_der, NOW).is_err(), "byte {i}");
        }
        let mut damaged = checkpoint.clone();
        damaged.signer_pem = other.signing_pem.clone();
        assert!(open(&damaged, &c.root_der, NOW).is_err());
        let empty = c.signer.seal_to_bytes(&ConfigResponse::default());
        assert!(open(&seal(&signing, &empty), &c.root_der, NOW).is_err());
    }
}
