//! Table changelogs inside a pipeline: which nodes may read a table's changes, and how a change
//! flows through them (filter and select on both the old and the new row, table-table joins,
//! aggregates that take the old row out and add the new one).

use super::{Output, Pipeline, unsupported};
use crate::operators::stateless;
use crate::operators::{Event, OperatorError, TableChange, table_aggregate};
use crate::record::{Row, Value};
use crate::state::{StateBackend, TaskState};
use crate::topology::Plan;
use crate::topology::plan::{PlannedNode, Step};
use crate::topology::spec::SourceKind;

/// Whether `name` is a table whose changelog nodes can read: a plain table source, or a node
/// that only filters and projects such a table.
pub(super) fn changelog_table(plan: &Plan, name: &str) -> bool {
    if let Some(source) = plan.source(name) {
        return source.kind == SourceKind::Table;
    }
    plan.node(name).is_some_and(|n| {
        n.steps.iter().all(|s| matches!(s, Step::Filter(_) | Step::Select(_)))
            && n.inputs.iter().all(|i| changelog_table(plan, i))
    })
}

/// A node reading a table's changelog may filter, select and aggregate (unwindowed, measures
/// that can be taken back).
pub(super) fn check_changelog_reader(plan: &Plan, node: &PlannedNode, input: &str) -> Result<(), OperatorError> {
    if !changelog_table(plan, input) {
        return Err(unsupported(
            node,
            &format!(
                "reading the changelog of `{input}` (only plain table sources and nodes that filter or select them)"
            ),
        ));
    }
    for step in &node.steps {
        match step {
            Step::Filter(_) | Step::Select(_) => {}
            Step::Join { window: None, other, .. }
                if plan.source(other).is_some_and(|s| s.kind == SourceKind::Table) => {}
            Step::Aggregate { window: None, ttl_ms: None, measures, .. } => {
                if let Some((name, _)) = measures.iter().find(|(_, m)| !table_aggregate::retractable(m)) {
                    return Err(unsupported(
                        node,
                        &format!("measure `{name}` over a table's changelog (count, sum, avg and top_n can)"),
                    ));
                }
            }
            _ => return Err(unsupported(node, &format!("reading the table `{input}` as a changelog with this step"))),
        }
    }
    Ok(())
}

impl Pipeline {
    /// Hands a table's row changes to the nodes reading its changelog (and to its sinks).
    pub(super) fn emit_changes<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        from: &str,
        changes: Vec<TableChange>,
        stream_time: i64,
        out: &mut Vec<Output>,
    ) -> Result<(), OperatorError> {
        for change in changes {
            for topic in self.sinks.get(from).map(Vec::as_slice).unwrap_or_default() {
                out.push(Output {
                    topic: topic.clone(),
                    key: change.key.clone(),
                    value: change.new.clone(),
                    timestamp: change.timestamp,
                });
            }
            for &index in self.changelog_readers.get(from).map(Vec::as_slice).unwrap_or_default() {
                let (changes, events) = self.run_change_steps(state, index, change.clone(), 0)?;
                let name = &self.plan.nodes[index].name;
                self.emit_changes(state, name, changes, stream_time, out)?;
                self.emit(state, name, events, stream_time, out)?;
            }
            // Table-table joins whose right side this table is.
            for &(index, step_index) in self.changelog_right.get(from).map(Vec::as_slice).unwrap_or_default() {
                let join = self
                    .table_joins
                    .get(&(index, step_index))
                    .ok_or_else(|| OperatorError::Config("table join not wired".into()))?;
                let name = &self.plan.nodes[index].name;
                for rejoined in join.on_right(state, &change)? {
                    let (changes, events) = self.run_change_steps(state, index, rejoined, step_index + 1)?;
                    self.emit_changes(state, name, changes, stream_time, out)?;
                    self.emit(state, name, events, stream_time, out)?;
                }
            }
        }
        Ok(())
    }

    /// Runs a changelog reader's steps on one change: filter and select apply to both the old
    /// and the new row; an aggregate turns the change into updated group results.
    fn run_change_steps<B: StateBackend>(
        &self,
        state: &mut TaskState<B>,
        index: usize,
        mut change: TableChange,
        start: usize,
    ) -> Result<(Vec<TableChange>, Vec<Event>), OperatorError> {
        let node = &self.plan.nodes[index];
        /// Runs a record step on one side (old or new) of a change.
        fn on_side(
            key: &Value,
            timestamp: i64,
            row: Option<Row>,
            f: &dyn Fn(Event) -> Result<Option<Event>, OperatorError>,
        ) -> Result<Option<Row>, OperatorError> {
            match row {
                Some(r) => Ok(f(Event::new(key.clone(), r, timestamp))?.map(|e| e.value)),
                None => Ok(None),
            }
        }
        for (step_index, step) in node.steps.iter().enumerate().skip(start) {
            match step {
                Step::Join { on, .. } => {
                    let join = self
                        .table_joins
                        .get(&(index, step_index))
                        .ok_or_else(|| OperatorError::Config(format!("join of `{}` not wired", node.name)))?;
                    match join.on_left(state, on.as_ref(), change)? {
                        Some(joined) => change = joined,
                        None => return Ok((Vec::new(), Vec::new())),
                    }
                }
                Step::Filter(predicate) => {
                    let (old, new) = (change.old.take(), change.new.take());
                    change.old = on_side(&change.key, change.timestamp, old, &|e| stateless::filter(predicate, e))?;
                    change.new = on_side(&change.key, change.timestamp, new, &|e| stateless::filter(predicate, e))?;
                    if change.old.is_none() && change.new.is_none() {
                        return Ok((Vec::new(), Vec::new()));
                    }
                }
                Step::Select(fields) => {
                    let (old, new) = (change.old.take(), change.new.take());
                    change.old =
                        on_side(&change.key, change.timestamp, old, &|e| stateless::select(fields, e).map(Some))?;
                    change.new =
                        on_side(&change.key, change.timestamp, new, &|e| stateless::select(fields, e).map(Some))?;
                }
                Step::Aggregate { group_by, measures, .. } => {
                    let aggregator = self
                        .aggregators
                        .get(&(index, step_index))
                        .ok_or_else(|| OperatorError::Config(format!("aggregate of `{}` not wired", node.name)))?;
                    return Ok((Vec::new(), aggregator.on_change(state, group_by, measures, &change)?));
                }
                _ => return Err(unsupported(node, "this step on a table's changelog")),
            }
        }
        Ok((vec![change], Vec::new()))
    }
}
