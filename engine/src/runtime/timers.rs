//! Per-core timers and the work that follows a write: log flushes, snapshots, active
//! expiry and the ops/s rate.

use super::*;
use crate::log::writer::FsyncPolicy;
use crate::shard::Shard;
use crate::storage::dma::DmaStorage;
use std::rc::Rc;
use std::time::Duration;

impl Core {
    pub(super) fn spawn_timers(self: Rc<Self>) {
        if self.config.fsync != FsyncPolicy::Always {
            let core = self.clone();
            glommio::spawn_local(async move {
                let sync = core.config.fsync == FsyncPolicy::EverySec;
                loop {
                    glommio::timer::sleep(Duration::from_millis(core.config.flush_interval_ms))
                        .await;
                    if let Err(e) = core.flush_all(sync).await {
                        tracing::error!(core = core.id, error = %e, "log flush failed");
                    }
                }
            })
            .detach();
        }
        let core = self;
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(core.config.expire_cycle_interval_ms))
                    .await;
                let now = core.clock.now_ms();
                for shard in core.all_local_shards() {
                    shard.remove_expired(core.config.expire_cycle_keys_max);
                    shard.stats.update_rate(now, OPS_RATE_PERIOD_MS);
                }
                core.publish_memory();
            }
        })
        .detach();
    }

    /// Keeps log buffers bounded and starts snapshots when a log has grown.
    pub(crate) fn after_write(&self, shard: &Rc<Shard<DmaStorage>>) {
        if self.config.fsync != FsyncPolicy::Always
            && shard.schedule_background_write(self.config.wal_write_batch_bytes)
        {
            let s = shard.clone();
            glommio::spawn_local(async move {
                let _ = s.background_write().await;
            })
            .detach();
        }
        if shard.wants_snapshot() {
            let s = shard.clone();
            let _ = glommio::spawn_local_into(
                async move {
                    let _ = s.snapshot().await;
                },
                self.background,
            )
            .map(|t| t.detach());
        }
    }
}
