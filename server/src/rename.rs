//! RENAME, RENAMENX and COPY: a read of the source and a write of the destination (and, for
//! RENAME, a delete of the source) under the engine's key locks (`Core::hold_keys`), so the
//! pair changes atomically whichever cores the two keys live on, and the value keeps its
//! expiry. Inside an EXEC that holds its keys already, the same steps run on that hold
//! (`rename_held`, `copy_held`).

use crate::commands::error_text;
use crate::connection::Session;
use shardcast_engine::keyspace::{SetCondition, SetExpiry};
use shardcast_engine::ops::{Op, Reply};
use shardcast_engine::runtime::txn::HeldKeys;
use shardcast_engine::Core;

/// The keys RENAME, RENAMENX and COPY hold.
pub fn keys_of(args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    args.get(1..3).map(<[Vec<u8>]>::to_vec).unwrap_or_default()
}

/// Holds the source and destination of `args` for one command.
async fn hold(core: &Core, s: &mut Session, args: &[Vec<u8>]) -> Option<HeldKeys> {
    match core.hold_keys(&keys_of(args)).await {
        Ok(held) => Some(held),
        Err(e) => {
            s.w.error(&error_text(&e));
            None
        }
    }
}

/// RENAME (`nx` false) and RENAMENX (`nx` true).
pub async fn rename(core: &Core, s: &mut Session, args: &[Vec<u8>], nx: bool) {
    let Some(held) = hold(core, s, args).await else { return };
    rename_held(&held, s, args, nx).await;
    held.release().await;
}

/// RENAME or RENAMENX with both keys held by the caller.
pub async fn rename_held(held: &HeldKeys, s: &mut Session, args: &[Vec<u8>], nx: bool) {
    let (src, dst) = (args[1].clone(), args[2].clone());
    match move_value(held, s, src, dst, if nx { Mode::RenameNx } else { Mode::Rename }).await {
        Ok(Outcome::NoSource) => s.w.error("ERR no such key"),
        Ok(Outcome::Done) if nx => s.w.int(1),
        Ok(Outcome::Done) => s.w.ok(),
        Ok(Outcome::DestinationExists) => s.w.int(0),
        Err(e) => s.w.error(&e),
    }
}

/// COPY source destination [DB 0] [REPLACE].
pub async fn copy(core: &Core, s: &mut Session, args: &[Vec<u8>]) {
    let Some(held) = hold(core, s, args).await else { return };
    copy_held(&held, s, args).await;
    held.release().await;
}

/// COPY with both keys held by the caller.
pub async fn copy_held(held: &HeldKeys, s: &mut Session, args: &[Vec<u8>]) {
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        match args[i].to_ascii_uppercase().as_slice() {
            b"REPLACE" => replace = true,
            b"DB" if i + 1 < args.len() => {
                match std::str::from_utf8(&args[i + 1]).ok().and_then(|t| t.parse::<i64>().ok()) {
                    Some(0) => {}
                    Some(_) => return s.w.error("ERR DB index is out of range"),
                    None => return s.w.error(crate::commands::ERR_NOT_INTEGER),
                }
                i += 1;
            }
            _ => return s.w.error(crate::commands::ERR_SYNTAX),
        }
        i += 1;
    }
    if args[1] == args[2] {
        return s.w.error("ERR source and destination objects are the same");
    }
    let mode = if replace { Mode::CopyReplace } else { Mode::Copy };
    match move_value(held, s, args[1].clone(), args[2].clone(), mode).await {
        Ok(Outcome::Done) => s.w.int(1),
        Ok(Outcome::NoSource | Outcome::DestinationExists) => s.w.int(0),
        Err(e) => s.w.error(&e),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rename,
    RenameNx,
    Copy,
    CopyReplace,
}

enum Outcome {
    Done,
    NoSource,
    DestinationExists,
}

/// Reads `src` and writes it to `dst` (deleting `src` for a rename), both keys held.
async fn move_value(
    held: &HeldKeys,
    s: &Session,
    src: Vec<u8>,
    dst: Vec<u8>,
    mode: Mode,
) -> Result<Outcome, String> {
    let app = s.client.app();
    let read =
        held.run(vec![Op::Dump { key: src.clone() }, Op::Exists { key: dst.clone() }], app).await;
    match (&read[0], &read[1]) {
        (Err(e), _) | (_, Err(e)) => Err(error_text(e)),
        (Ok(Reply::Entry { value, expire_at_ms }), Ok(Reply::Bool(dst_exists))) => {
            let keep_dst = matches!(mode, Mode::RenameNx | Mode::Copy) && *dst_exists;
            if keep_dst || src == dst {
                // RENAME k k is OK and changes nothing; RENAMENX k k answers 0 (k exists).
                Ok(if mode == Mode::Rename { Outcome::Done } else { Outcome::DestinationExists })
            } else {
                let expiry = match expire_at_ms {
                    0 => SetExpiry::Clear,
                    at => SetExpiry::At(*at),
                };
                let set = Op::Set {
                    key: dst,
                    value: value.clone(),
                    condition: SetCondition::Always,
                    expiry,
                    return_old: false,
                };
                // The source goes only once the destination is written: a refused write (a
                // failed log) must not lose the value.
                let mut steps = vec![set];
                if matches!(mode, Mode::Rename | Mode::RenameNx) {
                    steps.push(Op::Del { key: src });
                }
                let mut outcome = Ok(Outcome::Done);
                for op in steps {
                    if let Some(e) = held.run(vec![op], app).await.into_iter().find_map(Result::err)
                    {
                        outcome = Err(error_text(&e));
                        break;
                    }
                }
                outcome
            }
        }
        (Ok(_), Ok(_)) => Ok(Outcome::NoSource),
    }
}
