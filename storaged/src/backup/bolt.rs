//! bbolt database files, the page format of etcd's backend and of its snapshot files: a
//! streaming writer of top-level buckets and a reader.
//!
//! The layout: 4096-byte pages, each starting with a 16-byte header (page id, flags, element
//! count, overflow page count). Pages 0 and 1 are meta pages (the one with the higher
//! transaction id and a valid FNV-1a checksum wins) naming the root bucket's page, the
//! freelist page and the page count. A bucket is a B+tree: leaf pages hold sorted key/value
//! elements, branch pages hold each child's first key and page id; a node larger than a page
//! continues on the following (overflow) pages. The root bucket's leaf holds one element per
//! bucket, flagged as a bucket, whose value is the bucket's root page id and sequence (and,
//! when that page id is 0, the bucket's whole node inline).
//!
//! The writer takes buckets in name order and keys in order within each, writes each leaf as
//! soon as it is full and the branch levels when a bucket ends, so it needs memory only for
//! one leaf plus one entry per leaf written. Everything it writes is reachable, so bbolt's
//! consistency check (what `etcdctl snapshot status` runs first) passes.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

pub const PAGE_SIZE: usize = 4096;
const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const FREELIST: u16 = 0x10;
const BUCKET_FLAG: u32 = 0x01;
const HEADER: usize = 16;
const ELEMENT: usize = 16;
/// Meta fields before the checksum: magic, version, page size, flags, root bucket (page,
/// sequence), freelist page, page count, transaction id.
const META_CHECKED: usize = 56;

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// FNV-1a, 64 bits: bbolt's meta page checksum.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One node (a leaf or branch page and its overflow pages), encoded.
fn encode_node(id: u64, flags: u16, elements: &[(&[u8], &[u8], u32, u64)]) -> Vec<u8> {
    let count = elements.len();
    let data: usize = elements.iter().map(|(k, v, _, _)| k.len() + v.len()).sum();
    let len = HEADER + ELEMENT * count + data;
    let pages = len.div_ceil(PAGE_SIZE).max(1);
    let mut buf = vec![0u8; pages * PAGE_SIZE];
    buf[0..8].copy_from_slice(&id.to_le_bytes());
    buf[8..10].copy_from_slice(&flags.to_le_bytes());
    buf[10..12].copy_from_slice(&(count as u16).to_le_bytes());
    buf[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
    let mut at = HEADER + ELEMENT * count;
    for (i, (k, v, elem_flags, child)) in elements.iter().enumerate() {
        let e = HEADER + ELEMENT * i;
        let pos = (at - e) as u32;
        if flags == LEAF {
            buf[e..e + 4].copy_from_slice(&elem_flags.to_le_bytes());
            buf[e + 4..e + 8].copy_from_slice(&pos.to_le_bytes());
            buf[e + 8..e + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
            buf[e + 12..e + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
        } else {
            buf[e..e + 4].copy_from_slice(&pos.to_le_bytes());
            buf[e + 4..e + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
            buf[e + 8..e + 16].copy_from_slice(&child.to_le_bytes());
        }
        buf[at..at + k.len()].copy_from_slice(k);
        at += k.len();
        buf[at..at + v.len()].copy_from_slice(v);
        at += v.len();
    }
    buf
}

/// A bucket being written: the leaf filling up and the (first key, page) of every node of
/// the level below the one being built.
struct OpenBucket {
    name: Vec<u8>,
    leaf: Vec<(Vec<u8>, Vec<u8>)>,
    leaf_bytes: usize,
    written: Vec<(Vec<u8>, u64)>,
}

/// Writes a bbolt file of top-level buckets.
pub struct Writer<W: Write + Seek> {
    out: W,
    next_page: u64,
    buckets: Vec<(Vec<u8>, u64)>,
    open: Option<OpenBucket>,
}

impl<W: Write + Seek> Writer<W> {
    /// Starts the file (the meta pages are written last, by [`Writer::finish`]).
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&[0u8; 2 * PAGE_SIZE])?;
        Ok(Self {
            out,
            next_page: 2,
            buckets: Vec::new(),
            open: None,
        })
    }

    /// Starts bucket `name`, ending the one before; names must ascend.
    pub fn bucket(&mut self, name: &[u8]) -> io::Result<()> {
        self.end_bucket()?;
        if self
            .buckets
            .last()
            .is_some_and(|(last, _)| last.as_slice() >= name)
        {
            return Err(invalid("bucket names must ascend"));
        }
        self.open = Some(OpenBucket {
            name: name.to_vec(),
            leaf: Vec::new(),
            leaf_bytes: HEADER,
            written: Vec::new(),
        });
        Ok(())
    }

    /// Adds `key` = `value` to the open bucket; keys must ascend.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let b = self
            .open
            .as_mut()
            .ok_or_else(|| invalid("no bucket open"))?;
        let last = b
            .leaf
            .last()
            .map(|(k, _)| k)
            .or(b.written.last().map(|(k, _)| k));
        if last.is_some_and(|l| l.as_slice() >= key) {
            return Err(invalid("keys must ascend within a bucket"));
        }
        if key.is_empty() {
            return Err(invalid("empty key"));
        }
        let size = ELEMENT + key.len() + value.len();
        if !b.leaf.is_empty() && b.leaf_bytes + size > PAGE_SIZE {
            self.flush_leaf()?;
        }
        let b = self
            .open
            .as_mut()
            .ok_or_else(|| invalid("no bucket open"))?;
        b.leaf.push((key.to_vec(), value.to_vec()));
        b.leaf_bytes += size;
        Ok(())
    }

    fn write_node(&mut self, flags: u16, elements: &[(&[u8], &[u8], u32, u64)]) -> io::Result<u64> {
        let id = self.next_page;
        let node = encode_node(id, flags, elements);
        self.out.write_all(&node)?;
        self.next_page += (node.len() / PAGE_SIZE) as u64;
        Ok(id)
    }

    fn flush_leaf(&mut self) -> io::Result<()> {
        let Some(b) = self.open.as_mut() else {
            return Ok(());
        };
        let leaf = std::mem::take(&mut b.leaf);
        b.leaf_bytes = HEADER;
        let elements: Vec<_> = leaf
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice(), 0, 0))
            .collect();
        let id = self.write_node(LEAF, &elements)?;
        let first = leaf.into_iter().next().map(|(k, _)| k).unwrap_or_default();
        if let Some(b) = self.open.as_mut() {
            b.written.push((first, id));
        }
        Ok(())
    }

    /// Writes the open bucket's last leaf and its branch levels; records its root page.
    fn end_bucket(&mut self) -> io::Result<()> {
        let Some(b) = self.open.as_ref() else {
            return Ok(());
        };
        if !b.leaf.is_empty() || b.written.is_empty() {
            self.flush_leaf()?;
        }
        let Some(b) = self.open.take() else {
            return Ok(());
        };
        let mut level = b.written;
        while level.len() > 1 {
            let mut next = Vec::new();
            let mut group: Vec<(Vec<u8>, u64)> = Vec::new();
            let mut bytes = HEADER;
            for (key, page) in level {
                let size = ELEMENT + key.len();
                if !group.is_empty() && bytes + size > PAGE_SIZE {
                    next.push(self.write_branch(&group)?);
                    group.clear();
                    bytes = HEADER;
                }
                bytes += size;
                group.push((key, page));
            }
            next.push(self.write_branch(&group)?);
            level = next;
        }
        let root = level.first().map_or(0, |(_, page)| *page);
        self.buckets.push((b.name, root));
        Ok(())
    }

    fn write_branch(&mut self, children: &[(Vec<u8>, u64)]) -> io::Result<(Vec<u8>, u64)> {
        let elements: Vec<_> = children
            .iter()
            .map(|(k, page)| (k.as_slice(), &[][..], 0, *page))
            .collect();
        let id = self.write_node(BRANCH, &elements)?;
        Ok((children[0].0.clone(), id))
    }

    /// Writes the root bucket, an empty freelist and the meta pages; returns the output and
    /// the file's length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.end_bucket()?;
        let buckets = std::mem::take(&mut self.buckets);
        let headers: Vec<[u8; 16]> = buckets
            .iter()
            .map(|(_, root)| {
                let mut h = [0u8; 16];
                h[0..8].copy_from_slice(&root.to_le_bytes());
                h
            })
            .collect();
        let elements: Vec<_> = buckets
            .iter()
            .zip(&headers)
            .map(|((name, _), h)| (name.as_slice(), &h[..], BUCKET_FLAG, 0))
            .collect();
        let root = self.write_node(LEAF, &elements)?;
        let freelist = self.write_node(FREELIST, &[])?;
        let pages = self.next_page;
        self.out.seek(SeekFrom::Start(0))?;
        for id in 0..2u64 {
            let mut page = vec![0u8; PAGE_SIZE];
            page[0..8].copy_from_slice(&id.to_le_bytes());
            page[8..10].copy_from_slice(&META.to_le_bytes());
            let m = &mut page[HEADER..HEADER + META_CHECKED + 8];
            m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
            m[4..8].copy_from_slice(&VERSION.to_le_bytes());
            m[8..12].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
            m[16..24].copy_from_slice(&root.to_le_bytes());
            m[32..40].copy_from_slice(&freelist.to_le_bytes());
            m[40..48].copy_from_slice(&pages.to_le_bytes());
            m[48..56].copy_from_slice(&(id + 1).to_le_bytes());
            let sum = fnv1a64(&m[..META_CHECKED]);
            m[56..64].copy_from_slice(&sum.to_le_bytes());
            self.out.write_all(&page)?;
        }
        self.out.seek(SeekFrom::Start(pages * PAGE_SIZE as u64))?;
        self.out.flush()?;
        Ok((self.out, pages * PAGE_SIZE as u64))
    }
}

/// Called with each leaf element: its flags, key and value.
type ElementVisitor<'a> = dyn FnMut(u32, &[u8], &[u8]) -> io::Result<()> + 'a;
/// Called with each key and value of a bucket.
pub type RecordVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> io::Result<()> + 'a;

/// Reads a bbolt file.
pub struct Reader {
    file: File,
    page_size: usize,
    root: u64,
    /// Pages in the file (its size is this times the page size).
    pub pages: u64,
}

/// A node read from the file: its flags and the bytes of all its pages.
struct Node {
    flags: u16,
    count: usize,
    bytes: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> io::Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap_or_default()))
        .ok_or_else(|| invalid("truncated page"))
}

fn u64_at(b: &[u8], at: usize) -> io::Result<u64> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or_default()))
        .ok_or_else(|| invalid("truncated page"))
}

fn slice(b: &[u8], at: usize, len: usize) -> io::Result<&[u8]> {
    b.get(at..at + len)
        .ok_or_else(|| invalid("element out of its page"))
}

impl Node {
    fn parse(bytes: Vec<u8>) -> io::Result<Self> {
        if bytes.len() < HEADER {
            return Err(invalid("truncated page"));
        }
        let flags = u16::from_le_bytes([bytes[8], bytes[9]]);
        let count = usize::from(u16::from_le_bytes([bytes[10], bytes[11]]));
        Ok(Node {
            flags,
            count,
            bytes,
        })
    }

    /// Leaf element `i`: (flags, key, value).
    fn leaf(&self, i: usize) -> io::Result<(u32, &[u8], &[u8])> {
        let e = HEADER + ELEMENT * i;
        let (flags, pos) = (
            u32_at(&self.bytes, e)?,
            u32_at(&self.bytes, e + 4)? as usize,
        );
        let (ksize, vsize) = (
            u32_at(&self.bytes, e + 8)? as usize,
            u32_at(&self.bytes, e + 12)? as usize,
        );
        let key = slice(&self.bytes, e + pos, ksize)?;
        let value = slice(&self.bytes, e + pos + ksize, vsize)?;
        Ok((flags, key, value))
    }

    /// Branch element `i`: its child's page.
    fn child(&self, i: usize) -> io::Result<u64> {
        u64_at(&self.bytes, HEADER + ELEMENT * i + 8)
    }
}

impl Reader {
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let mut best: Option<(u64, usize, u64, u64)> = None;
        for id in 0..2u64 {
            // Meta pages sit at multiples of the page size, which the meta itself names; the
            // first is at 0, the second is found with the first's page size.
            let page_size = best.map_or(PAGE_SIZE, |b| b.1);
            let mut page = vec![0u8; HEADER + META_CHECKED + 8];
            if file
                .read_exact_at(&mut page, id * page_size as u64)
                .is_err()
            {
                continue;
            }
            let m = &page[HEADER..];
            let valid = u32_at(m, 0)? == MAGIC
                && u32_at(m, 4)? == VERSION
                && u64_at(m, 56)? == fnv1a64(&m[..META_CHECKED]);
            if !valid {
                continue;
            }
            let (page_size, root, pages, txid) = (
                u32_at(m, 8)? as usize,
                u64_at(m, 16)?,
                u64_at(m, 40)?,
                u64_at(m, 48)?,
            );
            if best.is_none_or(|b| txid > b.0) {
                best = Some((txid, page_size, root, pages));
            }
        }
        let (_, page_size, root, pages) =
            best.ok_or_else(|| invalid("not a bbolt file: no valid meta page"))?;
        if !(512..=1 << 16).contains(&page_size) {
            return Err(invalid(format!("unsupported page size {page_size}")));
        }
        Ok(Reader {
            file,
            page_size,
            root,
            pages,
        })
    }

    fn node(&self, id: u64) -> io::Result<Node> {
        if id < 2 || id >= self.pages {
            return Err(invalid(format!("page {id} out of bounds")));
        }
        let mut bytes = vec![0u8; self.page_size];
        self.file
            .read_exact_at(&mut bytes, id * self.page_size as u64)?;
        let overflow = u32_at(&bytes, 12)? as usize;
        if overflow > 0 {
            if id + overflow as u64 >= self.pages {
                return Err(invalid(format!("page {id} overflows the file")));
            }
            bytes.resize(self.page_size * (overflow + 1), 0);
            self.file.read_exact_at(
                &mut bytes[self.page_size..],
                (id + 1) * self.page_size as u64,
            )?;
        }
        Node::parse(bytes)
    }

    /// Calls `f` with every (flags, key, value) of the tree rooted at `root`, in key order.
    fn walk(&self, root: Node, depth: usize, f: &mut ElementVisitor<'_>) -> io::Result<()> {
        if depth > 64 {
            return Err(invalid("tree too deep (a page refers back to itself?)"));
        }
        match root.flags {
            LEAF => {
                for i in 0..root.count {
                    let (flags, k, v) = root.leaf(i)?;
                    f(flags, k, v)?;
                }
                Ok(())
            }
            BRANCH => {
                for i in 0..root.count {
                    let child = self.node(root.child(i)?)?;
                    self.walk(child, depth + 1, f)?;
                }
                Ok(())
            }
            other => Err(invalid(format!("page of type {other:#x} inside a tree"))),
        }
    }

    /// The top-level buckets: (name, root node).
    fn buckets(&self) -> io::Result<Vec<(Vec<u8>, Node)>> {
        let mut out = Vec::new();
        let mut found = Vec::new();
        self.walk(self.node(self.root)?, 0, &mut |flags, k, v| {
            if flags & BUCKET_FLAG != 0 {
                found.push((k.to_vec(), v.to_vec()));
            }
            Ok(())
        })?;
        for (name, value) in found {
            let root = u64_at(&value, 0)?;
            let node = if root == 0 {
                // An inline bucket: its node follows the bucket header.
                Node::parse(
                    value
                        .get(16..)
                        .ok_or_else(|| invalid("bad inline bucket"))?
                        .to_vec(),
                )?
            } else {
                self.node(root)?
            };
            out.push((name, node));
        }
        Ok(out)
    }

    /// The names of the top-level buckets, in order.
    pub fn bucket_names(&self) -> io::Result<Vec<Vec<u8>>> {
        Ok(self.buckets()?.into_iter().map(|(n, _)| n).collect())
    }

    /// Calls `f` with every key and value of top-level bucket `name` in key order (nested
    /// buckets skipped); false when there is no such bucket.
    pub fn for_each(&self, name: &[u8], f: &mut RecordVisitor<'_>) -> io::Result<bool> {
        let Some((_, root)) = self.buckets()?.into_iter().find(|(n, _)| n == name) else {
            return Ok(false);
        };
        self.walk(root, 0, &mut |flags, k, v| {
            if flags & BUCKET_FLAG == 0 {
                f(k, v)?;
            }
            Ok(())
        })?;
        Ok(true)
    }

    /// The file's size as bbolt counts it (pages times page size).
    pub fn size(&self) -> u64 {
        self.pages * self.page_size as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

    fn write(path: &std::path::Path, buckets: &Buckets) -> u64 {
        let mut w = Writer::new(File::create(path).expect("create")).expect("writer");
        for (name, kvs) in buckets {
            w.bucket(name).expect("bucket");
            for (k, v) in kvs {
                w.put(k, v).expect("put");
            }
        }
        w.finish().expect("finish").1
    }

    fn read(path: &std::path::Path) -> Buckets {
        let r = Reader::open(path).expect("open");
        let mut out = Buckets::new();
        for name in r.bucket_names().expect("names") {
            let mut kvs = BTreeMap::new();
            r.for_each(&name, &mut |k, v| {
                kvs.insert(k.to_vec(), v.to_vec());
                Ok(())
            })
            .expect("for_each");
            out.insert(name, kvs);
        }
        out
    }

    #[test]
    fn round_trip_of_empty_small_large_and_many() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut buckets = Buckets::new();
        buckets.insert(b"empty".to_vec(), BTreeMap::new());
        buckets.insert(
            b"one".to_vec(),
            BTreeMap::from([(b"k".to_vec(), b"v".to_vec())]),
        );
        // Values of a page and more (overflow pages) between small ones.
        buckets.insert(
            b"large".to_vec(),
            (0..20u32)
                .map(|i| {
                    let len = if i % 3 == 0 {
                        (1 << 20) + i as usize
                    } else {
                        i as usize
                    };
                    (i.to_be_bytes().to_vec(), vec![i as u8; len])
                })
                .collect(),
        );
        // Enough keys for two branch levels.
        buckets.insert(
            b"many".to_vec(),
            (0..200_000u64)
                .map(|i| (i.to_be_bytes().to_vec(), format!("value {i}").into_bytes()))
                .collect(),
        );
        let path = dir.path().join("db");
        let len = write(&path, &buckets);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), len);
        assert_eq!(len % PAGE_SIZE as u64, 0);
        assert_eq!(Reader::open(&path).expect("open").size(), len);
        assert_eq!(read(&path), buckets);
    }

    #[test]
    fn an_empty_database_has_meta_root_and_freelist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        assert_eq!(write(&path, &Buckets::new()), 4 * PAGE_SIZE as u64);
        assert!(read(&path).is_empty());
    }

    #[test]
    fn order_is_enforced() {
        let mut w = Writer::new(io::Cursor::new(Vec::new())).expect("writer");
        w.bucket(b"b").expect("bucket");
        w.put(b"2", b"").expect("put");
        assert!(w.put(b"1", b"").is_err());
        assert!(w.put(b"2", b"").is_err());
        assert!(w.bucket(b"a").is_err());
    }

    #[test]
    fn a_damaged_meta_page_falls_back_to_the_other_and_two_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let buckets = Buckets::from([(
            b"key".to_vec(),
            BTreeMap::from([(b"a".to_vec(), b"1".to_vec())]),
        )]);
        write(&path, &buckets);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[PAGE_SIZE + HEADER + 20] ^= 1; // meta 1 (the newer) damaged
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(read(&path), buckets);
        bytes[HEADER + 20] ^= 1; // and meta 0
        std::fs::write(&path, &bytes).expect("write");
        assert!(Reader::open(&path).is_err());
    }
}
