//! W3C Trace Context (`traceparent`), read once for every engine: what the forwarding fields
//! pass on and what the trace export joins its spans to.

/// A well-formed `traceparent` of version 00: its trace id, parent (span) id and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// 16 bytes, not all zeros.
    pub trace_id: [u8; 16],
    /// 8 bytes, not all zeros.
    pub parent_id: [u8; 8],
    /// The trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// Reads `value`: lowercase hex fields of 2, 32, 16 and 2 digits, version 00, trace id and
    /// parent id not all zeros. None for anything else (it is then not passed on).
    pub fn parse(value: &[u8]) -> Option<Self> {
        let [version, trace, parent, flags] = fields(value)?;
        let mut out = TraceParent {
            trace_id: [0; 16],
            parent_id: [0; 8],
            flags: 0,
        };
        let mut flag = [0u8; 1];
        let ok = version == b"00"
            && unhex(trace, &mut out.trace_id)
            && unhex(parent, &mut out.parent_id)
            && unhex(flags, &mut flag);
        out.flags = flag[0];
        let zero = |s: &[u8]| s.iter().all(|&b| b == 0);
        (ok && !zero(&out.trace_id) && !zero(&out.parent_id)).then_some(out)
    }

    /// Whether the sender records this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// A `traceparent` value for `trace_id` and `span_id`, sampled: 55 bytes.
pub fn traceparent(trace_id: [u8; 16], span_id: [u8; 8]) -> [u8; 55] {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-01";
    hex(&trace_id, &mut out[3..35]);
    hex(&span_id, &mut out[36..52]);
    out
}

/// Reads a request id as a trace id: 32 lowercase hex digits, not all zeros, and its last 16
/// not all zeros either (they serve as a span id).
pub fn trace_id_of(id: &[u8]) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let zero = |s: &[u8]| s.iter().all(|&b| b == 0);
    (unhex(id, &mut out) && !zero(&out) && !zero(&out[8..])).then_some(out)
}

/// `value` split at its dashes into exactly four fields.
fn fields(value: &[u8]) -> Option<[&[u8]; 4]> {
    let mut parts = value.split(|&b| b == b'-');
    let out = [parts.next()?, parts.next()?, parts.next()?, parts.next()?];
    parts.next().is_none().then_some(out)
}

/// Decodes lowercase hex `text` into exactly `out.len()` bytes.
fn unhex(text: &[u8], out: &mut [u8]) -> bool {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    if text.len() != out.len() * 2 {
        return false;
    }
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => *o = hi << 4 | lo,
            _ => return false,
        }
    }
    true
}

/// Writes `bytes` as lowercase hex into `out` (twice as long).
fn hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_traceparents() {
        let text = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(text).expect("well formed");
        assert!(tp.sampled());
        assert_eq!(&traceparent(tp.trace_id, tp.parent_id)[..], &text[..]);
        assert!(
            TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0").is_none()
        );
        assert_eq!(trace_id_of(b"0123456789abcdef0000000000000000"), None);
        assert!(trace_id_of(b"0123456789abcdef0000000000000001").is_some());
    }
}
