//! FLUSHALL as a transaction: every shard's `Clear` is a part (`TxnBegin`, `Clear`, `TxnEnd`
//! in its log) and the flush commits like a cross-core transaction (`Core::settle`: every
//! part durable, then the commits). So a crash during a FLUSHALL leaves every shard flushed
//! or none, where unframed `Clear`s could leave some shards flushed and others not. The
//! caller holds every core (`with_every_core_held`), so no other transaction interleaves.

use super::*;

impl Core {
    /// Flushes every shard of every core as one transaction. Run with every core held.
    pub(crate) async fn flush_all_framed(&self) -> Result<()> {
        let txn = self.new_txn_id();
        let mut applied = Applied::empty();
        let mut refused = None;
        for c in 0..self.cores() {
            match self.on_core(c, CoreWork::Txn(TxnWork::FlushPart { txn })).await {
                CoreResult::Txn(TxnAnswer::Part(part)) => applied.note(c, part.shards),
                CoreResult::Txn(TxnAnswer::Refused(e)) | CoreResult::Done(Err(e)) => {
                    refused.get_or_insert(e);
                }
                other => unreachable!("FlushPart answered with {other:?}"),
            }
        }
        if let Some(e) = refused {
            // Some shard could not log its part: no commit, so a crash keeps every key. The
            // shards that did flush stay flushed in memory, as after any refused write.
            for &c in applied.shards.keys() {
                self.on_core(c, CoreWork::Txn(TxnWork::Forget { txn })).await;
            }
            return Err(e);
        }
        match self.settle(txn, &applied).await {
            true => Ok(()),
            false => Err(EngineError::Unavailable {
                reason: "FLUSHALL could not be made durable; a restart keeps every key".into(),
            }),
        }
    }

    /// This core's part of a FLUSHALL: every serving shard cleared, framed for `txn`.
    pub(super) fn flush_part_here(&self, txn: TxnId) -> TxnAnswer {
        if self.draining.get() {
            return TxnAnswer::Refused(EngineError::Unavailable { reason: "shutting down".into() });
        }
        let name = logged(txn);
        let mut ends = Vec::new();
        let mut refused = None;
        for shard in self.local_shards().into_iter().filter(|s| s.is_serving()) {
            let part = shard
                .check_writable()
                .and_then(|()| shard.log_marker(&Record::TxnBegin { txn: name }))
                .and_then(|_| shard.clear())
                .and_then(|_| shard.log_marker(&Record::TxnEnd { txn: name }));
            match part {
                Ok(end) => ends.push((shard, end)),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        self.publish_memory();
        let shards = ends.len();
        if shards > 0 {
            self.txn_parts.borrow_mut().entry(txn).or_default().extend(ends);
        }
        match refused {
            Some(e) => TxnAnswer::Refused(e),
            None => TxnAnswer::Part(PartDone { replies: Vec::new(), shards }),
        }
    }
}
