//! Tolerance for clients that send a URL as the HTTP/2 `:authority`.
//!
//! etcdctl 3.4 dials each endpoint given with a scheme (`http://127.0.0.1:2379`, which is also
//! what `--cluster` takes from MemberList) as a gRPC target whose authority is the whole URL.
//! etcd's server ignores the authority; the HTTP/2 server under tonic rejects such a request
//! as malformed (RST_STREAM PROTOCOL_ERROR), so `etcdctl endpoint status` failed. This wrapper
//! sits between the socket and the HTTP/2 server and rewrites, in the client's header blocks,
//! an `:authority` literal of the form `scheme://host:port[/...]` into
//! `scheme--@host:port` padded to the same length: a valid authority (the part before `@` is
//! user info, which nobody reads) of equal size, so the HPACK dynamic tables of the client and
//! the server stay in step. Everything else passes through unchanged; a connection that does
//! not start with the HTTP/2 preface is passed through untouched.

use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Larger HEADERS frames are passed on as they are (the server refuses them anyway).
const MAX_HEADERS_FRAME: usize = 64 * 1024;
/// Longest authority value looked at.
const MAX_AUTHORITY: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Preface,
    FrameHeader,
    /// Payload bytes of a frame being passed on.
    Payload(usize),
    /// Not HTTP/2 (or given up): bytes pass unchanged.
    Passthrough,
}

/// The inbound byte stream transformer, independent of any socket.
#[derive(Debug)]
pub struct Rewriter {
    state: State,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self {
            state: State::Preface,
        }
    }
}

impl Rewriter {
    /// Moves what can be decided from `input` to `output`, rewriting header blocks; leaves
    /// an incomplete frame header or HEADERS frame in `input`.
    pub fn process(&mut self, input: &mut BytesMut, output: &mut BytesMut) {
        loop {
            match self.state {
                State::Passthrough => {
                    output.extend_from_slice(&input.split());
                    return;
                }
                State::Preface => {
                    let n = input.len().min(PREFACE.len());
                    if input[..n] != PREFACE[..n] {
                        self.state = State::Passthrough;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return;
                    }
                    output.extend_from_slice(&input.split_to(n));
                    self.state = State::FrameHeader;
                }
                State::FrameHeader => {
                    if input.len() < FRAME_HEADER {
                        return;
                    }
                    let len = (usize::from(input[0]) << 16)
                        | (usize::from(input[1]) << 8)
                        | usize::from(input[2]);
                    let (kind, flags) = (input[3], input[4]);
                    let whole =
                        kind == HEADERS && flags & END_HEADERS != 0 && len <= MAX_HEADERS_FRAME;
                    if whole {
                        if input.len() < FRAME_HEADER + len {
                            return;
                        }
                        let frame = input.split_to(FRAME_HEADER + len);
                        match rewrite_headers_frame(&frame) {
                            Some(fixed) => output.extend_from_slice(&fixed),
                            None => output.extend_from_slice(&frame),
                        }
                    } else {
                        output.extend_from_slice(&input.split_to(FRAME_HEADER));
                        self.state = State::Payload(len);
                    }
                }
                State::Payload(left) => {
                    let n = left.min(input.len());
                    output.extend_from_slice(&input.split_to(n));
                    if n < left {
                        self.state = State::Payload(left - n);
                        return;
                    }
                    self.state = State::FrameHeader;
                }
            }
        }
    }
}

/// A whole HEADERS frame (header included) with its block rewritten, or `None` when nothing
/// needed changing (or the frame is not understood).
fn rewrite_headers_frame(frame: &[u8]) -> Option<Vec<u8>> {
    let flags = frame[4];
    let payload = &frame[FRAME_HEADER..];
    let mut start = 0;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = usize::from(*payload.first()?);
        start = 1;
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    let end = payload.len().checked_sub(pad)?;
    let block = payload.get(start..end)?;
    let fixed = rewrite_block(block)?;
    let len = start + fixed.len() + pad;
    if len >= 1 << 24 {
        return None;
    }
    let mut out = Vec::with_capacity(FRAME_HEADER + len);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
    out.extend_from_slice(&frame[3..FRAME_HEADER]);
    out.extend_from_slice(&payload[..start]);
    out.extend_from_slice(&fixed);
    out.extend_from_slice(&payload[end..]);
    Some(out)
}

/// An HPACK integer with an `n`-bit prefix: (value, bytes used).
fn read_int(b: &[u8], n: u32) -> Option<(usize, usize)> {
    let mask = (1usize << n) - 1;
    let mut value = usize::from(*b.first()?) & mask;
    if value < mask {
        return Some((value, 1));
    }
    for (i, &byte) in b.iter().enumerate().skip(1).take(4) {
        value += usize::from(byte & 0x7f) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// An HPACK string literal: (raw or Huffman flag, its bytes, bytes used).
fn read_string(b: &[u8]) -> Option<(bool, &[u8], usize)> {
    let huffman = *b.first()? & 0x80 != 0;
    let (len, n) = read_int(b, 7)?;
    let bytes = b.get(n..n.checked_add(len)?)?;
    Some((huffman, bytes, n + len))
}

fn decoded(huffman: bool, bytes: &[u8]) -> Option<Vec<u8>> {
    if !huffman {
        return Some(bytes.to_vec());
    }
    let mut out = Vec::new();
    httlib_huffman::decode(bytes, &mut out, httlib_huffman::DecoderSpeed::FourBits).ok()?;
    Some(out)
}

/// A raw (not Huffman-coded) HPACK string literal.
fn raw_string(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    let mut len = value.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(value);
    out
}

/// The header block with every literal `:authority` URL made a valid authority of the same
/// length; `None` when there is none (or the block cannot be parsed).
fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while i < block.len() {
        let first = block[i];
        let prefix = match first {
            b if b & 0x80 != 0 => 7,
            b if b & 0x40 != 0 => 6,
            b if b & 0x20 != 0 => 5,
            _ => 4,
        };
        let (index, n) = read_int(&block[i..], prefix)?;
        i += n;
        if prefix == 7 || prefix == 5 {
            continue; // an indexed field or a table size update
        }
        let is_authority = if index == 0 {
            let (huffman, name, n) = read_string(&block[i..])?;
            i += n;
            decoded(huffman, name)? == b":authority"
        } else {
            index == 1
        };
        let value_at = i;
        let (huffman, value, n) = read_string(&block[i..])?;
        i += n;
        if !is_authority || value.len() > MAX_AUTHORITY {
            continue;
        }
        if let Some(fixed) = fix_authority(&decoded(huffman, value)?) {
            out.extend_from_slice(&block[copied..value_at]);
            out.extend_from_slice(&raw_string(&fixed));
            copied = i;
        }
    }
    if copied == 0 {
        return None;
    }
    out.extend_from_slice(&block[copied..]);
    Some(out)
}

/// `scheme://host:port[/path]` -> `scheme--@host:port` padded with `-` in the user info to the
/// same length; `None` when the value is no URL.
fn fix_authority(value: &[u8]) -> Option<Vec<u8>> {
    let sep = value.windows(3).position(|w| w == b"://")?;
    let (scheme, rest) = (&value[..sep], &value[sep + 3..]);
    let host_end = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
    let host = &rest[..host_end];
    if host.is_empty() || host.contains(&b'@') {
        return None;
    }
    let mut fixed = scheme.to_vec();
    fixed.extend(std::iter::repeat_n(b'-', 2 + rest.len() - host_end));
    fixed.push(b'@');
    fixed.extend_from_slice(host);
    debug_assert_eq!(fixed.len(), value.len());
    Some(fixed)
}

/// A client connection whose inbound bytes go through a [`Rewriter`].
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    input: BytesMut,
    output: BytesMut,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            input: BytesMut::new(),
            output: BytesMut::new(),
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // An unfinished frame at the end: pass on what there is.
                this.output = this.input.split();
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                continue;
            }
            this.input.extend_from_slice(read.filled());
            this.rewriter.process(&mut this.input, &mut this.output);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HEADERS frame (END_HEADERS) on stream 1 carrying `block`.
    fn headers_frame(block: &[u8], flags: u8) -> Vec<u8> {
        let len = block.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            HEADERS,
            flags,
        ];
        f.extend_from_slice(&[0, 0, 0, 1]);
        f.extend_from_slice(block);
        f
    }

    fn huffman(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        httlib_huffman::encode(s, &mut out).expect("encode");
        let mut lit = raw_string(&out);
        lit[0] |= 0x80;
        lit
    }

    /// The block as (name, value) pairs, for literal fields with incremental indexing and a
    /// static name index (the shape the tests use).
    fn authority_of(block: &[u8]) -> Vec<u8> {
        assert_eq!(
            block[0], 0x41,
            "literal, incremental indexing, name :authority"
        );
        let (h, v, _) = read_string(&block[1..]).expect("value");
        decoded(h, v).expect("decode")
    }

    fn run(input: &[u8], split_at: usize) -> Vec<u8> {
        let mut r = Rewriter::default();
        let mut out = BytesMut::new();
        let mut buf = BytesMut::from(&input[..split_at]);
        r.process(&mut buf, &mut out);
        buf.extend_from_slice(&input[split_at..]);
        r.process(&mut buf, &mut out);
        assert!(buf.is_empty());
        out.to_vec()
    }

    #[test]
    fn url_authorities_become_valid_and_keep_their_length() {
        for (value, want) in [
            (&b"http://127.0.0.1:2379"[..], &b"http--@127.0.0.1:2379"[..]),
            (b"https://etcd-0:2379/", b"https---@etcd-0:2379"),
        ] {
            for literal in [
                [&[0x41][..], &raw_string(value)].concat(),
                [&[0x41][..], &huffman(value)].concat(),
            ] {
                // The :authority literal after an indexed field (:method POST = 3).
                let block = [&[0x83][..], &literal, &[0x86][..]].concat();
                let fixed = rewrite_block(&block).expect("rewritten");
                assert_eq!(fixed[0], 0x83);
                assert_eq!(authority_of(&fixed[1..]), want);
                assert_eq!(*fixed.last().expect("last"), 0x86);
                assert!(http::uri::Authority::try_from(want).is_ok());
                assert_eq!(want.len(), value.len());
            }
        }
        let plain = [&[0x41][..], &raw_string(b"127.0.0.1:2379")].concat();
        assert_eq!(
            rewrite_block(&plain),
            None,
            "a valid authority is left alone"
        );
        assert_eq!(
            rewrite_block(&[0x41, 0x7f]),
            None,
            "truncated block: unchanged"
        );
    }

    #[test]
    fn frames_are_rewritten_across_reads_and_the_rest_passes() {
        let literal = [&[0x41][..], &huffman(b"http://127.0.0.1:2379")].concat();
        let headers = headers_frame(&literal, END_HEADERS);
        let data = [&[0, 0, 3, 0, 1, 0, 0, 0, 1][..], b"abc"].concat();
        let input = [PREFACE, &headers, &data].concat();
        for split in [0, 5, 24, 30, input.len() - 2] {
            let out = run(&input, split);
            assert!(out.starts_with(PREFACE));
            let frame = &out[PREFACE.len()..out.len() - data.len()];
            let len = (usize::from(frame[1]) << 8) | usize::from(frame[2]);
            assert_eq!(len, frame.len() - FRAME_HEADER);
            assert_eq!(
                authority_of(&frame[FRAME_HEADER..]),
                b"http--@127.0.0.1:2379"
            );
            assert!(out.ends_with(&data));
        }
        // Padding and priority fields are kept around the rewritten block.
        let padded = [&[2][..], &[0, 0, 0, 0, 16], &literal, &[0, 0]].concat();
        let fixed = rewrite_headers_frame(&headers_frame(&padded, END_HEADERS | PADDED | PRIORITY))
            .expect("rewritten");
        assert_eq!(&fixed[FRAME_HEADER..FRAME_HEADER + 6], &[2, 0, 0, 0, 0, 16]);
        assert_eq!(
            authority_of(&fixed[FRAME_HEADER + 6..fixed.len() - 2]),
            b"http--@127.0.0.1:2379"
        );
    }

    #[test]
    fn other_protocols_pass_unchanged() {
        let input = b"GET /health HTTP/1.1\r\nHost: http://x\r\n\r\n";
        assert_eq!(run(input, 3), input);
    }
}
