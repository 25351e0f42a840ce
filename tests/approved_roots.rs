//! Checks the default approved roots in `certs/approved/`: each file holds the expected root
//! (by SHA-256 of its DER encoding), the directory holds exactly those files, and each one is
//! byte-identical to the Mozilla root shipped in `webpki-root-certs`.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// (file name, subject CN, SHA-256 of the DER certificate, uppercase hex).
#[rustfmt::skip]
const EXPECTED: [(&str, &str, &str); 12] = [
    ("cfca-ev-root.pem", "CFCA EV ROOT", "5CC3D78E4E1D5E45547A04E6873E64F90CF9536D1CCC2EF800F355C4C5FD70FD"),
    ("gdca-trustauth-r5-root.pem", "GDCA TrustAUTH R5 ROOT", "BFFF8FD04433487D6A8AA60C1A29767A9FC2BBB05E420F713A13B992891D3893"),
    ("uca-global-g2-root.pem", "UCA Global G2 Root", "9BEA11C976FE014764C1BE56A6F914B5A560317ABD9988393382E5161AA0493C"),
    ("uca-extended-validation-root.pem", "UCA Extended Validation Root", "D43AF9B35473755C9684FC06D7D8CB70EE5C28E773FB294EB41EE71722924D24"),
    ("vtrus-ecc-root-ca.pem", "vTrus ECC Root CA", "30FBBA2C32238E2A98547AF97931E550428B9B3F1C8EEB6633DCFA86C5B27DD3"),
    ("vtrus-root-ca.pem", "vTrus Root CA", "8A71DE6559336F426C26E53880D00D88A18DA4C6A91F0DCB6194E206C5C96387"),
    ("bjca-global-root-ca1.pem", "BJCA Global Root CA1", "F3896F88FE7C0A882766A7FA6AD2749FB57A7F3E98FB769C1FA7B09C2C44D5AE"),
    ("bjca-global-root-ca2.pem", "BJCA Global Root CA2", "574DF6931E278039667B720AFDC1600FC27EB66DD3092979FB73856487212882"),
    ("trustasia-global-root-ca-g3.pem", "TrustAsia Global Root CA G3", "E0D3226AEB1163C2E48FF9BE3B50B4C6431BE7BB1EACC5C36B5D5EC509039A08"),
    ("trustasia-global-root-ca-g4.pem", "TrustAsia Global Root CA G4", "BE4B56CB5056C0136A526DF444508DAA36A0B54F42E4AC38F72AF470E479654C"),
    ("trustasia-tls-ecc-root-ca.pem", "TrustAsia TLS ECC Root CA", "C0076B9EF0531FB1A656D67C4EBE97CD5DBAA41EF44598ACC2489878C92D8711"),
    ("trustasia-tls-rsa-root-ca.pem", "TrustAsia TLS RSA Root CA", "06C08D7DAFD876971EB1124FE67F847EC0C7A158D3EA53CBE940E2EA9791F4C3"),
];

fn approved_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join("approved")
}

/// Reads `certs/approved/<file>` and returns the DER of its single PEM item, which must be a
/// certificate.
fn load_der(file: &str) -> Vec<u8> {
    let path = approved_dir().join(file);
    let pem = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read approved root {}: {e}", path.display()));
    let items = rustls_pemfile::read_all(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: invalid PEM: {e}", path.display()));
    match items.as_slice() {
        [rustls_pemfile::Item::X509Certificate(der)] => der.as_ref().to_vec(),
        other => panic!(
            "{}: expected exactly one CERTIFICATE PEM block, found {} item(s): {other:?}",
            path.display(),
            other.len()
        ),
    }
}

fn sha256_hex(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

#[test]
fn each_approved_root_has_the_expected_fingerprint() {
    for (file, cn, fingerprint) in EXPECTED {
        let actual = sha256_hex(&load_der(file));
        assert_eq!(
            actual, fingerprint,
            "certs/approved/{file} should hold the root \"{cn}\" with SHA-256 {fingerprint}, \
             but its certificate has SHA-256 {actual}"
        );
    }
}

#[test]
fn approved_dir_holds_exactly_the_expected_pem_files() {
    let dir = approved_dir();
    let found: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry of certs/approved")
                .file_name()
        })
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".pem"))
        .collect();
    let expected: BTreeSet<String> = EXPECTED.iter().map(|(f, _, _)| f.to_string()).collect();
    let extra: Vec<_> = found.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&found).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{} must hold exactly the {} default approved roots; unexpected: {extra:?}, missing: {missing:?}",
        dir.display(),
        EXPECTED.len()
    );
}

#[test]
fn each_approved_root_is_byte_identical_to_a_mozilla_root() {
    for (file, cn, _) in EXPECTED {
        let der = load_der(file);
        assert!(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .any(|root| root.as_ref() == der.as_slice()),
            "certs/approved/{file} (\"{cn}\") is not byte-identical to any certificate in \
             webpki_root_certs::TLS_SERVER_ROOT_CERTS"
        );
    }
}
