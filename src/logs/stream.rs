//! Response bodies fed by a task: a bounded channel of chunks, so a slow client slows the
//! reader down instead of making the gateway buffer, and a client that goes away closes the
//! channel, which ends the task.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame};
use tokio::sync::mpsc;

use crate::proxy::respond::{Body, BoxError};

/// Chunks in flight between a reader task and the connection: with [`CHUNK`], what one stream
/// buffers beyond the connection's own send buffer while its client does not read.
const DEPTH: usize = 2;
/// Bytes read from a file per blocking step: the kubelet copies logs through 32 KiB buffers.
pub const CHUNK: usize = 32 * 1024;

pub type Sender = mpsc::Sender<Result<Bytes, BoxError>>;

struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|chunk| chunk.map(Frame::data)))
    }
}

/// A body and the sender that feeds it; the body ends when every sender is dropped.
pub fn channel() -> (Sender, Body) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (tx, ChannelBody { rx }.boxed_unsync())
}

/// Streams `len` bytes of `file` from `offset`, one blocking read per chunk. A file that
/// shrinks underneath ends the body with an error, so the client sees a cut response rather
/// than a short one that looks complete.
pub fn file(file: File, offset: u64, len: u64) -> Body {
    let (tx, body) = channel();
    tokio::spawn(async move {
        let file = std::sync::Arc::new(file);
        let (mut offset, mut left) = (offset, len);
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            let f = file.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                f.read_exact_at(&mut buf, offset).map(|()| buf)
            })
            .await;
            let chunk = match read {
                Ok(Ok(buf)) => Ok(Bytes::from(buf)),
                Ok(Err(e)) => Err(BoxError::from(e)),
                Err(e) => Err(BoxError::from(e)),
            };
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
            offset += n as u64;
            left -= n as u64;
        }
    });
    body
}
