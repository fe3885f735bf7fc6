//! Fault points: named steps where a test can make the process die at once (as `kill -9`
//! would), to check recovery from exactly that step. `fault_point!` compiles to nothing
//! without debug assertions, so release builds carry no trace of them.
//!
//! Armed by the environment variable `SHARDCAST_FAULT_POINT=<name>`; the process aborts the
//! first time it reaches that point.

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
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(FAULT_POINT_ENV).ok());
    if armed.as_deref() == Some(name) {
        eprintln!("shardcast: fault point {name} reached: aborting");
        std::process::abort();
    }
}
