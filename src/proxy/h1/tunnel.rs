//! An upgraded connection (WebSocket, or any protocol a `101 Switching Protocols` agreed on):
//! after the 101 goes to the client, bytes are copied both ways until either side closes.
//! What each side sent early (after its head, in the same reads) goes first.

use std::time::Duration;

use bytes::BytesMut;

use super::write_out;
use crate::proxy::conn::ClientConn;
use crate::route::upstream_conn::UpstreamConn;

/// Writes the 101 head in `out` and what the backend sent after it (`up`) to the client, what
/// the client sent after its head (`input`) to the backend, then copies both ways until either
/// side is done. Bytes from the client, bytes to the client, and the error that ended it.
pub(super) async fn run(
    conn: &mut ClientConn,
    mut backend: UpstreamConn,
    out: &mut Vec<u8>,
    up: &mut BytesMut,
    input: &mut BytesMut,
    send: Option<Duration>,
) -> (u64, u64, Option<String>) {
    let early_down = up.len() as u64;
    let early_up = input.len() as u64;
    out.extend_from_slice(up);
    up.clear();
    if let Err(e) = write_out(conn, out, send).await {
        return (0, 0, Some(format!("writing the 101 response: {e}")));
    }
    if !input.is_empty() {
        if let Err(e) = backend.send_all(input).await {
            return (
                0,
                early_down,
                Some(format!("writing to the upgraded backend: {e}")),
            );
        }
        input.clear();
    }
    match tokio::io::copy_bidirectional(conn, &mut backend).await {
        Ok((from_client, to_client)) => (early_up + from_client, early_down + to_client, None),
        Err(e) => (
            early_up,
            early_down,
            Some(format!("upgraded connection: {e}")),
        ),
    }
}
