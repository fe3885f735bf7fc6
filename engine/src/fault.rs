//! Fault points: named steps where a test can make the process die at once (as `kill -9`
//! would), to check recovery from exactly that step. `fault_point!` compiles to nothing
//! without debug assertions, so release builds carry no trace of them.
//!
//! Armed by the environment variable `SHARDCAST_FAULT_POINT=<name>` (the process aborts the
//! first time it reaches that point) or `<name>@<n>` (the n-th time).

/// Marks a fault point named by a string literal.
#[macro_export]
macro_rules! fault_point {
    ($name:literal) => {
        #[cfg(debug_assertions)]
        $crate::fault::hit($name);
    };
}

/// The environment variable that arms a fault point.
pub const FAULT_POINT_ENV: &str = "SHARDCAST_FAULT_POINT";

/// Called by `fault_point!`: aborts if `name` is the armed point.
#[cfg(debug_assertions)]
pub fn hit(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static ARMED: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let armed = ARMED.get_or_init(|| {
        let v = std::env::var(FAULT_POINT_ENV).ok()?;
        Some(match v.split_once('@') {
            Some((n, k)) => (n.to_owned(), k.parse().expect("SHARDCAST_FAULT_POINT=name@count")),
            None => (v, 1),
        })
    });
    if let Some((point, nth)) = armed {
        if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            eprintln!("shardcast: fault point {name} reached (hit {nth}): aborting");
            std::process::abort();
        }
    }
}

/// Marks a delay point: with `SHARDCAST_FAULT_DELAY=<name>@<ms>[,<name>@<ms>...]`, the task
/// waits that long there (other tasks run meanwhile), so a test can widen a window it must
/// prove harmless, or make a pause long enough to be seen.
/// Compiles to nothing without debug assertions.
#[macro_export]
macro_rules! fault_delay {
    ($name:literal) => {
        #[cfg(debug_assertions)]
        $crate::fault::delay($name).await;
    };
}

/// The environment variable that arms a delay point.
pub const FAULT_DELAY_ENV: &str = "SHARDCAST_FAULT_DELAY";

/// Called by `fault_delay!`: waits if `name` is an armed delay point.
#[cfg(debug_assertions)]
pub async fn delay(name: &str) {
    static ARMED: std::sync::OnceLock<Vec<(String, u64)>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        let Ok(v) = std::env::var(FAULT_DELAY_ENV) else { return Vec::new() };
        v.split(',')
            .map(|point| {
                let (n, ms) = point.split_once('@').expect("SHARDCAST_FAULT_DELAY=name@ms,...");
                (n.to_owned(), ms.parse().expect("SHARDCAST_FAULT_DELAY=name@ms,..."))
            })
            .collect()
    });
    if let Some((_, ms)) = armed.iter().find(|(point, _)| point == name) {
        glommio::timer::sleep(std::time::Duration::from_millis(*ms)).await;
    }
}
