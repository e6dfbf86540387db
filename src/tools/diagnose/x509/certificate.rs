//! A certificate as Go's `crypto/x509` sees it: the fields `Certificate.Verify` reads, filled
//! the way golang/go src/crypto/x509/parser.go (`parseCertificate`, `processExtensions`,
//! `parsePublicKey`) fills them, and a `CertPool` (src/crypto/x509/cert_pool.go). Parsing
//! itself is x509-parser's; where Go would refuse to parse a certificate, this does not try to
//! say so in Go's words.

use std::net::IpAddr;

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::{AlgorithmIdentifier, X509Name};

/// `x509.PublicKeyAlgorithm` and the key, as far as verification needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Big-endian modulus and exponent without leading zeros, and the `RSAPublicKey` DER.
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
        der: Vec<u8>,
    },
    Ecdsa {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
    /// A key Go parses but cannot verify with (DSA, X25519, P-224 here): its Go type, as `%T`
    /// prints it.
    Other(&'static str),
    /// `Certificate.PublicKey == nil`: an algorithm Go does not know.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl PublicKey {
    /// `%T` of the Go key (`signaturePublicKeyAlgoMismatchError`, `verifyHandshakeSignature`).
    pub fn go_type(&self) -> &'static str {
        match self {
            PublicKey::Rsa { .. } => "*rsa.PublicKey",
            PublicKey::Ecdsa { .. } => "*ecdsa.PublicKey",
            PublicKey::Ed25519(_) => "ed25519.PublicKey",
            PublicKey::Other(t) => t,
            PublicKey::Unknown => "<nil>",
        }
    }

    /// `N.BitLen()` of an RSA key.
    pub fn rsa_bits(&self) -> Option<usize> {
        match self {
            PublicKey::Rsa { modulus, .. } => Some(bit_len(modulus)),
            _ => None,
        }
    }
}

/// Go's `KeyUsages` entries that matter to a TLS client: serverAuth, or anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtKeyUsage {
    pub any: bool,
    pub server_auth: bool,
    /// How many usages the extension lists, known to Go or not (`ExtKeyUsage` plus
    /// `UnknownExtKeyUsage`).
    pub count: usize,
}

/// `x509.SignatureAlgorithm`, from the certificate's outer AlgorithmIdentifier
/// (`getSignatureAlgorithmFromAI`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    Unknown,
    Md5WithRsa,
    Sha1WithRsa,
    Sha256WithRsa,
    Sha384WithRsa,
    Sha512WithRsa,
    DsaWithSha1,
    DsaWithSha256,
    EcdsaWithSha1,
    EcdsaWithSha256,
    EcdsaWithSha384,
    EcdsaWithSha512,
    Sha256WithRsaPss,
    Sha384WithRsaPss,
    Sha512WithRsaPss,
    PureEd25519,
}

/// The fields of one certificate that Go's verification reads.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub raw: Vec<u8>,
    pub raw_tbs: Vec<u8>,
    pub raw_subject: Vec<u8>,
    pub raw_issuer: Vec<u8>,
    pub raw_spki: Vec<u8>,
    /// 1, 2 or 3, as Go numbers versions.
    pub version: u32,
    /// Decimal, as `SerialNumber.String()` prints it.
    pub serial: String,
    /// `Subject.CommonName`: the last CN attribute; empty when there is none.
    pub common_name: String,
    /// `Subject.Organization`, in order.
    pub organization: Vec<String>,
    /// The subject for people (`CN=…, O=…`).
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub basic_constraints_valid: bool,
    pub is_ca: bool,
    /// -1 when the basic constraints carry no path length.
    pub max_path_len: i64,
    /// The key usage bits; 0 when the extension is absent.
    pub key_usage: u16,
    /// `None`: no extended key usage extension.
    pub ext_key_usage: Option<ExtKeyUsage>,
    pub has_san_extension: bool,
    /// The subjectAltName extension's value, for `alreadyInChain`.
    pub san_value: Option<Vec<u8>>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub authority_key_id: Vec<u8>,
    pub subject_key_id: Vec<u8>,
    /// `len(UnhandledCriticalExtensions) > 0`.
    pub unhandled_critical_extension: bool,
    pub public_key: PublicKey,
    pub signature_algorithm: SignatureAlgorithm,
    pub signature: Vec<u8>,
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_X25519: &str = "1.3.101.110";
const OID_DSA: &str = "1.2.840.10040.4.1";
const OID_P224: &str = "1.3.132.0.33";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_MGF1: &str = "1.2.840.113549.1.1.8";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_SHA512: &str = "2.16.840.1.101.3.4.2.3";
const OID_AIA: &str = "1.3.6.1.5.5.7.1.1";

impl Certificate {
    pub fn parse(der: &[u8]) -> Result<Certificate, String> {
        let (_, c) = X509Certificate::from_der(der).map_err(|e| format!("unparsable certificate: {e}"))?;
        let subject = c.subject();
        let mut cert = Certificate {
            raw: der.to_vec(),
            raw_tbs: c.tbs_certificate.as_ref().to_vec(),
            raw_subject: subject.as_raw().to_vec(),
            raw_issuer: c.issuer().as_raw().to_vec(),
            raw_spki: c.public_key().raw.to_vec(),
            version: c.version().0 + 1,
            serial: c.serial.to_string(),
            common_name: last_common_name(subject),
            organization: subject
                .iter_organization()
                .filter_map(|o| o.as_str().ok().map(str::to_owned))
                .collect(),
            subject: subject.to_string(),
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            basic_constraints_valid: false,
            is_ca: false,
            max_path_len: -1,
            key_usage: 0,
            ext_key_usage: None,
            has_san_extension: false,
            san_value: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            authority_key_id: Vec::new(),
            subject_key_id: Vec::new(),
            unhandled_critical_extension: false,
            public_key: public_key(&c),
            signature_algorithm: signature_algorithm(&c.signature_algorithm),
            signature: c.signature_value.data.to_vec(),
        };
        for ext in c.extensions() {
            let id = ext.oid.to_id_string();
            // processExtensions: what Go does not handle, it records when critical.
            let mut unhandled = false;
            match ext.parsed_extension() {
                ParsedExtension::KeyUsage(ku) => cert.key_usage = ku.flags,
                ParsedExtension::BasicConstraints(bc) => {
                    cert.basic_constraints_valid = true;
                    cert.is_ca = bc.ca;
                    cert.max_path_len = bc.path_len_constraint.map_or(-1, i64::from);
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    cert.has_san_extension = true;
                    cert.san_value = Some(ext.value.to_vec());
                    let mut handled_names = 0;
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => {
                                cert.dns_names.push((*d).to_owned());
                                handled_names += 1;
                            }
                            GeneralName::IPAddress(b) => {
                                if let Some(ip) = ip_from_bytes(b) {
                                    cert.ip_addresses.push(ip);
                                }
                                handled_names += 1;
                            }
                            GeneralName::RFC822Name(_) | GeneralName::URI(_) => handled_names += 1,
                            _ => {}
                        }
                    }
                    // A SAN with no name of the four kinds Go reads is unhandled.
                    unhandled = handled_names == 0;
                }
                ParsedExtension::ExtendedKeyUsage(e) => {
                    let count = [
                        e.any,
                        e.server_auth,
                        e.client_auth,
                        e.code_signing,
                        e.email_protection,
                        e.time_stamping,
                        e.ocsp_signing,
                    ]
                    .iter()
                    .filter(|set| **set)
                    .count()
                        + e.other.len();
                    cert.ext_key_usage = Some(ExtKeyUsage {
                        any: e.any,
                        server_auth: e.server_auth,
                        count,
                    });
                }
                ParsedExtension::AuthorityKeyIdentifier(akid) => {
                    cert.authority_key_id = akid.key_identifier.as_ref().map(|k| k.0.to_vec()).unwrap_or_default();
                }
                ParsedExtension::SubjectKeyIdentifier(skid) => cert.subject_key_id = skid.0.to_vec(),
                _ => {
                    // 2.5.29.x extensions Go parses; everything else it leaves unhandled.
                    let handled_2_5_29 = ["14", "15", "17", "19", "30", "31", "32", "33", "35", "36", "37", "54"];
                    unhandled = match id.strip_prefix("2.5.29.") {
                        Some(n) => !handled_2_5_29.contains(&n),
                        None => id != OID_AIA,
                    };
                }
            }
            if ext.critical && unhandled {
                cert.unhandled_critical_extension = true;
            }
        }
        Ok(cert)
    }

    /// What `UnknownAuthorityError` calls a candidate authority: its CN, else its first O, else
    /// `serial:` and its serial number.
    pub fn authority_name(&self) -> String {
        if !self.common_name.is_empty() {
            return self.common_name.clone();
        }
        match self.organization.first() {
            Some(o) => o.clone(),
            None => format!("serial:{}", self.serial),
        }
    }
}

fn last_common_name(name: &X509Name<'_>) -> String {
    name.iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .last()
        .unwrap_or("")
        .to_owned()
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b[start..].to_vec()
}

/// `big.Int.BitLen()` of a big-endian number.
pub fn bit_len(be: &[u8]) -> usize {
    let b = match be.iter().position(|x| *x != 0) {
        Some(i) => &be[i..],
        None => return 0,
    };
    (b.len() - 1) * 8 + (8 - b[0].leading_zeros() as usize)
}

/// parser.go `parsePublicKey`.
fn public_key(c: &X509Certificate<'_>) -> PublicKey {
    let spki = c.public_key();
    let key_bytes = spki.subject_public_key.data.as_ref();
    match spki.algorithm.algorithm.to_id_string().as_str() {
        OID_RSA => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => PublicKey::Rsa {
                modulus: strip_zeros(rsa.modulus),
                exponent: strip_zeros(rsa.exponent),
                der: key_bytes.to_vec(),
            },
            _ => PublicKey::Unknown,
        },
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some(OID_P256) => PublicKey::Ecdsa {
                    curve: Curve::P256,
                    point: key_bytes.to_vec(),
                },
                Some(OID_P384) => PublicKey::Ecdsa {
                    curve: Curve::P384,
                    point: key_bytes.to_vec(),
                },
                Some(OID_P521) => PublicKey::Ecdsa {
                    curve: Curve::P521,
                    point: key_bytes.to_vec(),
                },
                Some(OID_P224) => PublicKey::Other("*ecdsa.PublicKey"),
                _ => PublicKey::Unknown,
            }
        }
        OID_ED25519 => PublicKey::Ed25519(key_bytes.to_vec()),
        OID_X25519 => PublicKey::Other("*ecdh.PublicKey"),
        OID_DSA => PublicKey::Other("*dsa.PublicKey"),
        _ => PublicKey::Unknown,
    }
}

/// x509.go `getSignatureAlgorithmFromAI`.
pub fn signature_algorithm(ai: &AlgorithmIdentifier<'_>) -> SignatureAlgorithm {
    use SignatureAlgorithm as S;
    let oid = ai.algorithm.to_id_string();
    match oid.as_str() {
        "1.2.840.113549.1.1.4" => S::Md5WithRsa,
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => S::Sha1WithRsa,
        "1.2.840.113549.1.1.11" => S::Sha256WithRsa,
        "1.2.840.113549.1.1.12" => S::Sha384WithRsa,
        "1.2.840.113549.1.1.13" => S::Sha512WithRsa,
        "1.2.840.10040.4.3" => S::DsaWithSha1,
        "2.16.840.1.101.3.4.3.2" => S::DsaWithSha256,
        "1.2.840.10045.4.1" => S::EcdsaWithSha1,
        "1.2.840.10045.4.3.2" => S::EcdsaWithSha256,
        "1.2.840.10045.4.3.3" => S::EcdsaWithSha384,
        "1.2.840.10045.4.3.4" => S::EcdsaWithSha512,
        // RFC 8410, Section 3: the parameters MUST be absent.
        OID_ED25519 if ai.parameters.is_none() => S::PureEd25519,
        OID_RSA_PSS => pss_algorithm(ai),
        _ => S::Unknown,
    }
}

/// RSA-PSS in Go's three buckets: MGF1 with the message hash, a salt as long as the hash, the
/// default trailer.
fn pss_algorithm(ai: &AlgorithmIdentifier<'_>) -> SignatureAlgorithm {
    use x509_parser::signature_algorithm::RsaSsaPssParams;
    let Some(params) = ai.parameters.as_ref().and_then(|p| RsaSsaPssParams::try_from(p).ok()) else {
        return SignatureAlgorithm::Unknown;
    };
    let Some(hash) = params.hash_algorithm() else {
        return SignatureAlgorithm::Unknown;
    };
    let null_or_absent = hash
        .parameters
        .as_ref()
        .is_none_or(|p| p.tag() == x509_parser::asn1_rs::Tag::Null);
    let hash_oid = hash.algorithm.to_id_string();
    let mgf = match (params.mask_gen_algorithm_raw(), params.mask_gen_algorithm()) {
        (Some(_), Ok(m)) => m,
        _ => return SignatureAlgorithm::Unknown,
    };
    if !null_or_absent
        || mgf.mgf.to_id_string() != OID_MGF1
        || mgf.hash.to_id_string() != hash_oid
        || params.trailer_field() != 1
    {
        return SignatureAlgorithm::Unknown;
    }
    match (hash_oid.as_str(), params.salt_length()) {
        (OID_SHA256, 32) => SignatureAlgorithm::Sha256WithRsaPss,
        (OID_SHA384, 48) => SignatureAlgorithm::Sha384WithRsaPss,
        (OID_SHA512, 64) => SignatureAlgorithm::Sha512WithRsaPss,
        _ => SignatureAlgorithm::Unknown,
    }
}

/// `x509.CertPool`: certificates kept once each, in the order added, found by subject.
#[derive(Debug, Clone, Default)]
pub struct CertPool {
    certs: Vec<Certificate>,
}

impl CertPool {
    pub fn new() -> CertPool {
        CertPool::default()
    }

    /// `AddCert`: a certificate already in the pool (same DER) is not added twice.
    pub fn add(&mut self, cert: Certificate) {
        if !self.contains(&cert) {
            self.certs.push(cert);
        }
    }

    pub fn contains(&self, cert: &Certificate) -> bool {
        self.certs.iter().any(|c| c.raw == cert.raw)
    }

    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Certificate> {
        self.certs.iter()
    }

    /// cert_pool.go `findPotentialParents`: the certificates whose subject is `cert`'s issuer,
    /// those whose key identifiers match first, then those where only one side has one, then
    /// the rest.
    pub fn find_potential_parents(&self, cert: &Certificate) -> Vec<&Certificate> {
        let mut matching = Vec::new();
        let mut one = Vec::new();
        let mut mismatch = Vec::new();
        for candidate in self.certs.iter().filter(|c| c.raw_subject == cert.raw_issuer) {
            let skid = &candidate.subject_key_id;
            let akid = &cert.authority_key_id;
            if skid == akid {
                matching.push(candidate);
            } else if skid.is_empty() != akid.is_empty() {
                one.push(candidate);
            } else {
                mismatch.push(candidate);
            }
        }
        matching.extend(one);
        matching.extend(mismatch);
        matching
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[0, 0]), 0);
        assert_eq!(bit_len(&[1]), 1);
        assert_eq!(bit_len(&[0, 0x80, 0]), 16);
        assert_eq!(bit_len(&[0x7f, 0xff]), 15);
    }

    #[test]
    fn reads_what_go_reads_from_an_rcgen_ca() {
        let mut params = rcgen::CertificateParams::new(vec!["node-a".into()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "org");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let der = params.self_signed(&key).expect("self-signed").der().to_vec();
        let c = Certificate::parse(&der).expect("parses");
        assert_eq!(c.version, 3);
        assert_eq!(c.common_name, "");
        assert_eq!(c.authority_name(), "org");
        assert!(c.basic_constraints_valid && c.is_ca);
        assert_eq!(c.max_path_len, 1);
        assert_ne!(c.key_usage, 0);
        assert_eq!(
            c.ext_key_usage,
            Some(ExtKeyUsage {
                any: false,
                server_auth: true,
                count: 1
            })
        );
        assert_eq!(c.dns_names, ["node-a"]);
        assert!(c.has_san_extension && c.san_value.is_some());
        assert!(!c.unhandled_critical_extension);
        assert_eq!(c.signature_algorithm, SignatureAlgorithm::EcdsaWithSha256);
        assert!(matches!(c.public_key, PublicKey::Ecdsa { curve: Curve::P256, .. }));
        assert_eq!(c.raw_subject, c.raw_issuer);

        let mut pool = CertPool::new();
        pool.add(c.clone());
        pool.add(c.clone());
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.find_potential_parents(&c).len(), 1);
    }
}
