//! Serialization of raft messages, log entries and applied state (postcard: compact, and
//! commands inside entries are protobuf bytes).

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;

pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
