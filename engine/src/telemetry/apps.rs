//! Client applications: the names clients give themselves (`CLIENT SETNAME`), interned to
//! small ids so every op can be counted per application without carrying a name.
//!
//! The registry is process-wide and locked only when a name is interned (once per
//! `CLIENT SETNAME`) or listed (once per tick); ops carry the `AppId`.

use std::sync::{Mutex, OnceLock};

/// Distinct application ids, the two reserved ones included; names past the limit share
/// `AppId::OTHER`.
pub const APPS_MAX: usize = 64;

/// An interned application name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AppId(pub u16);

impl AppId {
    /// Clients that never named themselves (shown as the empty name).
    pub const UNNAMED: AppId = AppId(0);
    /// Every name past `APPS_MAX`.
    pub const OTHER: AppId = AppId(1);

    /// The id of `name` (interning it if new); an empty name is `UNNAMED`.
    pub fn of(name: &[u8]) -> AppId {
        if name.is_empty() {
            return AppId::UNNAMED;
        }
        let mut names = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = names.iter().position(|n| n == name) {
            return AppId(i as u16);
        }
        if names.len() >= APPS_MAX {
            return AppId::OTHER;
        }
        names.push(name.to_vec());
        AppId((names.len() - 1) as u16)
    }

    /// The name of this id.
    pub fn name(self) -> Vec<u8> {
        let names = registry().lock().unwrap_or_else(|e| e.into_inner());
        names.get(self.0 as usize).cloned().unwrap_or_default()
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Every interned name by id (`UNNAMED` is the empty name, `OTHER` is "(other)").
pub fn app_names() -> Vec<Vec<u8>> {
    registry().lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn registry() -> &'static Mutex<Vec<Vec<u8>>> {
    static NAMES: OnceLock<Mutex<Vec<Vec<u8>>>> = OnceLock::new();
    NAMES.get_or_init(|| Mutex::new(vec![Vec::new(), b"(other)".to_vec()]))
}

/// Ops per application id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCounts(Box<[u64; APPS_MAX]>);

impl Default for AppCounts {
    fn default() -> Self {
        AppCounts(Box::new([0; APPS_MAX]))
    }
}

impl AppCounts {
    #[inline]
    pub fn add(&mut self, app: AppId, n: u64) {
        self.0[app.index().min(APPS_MAX - 1)] += n;
    }

    pub fn get(&self, app: AppId) -> u64 {
        self.0.get(app.index()).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, other: &AppCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// The non-zero counts, by id.
    pub fn nonzero(&self) -> impl Iterator<Item = (AppId, u64)> + '_ {
        self.0.iter().enumerate().filter(|(_, &n)| n > 0).map(|(i, &n)| (AppId(i as u16), n))
    }

    pub fn clear(&mut self) {
        self.0.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_intern_to_stable_ids() {
        let a = AppId::of(b"checkout-test-app");
        assert_eq!(AppId::of(b"checkout-test-app"), a);
        assert_eq!(a.name(), b"checkout-test-app");
        assert_eq!(AppId::of(b""), AppId::UNNAMED);
        assert_ne!(a, AppId::UNNAMED);
        assert!(app_names().len() <= APPS_MAX);
    }
}
