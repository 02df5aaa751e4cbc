//! `happystreams describe`: the validated graph as text (like Kafka Streams'
//! `Topology#describe()`) or as Graphviz DOT.

use super::duration::format_duration;
use super::plan::{Measure, Plan, Shape, Step};
use super::spec::{Emit, SourceKind};
use std::fmt::Write as _;

fn step_label(step: &Step) -> String {
    match step {
        Step::Filter(e) => format!("filter: {}", e.source()),
        Step::Rekey { key, repartition } => match repartition {
            Some(topic) => format!("re-key: {} -> repartition topic {topic}", key.source()),
            None => format!("re-key: {}", key.source()),
        },
        Step::Repartition { topic } => format!("repartition through topic {topic} (key changed upstream)"),
        Step::Join { other, other_kind, on, join_type, alias, window, .. } => {
            let kind = match (other_kind, window) {
                (_, Some((within, grace))) => {
                    format!("stream-stream join within {} grace {}", format_duration(*within), format_duration(*grace))
                }
                (SourceKind::Global, _) => "global-table join".into(),
                (SourceKind::Versioned, _) => "versioned-table join (as of event time)".into(),
                (SourceKind::Stream, _) => "join".into(),
                _ => "table join".into(),
            };
            let on = on.as_ref().map(|e| format!(" on {}", e.source())).unwrap_or_default();
            format!("{join_type:?} {kind} with {other}{on} as {alias}").to_lowercase()
        }
        Step::Select(fields) => format!(
            "select: {}",
            fields.iter().map(|(k, e)| format!("{k}={}", e.source())).collect::<Vec<_>>().join(", ")
        ),
        Step::FlatMap(e) => format!("flat-map: {}", e.source()),
        Step::Aggregate { group_by, window, emit, measures, repartition, store, .. } => {
            let window = window.as_ref().map_or_else(String::new, |w| {
                format!(
                    " {:?} window {} (advance {}, grace {})",
                    w.window_type,
                    format_duration(w.size_ms),
                    format_duration(w.advance_ms),
                    format_duration(w.grace_ms)
                )
                .to_lowercase()
            });
            let measures = measures
                .iter()
                .map(|(k, m)| match m {
                    Measure::Count => format!("{k}=count"),
                    Measure::Sum(e) => format!("{k}=sum({})", e.source()),
                    Measure::Min(e) => format!("{k}=min({})", e.source()),
                    Measure::Max(e) => format!("{k}=max({})", e.source()),
                    Measure::Avg(e) => format!("{k}=avg({})", e.source()),
                    Measure::CountDistinct(e) => format!("{k}=count_distinct({})", e.source()),
                    Measure::TopN { n, of, .. } => format!("{k}=top_{n}({})", of.source()),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let emit = if *emit == Emit::Final { "final" } else { "on update" };
            let repartition = repartition.as_ref().map(|t| format!(" via repartition topic {t}")).unwrap_or_default();
            format!(
                "aggregate by {}{window}, emit {emit}: {measures}{repartition} (store {store})",
                group_by.iter().map(|(k, e)| format!("{k}={}", e.source())).collect::<Vec<_>>().join(", ")
            )
        }
        Step::ToTable { store, history_ms: None } => format!("to table (store {store})"),
        Step::ToTable { store, history_ms: Some(h) } => {
            format!("to versioned table, history {} (store {store})", format_duration(*h))
        }
    }
}

/// Kafka-Streams-style text.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Topology: {}", plan.name);
    for sub in 0..plan.subtopologies {
        let _ = writeln!(out, "  Sub-topology: {sub}");
        for s in plan.sources.iter().filter(|s| s.subtopology == Some(sub)) {
            let _ = writeln!(out, "    Source: {} (topic: {}, {:?} {:?})", s.name, s.topic, s.format, s.kind);
            if let Some(store) = &s.store {
                let _ = writeln!(out, "      store: {store}");
            }
            for n in plan.nodes.iter().filter(|n| n.inputs.contains(&s.name)) {
                let _ = writeln!(out, "      --> {}", n.name);
            }
        }
        for n in plan.nodes.iter().filter(|n| n.subtopology == sub) {
            let shape = if n.shape == Shape::Table { "table" } else { "stream" };
            let _ = writeln!(out, "    Processor: {} ({shape}, line {})", n.name, n.line);
            for step in &n.steps {
                let _ = writeln!(out, "      {}", step_label(step));
            }
            if let Some(topic) = &n.late_topic {
                let _ = writeln!(out, "      late records --> {topic}");
            }
            for input in &n.inputs {
                let _ = writeln!(out, "      <-- {input}");
            }
            for next in plan.nodes.iter().filter(|m| m.inputs.contains(&n.name)) {
                let _ = writeln!(out, "      --> {}", next.name);
            }
            for sink in plan.sinks.iter().filter(|k| k.from == n.name) {
                let _ = writeln!(out, "      --> sink {} ({:?})", sink.topic, sink.format);
            }
        }
    }
    let globals: Vec<_> = plan.sources.iter().filter(|s| s.kind == SourceKind::Global).collect();
    if !globals.is_empty() {
        let _ = writeln!(out, "  Global tables (every instance reads all partitions):");
        for s in globals {
            let _ = writeln!(
                out,
                "    Source: {} (topic: {}, store: {})",
                s.name,
                s.topic,
                s.store.as_deref().unwrap_or("-")
            );
        }
    }
    let repartitions = plan.repartition_topics();
    if !repartitions.is_empty() {
        let _ = writeln!(out, "  Repartition topics: {}", repartitions.join(", "));
    }
    let _ = writeln!(out, "  Stores: {}", plan.stores().join(", "));
    out
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Graphviz DOT.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&plan.name));
    let _ = writeln!(out, "  rankdir=LR;");
    for s in &plan.sources {
        let _ = writeln!(
            out,
            "  {} [shape=ellipse, label={}];",
            quote(&s.name),
            quote(&format!("{}\\n{}", s.name, s.topic))
        );
    }
    for n in &plan.nodes {
        let label =
            std::iter::once(n.name.clone()).chain(n.steps.iter().map(step_label)).collect::<Vec<_>>().join("\\n");
        let _ = writeln!(out, "  {} [shape=box, label={}];", quote(&n.name), quote(&label));
        for input in &n.inputs {
            let _ = writeln!(out, "  {} -> {};", quote(input), quote(&n.name));
        }
        for step in &n.steps {
            if let Step::Join { other, .. } = step {
                let _ = writeln!(out, "  {} -> {} [style=dashed, label=\"join\"];", quote(other), quote(&n.name));
            }
        }
    }
    for (i, sink) in plan.sinks.iter().enumerate() {
        let id = format!("sink{i}");
        let _ = writeln!(out, "  {id} [shape=cylinder, label={}];", quote(&sink.topic));
        let _ = writeln!(out, "  {} -> {id};", quote(&sink.from));
    }
    out.push_str("}\n");
    out
}
