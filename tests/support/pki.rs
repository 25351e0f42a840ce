//! Test PKI made with rcgen at test time: CAs, intermediates and leaves of every kind the
//! approved-CA checks must accept or refuse. Shared by the integration tests and the demo
//! certificate generator (`examples/demo_certs.rs`).
#![allow(dead_code)]

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// A certificate authority (root or intermediate).
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// PEM of its certificate.
    pub pem: String,
}

/// A leaf certificate with its key.
pub struct Leaf {
    /// PEM of the leaf alone.
    pub pem: String,
    /// PEM of its private key (PKCS#8).
    pub key_pem: String,
    /// Serial number, as given.
    pub serial: u64,
}

/// What a leaf looks like.
#[derive(Clone)]
pub struct LeafSpec {
    pub dns: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
    pub serial: u64,
    /// Not-before and not-after, in days from now.
    pub valid: (i64, i64),
    pub rsa: bool,
}

impl LeafSpec {
    pub fn new(dns: &[&str], serial: u64) -> Self {
        Self {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ips: vec![],
            serial,
            valid: (-1, 365),
            rsa: false,
        }
    }
    pub fn valid(mut self, from_days: i64, to_days: i64) -> Self {
        self.valid = (from_days, to_days);
        self
    }
    pub fn rsa(mut self) -> Self {
        self.rsa = true;
        self
    }
    pub fn ip(mut self, ip: &str) -> Self {
        self.ips.push(ip.parse().expect("test IP"));
        self
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "menshen tests");
    dn
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2045, 1, 1);
    params
}

impl Ca {
    /// A self-signed root.
    pub fn root(cn: &str) -> Ca {
        let params = ca_params(cn);
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("self-sign CA").pem();
        Ca { params, key, pem }
    }

    /// An intermediate issued by this CA.
    pub fn intermediate(&self, cn: &str) -> Ca {
        let params = ca_params(cn);
        let key = KeyPair::generate().expect("intermediate key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let pem = params
            .signed_by(&key, &issuer)
            .expect("sign intermediate")
            .pem();
        Ca { params, key, pem }
    }

    /// A client certificate (TLS client authentication) for `cn`, valid from yesterday for a
    /// year.
    pub fn issue_client(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name = name(cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let key = KeyPair::generate().expect("client key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let pem = params.signed_by(&key, &issuer).expect("sign client").pem();
        Leaf {
            pem,
            key_pem: key.serialize_pem(),
            serial: 0,
        }
    }

    /// A leaf for `spec` whose Authority Information Access names the OCSP responder `url`.
    pub fn issue_with_ocsp(&self, spec: &LeafSpec, url: &str) -> Leaf {
        use der::Encode;
        use x509_cert::ext::pkix::name::GeneralName;
        use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};
        let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
            access_method: der::oid::db::rfc5912::ID_AD_OCSP,
            access_location: GeneralName::UniformResourceIdentifier(
                der::asn1::Ia5String::new(url).expect("URL"),
            ),
        }]);
        let content = aia.to_der().expect("AIA");
        // id-pe-authorityInfoAccess
        let oid = [1, 3, 6, 1, 5, 5, 7, 1, 1];
        self.issue_with(spec, |params| {
            let aia = rcgen::CustomExtension::from_oid_content(&oid, content);
            params.custom_extensions.push(aia);
        })
    }

    /// The CA's private key, PKCS#8 DER (to sign OCSP responses with).
    pub fn key_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    /// The CA's private key, PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Signs a CSR as a CA would (`menshen certs request`'s): the leaf PEM, for the hosts the
    /// CSR asks for, valid from yesterday for `days`.
    pub fn sign_csr(&self, csr_pem: &str, serial: u64, days: i64) -> String {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).expect("CSR");
        csr.params.serial_number = Some(SerialNumber::from(serial));
        csr.params.is_ca = IsCa::ExplicitNoCa;
        csr.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        csr.params.not_before = now - time::Duration::days(1);
        csr.params.not_after = now + time::Duration::days(days);
        let issuer = Issuer::from_params(&self.params, &self.key);
        csr.signed_by(&issuer).expect("sign CSR").pem()
    }

    /// A leaf issued by this CA.
    pub fn issue(&self, spec: &LeafSpec) -> Leaf {
        self.issue_with(spec, |_| {})
    }

    /// A leaf issued by this CA, its parameters changed by `edit` first.
    fn issue_with(&self, spec: &LeafSpec, edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let (mut params, key) = leaf_params(spec);
        edit(&mut params);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let pem = params.signed_by(&key, &issuer).expect("sign leaf").pem();
        Leaf {
            pem,
            key_pem: key.serialize_pem(),
            serial: spec.serial,
        }
    }
}

fn leaf_params(spec: &LeafSpec) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(spec.dns.clone()).expect("leaf params");
    for ip in &spec.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.distinguished_name = name(spec.dns.first().map_or("leaf", |s| s.as_str()));
    params.serial_number = Some(SerialNumber::from(spec.serial));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(spec.valid.0);
    params.not_after = now + time::Duration::days(spec.valid.1);
    let key = if spec.rsa {
        // ring cannot generate RSA keys; openssl can.
        KeyPair::from_pem(&openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ]))
        .expect("RSA key")
    } else {
        KeyPair::generate().expect("leaf key")
    };
    (params, key)
}

/// A self-signed leaf (no CA at all).
pub fn self_signed(spec: &LeafSpec) -> Leaf {
    let (params, key) = leaf_params(spec);
    let pem = params.self_signed(&key).expect("self-sign leaf").pem();
    Leaf {
        pem,
        key_pem: key.serialize_pem(),
        serial: spec.serial,
    }
}

/// Runs `openssl ARGS` and returns its stdout.
fn openssl(args: &[&str]) -> String {
    openssl_with_input(args, "")
}

fn openssl_with_input(args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("feed openssl");
    let out = child.wait_with_output().expect("openssl output");
    assert!(out.status.success(), "openssl {args:?} failed");
    String::from_utf8(out.stdout).expect("PEM is text")
}

/// A PKCS#8 key in its traditional form: PKCS#1 for RSA, SEC1 for EC.
pub fn traditional_key_pem(pkcs8_pem: &str, rsa: bool) -> String {
    let args: &[&str] = if rsa {
        &["rsa", "-traditional"]
    } else {
        &["ec"]
    };
    openssl_with_input(args, pkcs8_pem)
}

/// A fresh private key, PEM (for key-mismatch cases).
pub fn other_key_pem() -> String {
    KeyPair::generate().expect("key").serialize_pem()
}
