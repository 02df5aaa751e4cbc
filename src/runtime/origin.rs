//! Repeated repartition records are recognised and skipped, so a stateful sub-topology behind a
//! repartition topic holds every *source* record exactly once under at least once too.
//!
//! A crash before a commit makes the upstream task process its inputs again from its last
//! commit, so it sends again the repartition records it had sent since — and the downstream
//! task may already have counted the first copies. Each repartition record therefore names the
//! input record it came from in a header (`happystreams.origin: <topic>:<partition>:<offset>:<n>`,
//! the n-th repartition record of that input record). An upstream task processes each input
//! partition in offset order and sends through one producer, so within a partition of the
//! repartition topic the records of one origin partition come in increasing (offset, n). The
//! downstream task keeps, per origin partition, the last (offset, n) it applied, in a store of
//! its own ([`STORE`]) — committed, logged and restored with the rest of its state, so it
//! always matches the state — and skips a record at or below it
//! (`repartition_duplicates_skipped_total`).
//!
//! A record re-sent after its table-join side changed can go to another partition (a new key):
//! that partition has not seen it, and counts it.

use crate::record::{Position, Record};

/// The header naming a repartition record's origin.
pub const HEADER: &str = "happystreams.origin";

/// The store of the last applied origin per origin partition, in every stateful sub-topology
/// that reads a repartition topic.
pub const STORE: &str = "__repartition_origins";

/// The header value for the `index`-th repartition record sent for the input at `cause`.
pub fn header(cause: &Position, index: u32) -> String {
    format!("{}:{}:{}:{index}", cause.topic, cause.partition, cause.offset)
}

/// Where a repartition record read from `topic` came from, when it says.
#[derive(Debug, PartialEq)]
pub struct Origin {
    /// `<repartition topic>|<origin topic>:<origin partition>`: one entry per origin partition.
    pub key: Vec<u8>,
    /// The origin's (offset, index), big-endian so the bytes sort like the numbers.
    pub at: [u8; 12],
}

impl Origin {
    /// The origin of `record`, read from `topic` (`None` without a well-formed header, e.g.
    /// records written by an earlier version: those are applied).
    pub fn of(topic: &str, record: &Record) -> Option<Origin> {
        let value = record.headers.iter().rev().find(|h| h.key == HEADER)?.value.as_ref()?;
        let value = std::str::from_utf8(value).ok()?;
        let (rest, index) = value.rsplit_once(':')?;
        let (partition_of, offset) = rest.rsplit_once(':')?;
        partition_of.rsplit_once(':')?.1.parse::<i32>().ok()?;
        let (index, offset) = (index.parse::<u32>().ok()?, offset.parse::<i64>().ok()?);
        let mut at = [0; 12];
        at[..8].copy_from_slice(&(offset as u64 ^ (1 << 63)).to_be_bytes());
        at[8..].copy_from_slice(&index.to_be_bytes());
        Some(Origin { key: format!("{topic}|{partition_of}").into_bytes(), at })
    }

    /// Whether `last` (the stored value of [`Origin::key`]) is at or past this record.
    pub fn applied(&self, last: Option<&[u8]>) -> bool {
        last.is_some_and(|last| last >= self.at.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Header;
    use std::sync::Arc;

    fn record(header: Option<&str>) -> Record {
        let mut record = Record::default();
        record.headers = header
            .map(|h| vec![Header { key: HEADER.into(), value: Some(bytes::Bytes::from(h.to_owned())) }])
            .unwrap_or_default();
        record
    }

    fn at(offset: i64, index: u32) -> Origin {
        let cause = Position { topic: Arc::from("app.clicks"), partition: 3, offset };
        Origin::of("rep", &record(Some(&header(&cause, index)))).unwrap()
    }

    #[test]
    fn origins_order_by_offset_then_index_per_origin_partition() {
        let first = at(9, 1);
        assert_eq!(first.key, b"rep|app.clicks:3");
        assert!(first.applied(Some(&first.at)), "the same record again is a repeat");
        for later in [at(9, 2), at(10, 0), at(1 << 40, 0)] {
            assert!(!later.applied(Some(&first.at)), "{later:?} comes after");
            assert!(first.applied(Some(&later.at)), "{first:?} comes before");
        }
        assert!(!first.applied(None), "nothing applied yet");
        assert!(at(0, 0).at < at(1, 0).at);
    }

    #[test]
    fn records_without_a_well_formed_origin_are_applied() {
        for header in [None, Some(""), Some("t:1:x:0"), Some("t:1:2"), Some("t:1:2:-1")] {
            assert_eq!(Origin::of("rep", &record(header)), None, "{header:?}");
        }
        // Topic names may hold dots and dashes, never colons: the last two fields are numbers.
        assert!(Origin::of("rep", &record(Some("a.b-c:0:5:0"))).is_some());
    }
}
