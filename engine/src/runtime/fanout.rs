//! Work that sees every core: DBSIZE, FLUSHALL, KEYS, SCAN, RANDOMKEY, shard summaries,
//! flushes and snapshots of every shard.

use super::*;
use crate::error::Result;
use crate::glob::glob_match;
use crate::routing::Position;
use crate::runtime::work::SET_IF_NONE_EXIST_SEVERAL_SHARDS;

impl Core {
    /// Keys in the whole engine (DBSIZE), each counted once even during a migration.
    pub async fn dbsize(&self) -> Result<u64> {
        // Every core held: no transaction is counted on one core and not yet on another.
        let answers = self
            .with_every_core_held("DBSIZE", self.on_every_core_settled(CoreWork::DbSize))
            .await??;
        answers
            .into_iter()
            .map(|r| match r {
                CoreResult::Count(n) => Ok(n),
                CoreResult::Done(Err(e)) => Err(e),
                other => unreachable!("DbSize answered with {other:?}"),
            })
            .sum()
    }

    pub(super) async fn run_work(&self, work: CoreWork) -> CoreResult {
        match work {
            CoreWork::Ops { ops, hops, app } => {
                CoreResult::Ops(self.execute_local(ops, hops, app).await)
            }
            CoreWork::DbSize => CoreResult::Count(
                self.shards.borrow().values().map(|s| s.owned_key_count() as u64).sum(),
            ),
            // Boxed: a migration step may await other steps through `on_core`.
            CoreWork::Migration(work) => Box::pin(self.run_migration_work(work)).await,
            CoreWork::Backup(work) => Box::pin(self.run_backup_work(work)).await,
            CoreWork::AtEpoch(work) => {
                // The fan-out reads (DbSize, Keys, Scan) do not await, so the epoch read here is
                // the one they ran under.
                let epoch = self.map_epoch();
                let result = Box::new(Box::pin(self.run_work(*work)).await);
                CoreResult::AtEpoch { epoch, result }
            }
            CoreWork::ShardInfo => CoreResult::Shards(self.shard_summaries()),
            CoreWork::Txn(work) => Box::pin(self.run_txn_work(work)).await,
            CoreWork::SetIfNoneExist(pairs) => match self.set_if_none_exist(pairs).await {
                Ok(Some(set)) => CoreResult::Count(set as u64),
                Ok(None) => CoreResult::Count(SET_IF_NONE_EXIST_SEVERAL_SHARDS),
                Err(e) => CoreResult::Done(Err(e)),
            },
            CoreWork::RandomKey { seed } => CoreResult::Key(self.random_key(seed)),
            CoreWork::Keys { pattern, max } => {
                let (keys, truncated) = self.keys_local(pattern.as_deref(), max);
                CoreResult::Keys { keys, truncated }
            }
            CoreWork::Scan { cursor, count, pattern } => {
                CoreResult::Scan(self.scan_local(cursor, count, pattern.as_deref()))
            }
        }
    }

    pub(super) fn shard_summaries(&self) -> Vec<ShardSummary> {
        self.local_shards()
            .iter()
            .map(|s| {
                let m = s.meta();
                ShardSummary {
                    core: self.id,
                    partition: m.partition.clone(),
                    number: m.number,
                    ranges: s.ranges(),
                    keys: s.owned_key_count() as u64,
                    expiring_keys: s.with_keyspace(|ks| ks.expiring_len() as u64),
                    used_bytes: s.used_bytes(),
                    reads: s.stats.reads.get(),
                    writes: s.stats.writes.get(),
                    deletes: s.stats.deletes.get(),
                    others: s.stats.others.get(),
                    snapshots: s.stats.snapshots.get(),
                    snapshot_tasks: s.stats.snapshot_tasks.get(),
                    ops_per_sec: s.stats.ops_per_sec.get(),
                    accesses: s.access_total(),
                    migrating: s.is_migrating(),
                    failure: s.failure().map(|e| e.to_string()),
                    refuses_writes: match s.failure() {
                        Some(_) => None,
                        None => s.check_writable().err().map(|e| e.to_string()),
                    },
                    top_partitions: s.stats.top_partitions(),
                }
            })
            .collect()
    }

    pub(super) fn keys_local(&self, pattern: Option<&[u8]>, max: usize) -> (Vec<Vec<u8>>, bool) {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for shard in self.local_shards() {
            let full = shard.with_keyspace(|ks| {
                for (key, entry) in ks.iter() {
                    let live = entry.expire_at_ms == 0 || entry.expire_at_ms > now;
                    if live && pattern.is_none_or(|p| glob_match(p, key)) && shard.owns_key(key) {
                        if out.len() >= max {
                            return true;
                        }
                        out.push(key.to_vec());
                    }
                }
                false
            });
            if full {
                return (out, true);
            }
        }
        (out, false)
    }

    /// A random live key of this core: a shard chosen in proportion to its keys, then the
    /// first key at or after a random position of its index (wrapping).
    pub(super) fn random_key(&self, seed: u64) -> Option<Vec<u8>> {
        let shards: Vec<_> =
            self.local_shards().into_iter().filter(|s| s.key_count() > 0).collect();
        // Counted once: the picks must fall in these counts, whatever changes meanwhile.
        let counts: Vec<u64> = shards.iter().map(|s| s.key_count() as u64).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let mut rng = crate::testing::SplitMix64::new(seed);
        let now = self.clock.now_ms();
        for _ in 0..16 {
            let mut pick = rng.below(total);
            let Some((shard, _)) = shards.iter().zip(&counts).find(|(_, &n)| {
                let here = pick < n;
                pick = pick.saturating_sub(n);
                here
            }) else {
                break;
            };
            let at = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
            let found = shard.with_keyspace(|ks| {
                let (_, key) = ks.index().first_from(at).or_else(|| ks.index().first_from(0))?;
                // A peek: RANDOMKEY neither counts as an access nor expires anything, as in
                // Redis.
                let live =
                    ks.peek(key).is_some_and(|e| e.expire_at_ms == 0 || e.expire_at_ms > now);
                (live && shard.owns_key(key)).then(|| key.to_vec())
            });
            if found.is_some() {
                return found;
            }
        }
        // Sixteen random probes met expired or foreign keys only: walk from a random position
        // (wrapping) to the first live key this core owns, so a live key is never missed.
        let at = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
        for shard in &shards {
            let found = shard.with_keyspace(|ks| {
                let live = |k: &crate::keyspace::Key| {
                    ks.peek(k).is_some_and(|e| e.expire_at_ms == 0 || e.expire_at_ms > now)
                        && shard.owns_key(k)
                };
                let index = ks.index();
                let wrapped =
                    index.range(at, Position::MAX).chain(index.range(0, at.saturating_sub(1)));
                wrapped.map(|(_, k)| k).find(|k| live(k)).map(|k| k.to_vec())
            });
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Writes (and syncs, if `sync`) every local shard's buffered log.
    pub async fn flush_all(&self, sync: bool) -> Result<()> {
        let shards = self.all_local_shards();
        let mut first_err = None;
        for shard in shards {
            if let Err(e) = shard.flush(sync).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Writes and syncs the logs that a full disk stopped (the others are left to their
    /// writers): once a write succeeds, the shard accepts writes again.
    pub(super) async fn retry_out_of_space_logs(&self) -> Result<()> {
        let mut first_err = None;
        for shard in self.all_local_shards().into_iter().filter(|s| s.log_out_of_space()) {
            if let Err(e) = shard.flush(true).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Takes a snapshot of every local shard now (BGSAVE-like; tests and benches).
    pub async fn snapshot_all(&self) -> Result<()> {
        let shards = self.local_shards();
        for shard in shards {
            if shard.is_serving() {
                shard.snapshot_with(self.hold_against_txns()).await?;
            }
        }
        Ok(())
    }

    /// This core's part of one SCAN step: each shard's page (`PositionIndex::scan_page`),
    /// then the union below the first cursor some shard did not reach.
    pub(super) fn scan_local(&self, cursor: u64, count: usize, pattern: Option<&[u8]>) -> ScanPage {
        let now = self.clock.now_ms();
        let count = count.max(1);
        let mut all: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut reached: Option<u64> = None;
        for shard in self.local_shards() {
            let step = shard.with_keyspace(|ks| {
                ks.index().scan_page(cursor, count, |key| {
                    let live =
                        ks.peek(key).is_some_and(|e| e.expire_at_ms == 0 || e.expire_at_ms > now);
                    live && shard.owns_key(key)
                })
            });
            if let Some(n) = step.next {
                reached = Some(reached.map_or(n, |r| r.min(n)));
            }
            all.extend(step.keys.into_iter().map(|(c, k)| (c, k.to_vec())));
        }
        all.retain(|(c, _)| reached.is_none_or(|r| *c < r));
        all.sort_unstable();
        let mut take = count.min(all.len());
        // Never split a group of equal cursors across pages.
        while take < all.len() && take > 0 && all[take].0 == all[take - 1].0 {
            take += 1;
        }
        let next = all.get(take).map(|(c, _)| *c).or(reached);
        all.truncate(take);
        if let Some(p) = pattern {
            all.retain(|(_, k)| glob_match(p, k));
        }
        ScanPage { keys: all, next }
    }

    /// One SCAN step over the whole engine: keys at positions >= `cursor` (about `count`
    /// examined), and the next cursor (0 when done). Every key present for the whole
    /// iteration is returned at least once; no key is returned twice in one iteration.
    pub async fn scan(
        &self,
        cursor: u64,
        count: usize,
        pattern: Option<Vec<u8>>,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        let pages = self.on_every_core_settled(CoreWork::Scan { cursor, count, pattern }).await?;
        let mut pages: Vec<ScanPage> = pages
            .into_iter()
            .map(|r| match r {
                CoreResult::Scan(p) => Ok(p),
                CoreResult::Done(Err(e)) => Err(e),
                other => unreachable!("scan answered with {other:?}"),
            })
            .collect::<Result<_>>()?;
        let next = pages.iter().filter_map(|p| p.next).min();
        let mut keys: Vec<(u64, Vec<u8>)> = Vec::new();
        for p in pages.iter_mut() {
            keys.extend(p.keys.drain(..).filter(|(pos, _)| next.is_none_or(|n| *pos < n)));
        }
        keys.sort_unstable();
        Ok((next.unwrap_or(0), keys.into_iter().map(|(_, k)| k).collect()))
    }
}
