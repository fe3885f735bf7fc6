//! The channel mesh between cores: requests, replies, fire-and-forget jobs, and the fan-out
//! of one piece of work to one or every core.

use super::*;
use crate::error::{EngineError, Result};
use std::cell::RefCell;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

pub(super) enum MeshMsg {
    Request { id: u64, from: usize, work: CoreWork },
    Reply { id: u64, result: CoreResult },
    Run(CoreJob),
}

#[derive(Default)]
pub(super) struct ReplySlot {
    value: RefCell<Option<CoreResult>>,
    waker: RefCell<Option<Waker>>,
}

/// `fut`'s output, or `None` if `limit` passes first (the future is then dropped).
pub(super) async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    let answer = async { Some(fut.await) };
    let timer = async {
        glommio::timer::sleep(limit).await;
        None
    };
    futures_lite::future::or(answer, timer).await
}

pub(super) async fn wait_reply(slot: Rc<ReplySlot>) -> CoreResult {
    std::future::poll_fn(|cx| {
        if let Some(v) = slot.value.borrow_mut().take() {
            return Poll::Ready(v);
        }
        *slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

impl Core {
    /// Runs `job` on core `target` (fire and forget); on this core it runs right away.
    pub async fn run_on(self: &Rc<Self>, target: usize, job: CoreJob) -> Result<()> {
        if target == self.id {
            job(self.clone());
            return Ok(());
        }
        self.senders.send_to(target, MeshMsg::Run(job)).await.map_err(|_| {
            EngineError::Unavailable { reason: format!("core {target} is not answering") }
        })
    }

    /// Runs `work` on one core (this one included).
    pub async fn on_core(&self, core: usize, work: CoreWork) -> CoreResult {
        if core == self.id {
            return self.run_work(work).await;
        }
        match self.send(core, work).await {
            Ok(slot) => wait_reply(slot).await,
            Err(e) => CoreResult::Done(Err(e)),
        }
    }

    /// `on_core` with a deadline for another core: past `limit` the answer is `CoreTimeout`
    /// (a late reply is then dropped when it arrives). Work for this core runs to its end:
    /// this core is answering, and stopping its work halfway would leave it half done.
    pub async fn on_core_within(
        &self,
        core: usize,
        work: CoreWork,
        limit: Duration,
        what: &'static str,
    ) -> CoreResult {
        if core == self.id {
            return self.run_work(work).await;
        }
        match within(limit, self.on_core(core, work)).await {
            Some(r) => r,
            None => CoreResult::Done(Err(EngineError::CoreTimeout {
                core,
                what,
                ms: limit.as_millis() as u64,
            })),
        }
    }

    /// How long to wait for another core's answer to a short step (`core_answer_wait_ms`).
    pub fn step_wait(&self) -> Duration {
        Duration::from_millis(self.config.core_answer_wait_ms)
    }

    /// Runs `work` on every core (this one included) and returns the results by core index. A
    /// core that does not answer within `step_wait` answers `CoreTimeout` (naming `what`), so
    /// no fan-out waits for ever and none mistakes a silent core for an empty one.
    pub async fn on_every_core(&self, work: CoreWork, what: &'static str) -> Vec<CoreResult> {
        self.on_every_core_within(work, what, self.step_wait()).await
    }

    /// `on_every_core` with its own deadline.
    pub async fn on_every_core_within(
        &self,
        work: CoreWork,
        what: &'static str,
        limit: Duration,
    ) -> Vec<CoreResult> {
        let mut slots = Vec::new();
        for c in 0..self.config.cores {
            if c != self.id {
                slots.push((c, self.send(c, work.clone()).await));
            }
        }
        let mut out: Vec<Option<CoreResult>> = (0..self.config.cores).map(|_| None).collect();
        out[self.id] = Some(self.run_work(work).await);
        // One deadline for all: the others work meanwhile.
        let deadline = std::time::Instant::now() + limit;
        for (c, slot) in slots {
            out[c] = Some(match slot {
                Ok(slot) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match within(left, wait_reply(slot)).await {
                        Some(r) => r,
                        None => CoreResult::Done(Err(EngineError::CoreTimeout {
                            core: c,
                            what,
                            ms: limit.as_millis() as u64,
                        })),
                    }
                }
                Err(e) => CoreResult::Done(Err(e)),
            });
        }
        out.into_iter().map(|r| r.expect("every core answered")).collect()
    }

    /// `on_every_core` for reads that must see every key once (DBSIZE, KEYS, SCAN): all cores
    /// must answer under the same map epoch, else (a migration's install was between them)
    /// the fan-out is repeated.
    pub async fn on_every_core_settled(&self, work: CoreWork) -> Result<Vec<CoreResult>> {
        // Installs answer at once, so epochs agree again within one round of installs; the
        // budget is generous for a loaded machine.
        const SETTLE_WAIT_MAX: Duration = Duration::from_secs(10);
        let deadline = std::time::Instant::now() + SETTLE_WAIT_MAX;
        while std::time::Instant::now() < deadline {
            let answers = self
                .on_every_core(CoreWork::AtEpoch(Box::new(work.clone())), "a read of every core")
                .await;
            let mut epochs = Vec::with_capacity(answers.len());
            let mut results = Vec::with_capacity(answers.len());
            for a in answers {
                match a {
                    CoreResult::AtEpoch { epoch, result } => {
                        epochs.push(epoch);
                        results.push(*result);
                    }
                    CoreResult::Done(Err(e)) => return Err(e),
                    other => unreachable!("AtEpoch answered with {other:?}"),
                }
            }
            if epochs.windows(2).all(|w| w[0] == w[1]) {
                return Ok(results);
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        Err(EngineError::Unavailable { reason: "the shard map kept changing; retry".into() })
    }

    pub(super) async fn send(&self, core: usize, work: CoreWork) -> Result<Rc<ReplySlot>> {
        let id = self.next_request.get();
        self.next_request.set(id + 1);
        let slot = Rc::new(ReplySlot::default());
        self.pending.borrow_mut().insert(id, slot.clone());
        if self.senders.send_to(core, MeshMsg::Request { id, from: self.id, work }).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(EngineError::Unavailable {
                reason: format!("core {core} is not answering"),
            });
        }
        Ok(slot)
    }

    pub(super) fn on_message(self: &Rc<Self>, msg: MeshMsg) {
        match msg {
            MeshMsg::Request { id, from, work: CoreWork::Ops { ops, hops, app } } => {
                self.remote_ops.set(self.remote_ops.get() + ops.len() as u64);
                match self.resolve_inline(&ops) {
                    Some(targets) => {
                        // Fast path: nothing here can await (shards exist, no durability
                        // wait), so run it in the receive loop instead of spawning a task.
                        let _in_flight = self.enter_queue();
                        let result = CoreResult::Ops(self.execute_now(ops, targets, app));
                        self.reply_to(from, id, result);
                    }
                    None => {
                        let core = self.clone();
                        glommio::spawn_local(async move {
                            let _in_flight = core.enter_queue();
                            let result = CoreResult::Ops(core.execute_local(ops, hops, app).await);
                            let _ = core.senders.send_to(from, MeshMsg::Reply { id, result }).await;
                        })
                        .detach();
                    }
                }
            }
            MeshMsg::Request { id, from, work } => {
                let core = self.clone();
                let background = work.is_background();
                let task = async move {
                    let _in_flight = core.enter_queue();
                    let result = core.run_work(work).await;
                    // The requester's receive loop always drains, so this cannot deadlock.
                    let _ = core.senders.send_to(from, MeshMsg::Reply { id, result }).await;
                };
                if background {
                    if let Ok(t) = glommio::spawn_local_into(task, self.background) {
                        t.detach();
                        return;
                    }
                    unreachable!("the background queue exists as long as the core");
                }
                glommio::spawn_local(task).detach();
            }
            MeshMsg::Run(job) => job(self.clone()),
            MeshMsg::Reply { id, result } => {
                let slot = self.pending.borrow_mut().remove(&id);
                if let Some(slot) = slot {
                    *slot.value.borrow_mut() = Some(result);
                    if let Some(w) = slot.waker.borrow_mut().take() {
                        w.wake();
                    }
                }
            }
        }
    }

    /// Sends a reply from the receive loop without awaiting when the channel has room.
    pub(super) fn reply_to(self: &Rc<Self>, from: usize, id: u64, result: CoreResult) {
        {
            {
                let reply = MeshMsg::Reply { id, result };
                if let Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(
                    reply,
                ))) = self.senders.try_send_to(from, reply)
                {
                    let core = self.clone();
                    glommio::spawn_local(async move {
                        let _ = core.senders.send_to(from, reply).await;
                    })
                    .detach();
                }
            }
        }
    }
}
