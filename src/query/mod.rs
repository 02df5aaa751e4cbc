//! Interactive queries: read the live state of a running application over HTTP, from any of its
//! instances (`docs/QUERIES.md`).
//!
//! - [`catalog`]: which stores the topology has, their kinds and partitions;
//! - [`local`]: what this instance holds — its tasks' committed state, their phases;
//! - [`read`]: key, range and window reads of one partition's snapshot, decoded as the store's
//!   node outputs them;
//! - [`discovery`]: how instances find each other (the `<application_id>-instances` topic);
//! - [`http`]: the `/v1/stores` routes, which gather every partition's answer and answer `503`
//!   with a reason rather than serve a partition that is not complete.
//!
//! Answers reflect each task's last commit (its checkpoint, read in the same snapshot as the
//! values), so an answer and its `position` always agree.

pub mod catalog;
pub mod discovery;
pub mod gather;
pub mod http;
pub mod local;
pub mod read;
