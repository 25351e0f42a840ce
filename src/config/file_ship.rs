//! The schema of `[access_log.shipping]` (see `file.rs` for the rest).

use serde::Deserialize;

/// `[access_log.shipping]`: sealed log files uploaded to S3-compatible object storage.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShippingSection {
    /// The endpoint, e.g. `https://oss-cn-hangzhou.aliyuncs.com`.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Signing region, e.g. `cn-hangzhou`.
    pub region: String,
    /// Prepended to each object key, e.g. `edge-bj-1/`. Default: none.
    #[serde(default)]
    pub prefix: String,
    /// Path-style URLs (`endpoint/bucket/key`; MinIO and most test servers) rather than
    /// virtual-hosted ones (`bucket.endpoint/key`; OSS, COS, S3). Default false.
    #[serde(default)]
    pub path_style: bool,
    /// File with the access key id on its first line and the secret on its second.
    pub credentials_file: String,
}
