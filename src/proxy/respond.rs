//! Responses menshen writes itself: policy denials, canned responses and redirects.

use bytes::Bytes;
use http::{header, HeaderValue};
use pingora::prelude::*;
use pingora_http::ResponseHeader;

use crate::policy::Denial;
use crate::route::router::{Canned, Redirect};

async fn send(session: &mut Session, resp: ResponseHeader, body: Bytes) -> Result<bool> {
    session
        .write_response_header(Box::new(resp), body.is_empty())
        .await?;
    if !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(true)
}

/// Writes a policy denial.
pub async fn denial(session: &mut Session, d: &Denial, request_id: &HeaderValue) -> Result<bool> {
    let mut resp = ResponseHeader::build(d.status, Some(4))?;
    resp.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(header::CONTENT_LENGTH, d.body.len())?;
    resp.insert_header("x-request-id", request_id.clone())?;
    if let Some((name, value)) = &d.header {
        resp.insert_header(name.clone(), value.as_str())?;
    }
    send(session, resp, d.body.clone()).await
}

/// Writes a route's fixed response.
pub async fn canned(
    session: &mut Session,
    canned: &Canned,
    request_id: &HeaderValue,
) -> Result<bool> {
    let mut resp = ResponseHeader::build(canned.status, Some(canned.headers.len() + 2))?;
    for (name, value) in &canned.headers {
        resp.insert_header(name.clone(), value.clone())?;
    }
    resp.insert_header(header::CONTENT_LENGTH, canned.body.len())?;
    resp.insert_header("x-request-id", request_id.clone())?;
    send(session, resp, canned.body.clone()).await
}

/// Writes a route's redirect.
pub async fn redirect(
    session: &mut Session,
    redirect: &Redirect,
    request_id: &HeaderValue,
) -> Result<bool> {
    let location = if redirect.keep_path {
        let pq = session.req_header().uri.path_and_query();
        let tail = pq.map_or("/", |p| p.as_str());
        format!("{}{}", redirect.to.trim_end_matches('/'), tail)
    } else {
        redirect.to.clone()
    };
    let mut resp = ResponseHeader::build(redirect.status, Some(3))?;
    resp.insert_header(header::LOCATION, location)?;
    resp.insert_header(header::CONTENT_LENGTH, 0)?;
    resp.insert_header("x-request-id", request_id.clone())?;
    send(session, resp, Bytes::new()).await
}

/// The body of a plain error response, e.g. `502 Bad Gateway`: the same from both request paths.
pub(super) fn error_body(status: u16) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    format!("{status} {reason}\n")
}

/// Writes a plain error response for a failed request.
pub async fn error(session: &mut Session, status: u16, request_id: &HeaderValue) -> Result<bool> {
    let body = Bytes::from(error_body(status));
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(header::CONNECTION, "close")?;
    resp.insert_header("x-request-id", request_id.clone())?;
    send(session, resp, body).await
}
