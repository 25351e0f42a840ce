//! A response body compressed as it passes (`semantics::coding` decides whether and how): each
//! run of the backend's payload goes in and is flushed out at once (a sync flush: a few bytes
//! each), so no body is held whole and a stream the backend writes a little at a time
//! (server-sent events, gRPC-web, long polls) reaches the client as it is written. Both engines
//! use it.

use std::io::Write;

use bytes::Bytes;

use crate::semantics::coding::{Coding, Compression};

/// Brotli's window (log2 bytes): 512 KiB, ngx_brotli's default; the library's 4 MiB would cost
/// each compressed response megabytes of memory for little gain on pages.
const BROTLI_WINDOW: u32 = 19;
/// Brotli's internal buffer.
const BROTLI_BUFFER: usize = 4096;

/// One body's encoder.
pub(in crate::proxy) enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// An encoder for `coding` at the site's level.
    pub(in crate::proxy) fn new(coding: Coding, site: &Compression) -> std::io::Result<Self> {
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(site.gzip_level),
            )),
            Coding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                site.brotli_level,
                BROTLI_WINDOW,
            ))),
            Coding::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                i32::try_from(site.zstd_level).unwrap_or(zstd::DEFAULT_COMPRESSION_LEVEL),
            )?),
        })
    }

    /// Compresses `data` and flushes it: everything it amounts to is moved to `out`.
    pub(in crate::proxy) fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => {
                e.write_all(data)?;
                e.flush()?
            }
            Encoder::Brotli(e) => {
                e.write_all(data)?;
                e.flush()?
            }
            Encoder::Zstd(e) => {
                e.write_all(data)?;
                e.flush()?
            }
        }
        out.append(self.ready());
        Ok(())
    }

    /// Ends the stream: the rest of the compressed bytes go to `out`.
    pub(in crate::proxy) fn finish(self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut rest = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Brotli(e) => e.into_inner(),
            Encoder::Zstd(e) => e.finish()?,
        };
        out.append(&mut rest);
        Ok(())
    }

    fn ready(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Brotli(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }
}

/// A body's bytes on their way to the client: as the backend sent them, or through the
/// encoder when the response is compressed.
pub(in crate::proxy) struct Coded(Option<Encoder>);

impl Coded {
    pub(in crate::proxy) fn new(encoder: Option<Encoder>) -> Self {
        Coded(encoder)
    }

    /// Whether the body is compressed.
    pub(in crate::proxy) fn compresses(&self) -> bool {
        self.0.is_some()
    }

    /// What goes out for `data`: itself, or what the encoder has ready after it.
    pub(in crate::proxy) fn pass(&mut self, data: Bytes) -> std::io::Result<Bytes> {
        let Some(encoder) = &mut self.0 else {
            return Ok(data);
        };
        let mut out = Vec::new();
        encoder.push(&data, &mut out)?;
        Ok(Bytes::from(out))
    }

    /// What goes out at the body's end: the rest of the compressed bytes (none when the body
    /// is not compressed).
    pub(in crate::proxy) fn end(&mut self) -> std::io::Result<Bytes> {
        let mut out = Vec::new();
        if let Some(encoder) = self.0.take() {
            encoder.finish(&mut out)?;
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn each_coding_decodes_to_the_body() {
        let site = Compression {
            codings: vec![],
            types: vec![],
            min_bytes: 0,
            gzip_level: 6,
            brotli_level: 4,
            zstd_level: 3,
        };
        let body: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        for coding in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let mut e = Encoder::new(coding, &site).expect("encoder");
            let mut out = Vec::new();
            // A server-sent event goes out when it comes in, not when the stream ends.
            let mut event = Encoder::new(coding, &site).expect("encoder");
            event.push(b"data: one\n\n", &mut out).expect("push");
            assert!(!out.is_empty(), "{coding:?}: an event is held back");
            out.clear();
            for part in body.chunks(7000) {
                e.push(part, &mut out).expect("push");
            }
            e.finish(&mut out).expect("finish");
            assert!(out.len() < body.len() / 4, "{coding:?}: {}", out.len());
            let mut back = Vec::new();
            match coding {
                Coding::Gzip => flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut back),
                Coding::Brotli => brotli::Decompressor::new(&out[..], 4096).read_to_end(&mut back),
                Coding::Zstd => zstd::stream::read::Decoder::new(&out[..])
                    .and_then(|mut d| d.read_to_end(&mut back)),
            }
            .expect("decodes");
            assert_eq!(back, body, "{coding:?}");
        }
    }
}
