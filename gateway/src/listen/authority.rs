//! Tolerance for clients whose HTTP/2 `:authority` the server's HTTP stack refuses.
//!
//! etcdctl 3.4 dials each endpoint given with a scheme (`http://127.0.0.1:2379`, which is also
//! what `--cluster` takes from MemberList) as a gRPC target whose authority is the whole URL;
//! Go clientv3 3.5.0 sends resolver state such as `#initially=[http://127.0.0.1:2379]`. etcd's
//! server ignores the authority; the HTTP/2 server under tonic parses it with
//! `http::uri::Authority` and resets the stream (PROTOCOL_ERROR), so such clients fail.
//!
//! This layer sits between the socket and the HTTP/2 server and, in the client's header
//! blocks, replaces every `:authority` value that `http::uri::Authority` refuses by a valid
//! authority of the same length. The host and port of a URL in it are kept, behind a filler
//! user info that nobody reads (`http://127.0.0.1:2379` becomes `aaaaaa@127.0.0.1:2379`) or,
//! where the code must stay short, a filler host label (`aaaaaa-127.0.0.1:2379`).
//! Lengths are what keeps this safe:
//!
//! - HPACK: both ends keep a dynamic table whose entries are sized by their decoded length.
//!   The replacement has the same decoded length, so the server's table holds the same number
//!   of entries of the same sizes as the client's, evicts when the client's does, and a later
//!   reference to a replaced entry yields the (valid) replacement.
//! - Frames: a raw value is replaced by as many raw bytes; a Huffman-coded value by one whose
//!   code has as many bytes (the filler's characters are chosen by their code lengths). So
//!   frame lengths do not change. Only when the original's code is longer than that of any
//!   valid authority of its length (more than 13 bits a character: control or non-ASCII
//!   bytes) is the replacement's code shorter; then the frames carrying that header block get
//!   shorter. A frame never grows, so none can exceed the SETTINGS_MAX_FRAME_SIZE the server
//!   announced, which the client's frames already respect.
//!
//! To know which fields are `:authority` (a name may refer to a dynamic table entry), the
//! rewriter follows the client's dynamic table: the name length, size and "is `:authority`"
//! of each entry, and the table size updates. A header block (HEADERS and its CONTINUATION
//! frames) is held until END_HEADERS: the server cannot act on it earlier either.
//!
//! What is passed through unchanged: a connection that does not start with the HTTP/2
//! preface; an empty `:authority` (no valid authority is empty); and, once something is not
//! understood (a malformed block or frame sequence, which the server answers by closing the
//! connection, a PUSH_PROMISE, or a block over [`MAX_BLOCK`]), everything after it on that
//! connection.

use bytes::{Buf, BytesMut};
use httlib_huffman::encoder::table::ENCODE_TABLE;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Most header block bytes held at once. Far above what the server accepts (hyper's default
/// header list limit is 16 KiB; h2 sends GOAWAY once a block's bytes pass it), so a larger
/// block only ends the rewriting of a connection the server is closing anyway.
pub const MAX_BLOCK: usize = 1 << 20;

/// HPACK's static table names (RFC 7541 Appendix A), index 1 first.
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];
/// Per-entry overhead in a dynamic table's size (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;
/// The dynamic table's initial maximum size: SETTINGS_HEADER_TABLE_SIZE's default, which the
/// server (h2) keeps.
const DEFAULT_TABLE_SIZE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Preface,
    FrameHeader,
    /// Payload bytes of a frame being passed on.
    Payload(usize),
    /// Not HTTP/2 (or given up): bytes pass unchanged.
    Passthrough,
}

/// A header block that does not parse (the server treats it as a connection error).
#[derive(Debug)]
struct Malformed;

#[derive(Clone, Copy, Debug)]
struct Entry {
    authority: bool,
    name_len: usize,
    size: usize,
}

/// What the rewriter knows of the client's HPACK dynamic table (RFC 7541 §2.3.2, §4).
#[derive(Debug)]
struct DynamicTable {
    /// Newest first.
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    fn new() -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
        }
    }

    /// Whether the name at `index` (static or dynamic) is `:authority`, and its length.
    fn name(&self, index: usize) -> Result<(bool, usize), Malformed> {
        let at = index.checked_sub(1).ok_or(Malformed)?;
        if let Some(name) = STATIC_NAMES.get(at) {
            return Ok((index == 1, name.len()));
        }
        self.entries
            .get(at - STATIC_NAMES.len())
            .map(|e| (e.authority, e.name_len))
            .ok_or(Malformed)
    }

    /// Adds an entry, evicting the oldest as needed; an entry larger than the table empties it
    /// (pushing first and then evicting from the back does both).
    fn insert(&mut self, authority: bool, name_len: usize, value_len: usize) {
        let size = name_len + value_len + ENTRY_OVERHEAD;
        self.entries.push_front(Entry {
            authority,
            name_len,
            size,
        });
        self.size += size;
        self.evict();
    }

    fn resize(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict();
    }

    fn evict(&mut self) {
        while self.size > self.max_size {
            let Some(oldest) = self.entries.pop_back() else {
                break;
            };
            self.size -= oldest.size;
        }
    }
}

/// One frame of a held header block, without its share of the block.
#[derive(Debug)]
struct HeldFrame {
    kind: u8,
    flags: u8,
    stream: [u8; 4],
    /// The Pad Length and priority fields (HEADERS only).
    before: Vec<u8>,
    /// How many block bytes it carried.
    fragment: usize,
    padding: Vec<u8>,
}

/// The inbound byte stream transformer, independent of any socket.
#[derive(Debug)]
pub struct Rewriter {
    state: State,
    table: DynamicTable,
    /// The frames of the header block being collected, and the block itself.
    frames: Vec<HeldFrame>,
    block: Vec<u8>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self {
            state: State::Preface,
            table: DynamicTable::new(),
            frames: Vec::new(),
            block: Vec::new(),
        }
    }
}

impl Rewriter {
    /// Moves what can be decided from `input` to `output`, rewriting header blocks; leaves an
    /// incomplete frame header or header frame in `input`, and holds the frames of a header
    /// block until its last one.
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
                    let kind = input[3];
                    let in_block = !self.frames.is_empty();
                    let expected = if in_block { CONTINUATION } else { HEADERS };
                    if kind != expected {
                        if in_block || kind == CONTINUATION || kind == PUSH_PROMISE {
                            // Out of sequence (a connection error for the server), or a block
                            // the server is not meant to decode: stop following the table.
                            self.give_up(output);
                            continue;
                        }
                        output.extend_from_slice(&input.split_to(FRAME_HEADER));
                        self.state = State::Payload(len);
                        continue;
                    }
                    if self.block.len() + len > MAX_BLOCK {
                        self.give_up(output);
                        continue;
                    }
                    if input.len() < FRAME_HEADER + len {
                        return;
                    }
                    let frame = input.split_to(FRAME_HEADER + len);
                    if !self.hold(&frame) {
                        self.give_up(output);
                        output.extend_from_slice(&frame);
                        continue;
                    }
                    if frame[4] & END_HEADERS != 0 {
                        self.end_block(output);
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

    /// At the end of the stream: passes on what is held and what is left, unchanged.
    pub fn finish(&mut self, input: &mut BytesMut, output: &mut BytesMut) {
        self.give_up(output);
        output.extend_from_slice(&input.split());
    }

    /// Adds a whole HEADERS or CONTINUATION frame to the held block; false when its padding
    /// does not fit in it.
    fn hold(&mut self, frame: &[u8]) -> bool {
        let (kind, flags) = (frame[3], frame[4]);
        let payload = &frame[FRAME_HEADER..];
        let (mut start, mut pad) = (0, 0);
        if kind == HEADERS {
            if flags & PADDED != 0 {
                let Some(&n) = payload.first() else {
                    return false;
                };
                pad = usize::from(n);
                start = 1;
            }
            if flags & PRIORITY != 0 {
                start += 5;
            }
        }
        let Some(end) = payload.len().checked_sub(pad).filter(|&end| end >= start) else {
            return false;
        };
        self.frames.push(HeldFrame {
            kind,
            flags,
            stream: [frame[5], frame[6], frame[7], frame[8]],
            before: payload[..start].to_vec(),
            fragment: end - start,
            padding: payload[end..].to_vec(),
        });
        self.block.extend_from_slice(&payload[start..end]);
        true
    }

    /// Rewrites the complete held block and passes its frames on.
    fn end_block(&mut self, output: &mut BytesMut) {
        match rewrite_block(&mut self.table, &self.block) {
            Ok(Some(block)) => emit_frames(&self.frames, &block, output),
            Ok(None) => emit_frames(&self.frames, &self.block, output),
            Err(Malformed) => {
                emit_frames(&self.frames, &self.block, output);
                self.state = State::Passthrough;
            }
        }
        self.frames.clear();
        self.block.clear();
    }

    /// Passes on the held frames unchanged and everything after them.
    fn give_up(&mut self, output: &mut BytesMut) {
        emit_frames(&self.frames, &self.block, output);
        self.frames.clear();
        self.block.clear();
        self.state = State::Passthrough;
    }
}

/// Writes `frames` carrying `block`. A block as long as the frames' fragments goes out in
/// frames identical to them but for the block bytes. A shorter one (never longer: see
/// [`replace_literal`]) fills the frames in order; the frame where it ends gets END_HEADERS
/// and the ones after it, which would carry nothing, are dropped. Every frame written is at
/// most as long as the frame it stands for, so within the server's SETTINGS_MAX_FRAME_SIZE
/// (the server refuses a client frame over it whether or not it passed through here).
fn emit_frames(frames: &[HeldFrame], block: &[u8], output: &mut BytesMut) {
    let held: usize = frames.iter().map(|f| f.fragment).sum();
    let shrunk = block.len() < held;
    let mut at = 0;
    for f in frames {
        let take = f.fragment.min(block.len() - at);
        let last = shrunk && at + take == block.len();
        let flags = if last { f.flags | END_HEADERS } else { f.flags };
        let len = f.before.len() + take + f.padding.len();
        output.extend_from_slice(&[
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            f.kind,
            flags,
        ]);
        output.extend_from_slice(&f.stream);
        output.extend_from_slice(&f.before);
        output.extend_from_slice(&block[at..at + take]);
        output.extend_from_slice(&f.padding);
        at += take;
        if last {
            break;
        }
    }
}

/// An HPACK integer with an `n`-bit prefix: (value, bytes used). At most 5 bytes, as h2
/// accepts.
fn read_int(b: &[u8], n: u32) -> Result<(usize, usize), Malformed> {
    let mask = (1usize << n) - 1;
    let mut value = usize::from(*b.first().ok_or(Malformed)?) & mask;
    if value < mask {
        return Ok((value, 1));
    }
    for (i, &byte) in b.iter().enumerate().skip(1).take(4) {
        value += usize::from(byte & 0x7f) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(Malformed)
}

/// An HPACK string literal as it is in the block.
struct Literal<'a> {
    huffman: bool,
    /// Bytes of the H flag and length.
    head: usize,
    data: &'a [u8],
}

impl<'a> Literal<'a> {
    fn read(b: &'a [u8]) -> Result<Self, Malformed> {
        let huffman = *b.first().ok_or(Malformed)? & 0x80 != 0;
        let (len, head) = read_int(b, 7)?;
        let data = b.get(head..head + len).ok_or(Malformed)?;
        Ok(Self {
            huffman,
            head,
            data,
        })
    }

    fn len(&self) -> usize {
        self.head + self.data.len()
    }

    fn decoded(&self) -> Result<Vec<u8>, Malformed> {
        if self.huffman {
            huffman_decode(self.data).ok_or(Malformed)
        } else {
            Ok(self.data.to_vec())
        }
    }
}

/// The header block with every `:authority` value that `http::uri::Authority` refuses
/// replaced (see [`replace_literal`]), following the dynamic table; `None` when nothing
/// changed.
fn rewrite_block(table: &mut DynamicTable, block: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
    let mut out = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while let Some(&first) = block.get(i) {
        if first & 0x80 != 0 {
            // Indexed field: the entry must exist; the table does not change.
            let (index, n) = read_int(&block[i..], 7)?;
            table.name(index)?;
            i += n;
            continue;
        }
        if first & 0xe0 == 0x20 {
            // Dynamic table size update (the server checks it against its setting).
            let (size, n) = read_int(&block[i..], 5)?;
            table.resize(size);
            i += n;
            continue;
        }
        // A literal field: with incremental indexing (01), without indexing (0000) or never
        // indexed (0001).
        let indexing = first & 0x40 != 0;
        let (index, n) = read_int(&block[i..], if indexing { 6 } else { 4 })?;
        i += n;
        let (authority, name_len) = if index == 0 {
            let name = Literal::read(&block[i..])?;
            i += name.len();
            let name = name.decoded()?;
            (name == b":authority", name.len())
        } else {
            table.name(index)?
        };
        let value_at = i;
        let value = Literal::read(&block[i..])?;
        i += value.len();
        if authority || indexing {
            let decoded = value.decoded()?;
            let fixed = (authority && !is_authority(&decoded))
                .then(|| replace_literal(&block[value_at..i], &value, &decoded))
                .flatten();
            if let Some(fixed) = fixed {
                out.extend_from_slice(&block[copied..value_at]);
                out.extend_from_slice(&fixed);
                copied = i;
            }
            if indexing {
                // The replacement has the same decoded length: the entry's size is the same.
                table.insert(authority, name_len, decoded.len());
            }
        }
    }
    if copied == 0 {
        return Ok(None);
    }
    out.extend_from_slice(&block[copied..]);
    Ok(Some(out))
}

/// The string literal `literal` (parsed as `value`, decoding to `decoded`) with a valid
/// authority of the same decoded length: the same number of raw bytes, or a Huffman code of
/// the same number of bytes where one exists. Never longer than `literal` (`None` rather).
fn replace_literal(literal: &[u8], value: &Literal<'_>, decoded: &[u8]) -> Option<Vec<u8>> {
    let fixed = replacement(decoded, value.huffman.then_some(value.data.len()))?;
    let data = if value.huffman {
        huffman_encode(&fixed)
    } else {
        fixed
    };
    let mut out = if data.len() == value.data.len() {
        literal[..value.head].to_vec()
    } else {
        string_head(data.len(), value.huffman)
    };
    out.extend_from_slice(&data);
    (out.len() <= literal.len()).then_some(out)
}

/// The H flag and length of a string literal.
fn string_head(len: usize, huffman: bool) -> Vec<u8> {
    let flag = if huffman { 0x80 } else { 0 };
    if len < 127 {
        return vec![flag | len as u8];
    }
    let mut out = vec![flag | 127];
    let mut rest = len - 127;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
    out
}

fn is_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// A valid authority as long as `value`, `None` for an empty one. With `coded` (the length of
/// `value`'s Huffman code), one whose Huffman code is that long too; when no valid authority
/// of that length has so long a code (more than 13 bits a character), the one with the
/// longest code (shorter than `coded`). The host and port of a URL in `value` are kept when
/// they fit.
fn replacement(value: &[u8], coded: Option<usize>) -> Option<Vec<u8>> {
    let n = value.len();
    if n == 0 {
        return None;
    }
    let (lo, hi) = match coded {
        Some(bytes) => (
            bytes.saturating_mul(8).saturating_sub(7),
            bytes.saturating_mul(8),
        ),
        None => (0, usize::MAX),
    };
    if let Some(host) = url_host(value).filter(|host| host.len() < n) {
        // Behind a filler user info; or, where `@`'s 13-bit code makes that too long, a filler
        // host label (`aaaaaa-127.0.0.1:2379`).
        for separator in [b'@', b'-'] {
            let kept = huffman_bits(host) + huffman_bits(&[separator]);
            let fill = hi
                .checked_sub(kept)
                .and_then(|hi| filler(n - host.len() - 1, lo.saturating_sub(kept), hi));
            if let Some(mut fixed) = fill {
                fixed.push(separator);
                fixed.extend_from_slice(host);
                if is_authority(&fixed) {
                    return Some(fixed);
                }
            }
        }
    }
    Some(filler(n, lo, hi).unwrap_or_else(|| vec![FILL[0].1; n]))
}

/// The `host[:port]` of the first URL (`scheme://[userinfo@]host[:port]...`) in `value`.
fn url_host(value: &[u8]) -> Option<&[u8]> {
    let start = value.windows(3).position(|w| w == b"://")? + 3;
    let rest = value.get(start..)?;
    let end = rest
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || b"-._~:[]@".contains(&c)))
        .unwrap_or(rest.len());
    let mut host = &rest[..end];
    if let Some(at) = host.iter().rposition(|&c| c == b'@') {
        host = &host[at + 1..];
    }
    if !host.starts_with(b"[") {
        // `#initially=[http://host:port]`: the bracket is not the host's.
        if let Some(close) = host.iter().position(|&c| c == b']') {
            host = &host[..close];
        }
    }
    (!host.is_empty()).then_some(host)
}

/// Filler characters, valid anywhere in an authority, by how many more bits than 5 (the
/// shortest Huffman code, `a`'s) their code has, longest first.
const FILL: [(usize, u8); 7] = [
    (8, b'~'),
    (6, b'+'),
    (5, b'!'),
    (3, b'X'),
    (2, b'x'),
    (1, b'-'),
    (0, b'a'),
];

/// `k` filler characters whose Huffman code is between `lo` and `hi` bits long, shortest
/// first.
fn filler(k: usize, lo: usize, hi: usize) -> Option<Vec<u8>> {
    let (min, max) = (5 * k, 13 * k);
    (lo.max(min)..=hi.min(max)).find_map(|bits| filler_exact(k, bits - min))
}

/// `k` filler characters whose codes have `extra` bits more than `5 * k` in all.
fn filler_exact(k: usize, mut extra: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(k);
    for left in (0..k).rev() {
        let &(more, c) = FILL
            .iter()
            .find(|&&(more, _)| more <= extra && fillable(extra - more, left))?;
        out.push(c);
        extra -= more;
    }
    (extra == 0).then_some(out)
}

/// Whether `k` filler characters can have `extra` bits more than `5 * k`: every sum of `k`
/// of 0, 1, 2, 3, 5, 6 and 8 up to `8 * k`, except `8 * k - 1` (and 4 and 7 for one).
fn fillable(extra: usize, k: usize) -> bool {
    match k {
        0 => extra == 0,
        1 => FILL.iter().any(|&(more, _)| more == extra),
        _ => extra <= 8 * k && extra != 8 * k - 1,
    }
}

/// The length of `s`'s Huffman code in bits.
fn huffman_bits(s: &[u8]) -> usize {
    s.iter()
        .map(|&c| usize::from(ENCODE_TABLE[usize::from(c)].0))
        .sum()
}

/// HPACK's Huffman code of `s` (RFC 7541 §5.2), padded with ones.
fn huffman_encode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(huffman_bits(s).div_ceil(8));
    let (mut acc, mut bits) = (0u64, 0u32);
    for &c in s {
        let (len, code) = ENCODE_TABLE[usize::from(c)];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        let pad = 8 - bits;
        out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
    }
    out
}

/// A leaf of [`HUFFMAN_TREE`]: the symbol in the low bits.
const LEAF: u16 = 0x8000;
/// The EOS symbol, which must not appear in a string.
const EOS: u16 = 256;

/// HPACK's Huffman code as a binary tree: node `i`'s children for a 0 and a 1 bit, each a node
/// index or `LEAF | symbol`. The code is complete, so every inner node has both children.
static HUFFMAN_TREE: LazyLock<Vec<[u16; 2]>> = LazyLock::new(|| {
    let mut nodes = vec![[0u16; 2]];
    for (symbol, &(len, code)) in ENCODE_TABLE.iter().enumerate() {
        let mut node = 0;
        for shift in (0..len).rev() {
            let bit = ((code >> shift) & 1) as usize;
            if shift == 0 {
                nodes[node][bit] = LEAF | symbol as u16;
            } else {
                if nodes[node][bit] == 0 {
                    nodes.push([0; 2]);
                    nodes[node][bit] = (nodes.len() - 1) as u16;
                }
                node = usize::from(nodes[node][bit]);
            }
        }
    }
    nodes
});

/// Decodes a Huffman-coded string; `None` when it is not a valid code (EOS inside, padding
/// longer than 7 bits or not all ones: RFC 7541 §5.2).
fn huffman_decode(data: &[u8]) -> Option<Vec<u8>> {
    let tree = &*HUFFMAN_TREE;
    let mut out = Vec::with_capacity(data.len() * 8 / 5);
    let (mut node, mut depth, mut ones) = (0usize, 0u32, true);
    for &byte in data {
        for shift in (0..8).rev() {
            let bit = usize::from((byte >> shift) & 1);
            let next = tree.get(node)?[bit];
            if next & LEAF != 0 {
                let symbol = next & !LEAF;
                if symbol == EOS {
                    return None;
                }
                out.push(symbol as u8);
                (node, depth, ones) = (0, 0, true);
            } else if next == 0 {
                return None;
            } else {
                node = usize::from(next);
                depth += 1;
                ones &= bit == 1;
            }
        }
    }
    (depth < 8 && ones).then_some(out)
}

/// A client connection whose inbound bytes go through a [`Rewriter`].
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    input: BytesMut,
    output: BytesMut,
    eof: bool,
    /// This connection's place under `--max-connections`, given back when it closes.
    _place: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            input: BytesMut::new(),
            output: BytesMut::new(),
            eof: false,
            _place: None,
        }
    }

    /// The connection, holding `place` until it closes.
    pub fn holding(mut self, place: Option<tokio::sync::OwnedSemaphorePermit>) -> Self {
        self._place = place;
        self
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
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // An unfinished frame or block at the end: pass on what there is.
                this.eof = true;
                this.rewriter.finish(&mut this.input, &mut this.output);
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
    use proptest::prelude::*;

    const DATA: u8 = 0x0;
    const SETTINGS: u8 = 0x4;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[derive(Clone, Debug, PartialEq)]
    struct Frame {
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    }

    impl Frame {
        /// (Pad Length and priority fields, block fragment, padding) of a header frame.
        fn split(&self) -> (&[u8], &[u8], &[u8]) {
            let (mut start, mut pad) = (0, 0);
            if self.kind == HEADERS {
                if self.flags & PADDED != 0 {
                    pad = usize::from(self.payload[0]);
                    start = 1;
                }
                if self.flags & PRIORITY != 0 {
                    start += 5;
                }
            }
            let end = self.payload.len() - pad;
            (
                &self.payload[..start],
                &self.payload[start..end],
                &self.payload[end..],
            )
        }
    }

    /// The frames after the preface.
    fn parse_frames(mut b: &[u8]) -> Vec<Frame> {
        assert!(b.starts_with(PREFACE), "preface kept");
        b = &b[PREFACE.len()..];
        let mut out = Vec::new();
        while !b.is_empty() {
            assert!(b.len() >= FRAME_HEADER, "whole frame header");
            let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
            assert!(b.len() >= FRAME_HEADER + len, "whole frame");
            out.push(Frame {
                kind: b[3],
                flags: b[4],
                stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
                payload: b[FRAME_HEADER..FRAME_HEADER + len].to_vec(),
            });
            b = &b[FRAME_HEADER + len..];
        }
        out
    }

    /// The frames as header blocks (their frames) and other frames, in order.
    fn group(frames: Vec<Frame>) -> Vec<Result<Vec<Frame>, Frame>> {
        let mut out = Vec::new();
        let mut open: Option<Vec<Frame>> = None;
        for f in frames {
            if f.kind == HEADERS || f.kind == CONTINUATION {
                assert_eq!(f.kind == HEADERS, open.is_none(), "frame sequence");
                let end = f.flags & END_HEADERS != 0;
                let mut block = open.take().unwrap_or_default();
                block.push(f);
                if end {
                    out.push(Ok(block));
                } else {
                    open = Some(block);
                }
            } else {
                assert!(open.is_none(), "nothing inside a header block");
                out.push(Err(f));
            }
        }
        assert!(open.is_none(), "every block ends");
        out
    }

    fn block_of(frames: &[Frame]) -> Vec<u8> {
        frames.iter().flat_map(|f| f.split().1.to_vec()).collect()
    }

    /// The rewriter's output for `input` delivered in chunks of the given sizes (cycled).
    fn run(input: &[u8], chunks: &[usize]) -> Vec<u8> {
        run_rewriter(input, chunks).0
    }

    /// The output, the rewriter's state before the end of the stream, and its table.
    fn run_rewriter(input: &[u8], chunks: &[usize]) -> (Vec<u8>, State, DynamicTable) {
        let mut r = Rewriter::default();
        let mut out = BytesMut::new();
        let mut buf = BytesMut::new();
        let mut rest = input;
        for &size in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = size.clamp(1, rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            r.process(&mut buf, &mut out);
        }
        let state = r.state;
        r.finish(&mut buf, &mut out);
        (out.to_vec(), state, r.table)
    }

    fn huffman_literal(s: &[u8]) -> Vec<u8> {
        let code = huffman_encode(s);
        [string_head(code.len(), true), code].concat()
    }

    fn raw_literal(s: &[u8]) -> Vec<u8> {
        [string_head(s.len(), false), s.to_vec()].concat()
    }

    fn decode(decoder: &mut fluke_hpack::Decoder<'_>, block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        decoder.decode(block).expect("block decodes")
    }

    #[test]
    fn huffman_code_is_hpacks() {
        let all: Vec<u8> = (0..=255).collect();
        for s in [&b""[..], b"a", b"http://127.0.0.1:2379", b"~~~~~~~~~", &all] {
            let mut reference = Vec::new();
            httlib_huffman::encode(s, &mut reference).expect("encode");
            assert_eq!(huffman_encode(s), reference);
            assert_eq!(huffman_decode(&reference).as_deref(), Some(s));
            assert_eq!(huffman_bits(s).div_ceil(8), reference.len());
        }
        for &(more, c) in &FILL {
            assert_eq!(huffman_bits(&[c]), 5 + more, "{}", c as char);
            assert!(is_authority(&[c]) && is_authority(&[c, c, b'@', c]));
        }
        // "a" is 00011: padding with zeros, padding of 8 bits or more, and EOS are refused.
        assert_eq!(huffman_decode(&[0x1f]).as_deref(), Some(&b"a"[..]));
        assert_eq!(huffman_decode(&[0x18]), None);
        assert_eq!(huffman_decode(&[0x1f, 0xff]), None);
        assert_eq!(huffman_decode(&[0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn filler_reaches_every_reachable_code_length() {
        for k in 0..=6usize {
            // Every sum of k extras, by brute force.
            let mut sums = vec![0usize];
            for _ in 0..k {
                sums = sums
                    .iter()
                    .flat_map(|s| FILL.iter().map(move |&(more, _)| s + more))
                    .collect();
                sums.sort_unstable();
                sums.dedup();
            }
            for extra in 0..=8 * k + 2 {
                let reachable = sums.contains(&extra);
                assert_eq!(fillable(extra, k), reachable, "k {k} extra {extra}");
                let fill = filler_exact(k, extra);
                assert_eq!(fill.is_some(), reachable, "k {k} extra {extra}");
                if let Some(fill) = fill {
                    assert_eq!(fill.len(), k);
                    assert_eq!(huffman_bits(&fill), 5 * k + extra);
                }
            }
        }
    }

    #[test]
    fn replacements_are_valid_authorities_of_the_same_lengths() {
        let long = "x".repeat(300);
        let values: Vec<&[u8]> = vec![
            b"http://127.0.0.1:2379",
            b"https://user@etcd-0:2379/path",
            b"#initially=[http://127.0.0.1:2379]",
            b"#initially=[http://[::1]:2379;http://10.0.0.2:2379]",
            b"a b",
            b"[",
            b"h:1:2",
            b"\x00",
            b"\xff\xfe\xfd\xfc",
            b"~~~~<",
            long.as_bytes(),
        ];
        assert_eq!(
            replacement(b"http://127.0.0.1:2379", None).as_deref(),
            Some(&b"aaaaaa@127.0.0.1:2379"[..])
        );
        assert_eq!(replacement(b"", None), None);
        for value in values {
            let raw = replacement(value, None).expect("raw");
            assert_eq!(raw.len(), value.len());
            assert!(is_authority(&raw));
            let coded = huffman_encode(value).len();
            let fixed = replacement(value, Some(coded)).expect("huffman");
            assert_eq!(fixed.len(), value.len());
            assert!(is_authority(&fixed), "{fixed:?}");
            let fixed_code = huffman_encode(&fixed).len();
            if 8 * coded - 7 <= 13 * value.len() {
                assert_eq!(fixed_code, coded, "{value:?} -> {fixed:?}");
            } else {
                assert!(fixed_code < coded);
            }
            if value.windows(15).any(|w| w == b"127.0.0.1:2379]") {
                assert!(raw.ends_with(b"@127.0.0.1:2379"), "{raw:?}");
                assert!(
                    fixed.ends_with(b"@127.0.0.1:2379") || fixed.ends_with(b"-127.0.0.1:2379"),
                    "{fixed:?}"
                );
            }
        }
    }

    #[test]
    fn names_referring_to_the_dynamic_table_are_followed() {
        let mut table = DynamicTable::new();
        // :authority (literal name, indexed) = a valid value, then x-other: v on top of it.
        let block = [
            &[0x40][..],
            &raw_literal(b":authority"),
            &raw_literal(b"127.0.0.1:2379"),
            &[0x40],
            &huffman_literal(b"x-other"),
            &raw_literal(b"v"),
        ]
        .concat();
        assert_eq!(rewrite_block(&mut table, &block).expect("parses"), None);
        assert_eq!(table.size, (10 + 14 + 32) + (7 + 1 + 32));
        // A value under name 63 (:authority) is rewritten, one under 62 (x-other) is not.
        let block = [
            &[0x0f, 63 - 15][..],
            &huffman_literal(b"http://h:1"),
            &[0x0f, 62 - 15],
            &raw_literal(b"http://h:1"),
        ]
        .concat();
        let fixed = rewrite_block(&mut table, &block)
            .expect("parses")
            .expect("rewritten");
        assert_eq!(fixed.len(), block.len());
        let value = Literal::read(&fixed[2..]).expect("value");
        assert_eq!(value.decoded().expect("decodes"), b"aaaaaa@h:1");
        assert!(fixed.ends_with(&raw_literal(b"http://h:1")));
        // Shrinking the table to 40 evicts the older entry: 63 no longer exists.
        let mut resized = [&[0x3f, 40 - 31][..], &[0x80 | 62]].concat();
        assert_eq!(rewrite_block(&mut table, &resized).expect("parses"), None);
        assert_eq!(table.entries.len(), 1);
        resized[2] = 0x80 | 63;
        assert!(rewrite_block(&mut table, &resized).is_err());
        // An entry larger than the table empties it.
        table.insert(false, 20, 20);
        assert_eq!((table.entries.len(), table.size), (0, 0));
    }

    #[test]
    fn a_shorter_block_shrinks_its_last_frames() {
        // Four bytes whose codes are 26 bits each: no valid authority of 4 bytes has a code of
        // 13 bytes, so the replacement's code is shorter.
        let literal = [&[0x41][..], &huffman_literal(b"\xff\xff\xff\xff"), &[0x84]].concat();
        assert_eq!(literal.len(), 16);
        let frames = [
            frame(HEADERS, 0, 1, &literal[..3]),
            frame(CONTINUATION, 0, 1, &literal[3..14]),
            frame(CONTINUATION, END_HEADERS, 1, &literal[14..]),
        ]
        .concat();
        let input = [PREFACE, &frames].concat();
        let out = parse_frames(&run(&input, &[7]));
        assert_eq!(
            out.len(),
            2,
            "the last CONTINUATION would be empty: dropped"
        );
        assert_eq!(out[0].payload.len(), 3);
        assert_eq!((out[0].flags, out[1].flags), (0, END_HEADERS));
        assert!(out[1].payload.len() < 11);
        let fields = decode(&mut fluke_hpack::Decoder::new(), &block_of(&out));
        assert_eq!(fields[0].0, b":authority");
        assert_eq!(fields[0].1.len(), 4);
        assert!(is_authority(&fields[0].1));
        assert_eq!(fields[1], (b":path".to_vec(), b"/".to_vec()));
    }

    #[test]
    fn frames_are_rewritten_across_reads_with_padding_and_priority() {
        let literal = [&[0x41][..], &huffman_literal(b"http://127.0.0.1:2379")].concat();
        let headers = frame(
            HEADERS,
            PADDED | PRIORITY,
            1,
            &[&[2][..], &[0, 0, 0, 0, 16], &literal[..4], &[0, 0]].concat(),
        );
        let continuation = frame(CONTINUATION, END_HEADERS, 1, &literal[4..]);
        let data = frame(DATA, 0, 1, b"abc");
        let input = [PREFACE, &headers, &continuation, &data].concat();
        for chunk in [1, 5, 24, 30, input.len()] {
            let out = run(&input, &[chunk]);
            assert_eq!(out.len(), input.len());
            let frames = parse_frames(&out);
            assert_eq!(frames.len(), 3);
            assert_eq!(frames[0].split().0, &[2, 0, 0, 0, 0, 16]);
            assert_eq!(frames[0].split().2, &[0, 0]);
            let fields = decode(&mut fluke_hpack::Decoder::new(), &block_of(&frames[..2]));
            assert_eq!(
                fields,
                vec![(b":authority".to_vec(), b"aaaaaa-127.0.0.1:2379".to_vec())]
            );
            assert!(out.ends_with(&data));
        }
    }

    #[test]
    fn what_is_not_understood_passes_unchanged() {
        let input = b"GET /health HTTP/1.1\r\nHost: http://x\r\n\r\n";
        assert_eq!(run(input, &[3]), input);
        // A block that does not parse (index 70 does not exist) passes, and so does
        // everything after it, rewritable or not.
        let bad = frame(HEADERS, END_HEADERS, 1, &[0x80 | 70]);
        let url = [&[0x41][..], &raw_literal(b"http://h:1")].concat();
        let later = frame(HEADERS, END_HEADERS, 3, &url);
        let input = [PREFACE, &bad, &later].concat();
        assert_eq!(run(&input, &[4]), input);
        // A block cut short by the end of the stream passes as it is.
        let input = [PREFACE, &frame(HEADERS, 0, 1, &url)].concat();
        assert_eq!(run(&input, &[100]), input);
    }

    #[tokio::test]
    async fn the_connection_reads_rewritten_bytes() {
        use tokio::io::AsyncReadExt;
        let url = [&[0x41][..], &raw_literal(b"http://h:1")].concat();
        let input = [PREFACE, &frame(HEADERS, END_HEADERS, 1, &url)].concat();
        let mut out = Vec::new();
        AuthorityFix::new(&input[..])
            .read_to_end(&mut out)
            .await
            .expect("read");
        let fixed = [&[0x41][..], &raw_literal(b"aaaaaa@h:1")].concat();
        assert_eq!(
            out,
            [PREFACE, &frame(HEADERS, END_HEADERS, 1, &fixed)].concat()
        );
    }

    // The property test: random header blocks through the rewriter.

    #[derive(Clone, Debug)]
    enum Name {
        Literal(Vec<u8>),
        Static(u32),
        /// An offset into the dynamic table (the static name 1 when it has no such entry).
        Dynamic(u32),
    }

    #[derive(Clone, Debug)]
    enum Field {
        Static(u32),
        Dynamic(u32),
        /// Flags as httlib-hpack takes them: Huffman name, Huffman value, with incremental
        /// indexing, never indexed.
        Literal(Name, Vec<u8>, u8),
    }

    #[derive(Clone, Debug)]
    struct BlockSpec {
        size_updates: Vec<u32>,
        fields: Vec<Field>,
        /// Block bytes per frame (cycled; HEADERS may carry none).
        cuts: Vec<usize>,
        padding: Option<u8>,
        priority: bool,
        empty_last_continuation: bool,
        data_after: Option<Vec<u8>>,
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "127.0.0.1:2379",
                "etcd-0.etcd:2379",
                "[::1]:2379",
                "http://127.0.0.1:2379",
                "https://user@etcd-0:2379/path",
                "http://[::1]:2379",
                "#initially=[http://127.0.0.1:2379]",
                "#initially=[http://[::1]:2379;http://10.0.0.2:2379]",
                "a b",
                "",
                "[",
                "h:1:2",
                "x%20y",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            2 => prop::collection::vec(0x20u8..0x7f, 0..40),
            1 => prop::collection::vec(any::<u8>(), 0..24),
        ]
    }

    fn field() -> impl Strategy<Value = Field> {
        let name = prop_oneof![
            3 => Just(Name::Static(1)),
            2 => Just(Name::Literal(b":authority".to_vec())),
            2 => (0u32..6).prop_map(Name::Dynamic),
            1 => (2u32..=61).prop_map(Name::Static),
            1 => prop::collection::vec(b'a'..=b'z', 0..8)
                .prop_map(|n| Name::Literal([b"x-".to_vec(), n].concat())),
        ];
        prop_oneof![
            1 => (1u32..=61).prop_map(Field::Static),
            2 => (0u32..8).prop_map(Field::Dynamic),
            5 => (name, value(), 0u8..16).prop_map(|(n, v, f)| Field::Literal(n, v, f)),
        ]
    }

    fn block_spec() -> impl Strategy<Value = BlockSpec> {
        (
            prop::collection::vec(prop_oneof![0u32..200, 200u32..=4096], 0..3),
            prop::collection::vec(field(), 1..8),
            prop::collection::vec(0usize..40, 1..5),
            prop::option::of(0u8..10),
            any::<bool>(),
            prop::bool::weighted(0.1),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        )
            .prop_map(
                |(size_updates, fields, cuts, padding, priority, empty, data)| BlockSpec {
                    size_updates,
                    fields,
                    cuts,
                    padding,
                    priority,
                    empty_last_continuation: empty,
                    data_after: data,
                },
            )
    }

    /// The encoder's dynamic table as the test sees it (names and values), kept apart from
    /// the rewriter's to check that one: RFC 7541 §4.
    struct Mirror {
        entries: VecDeque<(Vec<u8>, Vec<u8>)>,
        size: usize,
        max_size: usize,
    }

    impl Mirror {
        fn new() -> Self {
            Self {
                entries: VecDeque::new(),
                size: 0,
                max_size: 4096,
            }
        }

        fn evict(&mut self) {
            while self.size > self.max_size {
                let (name, value) = self.entries.pop_back().expect("entries to evict");
                self.size -= name.len() + value.len() + 32;
            }
        }

        fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
            self.size += name.len() + value.len() + 32;
            self.entries.push_front((name, value));
            self.evict();
        }
    }

    /// A static table name, as an independent decoder has it.
    fn static_name(index: u32) -> Vec<u8> {
        let index = u8::try_from(index).expect("static index");
        let fields = decode(&mut fluke_hpack::Decoder::new(), &[0x80 | index]);
        fields[0].0.clone()
    }

    fn encode_block(
        encoder: &mut httlib_hpack::Encoder<'_>,
        mirror: &mut Mirror,
        spec: &BlockSpec,
    ) -> Vec<u8> {
        let mut dst = Vec::new();
        for &size in &spec.size_updates {
            encoder
                .update_max_dynamic_size(size, &mut dst)
                .expect("size update");
            mirror.max_size = size as usize;
            mirror.evict();
        }
        for field in &spec.fields {
            let exists = |offset: u32| (offset as usize) < mirror.entries.len();
            match field {
                Field::Static(index) => encoder.encode(*index, &mut dst).expect("encode"),
                Field::Dynamic(offset) if exists(*offset) => {
                    encoder.encode(62 + offset, &mut dst).expect("encode");
                }
                Field::Dynamic(_) => encoder.encode(2u32, &mut dst).expect("encode"),
                Field::Literal(name, value, flags) => {
                    let (name, index) = match name {
                        Name::Literal(name) => (name.clone(), None),
                        Name::Static(index) => (static_name(*index), Some(*index)),
                        Name::Dynamic(offset) if exists(*offset) => (
                            mirror.entries[*offset as usize].0.clone(),
                            Some(62 + offset),
                        ),
                        Name::Dynamic(_) => (b":authority".to_vec(), Some(1)),
                    };
                    match index {
                        None => encoder.encode((name.clone(), value.clone(), *flags), &mut dst),
                        Some(index) => encoder.encode((index, value.clone(), *flags), &mut dst),
                    }
                    .expect("encode");
                    if flags & 0x4 != 0 {
                        mirror.insert(name, value.clone());
                    }
                }
            }
        }
        dst
    }

    /// The block's frames on `stream`, none longer than `max_frame`.
    fn frames_of(block: &[u8], spec: &BlockSpec, stream: u32, max_frame: usize) -> Vec<u8> {
        let mut before = Vec::new();
        let mut flags = 0;
        if let Some(pad) = spec.padding {
            before.push(pad);
            flags |= PADDED;
        }
        if spec.priority {
            before.extend_from_slice(&[0x80, 0, 0, 3, 15]);
            flags |= PRIORITY;
        }
        let padding = vec![0; usize::from(spec.padding.unwrap_or(0))];
        let room = max_frame - before.len() - padding.len();
        let first = spec.cuts[0].min(room).min(block.len());
        let (mut rest, mut out) = (&block[first..], Vec::new());
        let end = |last: bool| if last { END_HEADERS } else { 0 };
        let last = rest.is_empty() && !spec.empty_last_continuation;
        let payload = [&before[..], &block[..first], &padding].concat();
        out.extend(frame(HEADERS, flags | end(last), stream, &payload));
        for &cut in spec.cuts.iter().cycle().skip(1) {
            if rest.is_empty() {
                break;
            }
            let n = cut.clamp(1, max_frame).min(rest.len());
            let last = n == rest.len() && !spec.empty_last_continuation;
            out.extend(frame(CONTINUATION, end(last), stream, &rest[..n]));
            rest = &rest[n..];
        }
        if spec.empty_last_continuation {
            out.extend(frame(CONTINUATION, END_HEADERS, stream, &[]));
        }
        out
    }

    /// Whether a `:authority` value may have to be re-encoded shorter: a Huffman code longer
    /// than any valid authority of its length has.
    fn may_shrink(value: &[u8]) -> bool {
        huffman_bits(value).div_ceil(8) * 8 > 13 * value.len() + 7
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn rewritten_streams_decode_to_the_same_headers_with_valid_authorities(
            blocks in prop::collection::vec(block_spec(), 1..8),
            max_frame in 24usize..=120,
            chunks in prop::collection::vec(1usize..=64, 1..6),
        ) {
            let mut encoder = httlib_hpack::Encoder::default();
            let mut mirror = Mirror::new();
            let mut input = [PREFACE, &frame(SETTINGS, 0, 0, &[])].concat();
            for (i, spec) in blocks.iter().enumerate() {
                let stream = 2 * i as u32 + 1;
                let block = encode_block(&mut encoder, &mut mirror, spec);
                input.extend(frames_of(&block, spec, stream, max_frame));
                if let Some(data) = &spec.data_after {
                    input.extend(frame(DATA, 0, stream, data));
                }
            }
            let (output, state, table) = run_rewriter(&input, &chunks);
            // The rewriter followed the whole connection, and its dynamic table is the
            // encoder's: the same entries (is the name `:authority`, its length, the size).
            prop_assert_eq!(state, State::FrameHeader);
            prop_assert_eq!((table.size, table.max_size), (mirror.size, mirror.max_size));
            let entries: Vec<_> = table.entries.iter().map(|e| (e.authority, e.name_len, e.size)).collect();
            let expected: Vec<_> = mirror
                .entries
                .iter()
                .map(|(n, v)| (n == b":authority", n.len(), n.len() + v.len() + 32))
                .collect();
            prop_assert_eq!(entries, expected);
            let (before, after) = (group(parse_frames(&input)), group(parse_frames(&output)));
            prop_assert_eq!(before.len(), after.len());
            let (mut original, mut rewritten) =
                (fluke_hpack::Decoder::new(), fluke_hpack::Decoder::new());
            for (was, is) in before.iter().zip(&after) {
                let (was, is) = match (was, is) {
                    (Err(was), Err(is)) => {
                        prop_assert_eq!(was, is, "other frames pass unchanged");
                        continue;
                    }
                    (Ok(was), Ok(is)) => (was, is),
                    _ => return Err(TestCaseError::fail("frame sequence changed")),
                };
                // Frames: no more, none longer (so none over the maximum frame size), the
                // same fields around the block, END_HEADERS on the last one only.
                prop_assert!(!is.is_empty() && is.len() <= was.len());
                for (j, (w, f)) in was.iter().zip(is).enumerate() {
                    prop_assert_eq!((w.kind, w.stream), (f.kind, f.stream));
                    prop_assert!(f.payload.len() <= w.payload.len());
                    prop_assert!(f.payload.len() <= max_frame);
                    prop_assert_eq!(f.flags & END_HEADERS != 0, j + 1 == is.len());
                    prop_assert_eq!(w.flags & !END_HEADERS, f.flags & !END_HEADERS);
                    prop_assert_eq!(w.split().0, f.split().0);
                    prop_assert_eq!(w.split().2, f.split().2);
                }
                let (block_was, block_is) = (block_of(was), block_of(is));
                let fields_was = decode(&mut original, &block_was);
                let fields_is = decode(&mut rewritten, &block_is);
                prop_assert_eq!(fields_was.len(), fields_is.len());
                let mut shrinkable = false;
                for ((name, value), (new_name, new_value)) in fields_was.iter().zip(&fields_is) {
                    prop_assert_eq!(name, new_name);
                    let invalid = name == b":authority" && !is_authority(value);
                    if invalid && !value.is_empty() {
                        prop_assert!(is_authority(new_value), "{:?} -> {:?}", value, new_value);
                        prop_assert_eq!(value.len(), new_value.len());
                        shrinkable |= may_shrink(value);
                    } else {
                        prop_assert_eq!(value, new_value);
                    }
                }
                if shrinkable {
                    prop_assert!(block_is.len() <= block_was.len());
                } else {
                    // Lengths kept: the very same frame lengths.
                    prop_assert_eq!(block_is.len(), block_was.len());
                    prop_assert_eq!(was.len(), is.len());
                }
            }
        }
    }
}
