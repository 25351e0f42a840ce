//! What a CA delivers, whatever its form: PEM (certificates, keys, PKCS#7), DER certificates,
//! PKCS#7 (`.p7b`) and PKCS#12 (`.pfx`/`.p12`, with a password); `install.rs` opens zip
//! downloads with `reseller.rs` and hands their entries here.
//! Everything becomes certificates and keys; which is the leaf is `plan.rs`'s question.

use cms::cert::x509::der::{Decode, Encode};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::IntakeError;
use crate::tls::chain::Facts;

/// Certificates and keys found in the delivered files.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Every certificate, in the order found, without duplicates.
    pub certs: Vec<CertificateDer<'static>>,
    /// Every private key, with where it came from.
    pub keys: Vec<(String, PrivateKeyDer<'static>)>,
    /// Passwords found beside a PKCS#12 file in a zip (`keystorePass.txt`).
    pub passwords: Vec<String>,
}

impl Delivery {
    fn add_cert(&mut self, der: CertificateDer<'static>) {
        if !self.certs.contains(&der) {
            self.certs.push(der);
        }
    }
}

/// Asks for a PKCS#12 password (from a file, the environment, or a prompt).
pub type Password<'a> = &'a dyn Fn(&str) -> Result<String, IntakeError>;

/// Reads `bytes` (the content of `source`, a file or a zip entry) into `out`.
pub fn decode(
    source: &str,
    bytes: &[u8],
    password: Password<'_>,
    out: &mut Delivery,
) -> Result<(), IntakeError> {
    let bad = |reason: String| IntakeError::File {
        file: source.into(),
        reason,
    };
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return pem(source, bytes, out);
    }
    if let Some(facts) = Facts::of(&CertificateDer::from(bytes.to_vec())) {
        out.add_cert(facts.der);
        return Ok(());
    }
    if let Some(certs) = pkcs7(bytes) {
        certs.into_iter().for_each(|c| out.add_cert(c));
        return Ok(());
    }
    if let Ok(key) = PrivateKeyDer::try_from(bytes.to_vec()) {
        if crate::tls::chain::key_spki(&key).is_some() {
            out.keys.push((source.to_owned(), key));
            return Ok(());
        }
    }
    let lower = source.to_ascii_lowercase();
    if lower.ends_with(".pfx") || lower.ends_with(".p12") || pfx_like(bytes) {
        return pkcs12(source, bytes, password, out);
    }
    Err(bad(
        "not a certificate, key or bundle menshen reads (PEM, DER, PKCS#7 .p7b, PKCS#12 \
         .pfx/.p12 or a zip): ask the CA for the nginx (PEM) download"
            .into(),
    ))
}

/// Every PEM block: certificates, private keys, PKCS#7 bundles.
fn pem(source: &str, bytes: &[u8], out: &mut Delivery) -> Result<(), IntakeError> {
    let mut found = false;
    for block in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let block = block.map_err(|e| IntakeError::File {
            file: source.into(),
            reason: format!("a PEM block is damaged ({e}): download it again"),
        })?;
        let der = block.contents;
        match block.label.as_str() {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                out.add_cert(CertificateDer::from(der));
            }
            "PKCS7" | "CMS" => match pkcs7(&der) {
                Some(certs) => certs.into_iter().for_each(|c| out.add_cert(c)),
                None => continue,
            },
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                let mut pem = bytes;
                // rustls-pemfile knows each key form; read the keys of the file once.
                if out.keys.iter().all(|(s, _)| s != source) {
                    for item in rustls_pemfile::read_all(&mut pem).flatten() {
                        let key = match item {
                            rustls_pemfile::Item::Pkcs1Key(k) => PrivateKeyDer::Pkcs1(k),
                            rustls_pemfile::Item::Pkcs8Key(k) => PrivateKeyDer::Pkcs8(k),
                            rustls_pemfile::Item::Sec1Key(k) => PrivateKeyDer::Sec1(k),
                            _ => continue,
                        };
                        out.keys.push((source.to_owned(), key));
                    }
                }
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(IntakeError::File {
                    file: source.into(),
                    reason: "the private key is encrypted: decrypt it first \
                             (openssl pkey -in KEY -out plain.key)"
                        .into(),
                })
            }
            _ => continue,
        }
        found = true;
    }
    if found {
        Ok(())
    } else {
        Err(IntakeError::File {
            file: source.into(),
            reason: "holds no certificate or private key".into(),
        })
    }
}

/// The certificates of a PKCS#7 SignedData (a `.p7b`), DER.
fn pkcs7(der: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let info = ContentInfo::from_der(der).ok()?;
    let signed: SignedData = info.content.decode_as().ok()?;
    let mut out = Vec::new();
    for choice in signed.certificates?.0.iter() {
        if let CertificateChoices::Certificate(cert) = choice {
            out.push(CertificateDer::from(cert.to_der().ok()?));
        }
    }
    Some(out)
}

/// A DER SEQUENCE starting with version 3: the shape of a PFX.
fn pfx_like(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x30) && bytes.windows(3).take(8).any(|w| w == [0x02, 0x01, 0x03])
}

fn pkcs12(
    source: &str,
    bytes: &[u8],
    password: Password<'_>,
    out: &mut Delivery,
) -> Result<(), IntakeError> {
    let mut tried: Vec<String> = out.passwords.clone();
    let mut last = String::new();
    for attempt in 0..=tried.len() {
        let pass = match tried.get(attempt) {
            Some(p) => p.clone(),
            None => password(source)?,
        };
        match p12_keystore::KeyStore::from_pkcs12(
            bytes,
            &pass,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        ) {
            Ok(store) => {
                for (_, entry) in store.entries() {
                    match entry {
                        p12_keystore::KeyStoreEntry::PrivateKeyChain(chain) => {
                            let key = PrivatePkcs8KeyDer::from(chain.key().as_der().to_vec());
                            out.keys.push((source.to_owned(), key.into()));
                            for c in chain.certs() {
                                out.add_cert(CertificateDer::from(c.as_der().to_vec()));
                            }
                        }
                        p12_keystore::KeyStoreEntry::Certificate(c) => {
                            out.add_cert(CertificateDer::from(c.as_der().to_vec()));
                        }
                        _ => {}
                    }
                }
                return Ok(());
            }
            Err(e) => last = e.to_string(),
        }
        tried.push(pass);
    }
    Err(IntakeError::File {
        file: source.into(),
        reason: format!(
            "cannot open the PKCS#12 file ({last}): check the password (--password-file, \
             MENSHEN_PFX_PASSWORD), or ask the CA for the nginx (PEM) download"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_password(_: &str) -> Result<String, IntakeError> {
        Err(IntakeError::Refused("no password".into()))
    }

    #[test]
    fn pem_with_openssl_bag_attributes_a_key_and_nothing_else_is_read() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["a.example.cn".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let key_pem = key.serialize_pem();
        // As `openssl pkcs12 -nodes` writes it: attribute lines before the blocks.
        let text = format!(
            "Bag Attributes\n    localKeyID: 01 02\nsubject=CN = a.example.cn\n{}{}",
            cert.pem(),
            key_pem
        );
        let mut out = Delivery::default();
        decode("bundle.pem", text.as_bytes(), &no_password, &mut out).expect("read");
        assert_eq!(out.certs.len(), 1);
        assert_eq!(out.keys.len(), 1);
        let e = decode(
            "x.csr",
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            &no_password,
            &mut out,
        )
        .expect_err("a CSR is not a delivery");
        assert_eq!(e.to_string(), "x.csr: holds no certificate or private key");
        let e = decode("junk.bin", b"\x01\x02", &no_password, &mut out).expect_err("junk");
        assert!(e
            .to_string()
            .starts_with("junk.bin: not a certificate, key or bundle"));
    }
}
