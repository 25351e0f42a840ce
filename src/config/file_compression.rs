//! `[sites.compression]` of the config file: the serde side of response compression (compiled
//! by `config/compression.rs`).

use serde::Deserialize;

/// `[sites.compression]`
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CompressionSection {
    /// Codings offered, `gzip`, `br`, `zstd`; among those a client likes equally, the first.
    #[serde(default = "default_codings")]
    pub encodings: Vec<String>,
    /// Media types compressed; `text/*` for a whole type.
    #[serde(default = "default_compressed_types")]
    pub types: Vec<String>,
    /// Responses whose `Content-Length` is under this many bytes are sent as they are.
    #[serde(default = "default_compress_min_bytes")]
    pub min_bytes: u64,
    /// gzip level, 1-9.
    #[serde(default = "default_gzip_level")]
    pub gzip_level: u32,
    /// Brotli quality, 0-11.
    #[serde(default = "default_brotli_level")]
    pub brotli_level: u32,
    /// zstd level, 1-19.
    #[serde(default = "default_zstd_level")]
    pub zstd_level: u32,
}

/// Codings offered, best first: zstd and Brotli are smaller than gzip at a like CPU cost.
pub const DEFAULT_CODINGS: [&str; 3] = ["zstd", "br", "gzip"];
/// Text types worth compressing (images, video and archives are compressed already).
pub const DEFAULT_COMPRESSED_TYPES: [&str; 8] = [
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/wasm",
    "application/manifest+json",
    "image/svg+xml",
    "application/grpc-web-text",
];
/// Under this a coding's own framing eats most of the saving.
pub const DEFAULT_COMPRESS_MIN_BYTES: u64 = 1024;
/// gzip level: nginx's users' common choice, most of level 9's saving at a third of its CPU.
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
/// Brotli quality for on-the-fly compression (11 is for files compressed ahead).
pub const DEFAULT_BROTLI_LEVEL: u32 = 4;
/// zstd's own default level.
pub const DEFAULT_ZSTD_LEVEL: u32 = 3;

fn default_codings() -> Vec<String> {
    DEFAULT_CODINGS.map(String::from).to_vec()
}

fn default_compressed_types() -> Vec<String> {
    DEFAULT_COMPRESSED_TYPES.map(String::from).to_vec()
}

fn default_compress_min_bytes() -> u64 {
    DEFAULT_COMPRESS_MIN_BYTES
}

fn default_gzip_level() -> u32 {
    DEFAULT_GZIP_LEVEL
}

fn default_brotli_level() -> u32 {
    DEFAULT_BROTLI_LEVEL
}

fn default_zstd_level() -> u32 {
    DEFAULT_ZSTD_LEVEL
}
