//! A small rustls `CryptoProvider` over RustCrypto, enough for a TLS 1.3 client talking to one
//! kind of server (lichen's controller, or any TLS 1.3 server with an ECDSA P-256 certificate):
//!
//! - cipher suite TLS13_CHACHA20_POLY1305_SHA256 (portable ChaCha20-Poly1305: the unikernel has
//!   no AES-NI detection, and soft ChaCha20 is about three times faster than soft AES-GCM);
//! - key exchange secp256r1 (ephemeral ECDH, P-256);
//! - certificate and handshake signatures ECDSA P-256 with SHA-256 only;
//! - randomness from [`crate::random`] (RDRAND in a guest): a failure fails the handshake.
//!
//! There are no client keys: the EVE API v2 authenticates devices by signed envelopes, not by
//! client certificates. Nothing here can disable verification: rustls verifies the chain with
//! webpki and these algorithms, and refuses anything else.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce as ChachaNonce, Tag};
use hmac::Mac;
use p256::ecdsa::signature::Verifier;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rustls::crypto::cipher::{
    make_tls13_aad, AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter,
    MessageEncrypter, Nonce, OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload,
    Tls13AeadAlgorithm, UnsupportedOperationError,
};
use rustls::crypto::{
    hash, hmac as rhmac, tls13::HkdfUsingHmac, ActiveKeyExchange, CipherSuiteCommon,
    CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, SharedSecret, SupportedKxGroup,
    WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{
    alg_id, AlgorithmIdentifier, InvalidSignature, PrivateKeyDer, SignatureVerificationAlgorithm,
};
use rustls::{
    CipherSuite, ConnectionTrafficSecrets, ContentType, Error, NamedGroup, ProtocolVersion,
    SignatureScheme, SupportedCipherSuite, Tls13CipherSuite,
};
use sha2::{Digest, Sha256};

/// The provider: one suite, one group, one signature algorithm.
pub fn provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![SupportedCipherSuite::Tls13(&TLS13_CHACHA20_POLY1305_SHA256)],
        kx_groups: vec![&Secp256r1],
        signature_verification_algorithms: SIGNATURES,
        secure_random: &Random,
        key_provider: &NoKeys,
    }
}

/// The signature algorithms: ECDSA P-256 SHA-256 for certificates and handshakes.
static SIGNATURES: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[&EcdsaP256Sha256],
    mapping: &[(SignatureScheme::ECDSA_NISTP256_SHA256, &[&EcdsaP256Sha256])],
};

/// TLS13_CHACHA20_POLY1305_SHA256 (RFC 8446, RFC 8439).
pub static TLS13_CHACHA20_POLY1305_SHA256: Tls13CipherSuite = Tls13CipherSuite {
    common: CipherSuiteCommon {
        suite: CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        hash_provider: &Sha256Hash,
        // RFC 8446 5.5: ChaCha20-Poly1305 has no practical limit.
        confidentiality_limit: u64::MAX,
    },
    hkdf_provider: &HkdfUsingHmac(&HmacSha256),
    aead_alg: &Chacha20Poly1305Aead,
    quic: None,
};

/// SHA-256 for the handshake transcript.
struct Sha256Hash;

impl hash::Hash for Sha256Hash {
    fn start(&self) -> Box<dyn hash::Context> {
        Box::new(Sha256Context(Sha256::new()))
    }

    fn hash(&self, data: &[u8]) -> hash::Output {
        hash::Output::new(&Sha256::digest(data))
    }

    fn output_len(&self) -> usize {
        32
    }

    fn algorithm(&self) -> hash::HashAlgorithm {
        hash::HashAlgorithm::SHA256
    }
}

struct Sha256Context(Sha256);

impl hash::Context for Sha256Context {
    fn fork_finish(&self) -> hash::Output {
        hash::Output::new(&self.0.clone().finalize())
    }

    fn fork(&self) -> Box<dyn hash::Context> {
        Box::new(Sha256Context(self.0.clone()))
    }

    fn finish(self: Box<Self>) -> hash::Output {
        hash::Output::new(&self.0.finalize())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

/// HMAC-SHA-256, from which rustls derives HKDF.
struct HmacSha256;

impl rhmac::Hmac for HmacSha256 {
    fn with_key(&self, key: &[u8]) -> Box<dyn rhmac::Key> {
        // HMAC takes keys of any length.
        Box::new(HmacKey(
            hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length"),
        ))
    }

    fn hash_output_len(&self) -> usize {
        32
    }
}

struct HmacKey(hmac::Hmac<Sha256>);

impl rhmac::Key for HmacKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> rhmac::Tag {
        let mut mac = self.0.clone();
        mac.update(first);
        for part in middle {
            mac.update(part);
        }
        mac.update(last);
        rhmac::Tag::new(&mac.finalize().into_bytes())
    }

    fn tag_len(&self) -> usize {
        32
    }
}

/// ChaCha20-Poly1305 records (RFC 8446 5.2: the inner content type follows the plaintext).
struct Chacha20Poly1305Aead;

impl Tls13AeadAlgorithm for Chacha20Poly1305Aead {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Records::new(&key, iv))
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Records::new(&key, iv))
    }

    fn key_len(&self) -> usize {
        32
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Ok(ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv })
    }
}

/// One direction's record protection.
struct Records {
    cipher: ChaCha20Poly1305,
    iv: Iv,
}

/// Bytes of a Poly1305 tag.
const TAG_LEN: usize = 16;

impl Records {
    fn new(key: &AeadKey, iv: Iv) -> Records {
        let cipher =
            ChaCha20Poly1305::new_from_slice(key.as_ref()).expect("rustls passes key_len() bytes");
        Records { cipher, iv }
    }

    fn nonce(&self, seq: u64) -> ChachaNonce {
        ChachaNonce::from(Nonce::new(&self.iv, seq).0)
    }
}

impl MessageEncrypter for Records {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&msg.typ.to_array());
        let aad = make_tls13_aad(total_len);
        let tag = self
            .cipher
            .encrypt_inout_detached(&self.nonce(seq), &aad, payload.as_mut().into())
            .map_err(|_| Error::EncryptError)?;
        payload.extend_from_slice(&tag);
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            // RFC 8446 5.1: TLS 1.3 records carry TLS 1.2 as their legacy version.
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + TAG_LEN
    }
}

impl MessageDecrypter for Records {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let payload = &mut msg.payload;
        let len = payload.len();
        if len < TAG_LEN {
            return Err(Error::DecryptError);
        }
        let aad = make_tls13_aad(len);
        let plain_len = len - TAG_LEN;
        let tag = Tag::try_from(&payload[plain_len..]).map_err(|_| Error::DecryptError)?;
        self.cipher
            .decrypt_inout_detached(
                &self.nonce(seq),
                &aad,
                (&mut payload[..plain_len]).into(),
                &tag,
            )
            .map_err(|_| Error::DecryptError)?;
        payload.truncate(plain_len);
        msg.into_tls13_unpadded_message()
    }
}

/// Ephemeral ECDH on P-256.
#[derive(Debug)]
struct Secp256r1;

impl SupportedKxGroup for Secp256r1 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let secret = random_scalar().map_err(|_| Error::FailedToGetRandomBytes)?;
        let public = p256::PublicKey::from_secret_scalar(&secret);
        Ok(Box::new(Secp256r1Exchange {
            secret,
            public: public.to_encoded_point(false).as_bytes().to_vec(),
        }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

struct Secp256r1Exchange {
    secret: p256::NonZeroScalar,
    public: Vec<u8>,
}

impl ActiveKeyExchange for Secp256r1Exchange {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        // RFC 8446 4.2.8.2: uncompressed points only.
        if peer.first() != Some(&4) {
            return Err(Error::from(rustls::PeerMisbehaved::InvalidKeyShare));
        }
        let peer = p256::PublicKey::from_sec1_bytes(peer)
            .map_err(|_| Error::from(rustls::PeerMisbehaved::InvalidKeyShare))?;
        let shared = p256::ecdh::diffie_hellman(self.secret, peer.as_affine());
        Ok(SharedSecret::from(&shared.raw_secret_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

/// A uniformly random non-zero P-256 scalar (rejection sampling: a draw of 32 random bytes is
/// out of range with probability about 2^-32).
pub fn random_scalar() -> Result<p256::NonZeroScalar, crate::random::NoEntropy> {
    loop {
        let mut bytes = p256::FieldBytes::default();
        crate::random::fill(&mut bytes)?;
        if let Some(scalar) = Option::from(p256::NonZeroScalar::from_repr(bytes)) {
            return Ok(scalar);
        }
    }
}

/// ECDSA with P-256 and SHA-256, for certificates and the server's CertificateVerify.
#[derive(Debug)]
struct EcdsaP256Sha256;

/// ECDSA P-256 with SHA-256: the one signature algorithm this provider verifies (also for
/// certificates checked outside a handshake, with webpki).
pub static ECDSA_P256_SHA256: &dyn SignatureVerificationAlgorithm = &EcdsaP256Sha256;

impl SignatureVerificationAlgorithm for EcdsaP256Sha256 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key =
            p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let signature =
            p256::ecdsa::DerSignature::try_from(signature).map_err(|_| InvalidSignature)?;
        key.verify(message, &signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P256
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA256
    }
}

/// The provider's randomness: [`crate::random::fill`].
#[derive(Debug)]
struct Random;

impl SecureRandom for Random {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        crate::random::fill(buf).map_err(|_| GetRandomFailed)
    }
}

/// No client keys (see the module's documentation).
#[derive(Debug)]
struct NoKeys;

impl KeyProvider for NoKeys {
    fn load_private_key(
        &self,
        _key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, Error> {
        Err(Error::General("this TLS client has no client keys".into()))
    }
}
