//! One exhaustive map from a failed request's error to the status the client gets.
//!
//! Upstream timeouts are 504 and other upstream failures 502, as nginx users expect; a client
//! that is too slow gets 408 and a malformed request 400; a client that is gone gets nothing.

use pingora::{Error, ErrorSource, ErrorType};

/// The status to answer `e` with; 0 when there is nobody to answer.
pub fn status_for(e: &Error) -> u16 {
    use ErrorType as T;
    let upstream = matches!(e.esource(), ErrorSource::Upstream);
    let downstream = matches!(e.esource(), ErrorSource::Downstream);
    match e.etype() {
        T::HTTPStatus(code) | T::CustomCode(_, code) => *code,
        T::ConnectTimedout | T::TLSHandshakeTimedout => 504,
        T::ReadTimedout | T::WriteTimedout if upstream => 504,
        T::ReadTimedout | T::WriteTimedout if downstream => 408,
        T::ReadTimedout | T::WriteTimedout => 500,
        T::ConnectRefused
        | T::ConnectNoRoute
        | T::ConnectError
        | T::ConnectProxyFailure
        | T::TLSWantX509Lookup
        | T::TLSHandshakeFailure
        | T::InvalidCert
        | T::HandshakeError
        | T::SocketError
        | T::BindError => 502,
        T::InvalidHTTPHeader | T::H1Error | T::H2Error | T::H2Downgrade | T::InvalidH2 => {
            if upstream {
                502
            } else {
                400
            }
        }
        T::ReadError | T::WriteError | T::ConnectionClosed => {
            if upstream {
                502
            } else if downstream {
                0
            } else {
                500
            }
        }
        T::AcceptError
        | T::FileOpenError
        | T::FileCreateError
        | T::FileReadError
        | T::FileWriteError
        | T::InternalError
        | T::UnknownError
        | T::Custom(_) => {
            if upstream {
                502
            } else {
                500
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(t: ErrorType, source: ErrorSource) -> Box<Error> {
        let mut e = Error::new(t);
        e.esource = source;
        e
    }

    #[test]
    fn upstream_timeouts_are_504_and_failures_502() {
        assert_eq!(
            status_for(&err(ErrorType::ConnectTimedout, ErrorSource::Upstream)),
            504
        );
        assert_eq!(
            status_for(&err(ErrorType::ReadTimedout, ErrorSource::Upstream)),
            504
        );
        assert_eq!(
            status_for(&err(ErrorType::ConnectRefused, ErrorSource::Upstream)),
            502
        );
        assert_eq!(
            status_for(&err(ErrorType::InvalidCert, ErrorSource::Upstream)),
            502
        );
        assert_eq!(
            status_for(&err(ErrorType::H1Error, ErrorSource::Upstream)),
            502
        );
    }

    #[test]
    fn client_errors() {
        assert_eq!(
            status_for(&err(ErrorType::ReadTimedout, ErrorSource::Downstream)),
            408
        );
        assert_eq!(
            status_for(&err(ErrorType::InvalidHTTPHeader, ErrorSource::Downstream)),
            400
        );
        assert_eq!(
            status_for(&err(ErrorType::ConnectionClosed, ErrorSource::Downstream)),
            0
        );
        assert_eq!(
            status_for(&err(ErrorType::HTTPStatus(413), ErrorSource::Internal)),
            413
        );
        assert_eq!(
            status_for(&err(ErrorType::InternalError, ErrorSource::Internal)),
            500
        );
    }
}
