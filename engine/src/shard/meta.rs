//! A shard's identity file (`meta`) and where its directory is.

use crate::error::{EngineError, Result};
use crate::storage::IO_ALIGN;
use std::path::{Path, PathBuf};

const META_MAGIC: &[u8; 8] = b"SCMETA02";
/// The identity file of the layout before shared shards (partition, number, hash range).
pub const META_MAGIC_V1: &[u8; 8] = b"SCMETA01";
const META_VERSION: u32 = 2;
/// magic, version, number, partition flag, partition length.
const META_FIXED_LEN: usize = 8 + 4 + 8 + 1 + 4;
/// The folder of the data directory that holds every shard's directory.
pub const SHARDS_DIR: &str = "shards";

/// Who a shard is: its number, and the partition whose own shard it is (`None` for a shared
/// shard). What it owns is the shard map's business, not this file's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShardMeta {
    pub number: u64,
    pub partition: Option<Vec<u8>>,
}

impl ShardMeta {
    pub fn shared(number: u64) -> Self {
        ShardMeta { number, partition: None }
    }

    /// A readable name for logs and errors: `user/7`, or `shared/0`.
    pub fn name(&self) -> String {
        match &self.partition {
            Some(p) => format!("{}/{}", partition_display(p), self.number),
            None => format!("shared/{}", self.number),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(IO_ALIGN);
        out.extend_from_slice(META_MAGIC);
        out.extend_from_slice(&META_VERSION.to_le_bytes());
        out.extend_from_slice(&self.number.to_le_bytes());
        let partition = self.partition.as_deref().unwrap_or_default();
        out.push(self.partition.is_some() as u8);
        out.extend_from_slice(&(partition.len() as u32).to_le_bytes());
        out.extend_from_slice(partition);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.resize(crate::storage::align_up(out.len() as u64) as usize, 0);
        out
    }

    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |offset: u64, reason: &str| EngineError::Corrupt {
            path: path.to_owned(),
            offset,
            reason: reason.to_owned(),
        };
        if bytes.len() >= 8 && &bytes[0..8] == META_MAGIC_V1 {
            return Err(corrupt(0, "a shard of the layout before shared shards (format 1)"));
        }
        if bytes.len() < META_FIXED_LEN + 4 || &bytes[0..8] != META_MAGIC {
            return Err(corrupt(0, "not a shard meta file"));
        }
        let flag = bytes[20];
        let plen = u32::from_le_bytes(bytes[21..25].try_into().unwrap()) as usize;
        if flag > 1
            || plen > crate::routing::PARTITION_LEN_MAX
            || bytes.len() < META_FIXED_LEN + plen + 4
        {
            return Err(corrupt(20, "bad partition flag or length"));
        }
        let body = &bytes[..META_FIXED_LEN + plen];
        let stored = &bytes[META_FIXED_LEN + plen..META_FIXED_LEN + plen + 4];
        let expected = u32::from_le_bytes(stored.try_into().unwrap());
        let got = crc32fast::hash(body);
        if expected != got {
            return Err(EngineError::ChecksumMismatch {
                path: path.to_owned(),
                offset: (META_FIXED_LEN + plen) as u64,
                expected,
                got,
            });
        }
        Ok(ShardMeta {
            number: u64::from_le_bytes(bytes[12..20].try_into().unwrap()),
            partition: (flag == 1).then(|| bytes[META_FIXED_LEN..META_FIXED_LEN + plen].to_vec()),
        })
    }
}

/// A partition name as people read it: UTF-8 if it is, else hex; the default one is `(default)`.
pub fn partition_display(partition: &[u8]) -> String {
    if partition.is_empty() {
        return "(default)".into();
    }
    match std::str::from_utf8(partition) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_owned(),
        _ => partition.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// The folder holding every shard's directory.
pub fn shards_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SHARDS_DIR)
}

/// The directory of shard `number`: `<data-dir>/shards/<number>/`.
pub fn shard_dir(data_dir: &Path, number: u64) -> PathBuf {
    shards_dir(data_dir).join(number.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_refuses_damage() {
        for meta in
            [ShardMeta::shared(3), ShardMeta { number: 9, partition: Some(b"user".to_vec()) }]
        {
            let bytes = meta.encode();
            assert_eq!(bytes.len(), IO_ALIGN);
            assert_eq!(ShardMeta::decode(&bytes, Path::new("meta")).unwrap(), meta);
            let plen = meta.partition.as_ref().map_or(0, Vec::len);
            for i in 0..META_FIXED_LEN + plen + 4 {
                let mut bad = bytes.clone();
                bad[i] ^= 0x10;
                assert!(ShardMeta::decode(&bad, Path::new("meta")).is_err(), "byte {i}");
            }
        }
        assert_eq!(ShardMeta::shared(0).name(), "shared/0");
        assert_eq!(ShardMeta { number: 2, partition: Some(vec![]) }.name(), "(default)/2");
    }
}
