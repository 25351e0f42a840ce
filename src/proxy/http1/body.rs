//! Where a response body ends as it passes through: by length, by chunked framing (followed
//! strictly, as the bytes go on unchanged), or at the backend's close.

use super::response::Framing;

/// Longest chunk extension or trailer line.
const MAX_LINE: usize = 4096;

/// A field-name character (RFC 9110 5.6.2).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Follows chunked framing over the bytes that pass through, to find where the body ends.
/// Strict, as the bytes go on to the client unchanged: CRLF line ends only, hex sizes of at
/// most 15 significant digits, extensions and trailer fields without control bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum Chunks {
    /// In a size line: its value so far, significant digits, whether a digit was seen.
    Size {
        value: u64,
        digits: u8,
        seen: bool,
    },
    /// After the size: whitespace, then `;` or CRLF.
    SizeEnd {
        size: u64,
    },
    /// In a chunk extension: its length so far (at most `MAX_LINE`).
    Ext {
        size: u64,
        len: u16,
    },
    /// The size line's CR is in; its LF is due.
    SizeLf {
        size: u64,
    },
    Data(u64),
    /// A chunk's data is in; its CR is due.
    DataCr,
    DataLf,
    /// In the trailer section: the current line's length, whether its colon and its CR are in.
    Trailer {
        line: usize,
        colon: bool,
        cr: bool,
    },
    Done,
}

/// Chunk framing that breaks the rules (a size line, an extension, a line end or a trailer
/// field): the body cannot be delimited, so the connection cannot be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) struct BadFraming;

impl Chunks {
    fn new() -> Self {
        Chunks::Size {
            value: 0,
            digits: 0,
            seen: false,
        }
    }

    /// Consumes the part of `buf` that belongs to the body: `(bytes, payload bytes)`; `Err` on a
    /// framing error.
    #[cfg(test)]
    fn advance(&mut self, buf: &[u8]) -> Result<(usize, usize), BadFraming> {
        self.advance_with(buf, |_| {})
    }

    /// As `advance`, handing each run of payload in `buf` to `data`.
    fn advance_with(
        &mut self,
        buf: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<(usize, usize), BadFraming> {
        let mut i = 0;
        let mut payload = 0;
        while i < buf.len() {
            if let Chunks::Data(left) = self {
                let take = (*left).min((buf.len() - i) as u64);
                data(i..i + take as usize);
                i += take as usize;
                payload += take as usize;
                *left -= take;
                if *left == 0 {
                    *self = Chunks::DataCr;
                }
                continue;
            }
            if *self == Chunks::Done {
                break;
            }
            *self = self.step(buf[i])?;
            i += 1;
        }
        Ok((i, payload))
    }

    /// Where the framing stands after the byte `b` (not a chunk's data).
    fn step(self, b: u8) -> Result<Chunks, BadFraming> {
        let control = (b < 0x20 && b != b'\t') || b == 0x7f;
        Ok(match self {
            Chunks::Size {
                value,
                digits,
                seen,
            } => size_byte(value, digits, seen, b)?,
            Chunks::SizeEnd { size } => match b {
                b' ' | b'\t' => Chunks::SizeEnd { size },
                b';' => Chunks::Ext { size, len: 0 },
                b'\r' => Chunks::SizeLf { size },
                _ => return Err(BadFraming),
            },
            Chunks::Ext { size, len } => match b {
                b'\r' => Chunks::SizeLf { size },
                _ if control || usize::from(len) >= MAX_LINE => return Err(BadFraming),
                _ => Chunks::Ext { size, len: len + 1 },
            },
            Chunks::SizeLf { size: 0 } if b == b'\n' => Chunks::Trailer {
                line: 0,
                colon: false,
                cr: false,
            },
            Chunks::SizeLf { size } if b == b'\n' => Chunks::Data(size),
            Chunks::DataCr if b == b'\r' => Chunks::DataLf,
            Chunks::DataLf if b == b'\n' => Chunks::new(),
            Chunks::Trailer {
                line,
                colon,
                cr: false,
            } => trailer_byte(line, colon, b, control)?,
            Chunks::Trailer {
                line: 0, cr: true, ..
            } if b == b'\n' => Chunks::Done,
            Chunks::Trailer { cr: true, .. } if b == b'\n' => Chunks::Trailer {
                line: 0,
                colon: false,
                cr: false,
            },
            _ => return Err(BadFraming),
        })
    }
}

/// A byte of a chunk-size line: a hex digit (at most 15 significant ones), or what ends the
/// size (whitespace, `;` or CR) once a digit was seen.
fn size_byte(value: u64, digits: u8, seen: bool, b: u8) -> Result<Chunks, BadFraming> {
    Ok(match ((b as char).to_digit(16), seen, b) {
        (Some(d), _, _) => {
            let digits = digits + u8::from(value > 0 || d > 0);
            if digits > 15 {
                return Err(BadFraming);
            }
            Chunks::Size {
                value: value * 16 + u64::from(d),
                digits,
                seen: true,
            }
        }
        (None, true, b' ' | b'\t') => Chunks::SizeEnd { size: value },
        (None, true, b';') => Chunks::Ext {
            size: value,
            len: 0,
        },
        (None, true, b'\r') => Chunks::SizeLf { size: value },
        _ => return Err(BadFraming),
    })
}

/// A byte of a trailer line before its CR. A trailer line is a field: a token, a colon, a
/// value (so that no request line can hide in the trailer section).
fn trailer_byte(line: usize, colon: bool, b: u8, control: bool) -> Result<Chunks, BadFraming> {
    Ok(match b {
        b'\r' if line == 0 || colon => Chunks::Trailer {
            line,
            colon,
            cr: true,
        },
        b':' if line > 0 && !colon => Chunks::Trailer {
            line: line + 1,
            colon: true,
            cr: false,
        },
        _ if control || line >= MAX_LINE => return Err(BadFraming),
        _ if !colon && !is_token(b) => return Err(BadFraming),
        _ => Chunks::Trailer {
            line: line + 1,
            colon,
            cr: false,
        },
    })
}

/// Where a response body stands.
pub(in crate::proxy) enum Body {
    Done,
    Length(u64),
    Chunked(Chunks),
    UntilClose,
}

impl Body {
    pub(in crate::proxy) fn new(framing: Framing) -> Self {
        match framing {
            Framing::None | Framing::Length(0) => Body::Done,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(Chunks::new()),
            Framing::UntilClose => Body::UntilClose,
        }
    }

    pub(in crate::proxy) fn is_done(&self) -> bool {
        matches!(self, Body::Done)
    }

    /// How many bytes at the start of `buf` belong to the body (the rest would be the
    /// backend's next message, which it should not have sent), and how many of those are
    /// payload (not chunk framing); each run of payload in `buf` goes to `data` (what an
    /// HTTP/2 client gets of a chunked body, what the edge cache stores).
    pub(in crate::proxy) fn take_with(
        &mut self,
        buf: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<(usize, usize), BadFraming> {
        match self {
            Body::Done => Ok((0, 0)),
            Body::Length(left) => {
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                if *left == 0 {
                    *self = Body::Done;
                }
                data(0..n as usize);
                Ok((n as usize, n as usize))
            }
            Body::Chunked(chunks) => {
                let taken = chunks.advance_with(buf, data)?;
                if *chunks == Chunks::Done {
                    *self = Body::Done;
                }
                Ok(taken)
            }
            Body::UntilClose => {
                data(0..buf.len());
                Ok((buf.len(), buf.len()))
            }
        }
    }
}

/// A chunked body read whole and read in two parts (split where its first byte says) ends at
/// the same place with the same payload (`crate::fuzz`).
pub(in crate::proxy) fn fuzz_chunked(data: &[u8]) {
    let read = |parts: &[&[u8]]| {
        let mut body = Body::new(Framing::Chunked);
        let (mut used, mut payload) = (0, Vec::new());
        for part in parts {
            let (n, count) = body.take_with(part, |r| payload.extend_from_slice(&part[r]))?;
            assert!(n <= part.len());
            used += n;
            if body.is_done() {
                break;
            }
            assert_eq!(n, part.len(), "an unfinished body takes all it is given");
            let _ = count;
        }
        Ok::<_, BadFraming>((used, payload, body.is_done()))
    };
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let whole = read(&[data]);
    let split = read(&[&data[..cut], &data[cut..]]);
    if let Ok(whole) = &whole {
        assert_eq!(Ok(whole), split.as_ref(), "split at {cut}");
    }
}

/// Appends body bytes for the client: as they are, or as one chunk.
pub(in crate::proxy) fn push_body(out: &mut Vec<u8>, data: &[u8], rechunk: bool) {
    if !rechunk {
        out.extend_from_slice(data);
        return;
    }
    if data.is_empty() {
        return;
    }
    let mut size = [0u8; 16];
    let digits = hex_digits(data.len(), &mut size);
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn hex_digits(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_framing_ends_after_the_trailer_however_it_is_split() {
        let body = b"5;ext=1\r\nhello\r\n006 \r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        let mut c = Chunks::new();
        assert_eq!(c.advance(body), Ok((end, 11)));
        assert_eq!(c, Chunks::Done);
        for cut in 1..end {
            let mut c = Chunks::new();
            let (a, pa) = c.advance(&body[..cut]).expect("valid framing");
            assert_eq!(a, cut, "all of a partial body is body");
            let (b, pb) = c.advance(&body[cut..]).expect("valid framing");
            assert_eq!((a + b, pa + pb), (end, 11), "split at {cut}");
            assert_eq!(c, Chunks::Done);
        }
    }

    #[test]
    fn the_payload_runs_of_a_chunked_body_are_its_data() {
        let body = b"5;ext=1\r\nhello\r\n006 \r\n world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for cut in 1..body.len() {
            let mut b = Body::new(Framing::Chunked);
            let mut payload = Vec::new();
            for part in [&body[..cut], &body[cut..]] {
                b.take_with(part, |r| payload.extend_from_slice(&part[r]))
                    .expect("valid framing");
            }
            assert_eq!(payload, b"hello world", "split at {cut}");
            assert!(b.is_done());
        }
    }

    #[test]
    fn chunked_framing_is_strict() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"1\r2\r\nx\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\n",
            b"5;a\x01b\r\n",
            b"1234567890abcdef0\r\n",
            b"0\r\nx: 1\n\r\n",
            b"0\r\nGET /blocked HTTP/1.1\r\n\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
        ] {
            let mut c = Chunks::new();
            assert!(
                c.advance(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Leading zeros do not count against the length limit.
        let mut c = Chunks::new();
        assert!(c.advance(b"00000000000000000005\r\nhello\r\n").is_ok());
    }

    #[test]
    fn chunks_are_sized_in_hex() {
        let mut out = Vec::new();
        push_body(&mut out, &[b'x'; 26], true);
        assert_eq!(&out[..4], b"1a\r\n");
        assert!(out.ends_with(b"x\r\n"));
        out.clear();
        push_body(&mut out, b"", true);
        assert!(
            out.is_empty(),
            "an empty read is no chunk: 0 would end the body"
        );
        push_body(&mut out, b"ab", false);
        assert_eq!(out, b"ab");
    }
}
