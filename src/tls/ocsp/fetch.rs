//! Asking a certificate's OCSP responder: the responder's URL from the certificate's Authority
//! Information Access, a request for its certID (SHA-1, as RFC 5019 responders expect), and an
//! HTTP POST, through the configured HTTP proxy when there is one. Blocking: it runs on the
//! stapler's own thread, never on the data path.

use std::time::Duration;

use der::oid::db::rfc5912::{ID_AD_OCSP, ID_PE_AUTHORITY_INFO_ACCESS, ID_SHA_1};
use der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::AuthorityInfoAccessSyntax;
use x509_cert::Certificate;
use x509_ocsp::{OcspRequest, Request, TbsRequest};

use super::verify::cert_id;

/// Largest response read.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// The first OCSP responder URL in `leaf`'s Authority Information Access, if any.
pub fn responder_url(leaf: &Certificate) -> Option<String> {
    let extensions = leaf.tbs_certificate.extensions.iter().flatten();
    let aia = extensions
        .filter(|e| e.extn_id == ID_PE_AUTHORITY_INFO_ACCESS)
        .find_map(|e| AuthorityInfoAccessSyntax::from_der(e.extn_value.as_bytes()).ok())?;
    aia.0
        .iter()
        .find_map(|access| match &access.access_location {
            GeneralName::UniformResourceIdentifier(uri) if access.access_method == ID_AD_OCSP => {
                Some(uri.to_string())
            }
            _ => None,
        })
}

/// The DER of an OCSP request for `leaf` issued by `issuer`.
pub fn request(leaf: &Certificate, issuer: &Certificate) -> Result<Vec<u8>, String> {
    let id = cert_id(leaf, issuer, ID_SHA_1).ok_or("cannot hash the issuer")?;
    let request = OcspRequest {
        tbs_request: TbsRequest {
            request_list: vec![Request {
                req_cert: id,
                single_request_extensions: None,
            }],
            ..TbsRequest::default()
        },
        optional_signature: None,
    };
    request.to_der().map_err(|e| e.to_string())
}

/// POSTs `request` to `url` (through `proxy`, an `http://host:port` URL, when given) and
/// returns the response body.
pub fn post(
    url: &str,
    request: &[u8],
    proxy: Option<&str>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let proxy = match proxy {
        Some(p) => Some(ureq::Proxy::new(p).map_err(|e| format!("proxy {p:?}: {e}"))?),
        None => None,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .proxy(proxy)
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(url)
        .header("content-type", "application/ocsp-request")
        .send(request)
        .map_err(|e| format!("{url}: {e}"))?;
    if response.status() != 200 {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))
}
