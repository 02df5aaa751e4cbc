//! Versioned store: each key keeps its row history for a retention period, so a lookup can ask
//! "what was the value at event time t?" — the basis of event-time stream-table joins whose
//! results do not depend on arrival order.
//!
//! Layout inside one byte store: key = `len(key) as u32 BE ++ key ++ valid_from`, where
//! `valid_from` (ms) is big-endian with the sign bit flipped so byte order equals time order;
//! value = `0x00` (tombstone: the key did not exist from then on) or `0x01 ++ value`.
//! A version is valid from its `valid_from` until the next version's.
//!
//! Retention: when a version is written at stream time `now`, versions that stopped being valid
//! before `now - retention` are deleted; the one valid at the cutoff is kept, so lookups at any
//! time inside the retention window stay exact. A lookup older than the retention may find no
//! version although the key existed then (Kafka Streams' versioned stores behave the same);
//! callers compare the lookup time with `now - retention` to tell such a miss from a real one.

use super::StateError;
use super::backend::StateBackend;
use super::task_state::TaskState;
use crate::record::encoding::{from_ordered_i64, length_prefixed, ordered_i64};

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// When it became valid (ms).
    pub valid_from: i64,
    /// The value (`None`: the key was deleted at `valid_from`).
    pub value: Option<Vec<u8>>,
}

/// A versioned view over one byte store.
#[derive(Debug, Clone)]
pub struct VersionedStore {
    store: String,
    retention_ms: i64,
}

fn time_from(bytes: &[u8]) -> i64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[bytes.len() - 8..]);
    from_ordered_i64(buf)
}

fn prefix(key: &[u8]) -> Vec<u8> {
    length_prefixed(key, 8)
}

fn versioned_key(key: &[u8], ts: i64) -> Vec<u8> {
    let mut out = prefix(key);
    out.extend_from_slice(&ordered_i64(ts));
    out
}

fn encode_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(v) => {
            let mut out = Vec::with_capacity(1 + v.len());
            out.push(1);
            out.extend_from_slice(v);
            out
        }
    }
}

impl VersionedStore {
    /// A versioned view of `store` keeping `retention_ms` of history.
    pub fn new(store: impl Into<String>, retention_ms: i64) -> Self {
        VersionedStore { store: store.into(), retention_ms }
    }

    /// One stored version, decoded.
    pub fn decode(&self, key: &[u8], value: &[u8]) -> Result<Version, StateError> {
        let corrupt = |detail: &str| StateError::Encoding { store: self.store.clone(), detail: detail.into() };
        if key.len() < 12 {
            return Err(corrupt("versioned key shorter than its header"));
        }
        let value = match value.split_first() {
            Some((0, _)) => None,
            Some((1, rest)) => Some(rest.to_vec()),
            _ => return Err(corrupt("versioned value without a valid tag")),
        };
        Ok(Version { valid_from: time_from(key), value })
    }

    /// The stored keys `from..to` holding `key`'s versions valid from `up_to` or earlier
    /// (`None`: all of them).
    pub fn bounds(key: &[u8], up_to: Option<i64>) -> (Vec<u8>, Vec<u8>) {
        let from = versioned_key(key, i64::MIN);
        let to = match up_to {
            Some(ts) if ts < i64::MAX => versioned_key(key, ts + 1),
            _ => {
                let mut end = prefix(key);
                end.extend_from_slice(&[0xff; 9]);
                end
            }
        };
        (from, to)
    }

    /// The key a stored versioned key belongs to.
    pub fn key_of(stored: &[u8]) -> Option<&[u8]> {
        let len = stored.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)?;
        stored.get(4..4 + len)
    }

    fn versions<B: StateBackend>(
        &self,
        state: &TaskState<B>,
        key: &[u8],
        up_to: Option<i64>,
    ) -> Result<Vec<Version>, StateError> {
        let (from, to) = Self::bounds(key, up_to);
        state.range(&self.store, &from, Some(&to))?.iter().map(|(k, v)| self.decode(k, v)).collect()
    }

    /// Records that `key` has `value` (or, with `None`, stops existing) from `valid_from` on,
    /// then drops history older than the retention at stream time `now`.
    pub fn put<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        key: &[u8],
        valid_from: i64,
        value: Option<&[u8]>,
        now: i64,
    ) -> Result<(), StateError> {
        state.put(&self.store, versioned_key(key, valid_from), encode_value(value))?;
        self.expire(state, key, now)
    }

    /// The version valid at `ts`: the newest with `valid_from <= ts`. `None` when the key had no
    /// version yet, or was deleted, at `ts`.
    pub fn get_as_of<B: StateBackend>(
        &self,
        state: &TaskState<B>,
        key: &[u8],
        ts: i64,
    ) -> Result<Option<Version>, StateError> {
        Ok(self.versions(state, key, Some(ts))?.pop().filter(|v| v.value.is_some()))
    }

    /// Every key that has at least one version (in key-byte order).
    pub fn keys<B: StateBackend>(&self, state: &TaskState<B>) -> Result<Vec<Vec<u8>>, StateError> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for (stored, _) in state.range(&self.store, b"", None)? {
            let key = Self::key_of(&stored).ok_or_else(|| StateError::Encoding {
                store: self.store.clone(),
                detail: "versioned key header".into(),
            })?;
            if keys.last().is_none_or(|last| last.as_slice() != key) {
                keys.push(key.to_vec());
            }
        }
        Ok(keys)
    }

    /// How much history is kept (ms).
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// Every kept version of `key`, oldest first.
    pub fn all_versions<B: StateBackend>(&self, state: &TaskState<B>, key: &[u8]) -> Result<Vec<Version>, StateError> {
        self.versions(state, key, None)
    }

    /// The newest version, if the key currently exists.
    pub fn latest<B: StateBackend>(&self, state: &TaskState<B>, key: &[u8]) -> Result<Option<Version>, StateError> {
        Ok(self.versions(state, key, None)?.pop().filter(|v| v.value.is_some()))
    }

    fn expire<B: StateBackend>(&self, state: &mut TaskState<B>, key: &[u8], now: i64) -> Result<(), StateError> {
        let cutoff = now.saturating_sub(self.retention_ms);
        let versions = self.versions(state, key, Some(cutoff))?;
        // Keep the last version at or before the cutoff (it is still valid at the cutoff).
        if versions.len() > 1 {
            for old in &versions[..versions.len() - 1] {
                state.delete(&self.store, versioned_key(key, old.valid_from))?;
            }
        }
        Ok(())
    }
}
