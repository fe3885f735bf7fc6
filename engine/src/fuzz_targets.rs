//! The bodies of the engine's fuzz targets, one function per decoder, shared by the two
//! runners: libFuzzer on nightly (`fuzz/fuzz_targets/*.rs`) and the stable test over the
//! corpus plus seeded mutations (`tests/fuzz_decoders.rs`). Also owns what both runners need
//! besides: the seed inputs made with the real encoders (`seeds`), the seeded mutator
//! (`mutate`) and the stable runner itself (`run_corpus_and_mutations`, which the server's
//! `tests/fuzz_parsers.rs` uses too). docs/testing.md says how to run them.
//!
//! A body takes any bytes, panics when a property breaks, and returns whether the input decoded
//! (the stable runner counts those, so a run that never gets past the checksums shows). Beyond
//! "no panic", the properties are: a decoded value
//! re-encodes with the real encoder and decodes to the same value, a decoder never claims more
//! bytes than it was given, and a single flipped byte in a valid encoding is refused (with a
//! checksum error where a crc covers it) or, where no crc covers it (reserved words, file
//! padding), changes nothing.
//!
//! The first input byte is a mode: bit 0 asks the body to repair the checksums (and the counts
//! and lengths they guard) before decoding, so fuzzing reaches the structure behind the crc;
//! the higher bits pick a variant where a target has several. The rest is the encoding.
//!
//! Not part of the engine's API: hidden from the docs, used only by the fuzz runners.

use crate::log::reader::{read_log, LogEnd};
use crate::log::record::{
    decode, DecodeError, RECORD_BODY_FIXED_LEN, RECORD_BODY_LEN_MAX, RECORD_HEADER_LEN,
};
use crate::migration::{decode_batch, encode_batch, MigrationBatch, BATCH_HEADER_LEN};
use crate::placement::shard_map::{ShardMap, MANIFEST_HEADER_LEN};
use crate::placement::upgrade::{decode_manifest_v1, decode_meta_v1, MapV1, MetaV1};
use crate::routing::{partition_span, Position, PARTITION_LEN_MAX};
use crate::shard::segment::{
    decode_segment, encode_chunk, encode_footer, encode_header, ArchivedChunk, SegmentEntry,
    SegmentError, CHUNK_HEADER_LEN, CHUNK_PAYLOAD_LEN_MAX, SEGMENT_FOOTER_LEN,
    SEGMENT_FOOTER_MAGIC, SEGMENT_HEADER_LEN,
};
use crate::shard::{ShardMeta, META_MAGIC_V1};
use crate::testing::SplitMix64;
use crate::EngineError;
use std::path::Path;

/// Flipped bytes tried per valid encoding (spread over it, first and last included).
const FLIPS_PER_INPUT_MAX: usize = 48;
/// Truncations tried per valid encoding.
const CUTS_PER_INPUT_MAX: usize = 8;
/// Most shards in one format-1 partition (as `decode_manifest_v1` enforces).
const V1_SHARDS_PER_PARTITION_MAX: usize = 4096;

/// Up to `n` positions spread over `0..len`, the first and the last included.
fn spread(len: usize, n: usize) -> Vec<usize> {
    if len <= n {
        return (0..len).collect();
    }
    (0..n).map(|i| i * (len - 1) / (n - 1)).collect()
}

fn flipped(bytes: &[u8], i: usize) -> Vec<u8> {
    let mut bad = bytes.to_vec();
    bad[i] ^= 1 << (i % 8);
    bad
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

fn put_u32(b: &mut [u8], i: usize, v: u32) {
    b[i..i + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], i: usize, v: u64) {
    b[i..i + 8].copy_from_slice(&v.to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// WAL records and logs.

/// Recomputes the crc of each record framing from the start of `bytes`, as far as the lengths
/// make sense.
fn repair_wal(bytes: &mut [u8]) {
    let mut at = 0;
    while bytes.len() - at >= RECORD_HEADER_LEN {
        let body_len = u32_at(bytes, at) as usize;
        if !(RECORD_BODY_FIXED_LEN..=RECORD_BODY_LEN_MAX).contains(&body_len)
            || bytes.len() - at - RECORD_HEADER_LEN < body_len
        {
            break;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&bytes[at..at + 4]);
        h.update(&bytes[at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + body_len]);
        put_u32(bytes, at + 4, h.finalize());
        at += RECORD_HEADER_LEN + body_len;
    }
}

/// `record::decode` on the front of the input and `reader::read_log` on all of it. Mode bits
/// 1-2 give `read_log`'s `first_lsn`: none, the first record's, one past it, or 1.
pub fn wal_log(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else { return false };
    let mut bytes = rest.to_vec();
    if mode & 1 != 0 {
        repair_wal(&mut bytes);
    }
    let decoded = decode(&bytes);
    let valid = decoded.is_ok();
    match decoded {
        Ok(d) => {
            assert!(d.len <= bytes.len(), "record of {} bytes in {}", d.len, bytes.len());
            assert_eq!(d.len, d.record.encoded_len());
            assert!(d.durable_lsn < d.lsn);
            // The format is canonical: the real encoder gives back exactly these bytes.
            let mut again = Vec::new();
            d.record.encode(d.lsn, d.durable_lsn, &mut again);
            assert_eq!(again, &bytes[..d.len], "re-encoding differs");
            // The crc covers every byte of a record, its length included.
            for i in spread(d.len, FLIPS_PER_INPUT_MAX) {
                match decode(&flipped(&bytes[..d.len], i)) {
                    Err(DecodeError::Malformed { reason }) => {
                        panic!("flip at {i} passed the crc and was refused as {reason}")
                    }
                    Err(_) => {}
                    Ok(r) => panic!("flip at {i} accepted: {r:?}"),
                }
            }
            for cut in spread(d.len, CUTS_PER_INPUT_MAX).into_iter().filter(|&c| c > 0) {
                assert!(decode(&bytes[..cut]).is_err(), "record cut to {cut} bytes accepted");
            }
        }
        Err(DecodeError::Truncated { needed }) => assert!(needed > bytes.len()),
        Err(DecodeError::End) => assert!(bytes.iter().take(4).all(|&b| b == 0)),
        Err(DecodeError::BadLength { body_len }) => {
            assert!(!(RECORD_BODY_FIXED_LEN as u64..=RECORD_BODY_LEN_MAX as u64).contains(&body_len))
        }
        Err(DecodeError::Checksum { .. } | DecodeError::Malformed { .. }) => {}
    }

    let first_at_0 = (bytes.len() >= 16).then(|| u64_at(&bytes, 8));
    let first_lsn = match (mode >> 1) & 3 {
        0 => None,
        1 => first_at_0,
        2 => first_at_0.map(|l| l.wrapping_add(1)),
        _ => Some(1),
    };
    let mut records = Vec::new();
    let end = read_log(&bytes, first_lsn, |lsn, r| records.push((lsn, r.encoded_len())));
    let consumed: usize = records.iter().map(|r| r.1).sum();
    if let (Some(first), Some(&(lsn, _))) = (first_lsn, records.first()) {
        assert_eq!(lsn, first, "the first record is not the LSN asked for");
    }
    for w in records.windows(2) {
        assert_eq!(w[0].0.checked_add(1), Some(w[1].0), "LSNs not consecutive");
    }
    match &end {
        LogEnd::Clean { offset } => {
            assert_eq!(*offset as usize, consumed);
            assert!(bytes[consumed..].iter().all(|&b| b == 0), "a clean end before non-zero bytes");
        }
        LogEnd::Torn { offset } | LogEnd::Corrupt { offset, .. } => {
            assert_eq!(*offset as usize, consumed);
            assert!(consumed < bytes.len(), "damage reported past the end");
        }
    }
    // The valid prefix alone reads cleanly, with the same records.
    let mut again = Vec::new();
    let prefix_end =
        read_log(&bytes[..consumed], first_lsn, |lsn, r| again.push((lsn, r.encoded_len())));
    assert_eq!(prefix_end, LogEnd::Clean { offset: consumed as u64 }, "after {end:?}");
    assert_eq!(again, records);
    valid
}

// ---------------------------------------------------------------------------------------------
// Snapshot segments.

/// Recomputes the header crc, each chunk's crc, entry count and padding, and the footer's
/// totals and crc, as far as the lengths make sense.
fn repair_segment(bytes: &mut [u8]) {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[0..12]);
    h.update(&bytes[16..32]);
    put_u32(bytes, 12, h.finalize());
    let lsn = u64_at(bytes, 16);
    let (mut at, mut chunks, mut entries) = (SEGMENT_HEADER_LEN, 0u64, 0u64);
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    loop {
        if bytes.len() - at >= SEGMENT_FOOTER_LEN && &bytes[at..at + 8] == SEGMENT_FOOTER_MAGIC {
            put_u64(bytes, at + 8, lsn);
            put_u64(bytes, at + 16, chunks);
            put_u64(bytes, at + 24, entries);
            let crc = crc32fast::hash(&bytes[at..at + 32]);
            put_u32(bytes, at + 32, crc);
            return;
        }
        if bytes.len() - at < CHUNK_HEADER_LEN {
            return;
        }
        let len = u32_at(bytes, at) as usize;
        if len > CHUNK_PAYLOAD_LEN_MAX || bytes.len() - at - CHUNK_HEADER_LEN < len {
            return;
        }
        let payload = at + CHUNK_HEADER_LEN..at + CHUNK_HEADER_LEN + len;
        let crc = crc32fast::hash(&bytes[payload.clone()]);
        put_u32(bytes, at + 4, crc);
        aligned.clear();
        aligned.extend_from_slice(&bytes[payload]);
        let Ok(chunk) = rkyv::access::<ArchivedChunk, rkyv::rancor::Error>(&aligned) else {
            return;
        };
        let count = chunk.entries.len() as u64;
        put_u64(bytes, at + 8, count);
        chunks += 1;
        entries += count;
        at += CHUNK_HEADER_LEN + len;
        let pad_end = at.div_ceil(16) * 16;
        if pad_end > bytes.len() {
            return;
        }
        bytes[at..pad_end].fill(0);
        at = pad_end;
    }
}

/// What `decode_segment` returned (lsn, chunks, entries) and the entries it passed on.
type SegmentDecoded = (Result<(u64, u64, u64), SegmentError>, Vec<SegmentEntry>);

fn decode_segment_entries(bytes: &[u8]) -> SegmentDecoded {
    let mut entries = Vec::new();
    let result = decode_segment(bytes, |e| {
        entries.push(SegmentEntry {
            key: e.key.to_vec(),
            value: e.value.to_vec(),
            expire_at_ms: e.expire_at_ms.to_native(),
        })
    });
    (result.map(|s| (s.lsn, s.chunks, s.entries)), entries)
}

/// `segment::decode_segment` on the input.
pub fn segment(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else { return false };
    let mut bytes = rest.to_vec();
    if mode & 1 != 0 {
        repair_segment(&mut bytes);
    }
    let (result, entries) = decode_segment_entries(&bytes);
    let (lsn, chunk_count, entry_count) = match result {
        Ok(s) => s,
        Err(e) => {
            assert!(e.offset() <= bytes.len() as u64, "error offset {} past the end", e.offset());
            return false;
        }
    };
    assert_eq!(entries.len() as u64, entry_count);
    // The layout the decoder accepted: each chunk's offset, payload length and entry count.
    let mut chunks: Vec<(usize, usize, u64)> = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while &bytes[at..at + 8] != SEGMENT_FOOTER_MAGIC {
        let len = u32_at(&bytes, at) as usize;
        chunks.push((at, len, u64_at(&bytes, at + 8)));
        at = (at + CHUNK_HEADER_LEN + len).div_ceil(16) * 16;
    }
    let (footer_at, end) = (at, at + SEGMENT_FOOTER_LEN);
    assert!(end <= bytes.len());
    assert_eq!(chunks.len() as u64, chunk_count);

    // Re-encoded chunk by chunk with the real encoders, it decodes to the same (rkyv archives
    // are not canonical, so the bytes may differ).
    let mut again = Vec::new();
    encode_header(lsn, &mut again);
    let mut left = entries.clone().into_iter();
    for &(_, _, count) in &chunks {
        encode_chunk(left.by_ref().take(count as usize).collect(), &mut again);
    }
    encode_footer(lsn, chunk_count, entry_count, &mut again);
    let (result_again, entries_again) = decode_segment_entries(&again);
    assert_eq!(result_again, Ok((lsn, chunk_count, entry_count)));
    assert_eq!(entries_again, entries);

    for i in spread(end, FLIPS_PER_INPUT_MAX)
        .into_iter()
        .chain(chunks.iter().map(|c| c.0 + 8))
        .chain([footer_at, footer_at + 36])
    {
        let (result, _) = decode_segment_entries(&flipped(&bytes[..end], i));
        let chunk = chunks.iter().find(|c| (c.0..c.0 + CHUNK_HEADER_LEN + c.1).contains(&i));
        match (result, chunk) {
            (Ok(_), _) => panic!("flip at {i} accepted"),
            (Err(SegmentError::BadMagic { offset: 0 }), _) if i < 8 => {}
            (Err(SegmentError::Checksum { offset: 0, .. }), _) if (8..32).contains(&i) => {}
            (Err(e), None) if (8..32).contains(&i) => panic!("header flip at {i}: {e:?}"),
            (Err(SegmentError::Checksum { offset, .. }), Some(c))
                if i >= c.0 + CHUNK_HEADER_LEN || (4..8).contains(&(i - c.0)) =>
            {
                assert_eq!(offset as usize, c.0, "flip at {i}")
            }
            (Err(e), Some(c)) if i >= c.0 + CHUNK_HEADER_LEN || (4..8).contains(&(i - c.0)) => {
                panic!("payload or crc flip at {i} refused as {e:?}, not as a checksum")
            }
            (Err(e), None) if (footer_at + 8..footer_at + 36).contains(&i) => {
                let at = footer_at as u64;
                assert!(matches!(e, SegmentError::Checksum { offset, .. } if offset == at), "{e:?}")
            }
            (Err(_), _) => {}
        }
    }
    for cut in spread(end, CUTS_PER_INPUT_MAX) {
        assert!(decode_segment_entries(&bytes[..cut]).0.is_err(), "cut to {cut} accepted");
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Manifests and shard identity files (current and format 1).

fn error_offset(e: &EngineError) -> Option<u64> {
    match e {
        EngineError::Corrupt { offset, .. } | EngineError::ChecksumMismatch { offset, .. } => {
            Some(*offset)
        }
        _ => None,
    }
}

/// Repairs a manifest header (both formats share it): a body length past the file becomes
/// what the file holds, then the body's crc.
fn repair_manifest(bytes: &mut [u8]) {
    if bytes.len() < MANIFEST_HEADER_LEN {
        return;
    }
    let room = bytes.len() - MANIFEST_HEADER_LEN;
    if u32_at(bytes, 12) as usize > room {
        put_u32(bytes, 12, room as u32);
    }
    let len = u32_at(bytes, 12) as usize;
    let crc = crc32fast::hash(&bytes[MANIFEST_HEADER_LEN..MANIFEST_HEADER_LEN + len]);
    put_u32(bytes, 16, crc);
}

/// Repairs a meta file's crc; `plen_at` is where its partition length is, `fixed` its fixed
/// part before the partition.
fn repair_meta(bytes: &mut [u8], plen_at: usize, fixed: usize) {
    if bytes.len() < fixed + 4 {
        return;
    }
    let plen = (u32_at(bytes, plen_at) as usize).min(PARTITION_LEN_MAX);
    if bytes.len() < fixed + plen + 4 {
        return;
    }
    put_u32(bytes, plen_at, plen as u32);
    let crc = crc32fast::hash(&bytes[..fixed + plen]);
    put_u32(bytes, fixed + plen, crc);
}

/// A format-1 manifest as the format-1 writer laid it out (documented in `placement::upgrade`):
/// epoch 0, partitions by name, cores 0, no migration.
pub fn encode_manifest_v1(map: &MapV1) -> Vec<u8> {
    let mut names: Vec<&Vec<u8>> = map.keys().collect();
    names.sort();
    let mut body = Vec::new();
    body.extend_from_slice(&0u64.to_le_bytes());
    body.extend_from_slice(&(names.len() as u32).to_le_bytes());
    for name in names {
        let shards = &map[name];
        body.extend_from_slice(&(name.len() as u32).to_le_bytes());
        body.extend_from_slice(name);
        let next = shards.iter().map(|s| s.0.saturating_add(1)).max().unwrap_or(0);
        body.extend_from_slice(&next.to_le_bytes());
        body.extend_from_slice(&(shards.len() as u32).to_le_bytes());
        for &(number, lo, hi) in shards {
            for v in [number, lo, hi] {
                body.extend_from_slice(&v.to_le_bytes());
            }
            body.extend_from_slice(&0u32.to_le_bytes());
        }
    }
    body.push(0);
    let mut out = Vec::new();
    out.extend_from_slice(crate::placement::shard_map::MANIFEST_MAGIC_V1);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A format-1 shard `meta` as the format-1 writer laid it out (see `decode_meta_v1`), with the
/// whole hash range.
pub fn encode_meta_v1(meta: &MetaV1) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(META_MAGIC_V1);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(meta.partition.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta.number.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&u64::MAX.to_le_bytes());
    out.extend_from_slice(&meta.partition);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks that flips at spread positions of `0..covered` are refused by `decode`, and that
/// flips at `ignored` positions (reserved words, padding) are refused or change nothing.
fn check_flips<T: PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    covered: usize,
    ignored: &[usize],
    value: &T,
    decode: impl Fn(&[u8]) -> Result<T, EngineError>,
) {
    for i in spread(covered, FLIPS_PER_INPUT_MAX) {
        if let Ok(v) = decode(&flipped(bytes, i)) {
            assert!(ignored.contains(&i), "flip at {i} of {covered} accepted: {v:?}");
            assert_eq!(&v, value, "flip at {i} changed the value");
        }
    }
    for &i in ignored.iter().filter(|&&i| i < bytes.len()) {
        if let Ok(v) = decode(&flipped(bytes, i)) {
            assert_eq!(&v, value, "flip at {i} changed the value");
        }
    }
}

/// The bytes of a manifest (either format) that its crc does not cover, where a flip must be
/// refused or change nothing: the body length (bytes 12..16), the reserved word (20..24) and
/// the padding after the body (`end..`). The length is outside the crc, and a crc32 does not
/// always change with the length: a body of `ff ff ff ff` then zeros has the crc `0xffffffff`
/// at every length (the fuzzer found that one). A longer body is then refused by format 2
/// (trailing bytes) and decodes to the same map in format 1 (which ignores what follows).
fn manifest_uncovered(bytes: &[u8], end: usize) -> Vec<usize> {
    (12..16).chain(20..24).chain([end, bytes.len() - 1]).collect()
}

/// The shard map manifest and the shard identity files. Mode bits 1-2 pick the decoder:
/// `ShardMap::decode`, `decode_manifest_v1`, `decode_meta_v1`, `ShardMeta::decode`.
pub fn manifest(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else { return false };
    let mut bytes = rest.to_vec();
    let path = Path::new("SHARDMAP");
    let variant = (mode >> 1) & 3;
    if mode & 1 != 0 {
        match variant {
            0 | 1 => repair_manifest(&mut bytes),
            2 => repair_meta(&mut bytes, 12, 40),
            _ => repair_meta(&mut bytes, 21, 25),
        }
    }
    let body_end = |b: &[u8]| MANIFEST_HEADER_LEN + u32_at(b, 12) as usize;
    match variant {
        0 => {
            let map = match ShardMap::decode(&bytes, path) {
                Ok(map) => map,
                Err(e) => {
                    assert!(error_offset(&e).is_none_or(|o| o <= bytes.len() as u64), "{e}");
                    return false;
                }
            };
            check_shard_map(&map);
            let end = body_end(&bytes);
            let again = map.encode();
            assert_eq!(ShardMap::decode(&again, path).unwrap(), map);
            // Canonical but for the reserved word (bytes 20..24) and the padding after the body.
            assert_eq!(again[..20], bytes[..20]);
            assert_eq!(again[MANIFEST_HEADER_LEN..end], bytes[MANIFEST_HEADER_LEN..end]);
            let ignored = manifest_uncovered(&bytes, end);
            check_flips(&bytes, end, &ignored, &map, |b| ShardMap::decode(b, path));
        }
        1 => {
            let Ok(map) = decode_manifest_v1(&bytes, path) else { return false };
            for (name, shards) in &map {
                assert!(name.len() <= PARTITION_LEN_MAX);
                assert!(shards.len() <= V1_SHARDS_PER_PARTITION_MAX);
            }
            assert_eq!(decode_manifest_v1(&encode_manifest_v1(&map), path).unwrap(), map);
            let end = body_end(&bytes);
            let ignored = manifest_uncovered(&bytes, end);
            check_flips(&bytes, end, &ignored, &map, |b| decode_manifest_v1(b, path));
        }
        2 => {
            let Ok(meta) = decode_meta_v1(&bytes, path) else { return false };
            assert!(meta.partition.len() <= PARTITION_LEN_MAX);
            assert_eq!(decode_meta_v1(&encode_meta_v1(&meta), path).unwrap(), meta);
            let end = 44 + meta.partition.len();
            check_flips(&bytes, end, &[end, bytes.len() - 1], &meta, |b| decode_meta_v1(b, path));
        }
        _ => {
            let Ok(meta) = ShardMeta::decode(&bytes, path) else { return false };
            let plen = u32_at(&bytes, 21) as usize;
            assert!(meta.partition.as_ref().is_none_or(|p| p.len() == plen));
            assert_eq!(ShardMeta::decode(&meta.encode(), path).unwrap(), meta);
            let end = 29 + plen;
            check_flips(&bytes, end, &[end, bytes.len() - 1], &meta, |b| {
                ShardMeta::decode(b, path)
            });
        }
    }
    true
}

/// The shard map's invariants, checked again from outside: the ranges cover the position space
/// in order without gaps, each names a listed shard that owns only its partition's positions.
fn check_shard_map(map: &ShardMap) {
    let ranges = map.ranges();
    assert_eq!(ranges.first().map(|r| r.lo), Some(0));
    assert_eq!(ranges.last().map(|r| r.hi), Some(Position::MAX));
    for w in ranges.windows(2) {
        assert_eq!(w[0].hi.checked_add(1), Some(w[1].lo), "a gap or an overlap");
    }
    for r in ranges {
        assert!(r.lo <= r.hi);
        let place = map.shard(r.shard).expect("a range names a listed shard");
        if let Some(p) = &place.partition {
            let (lo, hi) = partition_span(p);
            assert!(lo <= r.lo && r.hi <= hi, "a partition's shard owns foreign positions");
        }
    }
    for s in map.shards() {
        assert!(s.number < map.next_number());
        assert!(ranges.iter().any(|r| r.shard == s.number), "shard {} owns nothing", s.number);
    }
}

// ---------------------------------------------------------------------------------------------
// Migration batches.

/// Repairs a batch's length (to what follows the header) and crc.
fn repair_batch(bytes: &mut [u8]) {
    if bytes.len() < BATCH_HEADER_LEN {
        return;
    }
    put_u32(bytes, 8, (bytes.len() - BATCH_HEADER_LEN) as u32);
    let crc = crc32fast::hash(&bytes[BATCH_HEADER_LEN..]);
    put_u32(bytes, 12, crc);
}

/// `migration::decode_batch` on the input.
pub fn migration_batch(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else { return false };
    let mut bytes = rest.to_vec();
    if mode & 1 != 0 {
        repair_batch(&mut bytes);
    }
    let Ok((seq, batch)) = decode_batch(&bytes) else { return false };
    let again = encode_batch(seq, &batch);
    assert_eq!(decode_batch(&again), Ok((seq, batch.clone())), "re-encoding decodes differently");
    assert_eq!(again[..8], bytes[..8]);
    assert_eq!(again[16..24], bytes[16..24]);
    // The sequence number (bytes 16..24) is outside the crc: the receiver checks it against
    // the one it expects. Every other byte is covered.
    for i in spread(bytes.len(), FLIPS_PER_INPUT_MAX).into_iter().chain(16..24) {
        match decode_batch(&flipped(&bytes, i)) {
            Ok((s, b)) if (16..24).contains(&i) => {
                assert_ne!(s, seq);
                assert_eq!(b, batch, "a flipped sequence number changed the content");
            }
            Ok(_) => panic!("flip at {i} accepted"),
            Err(_) => {}
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode_batch(&longer).is_err(), "a trailing byte accepted");
    for cut in spread(bytes.len(), CUTS_PER_INPUT_MAX) {
        assert!(decode_batch(&bytes[..cut]).is_err(), "cut to {cut} accepted");
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Seeds, mutations and the stable runner.

/// A seed input of a target: its file name in `fuzz/corpus/<target>/` and its bytes (mode
/// byte first).
pub struct Seed {
    pub name: String,
    pub bytes: Vec<u8>,
}

fn seed(name: &str, mode: u8, encoding: &[u8]) -> Seed {
    let mut bytes = vec![mode];
    bytes.extend_from_slice(encoding);
    Seed { name: format!("seed-{name}"), bytes }
}

/// Seeds of the `wal_log` target, made with `Record::encode`.
pub fn wal_log_seeds() -> Vec<Seed> {
    use crate::log::record::Record;
    let big = vec![0xa5u8; 1500];
    let kinds = [
        Record::Put { key: b"user:1", value: b"alice", expire_at_ms: 0 },
        Record::Put { key: b"", value: b"", expire_at_ms: u64::MAX },
        Record::Delete { key: b"user:1" },
        Record::Expire { key: b"k", expire_at_ms: 1_700_000_000_000 },
        Record::Append { key: b"log", suffix: b"line\n" },
        Record::Clear,
        Record::Put { key: b"blob", value: &big, expire_at_ms: 1 },
    ];
    let log = |records: &[Record], synced: bool| {
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let lsn = i as u64 + 7;
            r.encode(lsn, if synced { lsn - 1 } else { 6 }, &mut out);
        }
        out
    };
    let mut out = Vec::new();
    for (i, r) in kinds.iter().enumerate() {
        out.push(seed(&format!("record-{i}"), 0, &log(std::slice::from_ref(r), true)));
    }
    let all = log(&kinds[..6], true);
    out.push(seed("log-synced", 0, &all));
    out.push(seed("log-one-write", 2, &log(&kinds[..6], false)));
    let mut padded = all.clone();
    padded.resize(all.len() + 256, 0);
    out.push(seed("log-padded", 1, &padded));
    out.push(seed("log-torn-tail", 2, &all[..all.len() - 5]));
    let mut holed = all.clone();
    let second = kinds[0].encoded_len();
    holed[second + 20] ^= 0x10;
    out.push(seed("log-damaged-middle", 2, &holed));
    out.push(seed("log-lsn-gap", 4, &all));
    out
}

/// Seeds of the `segment` target, made with the segment encoders.
pub fn segment_seeds() -> Vec<Seed> {
    let entry = |i: u32| SegmentEntry {
        key: format!("key:{i}").into_bytes(),
        value: vec![i as u8; (i % 40) as usize],
        expire_at_ms: if i.is_multiple_of(3) { 0 } else { 1_700_000_000_000 + i as u64 },
    };
    let segment = |lsn: u64, chunks: &[Vec<SegmentEntry>], padding: usize| {
        let mut out = Vec::new();
        encode_header(lsn, &mut out);
        let mut n = 0;
        for c in chunks {
            n += c.len() as u64;
            encode_chunk(c.clone(), &mut out);
        }
        encode_footer(lsn, chunks.len() as u64, n, &mut out);
        out.resize(out.len() + padding, 0);
        out
    };
    let binary =
        SegmentEntry { key: vec![0, 0xff, b'\r', b'\n'], value: vec![0; 300], expire_at_ms: 5 };
    vec![
        seed("empty", 0, &segment(0, &[], 0)),
        seed("one-chunk", 0, &segment(42, &[(0..8).map(entry).collect()], 0)),
        seed(
            "three-chunks-one-empty",
            0,
            &segment(
                99,
                &[(0..10).map(entry).collect(), vec![], (10..25).map(entry).collect()],
                64,
            ),
        ),
        seed("binary-entry", 1, &segment(u64::MAX, &[vec![binary]], 0)),
    ]
}

/// Seeds of the `manifest` target: current maps made by the shard map's own operations, its
/// identity files, and format-1 files as the format-1 writer made them.
pub fn manifest_seeds() -> Vec<Seed> {
    let trim = |b: Vec<u8>| {
        let end = MANIFEST_HEADER_LEN + u32_at(&b, 12) as usize;
        b[..end].to_vec()
    };
    let initial = ShardMap::initial(4, 2, b':');
    let (lo, hi) = partition_span(b"user");
    let home = initial.shared_home(b"user").expect("in a shared shard").1.number;
    let (intent, carved) = initial.plan_split(b"user", home, lo, hi, 1);
    let own = carved.partition_shards(b"user")[0].1.number;
    let (split_intent, split) = carved.plan_split(b"user", own, lo + (1 << 63), hi, 0);
    let donor = split.partition_shards(b"user")[1].0;
    let (merge_intent, _) = split.plan_merge(b"user", &donor, own);
    let mut v1 = MapV1::new();
    v1.insert(b"user".to_vec(), vec![(1, 0, 1 << 63), (2, (1 << 63) + 1, u64::MAX)]);
    v1.insert(Vec::new(), vec![(0, 0, u64::MAX)]);
    vec![
        seed("map-initial-padded", 0, &initial.encode()),
        seed("map-one-shard", 0, &trim(ShardMap::initial(1, 1, b'/').encode())),
        seed("map-carve-intent", 0, &trim(intent.encode())),
        seed("map-carved", 1, &trim(carved.encode())),
        seed("map-split-intent", 0, &trim(split_intent.encode())),
        seed("map-merge-intent", 0, &trim(merge_intent.encode())),
        seed("v1-map", 2, &encode_manifest_v1(&v1)),
        seed("v1-meta", 4, &encode_meta_v1(&MetaV1 { partition: b"user".to_vec(), number: 2 })),
        seed("meta-shared", 6, &ShardMeta::shared(3).encode()[..33]),
        seed(
            "meta-partition",
            6,
            &ShardMeta { number: 9, partition: Some(b"order".to_vec()) }.encode()[..38],
        ),
    ]
}

/// Seeds of the `migration_batch` target, made with `encode_batch`.
pub fn migration_batch_seeds() -> Vec<Seed> {
    let entry = |i: usize| SegmentEntry {
        key: format!("user:{i}").into_bytes(),
        value: vec![i as u8; i * 7],
        expire_at_ms: i as u64,
    };
    let batches = [
        ("empty", MigrationBatch::default()),
        ("clear-range", MigrationBatch { clear_range: true, ..Default::default() }),
        ("puts", MigrationBatch { puts: (0..12).map(entry).collect(), ..Default::default() }),
        (
            "deletes",
            MigrationBatch {
                deletes: vec![b"a".to_vec(), vec![], vec![0xff; 40]],
                ..Default::default()
            },
        ),
        (
            "mixed",
            MigrationBatch {
                clear_range: true,
                puts: vec![entry(3)],
                deletes: vec![b"gone".to_vec()],
            },
        ),
    ];
    batches
        .iter()
        .enumerate()
        .map(|(i, (name, b))| seed(name, (i % 2) as u8, &encode_batch(i as u64, b)))
        .collect()
}

/// Interesting values for a 32-bit field: lengths at and around the edges.
const INTERESTING_U32: [u32; 8] = [0, 1, 16, 17, 0x7f, 0xffff, 0x7fff_ffff, u32::MAX];

/// One seeded mutation of `input`: 1 to 4 of a bit flip, a random or edge byte, an edge
/// 32-bit or 64-bit value, a truncation, an insertion, a deletion, a duplicated run, or a
/// splice with `other`; the mode byte (bit 0) is toggled half the time.
pub fn mutate(rng: &mut SplitMix64, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        if out.is_empty() {
            out.push(rng.next_u64() as u8);
            continue;
        }
        let len = out.len() as u64;
        let i = rng.below(len) as usize;
        match rng.below(10) {
            0 => out[i] ^= 1 << rng.below(8),
            1 => out[i] = rng.next_u64() as u8,
            2 => out[i] = [0, 0xff, 0x7f, 0x80, b'\r', b'\n', b'*', b'$'][rng.below(8) as usize],
            3 if out.len() >= 4 => {
                let i = rng.below(len - 3) as usize;
                let v = INTERESTING_U32[rng.below(8) as usize];
                out[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            4 if out.len() >= 8 => {
                let i = rng.below(len - 7) as usize;
                let v = [0, 1, u64::MAX, u64::MAX - 1, 1 << 63][rng.below(5) as usize];
                out[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            5 => out.truncate(i.max(1)),
            6 => {
                let n = 1 + rng.below(16) as usize;
                let fill: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                out.splice(i..i, fill);
            }
            7 => {
                let n = (1 + rng.below(16) as usize).min(out.len() - i);
                out.drain(i..i + n);
            }
            8 => {
                let n = (1 + rng.below(32) as usize).min(out.len() - i);
                let run = out[i..i + n].to_vec();
                let at = rng.below(len) as usize;
                out.splice(at..at, run);
            }
            _ if !other.is_empty() => {
                let from = rng.below(other.len() as u64) as usize;
                out.truncate(i);
                out.extend_from_slice(&other[from..]);
            }
            _ => out[i] = out[i].wrapping_add(1),
        }
    }
    if !out.is_empty() && rng.chance(1, 2) {
        out[0] ^= 1;
    }
    out
}

/// The stable runner: `body` over every file of `corpus_dir` and every seed, then over
/// `mutations` seeded mutations of them (half of them of inputs that decode). Prints the seed (`SHARDCAST_SEED` replays it); a
/// failing input is written to `fuzz/artifacts/<target>/` beside the corpus, for
/// `cargo +nightly fuzz run <target> <file>`. With `SHARDCAST_WRITE_FUZZ_CORPUS=1`, the seeds
/// are first written into `corpus_dir`.
pub fn run_corpus_and_mutations(
    target: &str,
    corpus_dir: &Path,
    seeds: Vec<Seed>,
    mutations: usize,
    body: fn(&[u8]) -> bool,
) {
    if std::env::var("SHARDCAST_WRITE_FUZZ_CORPUS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(corpus_dir).expect("create the corpus directory");
        for s in &seeds {
            std::fs::write(corpus_dir.join(&s.name), &s.bytes).expect("write a seed");
        }
    }
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(corpus_dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", corpus_dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    names.sort();
    for path in names {
        let bytes = std::fs::read(&path).expect("read a corpus file");
        inputs.push((path.display().to_string(), bytes));
    }
    assert!(!inputs.is_empty(), "the corpus {} is empty", corpus_dir.display());
    let corpus_files = inputs.len();
    inputs.extend(seeds.into_iter().map(|s| (format!("generated {}", s.name), s.bytes)));
    let seed = crate::testing::seed_from_env();
    println!(
        "{target}: {corpus_files} corpus files, {} inputs, {mutations} mutations, seed {seed} \
         (SHARDCAST_SEED={seed} replays)",
        inputs.len()
    );
    let fuzz_dir = std::fs::canonicalize(corpus_dir.join("../..")).expect("the fuzz directory");
    let artifacts = fuzz_dir.join("artifacts").join(target);
    let run = |label: &str, bytes: &[u8]| match std::panic::catch_unwind(|| body(bytes)) {
        Ok(valid) => valid,
        Err(_) => {
            let _ = std::fs::create_dir_all(&artifacts);
            let file = artifacts.join(format!("stable-{seed}"));
            let _ = std::fs::write(&file, bytes);
            panic!("{target} failed on {label} (seed {seed}); input saved to {}", file.display())
        }
    };
    let valid: Vec<usize> =
        (0..inputs.len()).filter(|&i| run(&inputs[i].0, &inputs[i].1)).collect();
    let mut rng = SplitMix64::new(seed);
    let started = std::time::Instant::now();
    let mut valid_mutations = 0;
    for n in 0..mutations {
        // Half from the inputs that decode, so the checks of decoded values keep running.
        let a = if !valid.is_empty() && rng.chance(1, 2) {
            &inputs[valid[rng.below(valid.len() as u64) as usize]].1
        } else {
            &inputs[rng.below(inputs.len() as u64) as usize].1
        };
        let b = &inputs[rng.below(inputs.len() as u64) as usize].1;
        let mut bytes = mutate(&mut rng, a, b);
        // Stack a second round on a quarter of them, to get further from the seeds.
        if rng.chance(1, 4) {
            bytes = mutate(&mut rng, &bytes, b);
        }
        valid_mutations += run(&format!("mutation {n}"), &bytes) as usize;
    }
    println!(
        "{target}: {} of {} inputs and {valid_mutations} of {mutations} mutations \
         decoded; the mutations took {:.2?}",
        valid.len(),
        inputs.len(),
        started.elapsed()
    );
}
