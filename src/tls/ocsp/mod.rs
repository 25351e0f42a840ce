//! OCSP stapling: every served certificate with a response gets it stapled to its handshakes,
//! so clients (browsers and WeChat in mainland China, which often cannot reach a foreign CA's
//! responder in time) need not ask the CA themselves.
//!
//! `verify` judges a response, `fetch` asks the certificate's responder, `stapler` runs both on
//! a thread of its own and leaves its result in each certificate's [`Ocsp`] slot, which the
//! certificate resolver reads at each handshake (a response past its nextUpdate is never
//! stapled). A response comes from `NAME.ocsp` beside `NAME.crt` (DER, for operators who fetch
//! by hand) or else from the responder named in the certificate.

pub mod fetch;
pub mod stapler;
pub mod verify;

pub use super::staple::{CertState, Ocsp, OcspSettings, Source, Verified};
