//! RFC 5929 `tls-server-end-point` channel binding: the hash of the server's end-entity
//! certificate that Exchange's Extended Protection compares with what the client saw.
//!
//! The hash function is the one the certificate's signature uses, except that MD5 and SHA-1 are
//! upgraded to SHA-256 (RFC 5929 §4.1). Signatures with no hash of their own (Ed25519, Ed448) are
//! not covered by RFC 5929; ringmaster uses SHA-256 for them, and says so.

use std::fmt;

use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_parser::oid_registry as oids;
use x509_parser::prelude::*;

/// The hash function chosen for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-256 (also for MD5, SHA-1 and hash-less signatures).
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        })
    }
}

/// A `tls-server-end-point` value: algorithm and digest. Displays as `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndPointHash {
    /// Hash function used.
    pub algorithm: HashAlg,
    /// Digest of the DER certificate.
    pub digest: Vec<u8>,
}

impl EndPointHash {
    /// The first 8 bytes as a number, never 0 (0 means "nothing seen yet" to the monitor).
    pub fn fingerprint(&self) -> u64 {
        let mut b = [0u8; 8];
        let n = self.digest.len().min(8);
        b[..n].copy_from_slice(&self.digest[..n]);
        u64::from_be_bytes(b) | 1
    }

    /// The first 8 bytes in hex, for narrow tables.
    pub fn short(&self) -> String {
        format!(
            "{}:{}…",
            self.algorithm,
            hex(&self.digest[..self.digest.len().min(8)])
        )
    }
}

impl fmt::Display for EndPointHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, hex(&self.digest))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a certificate's channel binding could not be computed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelBindingError {
    /// The bytes are not an X.509 certificate.
    #[error("not a valid X.509 certificate: {0}")]
    Parse(String),
}

/// The hash function RFC 5929 prescribes for a certificate with this signature algorithm.
pub fn hash_for_signature(sig: &AlgorithmIdentifier<'_>) -> HashAlg {
    let oid = &sig.algorithm;
    if *oid == oids::OID_PKCS1_SHA384WITHRSA || *oid == oids::OID_SIG_ECDSA_WITH_SHA384 {
        HashAlg::Sha384
    } else if *oid == oids::OID_PKCS1_SHA512WITHRSA || *oid == oids::OID_SIG_ECDSA_WITH_SHA512 {
        HashAlg::Sha512
    } else if *oid == oids::OID_PKCS1_RSASSAPSS {
        pss_hash(sig).unwrap_or(HashAlg::Sha256)
    } else {
        // SHA-256 signatures, and MD5/SHA-1 upgraded to SHA-256 (RFC 5929 §4.1), and
        // hash-less algorithms.
        HashAlg::Sha256
    }
}

/// RSASSA-PSS carries its hash in the parameters.
fn pss_hash(sig: &AlgorithmIdentifier<'_>) -> Option<HashAlg> {
    let params = sig.parameters.as_ref()?;
    let pss = x509_parser::signature_algorithm::RsaSsaPssParams::try_from(params).ok()?;
    let hash = pss.hash_algorithm_oid();
    if *hash == oids::OID_NIST_HASH_SHA384 {
        Some(HashAlg::Sha384)
    } else if *hash == oids::OID_NIST_HASH_SHA512 {
        Some(HashAlg::Sha512)
    } else {
        Some(HashAlg::Sha256)
    }
}

/// Computes `tls-server-end-point` for a DER certificate.
pub fn tls_server_end_point(cert_der: &[u8]) -> Result<EndPointHash, ChannelBindingError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| ChannelBindingError::Parse(e.to_string()))?;
    let algorithm = hash_for_signature(&cert.signature_algorithm);
    let digest = match algorithm {
        HashAlg::Sha256 => Sha256::digest(cert_der).to_vec(),
        HashAlg::Sha384 => Sha384::digest(cert_der).to_vec(),
        HashAlg::Sha512 => Sha512::digest(cert_der).to_vec(),
    };
    Ok(EndPointHash { algorithm, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let params = rcgen::CertificateParams::new(vec!["ep.test".to_string()]).expect("params");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn sha256_signed_certificate_hashes_with_sha256() {
        let der = cert_with(&rcgen::PKCS_ECDSA_P256_SHA256);
        let h = tls_server_end_point(&der).expect("hash");
        assert_eq!(h.algorithm, HashAlg::Sha256);
        assert_eq!(h.digest, Sha256::digest(&der).to_vec());
    }

    #[test]
    fn sha384_signed_certificate_hashes_with_sha384() {
        let der = cert_with(&rcgen::PKCS_ECDSA_P384_SHA384);
        let h = tls_server_end_point(&der).expect("hash");
        assert_eq!(h.algorithm, HashAlg::Sha384);
        assert_eq!(h.digest, Sha384::digest(&der).to_vec());
    }

    #[test]
    fn md5_and_sha1_signatures_upgrade_to_sha256() {
        for oid in [
            oids::OID_PKCS1_MD5WITHRSAENC,
            oids::OID_PKCS1_SHA1WITHRSA,
            oids::OID_SIG_DSA_WITH_SHA1,
        ] {
            let alg = AlgorithmIdentifier::new(oid, None);
            assert_eq!(hash_for_signature(&alg), HashAlg::Sha256);
        }
        let sha512 = AlgorithmIdentifier::new(oids::OID_PKCS1_SHA512WITHRSA, None);
        assert_eq!(hash_for_signature(&sha512), HashAlg::Sha512);
    }

    #[test]
    fn ed25519_uses_sha256() {
        let der = cert_with(&rcgen::PKCS_ED25519);
        assert_eq!(
            tls_server_end_point(&der).expect("hash").algorithm,
            HashAlg::Sha256
        );
    }

    #[test]
    fn different_certificates_differ_and_garbage_is_an_error() {
        let a = tls_server_end_point(&cert_with(&rcgen::PKCS_ECDSA_P256_SHA256)).expect("a");
        let b = tls_server_end_point(&cert_with(&rcgen::PKCS_ECDSA_P256_SHA256)).expect("b");
        assert_ne!(a, b);
        assert_ne!(a.fingerprint(), 0);
        assert!(tls_server_end_point(b"not a certificate").is_err());
        assert!(a.to_string().starts_with("sha256:"));
    }
}
