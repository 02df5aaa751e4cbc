//! From a [`TopologySpec`] to a validated [`Plan`]: names resolved, expressions compiled,
//! durations parsed, repartition points inserted, stores named, sub-topologies found.
//!
//! Validation rules (each error names the file, line and node):
//! - names are unique across sources and nodes; a node reads only sources and earlier nodes
//!   (so the graph cannot have cycles);
//! - a join's `table` is a table source or a node that produces a table; a stream-stream join
//!   has `within`; a global-table join has an `on` foreign key;
//! - join keys have the same type on both sides, when both are known from `.avsc` schemas;
//! - windows have a positive size (and gap), a hop no larger than the size, grace ≥ 0;
//! - an aggregate measure sets exactly one kind; a node has at most one of join / aggregate /
//!   flat_map;
//! - a stateful step (join with a co-partitioned table, aggregate) after a re-key reads through
//!   a repartition topic `<topology>-<node>-repartition`, which `describe` shows.
//!
//! Sources (schemas, keys, history, access-log rules, the fields they give) are in [`source`];
//! nodes are here.

mod source;

use super::TopologyError;
use super::duration::parse_duration;
use super::plan::*;
use super::spec::*;
use crate::expression::Expression;
use indexmap::IndexMap;
use std::collections::BTreeMap;
use std::path::Path;

/// Known fields of a stream at some point of the graph (`None` = unknown).
type Fields = Option<BTreeMap<String, FieldType>>;

struct Builder<'a> {
    file: Option<&'a Path>,
    base_dir: &'a Path,
    topology: String,
    /// name → (shape, kind for sources, key type, fields, sub-topology)
    known: BTreeMap<String, Known>,
    /// union-find over sub-topology ids
    parents: Vec<usize>,
}

#[derive(Clone)]
struct Known {
    shape: Shape,
    kind: SourceKind,
    /// The expression the key was computed by, when known.
    key_source: Option<String>,
    /// The key changed since the stream was last partitioned by it: a stateful step must read
    /// through a repartition topic first.
    key_dirty: bool,
    key_type: Option<FieldType>,
    fields: Fields,
    group: Option<usize>,
}

impl Builder<'_> {
    fn error(&self, line: Option<u64>, node: Option<&str>, message: impl Into<String>) -> TopologyError {
        TopologyError {
            file: self.file.map(Path::to_path_buf),
            line,
            column: None,
            node: node.map(str::to_owned),
            message: message.into(),
        }
    }

    fn new_group(&mut self) -> usize {
        self.parents.push(self.parents.len());
        self.parents.len() - 1
    }

    fn find(&mut self, mut g: usize) -> usize {
        while self.parents[g] != g {
            self.parents[g] = self.parents[self.parents[g]];
            g = self.parents[g];
        }
        g
    }

    fn union(&mut self, a: usize, b: usize) -> usize {
        let (ra, rb) = (self.find(a), self.find(b));
        self.parents[rb] = ra;
        ra
    }

    fn expr(&self, text: &str, line: u64, node: &str) -> Result<Expression, TopologyError> {
        Expression::compile(text).map_err(|e| self.error(Some(line), Some(node), e.to_string()))
    }

    fn duration(&self, text: &str, line: u64, node: &str, what: &str) -> Result<i64, TopologyError> {
        parse_duration(text).map_err(|e| self.error(Some(line), Some(node), format!("{what}: {e}")))
    }

    fn input(&self, name: &str, line: u64, node: &str) -> Result<Known, TopologyError> {
        self.known.get(name).cloned().ok_or_else(|| {
            self.error(Some(line), Some(node), format!("`{name}` is not a source or an earlier node (nodes must come after the nodes they read, which also rules out cycles)"))
        })
    }
}

fn type_of(expr: &Expression, fields: &Fields) -> Option<FieldType> {
    let path = expr.as_field()?;
    match path {
        [single] => fields.as_ref()?.get(single).copied(),
        _ => None,
    }
}

impl Builder<'_> {
    /// Reads an Avro sink's schema: a record with every field `from` is known to give (whether
    /// records fit it is checked as they are encoded).
    fn load_sink_schema(
        &self,
        schema_file: &str,
        line: u64,
        label: &str,
        from: &str,
        fields: &Fields,
    ) -> Result<std::sync::Arc<crate::codec::avro::AvroSchema>, TopologyError> {
        use crate::codec::connect::ConnectKind;
        let path = self.base_dir.join(schema_file);
        let error = |message: String| self.error(Some(line), Some(label), message);
        let text = std::fs::read_to_string(&path).map_err(|e| error(format!("schema {}: {e}", path.display())))?;
        let schema = crate::codec::avro::AvroSchema::parse(0, &text)
            .map_err(|e| error(format!("schema {}: {e}", path.display())))?;
        let ConnectKind::Struct(schema_fields) = &schema.connect.kind else {
            return Err(error(format!("schema {} is not a record", path.display())));
        };
        if let Some(fields) = fields
            && let Some(missing) = fields.keys().find(|f| !schema_fields.iter().any(|s| &*s.name == f.as_str()))
        {
            return Err(error(format!(
                "`{from}` gives field `{missing}`, which schema {} does not have: add it to the schema, or leave it out with a `select`",
                path.display()
            )));
        }
        Ok(std::sync::Arc::new(schema))
    }
}

fn compatible(a: FieldType, b: FieldType) -> bool {
    a == b || matches!((a, b), (FieldType::Uuid, FieldType::String) | (FieldType::String, FieldType::Uuid))
}

/// Validates a spec. `base_dir` is where relative schema paths start (the file's directory).
pub fn build(spec: TopologySpec, file: Option<&Path>, base_dir: &Path) -> Result<Plan, TopologyError> {
    let mut b = Builder { file, base_dir, topology: spec.name.clone(), known: BTreeMap::new(), parents: Vec::new() };
    let mut sources = Vec::new();
    for (name, Located { value: source, line }) in spec.sources {
        let planned = source::build_source(&mut b, name, source, line)?;
        if let Some(other) = sources.iter().find(|s: &&PlannedSource| s.topic == planned.topic) {
            return Err(b.error(
                Some(line),
                Some(&planned.name),
                format!(
                    "sources `{}` and `{}` both read topic `{}`; declare the topic once and branch with nodes (e.g. two nodes `from: {}` with their own `filter`)",
                    other.name, planned.name, planned.topic, other.name
                ),
            ));
        }
        sources.push(planned);
    }

    let mut nodes = Vec::new();
    for Located { value: node, line } in spec.nodes {
        nodes.push(build_node(&mut b, node, line)?);
    }

    let mut sinks = Vec::new();
    for Located { value: sink, line } in spec.sinks {
        let label = format!("sink {}", sink.topic);
        let known = b.input(&sink.from, line, &label)?;
        let avro = match (sink.format, &sink.schema) {
            (SinkFormat::Avro, None) => {
                return Err(b.error(
                    Some(line),
                    Some(&label),
                    format!("an Avro sink needs `schema:` (an .avsc file, registered as `{}-value`)", sink.topic),
                ));
            }
            (SinkFormat::Avro, Some(file)) => {
                Some(b.load_sink_schema(file, line, &label, &sink.from, &known.fields)?)
            }
            (SinkFormat::Json, Some(_)) => {
                return Err(b.error(Some(line), Some(&label), "`schema:` is for Avro sinks (`format: avro`)"));
            }
            (SinkFormat::Json, None) => None,
        };
        sinks.push(PlannedSink { from: sink.from, topic: sink.topic, format: sink.format, schema: sink.schema, avro });
    }

    // Number sub-topologies densely in order of first appearance.
    let mut numbering: BTreeMap<usize, usize> = BTreeMap::new();
    let mut number = |b: &mut Builder<'_>, g: usize| {
        let root = b.find(g);
        let next = numbering.len();
        *numbering.entry(root).or_insert(next)
    };
    for s in &mut sources {
        s.subtopology = s.subtopology.map(|g| number(&mut b, g));
    }
    for n in &mut nodes {
        n.subtopology = number(&mut b, n.subtopology);
    }
    Ok(Plan { name: spec.name, sources, nodes, sinks, subtopologies: numbering.len() })
}

fn build_node(b: &mut Builder<'_>, node: NodeSpec, line: u64) -> Result<PlannedNode, TopologyError> {
    let name = node.name.clone();
    if b.known.contains_key(&name) {
        return Err(b.error(Some(line), Some(&name), format!("the name `{name}` is already used by a source or node")));
    }
    let mut inputs: Vec<String> = node.from.iter().cloned().collect();
    inputs.extend(node.merge.iter().cloned());
    if inputs.is_empty() {
        return Err(b.error(Some(line), Some(&name), "a node needs `from` (or `merge`)"));
    }
    let operations =
        [node.join.is_some(), node.aggregate.is_some(), node.flat_map.is_some()].iter().filter(|x| **x).count();
    if operations > 1 {
        return Err(b.error(
            Some(line),
            Some(&name),
            "use at most one of `join`, `aggregate`, `flat_map` per node; chain nodes instead",
        ));
    }
    if node.aggregate.is_some() && node.to_table.is_some() {
        return Err(b.error(Some(line), Some(&name), "an `aggregate` is already a table; drop `to_table`"));
    }
    if node.history.is_some() && node.to_table != Some(TableKind::Versioned) {
        return Err(b.error(Some(line), Some(&name), "`history` needs `to_table: versioned`"));
    }

    let mut first: Option<Known> = None;
    let mut group = None;
    let mut merged_dirty = false;
    for input in &inputs {
        let known = b.input(input, line, &name)?;
        if known.shape == Shape::Table && inputs.len() > 1 {
            return Err(b.error(Some(line), Some(&name), format!("`merge` takes streams; `{input}` is a table")));
        }
        match (group, known.group) {
            (None, g) => group = g,
            (Some(a), Some(c)) => group = Some(b.union(a, c)),
            (Some(_), None) => {}
        }
        match &first {
            None => first = Some(known),
            // Merged streams keyed differently (or dirty) need repartitioning before state.
            Some(f) => merged_dirty |= known.key_dirty || f.key_source != known.key_source || f.key_source.is_none(),
        }
    }
    let mut current = first.ok_or_else(|| b.error(Some(line), Some(&name), "no input"))?;
    current.key_dirty |= merged_dirty;
    let mut group = group.unwrap_or_else(|| b.new_group());
    let mut steps = Vec::new();
    let mut rekeyed = false;

    if let Some(filter) = &node.filter {
        steps.push(Step::Filter(b.expr(filter, line, &name)?));
    }
    if let Some(key) = &node.key {
        let expr = b.expr(key, line, &name)?;
        current.key_type = type_of(&expr, &current.fields);
        current.key_source = Some(key.clone());
        current.key_dirty = true;
        rekeyed = true;
        steps.push(Step::Rekey { key: expr, repartition: None });
    }
    let repartition_topic = format!("{}-{}-repartition", b.topology, name);

    if let Some(join) = node.join {
        let (other, is_stream) = match (&join.table, &join.stream) {
            (Some(t), None) => (t.clone(), false),
            (None, Some(s)) => (s.clone(), true),
            _ => return Err(b.error(Some(line), Some(&name), "a join names exactly one of `table` or `stream`")),
        };
        let other_known = b.input(&other, line, &name)?;
        match (is_stream, other_known.shape) {
            (false, Shape::Stream) => {
                return Err(b.error(
                    Some(line),
                    Some(&name),
                    format!("`{other}` is a stream; join it with `stream:` and a `within` window, or make it a table"),
                ));
            }
            (true, Shape::Table) => {
                return Err(b.error(Some(line), Some(&name), format!("`{other}` is a table; join it with `table:`")));
            }
            _ => {}
        }
        let on = join.on.as_deref().map(|o| b.expr(o, line, &name)).transpose()?;
        if other_known.kind == SourceKind::Global && on.is_none() {
            return Err(b.error(
                Some(line),
                Some(&name),
                format!("joining the global table `{other}` needs `on`: the foreign key expression"),
            ));
        }
        // Join key type check when both sides are known.
        let this_type = match &on {
            Some(e) => type_of(e, &current.fields),
            None => current.key_type,
        };
        if let (Some(mine), Some(theirs)) = (this_type, other_known.key_type)
            && !compatible(mine, theirs)
        {
            let mine_name = on.as_ref().map_or_else(
                || current.key_source.clone().unwrap_or_else(|| "the key".into()),
                |e| e.source().to_owned(),
            );
            return Err(b.error(
                Some(line),
                Some(&name),
                format!(
                    "join key types differ: `{mine_name}` is {mine:?} but the key of `{other}` ({}) is {theirs:?}",
                    other_known.key_source.clone().unwrap_or_else(|| "record key".into())
                ),
            ));
        }
        let window = if is_stream {
            let within = join.within.as_deref().ok_or_else(|| {
                b.error(Some(line), Some(&name), "a stream-stream join needs `within` (e.g. `within: 5m`)")
            })?;
            let within = b.duration(within, line, &name, "within")?;
            let grace = join.grace.as_deref().map(|g| b.duration(g, line, &name, "grace")).transpose()?.unwrap_or(0);
            Some((within, grace))
        } else {
            None
        };
        // Co-partitioned joins need the stream keyed like the table: `on` becomes a re-key, and
        // any re-key reads through a repartition topic. A global table is looked up by `on`
        // directly and needs neither.
        let mut on = on;
        // A table joined with a table (by `on`, a foreign key, or by key) stays keyed by its own
        // key: no re-key.
        let table_table = current.shape == Shape::Table && !is_stream;
        if other_known.kind != SourceKind::Global && !table_table {
            if let Some(text) = &join.on {
                steps.push(Step::Rekey { key: b.expr(text, line, &name)?, repartition: None });
                current.key_source = Some(text.clone());
                current.key_dirty = true;
                on = None;
                rekeyed = true;
            }
            if current.key_dirty {
                read_back(&mut steps, &repartition_topic, rekeyed);
                current.key_dirty = false;
                group = b.new_group();
            }
            if let Some(g) = other_known.group {
                group = b.union(group, g);
            }
        }
        let alias = join.alias.clone().unwrap_or_else(|| other.clone());
        if let (Some(fields), alias) = (&mut current.fields, &alias) {
            fields.insert(alias.clone(), FieldType::Other);
        }
        let stores = if is_stream {
            vec![format!("{name}-join-this"), format!("{name}-join-other")]
        } else if table_table {
            vec![format!("{name}-join-index")]
        } else {
            Vec::new()
        };
        steps.push(Step::Join {
            other,
            other_kind: other_known.kind,
            on,
            join_type: join.join_type,
            alias,
            unknown: join.unknown,
            window,
            stores,
        });
    }

    // With an aggregate, `select` shapes its results instead (see below).
    let (select_before, select_after_aggregate) =
        if node.aggregate.is_some() { (None, node.select) } else { (node.select, None) };
    if let Some(select) = select_before {
        steps.push(select_step(b, select, &mut current, line, &name)?);
    }
    if let Some(flat) = &node.flat_map {
        steps.push(Step::FlatMap(b.expr(flat, line, &name)?));
        current.fields = None;
    }

    let mut shape = Shape::Stream;
    let mut table_kind = SourceKind::Table;
    if let Some(agg) = node.aggregate {
        let group_by: Vec<(String, Expression)> = agg
            .group_by
            .iter()
            .map(|(k, v)| Ok((k.clone(), b.expr(v, line, &name)?)))
            .collect::<Result<_, TopologyError>>()?;
        if group_by.is_empty() {
            return Err(b.error(Some(line), Some(&name), "`group_by` needs at least one field"));
        }
        let window = agg.window.map(|w| window(b, w, line, &name)).transpose()?;
        if agg.emit == Emit::Final && window.is_none() {
            return Err(b.error(
                Some(line),
                Some(&name),
                "`emit: final` needs a window (an unwindowed aggregate never closes)",
            ));
        }
        let mut measures = Vec::new();
        for (out, m) in agg.measures {
            measures.push((out.clone(), measure(b, m, line, &name, &out)?));
        }
        if measures.is_empty() {
            return Err(b.error(Some(line), Some(&name), "`measures` needs at least one measure"));
        }
        let by_current_key =
            group_by.len() == 1 && current.key_source.as_deref() == Some(group_by[0].1.source()) && !current.key_dirty;
        let repartition = (!by_current_key).then(|| repartition_topic.clone());
        if repartition.is_some() {
            group = b.new_group();
        }
        let ttl_ms = agg.ttl.as_deref().map(|t| b.duration(t, line, &name, "ttl")).transpose()?;
        if ttl_ms.is_some() && window.is_some() {
            return Err(b.error(
                Some(line),
                Some(&name),
                "`ttl` is for unwindowed aggregates; windowed state is dropped when the window closes",
            ));
        }
        let mut fields: BTreeMap<String, FieldType> =
            group_by.iter().filter_map(|(k, e)| type_of(e, &current.fields).map(|t| (k.clone(), t))).collect();
        for (out, m) in &measures {
            fields.insert(
                out.clone(),
                match m {
                    Measure::Count | Measure::CountDistinct(_) => FieldType::Integer,
                    Measure::Avg(_) => FieldType::Float,
                    _ => FieldType::Other,
                },
            );
        }
        current.key_type =
            if group_by.len() == 1 { fields.get(&group_by[0].0).copied() } else { Some(FieldType::Other) };
        current.key_source = Some(group_by.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(","));
        current.key_dirty = false;
        current.fields = Some(fields);
        let side_store = window.as_ref().and_then(|w| match w.window_type {
            WindowType::Session => Some(format!("{name}-sessions")),
            WindowType::Sliding => Some(format!("{name}-records")),
            _ => None,
        });
        let keeps_sets = measures.iter().any(|(_, m)| matches!(m, Measure::CountDistinct(_)));
        let merges_windows =
            window.as_ref().is_some_and(|w| matches!(w.window_type, WindowType::Session | WindowType::Sliding));
        let distinct_store = (keeps_sets && !merges_windows).then(|| format!("{name}-distinct"));
        steps.push(Step::Aggregate {
            group_by,
            window,
            emit: agg.emit,
            measures,
            ttl_ms,
            repartition,
            store: format!("{name}-aggregate"),
            side_store,
            distinct_store,
        });
        if let Some(select) = select_after_aggregate {
            steps.push(select_step(b, select, &mut current, line, &name)?);
        }
        shape = Shape::Table;
    } else if let Some(kind) = node.to_table {
        let history_ms = match kind {
            TableKind::Versioned => Some(
                node.history
                    .as_deref()
                    .map(|h| b.duration(h, line, &name, "history"))
                    .transpose()?
                    .unwrap_or(86_400_000),
            ),
            TableKind::Table => None,
        };
        // A table is keyed like its partitions: a re-keyed stream is read back through a
        // repartition topic first, so each key's rows live in the task that serves its lookups.
        if current.key_dirty {
            read_back(&mut steps, &repartition_topic, rekeyed);
            current.key_dirty = false;
            group = b.new_group();
        }
        steps.push(Step::ToTable { store: format!("{name}-table"), history_ms });
        shape = Shape::Table;
        table_kind = if history_ms.is_some() { SourceKind::Versioned } else { SourceKind::Table };
    } else if current.shape == Shape::Table
        && steps.iter().all(|s| matches!(s, Step::Filter(_) | Step::Select(_) | Step::Join { window: None, .. }))
    {
        shape = Shape::Table;
    }

    b.known.insert(
        name.clone(),
        Known {
            shape,
            kind: if shape == Shape::Table { table_kind } else { SourceKind::Stream },
            group: Some(group),
            ..current
        },
    );
    let late_topic = (node.late == LatePolicy::DeadLetter).then(|| format!("{}-{}-late", b.topology, name));
    if node.cache == Some(false) && shape != Shape::Table {
        return Err(b.error(
            Some(line),
            Some(&name),
            "`cache` applies to nodes whose output is a table (an `aggregate`, a `to_table`, a table's changes); this node gives a stream, which is never cached",
        ));
    }
    let cache = node.cache.unwrap_or(true);
    Ok(PlannedNode { name, inputs, steps, shape, cache, subtopology: group, line, late_topic })
}

/// A `select`: each output field's expression, with the field types it gives.
fn select_step(
    b: &mut Builder<'_>,
    select: IndexMap<String, String>,
    current: &mut Known,
    line: u64,
    name: &str,
) -> Result<Step, TopologyError> {
    let mut projected = Vec::new();
    let mut fields = BTreeMap::new();
    for (out, text) in select {
        let e = b.expr(&text, line, name)?;
        if let Some(t) = type_of(&e, &current.fields) {
            fields.insert(out.clone(), t);
        }
        projected.push((out, e));
    }
    current.fields = current.fields.as_ref().map(|_| fields);
    // The key stays; but if the field it was computed from is redefined, the name no longer
    // describes it.
    if let Some(source) = &current.key_source {
        let kept = projected
            .iter()
            .any(|(out, e)| out == source && e.as_field().is_some_and(|p| p.len() == 1 && &p[0] == source));
        if !kept {
            current.key_source = None;
        }
    }
    Ok(Step::Select(projected))
}

/// A stateful step after a key change reads its records back through `topic`: the node's own
/// re-key writes to it, or (the key changed upstream) a pass-through step does.
fn read_back(steps: &mut Vec<Step>, topic: &str, rekeyed_here: bool) {
    if rekeyed_here {
        set_repartition(steps, topic);
    } else {
        steps.push(Step::Repartition { topic: topic.to_owned() });
    }
}

/// Marks the node's last re-key as read through `topic`.
fn set_repartition(steps: &mut [Step], topic: &str) {
    if let Some(Step::Rekey { repartition, .. }) = steps.iter_mut().rev().find(|s| matches!(s, Step::Rekey { .. })) {
        *repartition = Some(topic.to_owned());
    }
}

fn window(b: &Builder<'_>, w: WindowSpec, line: u64, node: &str) -> Result<Window, TopologyError> {
    let need = |field: &Option<String>, what: &str| -> Result<i64, TopologyError> {
        let text = field
            .as_deref()
            .ok_or_else(|| b.error(Some(line), Some(node), format!("a {:?} window needs `{what}`", w.window_type)))?;
        let ms = b.duration(text, line, node, what)?;
        if ms <= 0 {
            return Err(b.error(Some(line), Some(node), format!("window `{what}` must be positive")));
        }
        Ok(ms)
    };
    let grace_ms = w.grace.as_deref().map(|g| b.duration(g, line, node, "grace")).transpose()?.unwrap_or(0);
    let (size_ms, advance_ms) = match w.window_type {
        WindowType::Tumbling => {
            let size = need(&w.size, "size")?;
            (size, size)
        }
        WindowType::Hopping => {
            let size = need(&w.size, "size")?;
            let advance = need(&w.advance, "advance")?;
            if advance > size {
                return Err(b.error(
                    Some(line),
                    Some(node),
                    "a hopping window's `advance` must not exceed its `size` (records would fall between windows)",
                ));
            }
            (size, advance)
        }
        WindowType::Sliding => {
            let size = need(&w.size, "size")?;
            (size, 1)
        }
        WindowType::Session => {
            let gap = need(&w.gap, "gap")?;
            (gap, gap)
        }
    };
    Ok(Window { window_type: w.window_type, size_ms, advance_ms, grace_ms })
}

fn measure(b: &Builder<'_>, m: MeasureSpec, line: u64, node: &str, out: &str) -> Result<Measure, TopologyError> {
    let set = [
        m.count.is_some(),
        m.sum.is_some(),
        m.min.is_some(),
        m.max.is_some(),
        m.avg.is_some(),
        m.count_distinct.is_some(),
        m.top_n.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if set != 1 {
        return Err(b.error(
            Some(line),
            Some(node),
            format!("measure `{out}` must set exactly one of count, sum, min, max, avg, count_distinct, top_n"),
        ));
    }
    let e = |t: &str| b.expr(t, line, node);
    Ok(if m.count.is_some() {
        Measure::Count
    } else if let Some(t) = m.sum {
        Measure::Sum(e(&t)?)
    } else if let Some(t) = m.min {
        Measure::Min(e(&t)?)
    } else if let Some(t) = m.max {
        Measure::Max(e(&t)?)
    } else if let Some(t) = m.avg {
        Measure::Avg(e(&t)?)
    } else if let Some(t) = m.count_distinct {
        Measure::CountDistinct(e(&t)?)
    } else {
        let top = m.top_n.ok_or_else(|| b.error(Some(line), Some(node), "top_n"))?;
        if top.n == 0 {
            return Err(b.error(Some(line), Some(node), format!("measure `{out}`: top_n needs n ≥ 1")));
        }
        Measure::TopN { n: top.n, of: e(&top.of)?, by: top.by.as_deref().map(e).transpose()? }
    })
}
