//! Public keys from policies and signature verification with them.
//!
//! cosign signs with SHA-256 for every key type unless told otherwise, and
//! policy-controller's `key.hashAlgorithm` changes the digest; sigstore-rs ties
//! P-384 to SHA-384, so the (curve, digest) pair is chosen here and handed to
//! aws-lc-rs (the same backend sigstore-rs uses). Keys are parsed once, when
//! the policy is compiled, never on the request path.

use aws_lc_rs::signature::{self, ParsedPublicKey, UnparsedPublicKey, VerificationAlgorithm};
use spki::der::Decode;
use spki::ObjectIdentifier;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The digest a signature was made over (`key.hashAlgorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-224.
    Sha224,
    /// SHA-256 (cosign's default).
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// Parses policy-controller's spelling; empty means sha256.
    pub fn parse(s: Option<&str>) -> Result<Self, KeyError> {
        match s.unwrap_or("sha256") {
            "" | "sha256" => Ok(Self::Sha256),
            "sha224" => Ok(Self::Sha224),
            "sha384" => Ok(Self::Sha384),
            "sha512" => Ok(Self::Sha512),
            other => Err(KeyError::UnknownHash(other.to_string())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha224 => "sha224",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }
}

/// The kind of a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// ECDSA on P-521.
    EcdsaP521,
    /// RSA with PKCS#1 v1.5 padding.
    Rsa,
    /// Ed25519 (signs the message itself; the hash setting does not apply).
    Ed25519,
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not PEM.
    #[error("not a PEM public key: {0}")]
    Pem(String),
    /// PEM, but not a SubjectPublicKeyInfo.
    #[error("not a public key (SubjectPublicKeyInfo): {0}")]
    Spki(String),
    /// An algorithm we do not verify.
    #[error("unsupported key type {0}")]
    UnsupportedKey(String),
    /// A hash name policy-controller would reject.
    #[error("unknown hash algorithm {0:?} (use sha224, sha256, sha384 or sha512)")]
    UnknownHash(String),
    /// A valid pair we cannot verify (e.g. P-256 with SHA-224).
    #[error("{hash} is not supported with {kind:?} keys")]
    UnsupportedCombination {
        /// The key kind.
        kind: KeyKind,
        /// The hash name.
        hash: &'static str,
    },
    /// The key bytes are malformed for their algorithm.
    #[error("malformed {kind:?} key: {reason}")]
    Malformed {
        /// The key kind.
        kind: KeyKind,
        /// What aws-lc said.
        reason: String,
    },
}

/// A parsed public key with the digest its signatures use.
#[derive(Debug)]
pub struct VerificationKey {
    kind: KeyKind,
    key: ParsedPublicKey,
    spki_der: Vec<u8>,
}

impl VerificationKey {
    /// Parses a PEM `PUBLIC KEY` and binds it to a hash algorithm.
    pub fn from_pem(pem_text: &str, hash: HashAlgorithm) -> Result<Self, KeyError> {
        let block = pem::parse(pem_text.trim()).map_err(|e| KeyError::Pem(e.to_string()))?;
        if block.tag() != "PUBLIC KEY" {
            return Err(KeyError::Pem(format!(
                "expected a PUBLIC KEY block, found {}",
                block.tag()
            )));
        }
        Self::from_spki_der(block.contents(), hash)
    }

    /// Parses a DER SubjectPublicKeyInfo and binds it to a hash algorithm.
    pub fn from_spki_der(der: &[u8], hash: HashAlgorithm) -> Result<Self, KeyError> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| KeyError::Spki(e.to_string()))?;
        let kind = match spki.algorithm.oid {
            OID_EC_PUBLIC_KEY => {
                let curve: ObjectIdentifier = spki
                    .algorithm
                    .parameters_oid()
                    .map_err(|e| KeyError::Spki(format!("EC key without curve: {e}")))?;
                match curve {
                    OID_P256 => KeyKind::EcdsaP256,
                    OID_P384 => KeyKind::EcdsaP384,
                    OID_P521 => KeyKind::EcdsaP521,
                    other => return Err(KeyError::UnsupportedKey(format!("EC curve {other}"))),
                }
            }
            OID_RSA => KeyKind::Rsa,
            OID_ED25519 => KeyKind::Ed25519,
            other => return Err(KeyError::UnsupportedKey(format!("algorithm {other}"))),
        };
        let algorithm = algorithm_for(kind, hash)?;
        // Ed25519 keys are handed to aws-lc as the raw 32-byte point.
        let bytes: &[u8] = match kind {
            KeyKind::Ed25519 => spki.subject_public_key.raw_bytes(),
            _ => der,
        };
        let key = UnparsedPublicKey::new(algorithm, bytes)
            .parse()
            .map_err(|e| KeyError::Malformed {
                kind,
                reason: e.to_string(),
            })?;
        Ok(VerificationKey {
            kind,
            key,
            spki_der: der.to_vec(),
        })
    }

    /// The DER SubjectPublicKeyInfo the key was parsed from.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Whether `signature` (raw bytes; ASN.1 DER for ECDSA) signs `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

fn algorithm_for(
    kind: KeyKind,
    hash: HashAlgorithm,
) -> Result<&'static dyn VerificationAlgorithm, KeyError> {
    use HashAlgorithm::*;
    let alg: &'static dyn VerificationAlgorithm = match (kind, hash) {
        (KeyKind::EcdsaP256, Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
        (KeyKind::EcdsaP256, Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
        (KeyKind::EcdsaP256, Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
        (KeyKind::EcdsaP384, Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
        (KeyKind::EcdsaP384, Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
        (KeyKind::EcdsaP384, Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
        (KeyKind::EcdsaP521, Sha224) => &signature::ECDSA_P521_SHA224_ASN1,
        (KeyKind::EcdsaP521, Sha256) => &signature::ECDSA_P521_SHA256_ASN1,
        (KeyKind::EcdsaP521, Sha384) => &signature::ECDSA_P521_SHA384_ASN1,
        (KeyKind::EcdsaP521, Sha512) => &signature::ECDSA_P521_SHA512_ASN1,
        (KeyKind::Rsa, Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (KeyKind::Rsa, Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (KeyKind::Rsa, Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (KeyKind::Ed25519, _) => &signature::ED25519,
        (kind, hash) => {
            return Err(KeyError::UnsupportedCombination {
                kind,
                hash: hash.name(),
            })
        }
    };
    Ok(alg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COSIGN_PUB: &str = include_str!("../../tests/fixtures/containers-image/cosign.pub");

    #[test]
    fn parses_cosign_p256_key() {
        let k = VerificationKey::from_pem(COSIGN_PUB, HashAlgorithm::Sha256).unwrap();
        assert_eq!(k.kind(), KeyKind::EcdsaP256);
    }

    /// `key.hashAlgorithm` selects the digest: an RSA signature over SHA-512
    /// verifies only with `sha512`, and P-384 follows cosign's SHA-256 default.
    #[test]
    fn hash_algorithm_is_honoured() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA512};
        let kp = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = kp.public_key().as_der().unwrap();
        let msg = b"payload";
        let mut sig = vec![0u8; kp.public_modulus_len()];
        kp.sign(&RSA_PKCS1_SHA512, &SystemRandom::new(), msg, &mut sig)
            .unwrap();
        let k512 = VerificationKey::from_spki_der(der.as_ref(), HashAlgorithm::Sha512).unwrap();
        let k256 = VerificationKey::from_spki_der(der.as_ref(), HashAlgorithm::Sha256).unwrap();
        assert_eq!(k512.kind(), KeyKind::Rsa);
        assert!(k512.verify(msg, &sig));
        assert!(!k256.verify(msg, &sig));
        assert!(!k512.verify(b"other", &sig));

        let p384 = sigil_testkit::TestKey::generate(sigil_testkit::TestKeyKind::P384).unwrap();
        let sig = p384.sign(msg);
        let default = VerificationKey::from_pem(&p384.public_pem, HashAlgorithm::Sha256).unwrap();
        let sha384 = VerificationKey::from_pem(&p384.public_pem, HashAlgorithm::Sha384).unwrap();
        assert_eq!(default.kind(), KeyKind::EcdsaP384);
        assert!(default.verify(msg, &sig));
        assert!(!sha384.verify(msg, &sig));
    }

    #[test]
    fn rejects_non_keys() {
        let err = VerificationKey::from_pem("hello", HashAlgorithm::Sha256).unwrap_err();
        assert!(matches!(err, KeyError::Pem(_)), "{err}");
        let err = HashAlgorithm::parse(Some("md5")).unwrap_err();
        assert!(err.to_string().contains("md5"));
        let err = VerificationKey::from_pem(COSIGN_PUB, HashAlgorithm::Sha224).unwrap_err();
        assert!(err.to_string().contains("sha224"), "{err}");
    }
}
