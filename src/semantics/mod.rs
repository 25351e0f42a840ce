//! HTTP semantics, defined once below every protocol engine: the canonical request target and
//! Host (`target`), header fields by what a proxy does with them (`fields`), W3C Trace Context
//! (`trace_context`), content negotiation (`negotiate`) and the error pages it picks between
//! (`error_pages`). The HTTP/1 and
//! HTTP/2 engines both translate onto these.

pub mod coding;
pub mod error_pages;
pub mod fields;
pub mod negotiate;
pub mod target;
pub mod trace_context;
