//! Whether an instance is alive and ready, for `/health/live` and `/health/ready`.
//!
//! Ready means every stream thread has been through its first assignment and every task it was
//! assigned runs: none is still restoring. An instance with no tasks (more instances than
//! partitions) is ready once assigned nothing. The task phases are kept here, process-wide,
//! at the points that also set the `task_running` gauge.

use super::layout::TaskId;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

#[derive(Default)]
struct Phases {
    threads: usize,
    assigned_threads: BTreeSet<usize>,
    /// Threads that gave tasks away and have not had their next assignment yet (a cooperative
    /// rebalance revokes first and assigns in a second round).
    rebalancing: BTreeSet<usize>,
    tasks: BTreeMap<(usize, TaskId), bool>,
    stopping: bool,
}

static PHASES: Mutex<Phases> = Mutex::new(Phases {
    threads: 0,
    assigned_threads: BTreeSet::new(),
    rebalancing: BTreeSet::new(),
    tasks: BTreeMap::new(),
    stopping: false,
});

fn with(change: impl FnOnce(&mut Phases)) {
    if let Ok(mut phases) = PHASES.lock() {
        change(&mut phases);
    }
}

/// The instance runs `threads` stream threads.
pub fn started(threads: usize) {
    with(|p| *p = Phases { threads, ..Phases::default() });
}

/// A thread's group assignment arrived (possibly empty).
pub fn thread_assigned(thread: usize) {
    with(|p| {
        p.assigned_threads.insert(thread);
        p.rebalancing.remove(&thread);
    });
}

/// A thread gave partitions away; it is rebalancing until its next assignment.
pub fn thread_revoked(thread: usize) {
    with(|p| {
        p.rebalancing.insert(thread);
    });
}

/// The instance is stopping (a signal, or an error): not ready any more.
pub fn stopping() {
    with(|p| p.stopping = true);
}

/// A task was assigned and restores.
pub fn task_restoring(thread: usize, id: TaskId) {
    with(|p| {
        p.tasks.insert((thread, id), false);
    });
}

/// A task runs.
pub fn task_running(thread: usize, id: TaskId) {
    with(|p| {
        p.tasks.insert((thread, id), true);
    });
}

/// A task was revoked, lost or closed.
pub fn task_gone(thread: usize, id: TaskId) {
    with(|p| {
        p.tasks.remove(&(thread, id));
    });
}

/// The answer of `/health/ready`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Readiness {
    /// Every thread assigned and every task running.
    pub ready: bool,
    /// Why not: `starting`, `joining` (a thread has no assignment yet), `rebalancing` (a thread
    /// gave tasks away and waits for its next assignment), `restoring` or `stopping`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Tasks running.
    pub running: Vec<String>,
    /// Tasks restoring.
    pub restoring: Vec<String>,
}

/// The instance's readiness now.
pub fn readiness() -> Readiness {
    let Ok(p) = PHASES.lock() else {
        return Readiness { ready: false, reason: Some("starting"), running: Vec::new(), restoring: Vec::new() };
    };
    let named = |running: bool| -> Vec<String> {
        let names: BTreeSet<String> =
            p.tasks.iter().filter(|(_, r)| **r == running).map(|((_, id), _)| id.to_string()).collect();
        names.into_iter().collect()
    };
    let (running, restoring) = (named(true), named(false));
    let reason = if p.stopping {
        Some("stopping")
    } else if p.threads == 0 {
        Some("starting")
    } else if p.assigned_threads.len() < p.threads {
        Some("joining")
    } else if !p.rebalancing.is_empty() {
        Some("rebalancing")
    } else if !restoring.is_empty() {
        Some("restoring")
    } else {
        None
    };
    Readiness { ready: reason.is_none(), reason, running, restoring }
}

/// `/health/live` and `/health/ready` (JSON; 200, or 503 when not ready).
pub fn router() -> axum::Router {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    axum::Router::new()
        .route("/health/live", axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "live"})) }))
        .route(
            "/health/ready",
            axum::routing::get(|| async {
                let readiness = readiness();
                let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (status, axum::Json(readiness)).into_response()
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_thread_is_assigned_and_no_task_restores() {
        let id = |partition| TaskId { subtopology: 0, partition };
        started(2);
        assert_eq!(readiness().reason, Some("joining"));
        thread_assigned(0);
        task_restoring(0, id(0));
        thread_assigned(1);
        assert_eq!(readiness().reason, Some("restoring"));
        task_running(0, id(0));
        let ready = readiness();
        assert!(ready.ready, "{ready:?}");
        assert_eq!(ready.running, vec![id(0).to_string()]);
        thread_revoked(1);
        assert_eq!(readiness().reason, Some("rebalancing"));
        thread_assigned(1);
        task_gone(0, id(0));
        assert!(readiness().running.is_empty());
        stopping();
        assert_eq!(readiness().reason, Some("stopping"));
    }
}
