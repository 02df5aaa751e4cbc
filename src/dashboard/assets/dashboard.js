// The live dashboard: follows /dashboard/events (Server-Sent Events: a `snapshot`, then
// `change`s) and draws the HappyTimes funnel, or a browser of every store for any other
// topology. No libraries: the charts are inline SVG built here.
(function () {
  "use strict";

  // ---- State: the last snapshot with every change since applied. -------------------------
  const state = {
    seq: 0,
    timeMs: 0,
    title: "",
    layout: null, // null until the first snapshot
    datasets: {}, // name -> {store, kind, entries: {keyText: value}, truncated, stale}
    outputs: {}, // output topic -> records written
    connected: false,
    latestMs: null, // the newest window start seen (computed on each render)
  };

  const HOUR_MS = 3600 * 1000;
  const DAY_MS = 24 * HOUR_MS;
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const PALETTE = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
  const SVG_NS = "http://www.w3.org/2000/svg";
  const STORE_ROWS = 50;
  // Each dataset carries a version, new on every change to it: what did not change is not redrawn
  // (keeps hover titles, scroll positions and selections in place).
  let versions = 0;

  function applySnapshot(data) {
    state.seq = data.seq || 0;
    state.timeMs = data.time_ms || 0;
    state.title = data.title || "";
    state.layout = data.layout || "generic";
    state.datasets = {};
    for (const [name, d] of Object.entries(data.datasets || {})) {
      state.datasets[name] = {
        store: d.store || name, kind: d.kind || "", entries: Object.assign({}, d.entries),
        truncated: !!d.truncated, stale: d.stale || null, version: ++versions,
      };
    }
    state.outputs = Object.assign({}, data.outputs);
  }

  function dataset(name) {
    if (!state.datasets[name]) {
      state.datasets[name] = { store: name, kind: "", entries: {}, truncated: false, stale: null };
    }
    state.datasets[name].version = ++versions;
    return state.datasets[name];
  }

  function applyChange(data) {
    // Before the first snapshot, or a change already applied (a replay): nothing to do.
    if (state.layout === null || (data.seq || 0) <= state.seq) return;
    state.seq = data.seq;
    state.timeMs = data.time_ms || state.timeMs;
    for (const [name, upserts] of Object.entries(data.upserts || {})) {
      Object.assign(dataset(name).entries, upserts);
    }
    for (const [name, keys] of Object.entries(data.removes || {})) {
      const entries = dataset(name).entries;
      for (const key of keys) delete entries[key];
    }
    if (data.outputs) state.outputs = Object.assign({}, data.outputs);
    for (const [name, reason] of Object.entries(data.stale || {})) {
      if (!state.datasets[name] || state.datasets[name].stale !== (reason || null)) dataset(name).stale = reason || null;
    }
  }

  // ---- Connection. --------------------------------------------------------------------------
  const token = new URLSearchParams(location.search).get("access_token");
  const eventsUrl = "/dashboard/events" + (token ? "?access_token=" + encodeURIComponent(token) : "");
  let source = null;

  function connect() {
    source = new EventSource(eventsUrl);
    source.onopen = () => setConnected(true);
    source.addEventListener("snapshot", (e) => handle(e, applySnapshot));
    source.addEventListener("change", (e) => handle(e, applyChange));
    source.onerror = () => {
      setConnected(false);
      // The browser retries by itself (sending Last-Event-ID) unless the answer was not an
      // event stream at all (an error status): then it gives up, and we start anew.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(connect, 3000);
      }
    };
  }

  function handle(event, apply) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch (err) {
      console.warn("dashboard: unreadable event", err);
      return;
    }
    apply(data);
    setConnected(true);
    scheduleRender();
  }

  function setConnected(connected) {
    if (state.connected === connected) return;
    state.connected = connected;
    scheduleRender();
  }

  // Events are coalesced: at most one render every 250 ms.
  let renderTimer = null;
  let lastRender = 0;
  function scheduleRender() {
    if (renderTimer !== null) return;
    const wait = Math.max(0, lastRender + 250 - Date.now());
    renderTimer = setTimeout(() => {
      renderTimer = null;
      lastRender = Date.now();
      render();
    }, wait);
  }

  // ---- Small helpers. -----------------------------------------------------------------------
  function build(node, attrs, children) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat(Infinity)) {
      if (child !== null && child !== undefined && child !== false) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  const el = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
  const svg = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);
  const $ = (id) => document.getElementById(id);

  // A number the tests read back: data-metric names it, data-value is the raw number.
  const metric = (tag, name, value, text) => el(tag, { "data-metric": name, "data-value": value }, text);

  const nf = new Intl.NumberFormat("en-US");
  const num = (n) => (typeof n === "number" && isFinite(n) ? nf.format(n) : "—");
  const pct = (r) => (isFinite(r) ? (r * 100).toFixed(1) + "%" : "—");
  const signed = (x) => (x > 0 ? "+" : x < 0 ? "−" : "") + Math.abs(x).toFixed(2);
  const pad = (n) => String(n).padStart(2, "0");
  const ratio = (a, b) => (b > 0 ? a / b : NaN);
  const sum = (rows, f) => rows.reduce((acc, r) => acc + (Number(f(r)) || 0), 0);

  function timeMs(t) {
    if (typeof t === "number") return t;
    const ms = Date.parse(t);
    return isNaN(ms) ? null : ms;
  }
  function fmtDay(ms) {
    const d = new Date(ms);
    return MONTHS[d.getUTCMonth()] + " " + d.getUTCDate() + ", " + d.getUTCFullYear();
  }
  function fmtHour(ms) {
    const d = new Date(ms);
    return MONTHS[d.getUTCMonth()] + " " + d.getUTCDate() + ", " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + " UTC";
  }
  const fmtSpan = (ms) => fmtHour(ms).replace(" UTC", "–" + pad(new Date(ms + HOUR_MS).getUTCHours()) + ":00 UTC");

  function parseKey(text) {
    try {
      return JSON.parse(text);
    } catch (err) {
      return text;
    }
  }
  // The object values of a dataset (entries whose value is not an object are skipped).
  function values(name) {
    const d = state.datasets[name];
    return d ? Object.values(d.entries).filter((v) => v && typeof v === "object") : [];
  }
  // The rows of a windowed dataset in its newest window, and that window's start.
  function latestWindow(name) {
    const rows = values(name).map((v) => [timeMs(v.window_start), v]).filter(([t]) => t !== null);
    if (rows.length === 0) return { start: null, rows: [] };
    const start = Math.max(...rows.map(([t]) => t));
    return { start, rows: rows.filter(([t]) => t === start).map(([, v]) => v) };
  }
  // The newest window start across the windowed datasets: the time of the latest event seen.
  function latestEventMs() {
    let latest = null;
    for (const d of Object.values(state.datasets)) {
      if (["table", "versioned_table", "aggregate"].includes(d.kind)) continue;
      for (const v of Object.values(d.entries)) {
        const t = v && typeof v === "object" ? timeMs(v.window_start) : null;
        if (t !== null && (latest === null || t > latest)) latest = t;
      }
    }
    return latest;
  }
  // A display name from a reference table (`content` titles, `social_outlets` names), if there.
  function lookup(table, idField, id, fields) {
    for (const v of values(table)) {
      if (v[idField] === id) for (const f of fields) if (typeof v[f] === "string" && v[f]) return v[f];
    }
    return null;
  }
  // A topic name that may wrap after its dots.
  const breakable = (name) => name.split(".").flatMap((part, i) => (i ? [".", el("wbr", {}), part] : [part]));
  const emptyNote = (text) => el("p", { class: "empty" }, text || "waiting for data…");

  // ---- Render. ------------------------------------------------------------------------------
  function render() {
    document.body.dataset.seq = String(state.seq);
    document.body.dataset.connected = String(state.connected);
    const live = $("live");
    live.className = "pill " + (state.connected ? "pill-ok" : state.layout === null ? "pill-wait" : "pill-bad");
    $("live-text").textContent = state.connected ? "live" : state.layout === null ? "connecting…" : "reconnecting…";
    $("updated").textContent = state.timeMs ? "updated " + new Date(state.timeMs).toLocaleTimeString() : "";
    const latest = (state.latestMs = latestEventMs());
    $("latest").textContent = latest === null ? "" : "latest event: " + fmtHour(latest);
    if (state.layout === null) return;

    const title = state.title || "Live dashboard";
    $("title").textContent = title;
    document.title = title + " · live dashboard";
    $("waiting").hidden = true;
    const happy = state.layout === "happytimes";
    $("happytimes").hidden = !happy;
    $("generic").hidden = happy;
    if (happy) {
      renderStages();
      renderFacts();
      renderCharts();
      // The store browser is drawn only while open (it can be large).
      if ($("all-stores").open) renderStores($("stores-happytimes"));
    } else {
      renderOutputs();
      renderStores($("stores-generic"));
    }
  }

  // Redraws a chart only when what it shows changed: `deps` are the names of the datasets it
  // reads (their versions count) and any other value it depends on.
  const drawn = {};
  function draw(id, deps, make) {
    const key = deps.map((d) => (typeof d !== "string" ? String(d) : state.datasets[d] ? state.datasets[d].version : 0)).join(",");
    if (drawn[id] === key) return;
    drawn[id] = key;
    $(id).replaceChildren(make());
  }

  // A headline tile: one big number and a caption.
  function tile(label, name, value, text, caption, dataset) {
    const stale = state.datasets[dataset] && state.datasets[dataset].stale;
    return el("div", { class: "tile stage" + (stale ? " stale" : "") },
      el("div", { class: "tile-label" }, label),
      value === null ? el("div", { class: "big" }, "—") : metric("div", name, value, text),
      el("div", { class: "caption" }, caption),
      stale ? el("div", { class: "stale-note" }, "not current: " + stale) : null);
  }

  function renderStages() {
    const tiles = [];

    const aw = latestWindow("awareness");
    const visitors = sum(aw.rows, (r) => r.visitors);
    tiles.push(tile("Awareness", "stage.awareness", aw.start === null ? null : visitors, num(visitors),
      aw.start === null ? "waiting for data…" : "distinct visitors, " + fmtSpan(aw.start), "awareness"));

    const co = latestWindow("consideration");
    const views = sum(co.rows, (r) => r.views);
    tiles.push(tile("Consideration", "stage.consideration", co.start === null ? null : views, num(views),
      co.start === null ? "waiting for data…" : "subscriber page views, " + fmtSpan(co.start), "consideration"));

    const funnel = values("conversion_funnel");
    const conversions = sum(funnel, (r) => r.conversions);
    const clicks = sum(funnel, (r) => r.clicks);
    tiles.push(tile("Conversion", "stage.conversion", state.datasets.conversion_funnel ? conversions : null, num(conversions),
      !state.datasets.conversion_funnel ? "waiting for data…"
        : "conversions, all campaigns" + (clicks > 0 ? " · " + pct(conversions / clicks) + " of clicks" : ""), "conversion_funnel"));

    tiles.push(loyaltyTile());

    const ad = latestWindow("advocacy");
    const mentions = sum(ad.rows, (r) => r.mentions);
    const sentiment = ratio(sum(ad.rows, (r) => r.avg_sentiment * r.mentions), mentions);
    tiles.push(tile("Advocacy", "stage.advocacy", ad.start === null ? null : mentions, num(mentions),
      ad.start === null ? "waiting for data…"
        : "mentions, " + fmtSpan(ad.start) + (isFinite(sentiment) ? " · sentiment " + signed(sentiment) : ""), "advocacy"));

    $("stages").replaceChildren(...tiles);
  }

  // Loyalty: the newest cohort's week-1 retention; its size while its week 1 is still ahead.
  function loyaltyTile() {
    const cohorts = cohortRows();
    if (cohorts.length === 0) return tile("Loyalty", "stage.loyalty", null, "", "waiting for data…", "loyalty");
    const c = cohorts[cohorts.length - 1];
    const latest = state.latestMs;
    const week1Started = (latest !== null && latest >= (c.week + 7) * DAY_MS) || (c.retained[1] || 0) > 0;
    if (week1Started) {
      const rate = Number(c.rates[1]) || 0;
      return tile("Loyalty", "stage.loyalty", rate, pct(rate),
        "back in week 1, cohort of " + fmtDay(c.week * DAY_MS) + " (" + num(c.size) + " visitors)", "loyalty");
    }
    return tile("Loyalty", "stage.loyalty", c.size, num(c.size),
      "visitors in the new cohort of " + fmtDay(c.week * DAY_MS) + " (week 1 not yet)", "loyalty");
  }

  // Loyalty cohorts, oldest first. The key is {"cohort_week": N} or the plain number.
  function cohortRows() {
    const d = state.datasets.loyalty;
    if (!d) return [];
    const rows = [];
    for (const [keyText, v] of Object.entries(d.entries)) {
      if (!v || typeof v !== "object") continue;
      const key = parseKey(keyText);
      const week = Number(v.cohort_week !== undefined ? v.cohort_week : key && key.cohort_week !== undefined ? key.cohort_week : key);
      if (!isFinite(week)) continue;
      rows.push({ week, size: Number(v.cohort_size) || 0, retained: v.retained || [], rates: v.retention_rate || [] });
    }
    return rows.sort((a, b) => a.week - b.week);
  }

  function renderFacts() {
    const tiles = Object.keys(state.outputs).filter((t) => t.startsWith("happytimes.facts.")).sort().map((topic) => {
      const name = topic.slice("happytimes.facts.".length);
      return el("div", { class: "tile small" },
        el("div", { class: "tile-label" }, name.replace(/_/g, " ")),
        metric("div", "facts." + name, state.outputs[topic], num(state.outputs[topic])),
        el("div", { class: "caption" }, "records written to ", breakable(topic)));
    });
    tiles.push(totalTile());
    $("facts").replaceChildren(...tiles);
  }

  function totalTile() {
    const total = sum(Object.values(state.outputs), (n) => n);
    return el("div", { class: "tile small total" },
      el("div", { class: "tile-label" }, "all outputs"),
      metric("div", "outputs.total", total, num(total)),
      el("div", { class: "caption" }, Object.keys(state.outputs).length + " output topics"));
  }

  function renderOutputs() {
    const tiles = Object.keys(state.outputs).sort().map((topic) => el("div", { class: "tile small" },
      el("div", { class: "tile-label topic" }, breakable(topic)),
      metric("div", "outputs." + topic, state.outputs[topic], num(state.outputs[topic]))));
    $("outputs").replaceChildren(totalTile(), ...tiles);
  }

  // ---- Charts. ------------------------------------------------------------------------------
  function renderCharts() {
    const aw = latestWindow("awareness");
    $("sources-when").textContent = aw.start === null ? "" : fmtSpan(aw.start);
    draw("chart-sources", ["awareness"], () => barChart("Visitors by source", aw.rows
      .map((r) => ({ label: String(r.visitor_source ?? "(none)"), value: Number(r.visitors) || 0, parts: [num(r.visitors)],
        title: (r.visitor_source ?? "(none)") + ": " + num(r.visitors) + " visitors, " + num(r.events) + " events" }))
      .sort((a, b) => b.value - a.value || a.label.localeCompare(b.label))));

    const top = latestWindow("consideration_top");
    $("content-when").textContent = top.start === null ? "" : fmtSpan(top.start);
    const ranked = top.rows.flatMap((r) => r.top_content || []);
    draw("chart-content", ["consideration_top", "content"], () => barChart("Top content by views", ranked.map((c) => {
      const name = lookup("content", "content_id", c.value, ["title"]) || "content #" + c.value;
      return { label: name, value: Number(c.score) || 0, parts: [num(c.score) + " views"], title: name + ": " + num(c.score) + " views" };
    })));

    draw("chart-campaigns", ["conversion_funnel"], campaignChart);
    // Retention also depends on the latest event (weeks still ahead are blank).
    draw("chart-retention", ["loyalty", state.latestMs], retentionTable);
    draw("chart-sentiment", ["advocacy", "social_outlets"], sentimentChart);
  }

  // Horizontal bars. rows: {label, value, parts, title}; parts is the value label: strings and
  // {text, metric, value} (a number the tests read back).
  function barChart(name, rows) {
    if (rows.length === 0) return emptyNote();
    const W = 560, LABEL = 170, VALUE = 120, ROW = 28, BAR = 18;
    const top = Math.max(...rows.map((r) => r.value)) || 1;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${rows.length * ROW + 4}`, class: "bars", role: "img" }, svg("title", {}, name));
    rows.forEach((r, i) => {
      const y = i * ROW + 4;
      const width = Math.max(2, ((W - LABEL - VALUE) * Math.min(r.value, top)) / top);
      const label = r.label.length > 22 ? r.label.slice(0, 21) + "…" : r.label;
      chart.append(svg("g", {},
        svg("title", {}, r.title),
        svg("text", { x: LABEL - 8, y: y + BAR / 2, class: "label", "text-anchor": "end", "dominant-baseline": "central" }, label),
        svg("rect", { x: LABEL, y, width, height: BAR, rx: 3, class: "bar" }),
        svg("text", { x: LABEL + width + 6, y: y + BAR / 2, class: "value", "dominant-baseline": "central" },
          r.parts.map((p) => (typeof p === "string" ? p : svg("tspan", { "data-metric": p.metric, "data-value": p.value }, p.text))))));
    });
    return chart;
  }

  // Conversion rate per campaign, over every day: the rate, then conversions/clicks.
  function campaignChart() {
    const byCampaign = new Map();
    for (const v of values("conversion_funnel")) {
      const name = String(v.campaign ?? "(none)");
      const c = byCampaign.get(name) || { clicks: 0, conversions: 0 };
      c.clicks += Number(v.clicks) || 0;
      c.conversions += Number(v.conversions) || 0;
      byCampaign.set(name, c);
    }
    const rows = [...byCampaign.entries()].map(([name, c]) => {
      const rate = ratio(c.conversions, c.clicks);
      return {
        label: name, value: isFinite(rate) ? rate : 0,
        title: `${name}: ${num(c.conversions)} conversions of ${num(c.clicks)} clicks (${pct(rate)})`,
        parts: [pct(rate) + "  ",
          { text: num(c.conversions), metric: `campaign.${name}.conversions`, value: c.conversions }, "/",
          { text: num(c.clicks), metric: `campaign.${name}.clicks`, value: c.clicks }],
      };
    }).sort((a, b) => b.value - a.value || a.label.localeCompare(b.label));
    return barChart("Conversion rate per campaign", rows);
  }

  // Retention heat table: a row per cohort (newest 12), weeks 0..3, shaded by rate.
  function retentionTable() {
    const cohorts = cohortRows().slice(-12);
    if (cohorts.length === 0) return emptyNote();
    const latest = state.latestMs;
    const weeks = [0, 1, 2, 3];
    return el("table", { class: "heat" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "cohort (week of)"), el("th", { scope: "col" }, "visitors"),
        weeks.map((w) => el("th", { scope: "col" }, "week " + w)))),
      el("tbody", {}, cohorts.map((c) => el("tr", {},
        el("th", { scope: "row" }, fmtDay(c.week * DAY_MS)),
        el("td", { class: "num" }, num(c.size)),
        weeks.map((w) => {
          // A week still ahead (by the latest event) is left blank rather than shown as 0%.
          if (latest !== null && latest < (c.week + 7 * w) * DAY_MS) return el("td", { class: "future" }, "");
          const rate = Number(c.rates[w]) || 0;
          const style = `background: rgba(37, 99, 235, ${(0.06 + 0.94 * Math.min(1, rate)).toFixed(2)});` +
            (rate > 0.5 ? " color: #fff;" : "");
          return el("td", { style, title: `${num(c.retained[w])} of ${num(c.size)} visitors` }, pct(rate));
        })))));
  }

  // Average sentiment per outlet over the last 48 hourly windows: one line per outlet (the 8
  // outlets with the most mentions), y from -1 to 1.
  function sentimentChart() {
    const rows = values("advocacy").map((v) => ({ t: timeMs(v.window_start), v })).filter((r) => r.t !== null);
    const times = [...new Set(rows.map((r) => r.t))].sort((a, b) => a - b).slice(-48);
    if (times.length === 0) return emptyNote();
    const first = times[0], last = times[times.length - 1];
    const outlets = new Map(); // outlet -> {mentions, points: [{t, s, n}]}
    for (const { t, v } of rows) {
      if (t < first) continue;
      const o = outlets.get(v.outlet_id) || { mentions: 0, points: [] };
      o.mentions += Number(v.mentions) || 0;
      o.points.push({ t, s: Number(v.avg_sentiment) || 0, n: v.mentions });
      outlets.set(v.outlet_id, o);
    }
    const shown = [...outlets.entries()].sort((a, b) => b[1].mentions - a[1].mentions).slice(0, PALETTE.length);

    const W = 1100, H = 260, L = 44, R = 16, T = 12, B = 30;
    const x = (t) => (last === first ? L + (W - L - R) / 2 : L + ((t - first) / (last - first)) * (W - L - R));
    const y = (s) => T + ((1 - Math.max(-1, Math.min(1, s))) / 2) * (H - T - B);
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "lines", role: "img" },
      svg("title", {}, "Average sentiment per outlet and hour"));
    for (const s of [-1, -0.5, 0, 0.5, 1]) {
      chart.append(svg("line", { x1: L, x2: W - R, y1: y(s), y2: y(s), class: s === 0 ? "axis zero" : "axis" }),
        svg("text", { x: L - 6, y: y(s), class: "tick", "text-anchor": "end", "dominant-baseline": "central" }, s === 0 ? "0" : signed(s).replace(".00", "")));
    }
    const ticks = times.length > 2 ? [first, times[Math.floor(times.length / 2)], last] : times;
    ticks.forEach((t, i) => chart.append(svg("text", { x: x(t), y: H - 8, class: "tick",
      "text-anchor": ticks.length === 1 ? "middle" : i === 0 ? "start" : i === ticks.length - 1 ? "end" : "middle" }, fmtHour(t))));

    const legend = el("ul", { class: "legend" });
    shown.forEach(([outlet, o], i) => {
      const color = PALETTE[i];
      const name = lookup("social_outlets", "outlet_id", outlet, ["name", "outlet_name", "handle"]) || "outlet " + outlet;
      const points = o.points.sort((a, b) => a.t - b.t);
      chart.append(svg("polyline", { points: points.map((p) => `${x(p.t).toFixed(1)},${y(p.s).toFixed(1)}`).join(" "), stroke: color, class: "line" }));
      for (const p of points) {
        chart.append(svg("circle", { cx: x(p.t), cy: y(p.s), r: 3.5, fill: color },
          svg("title", {}, `${name}, ${fmtHour(p.t)}: ${signed(p.s)} (${num(p.n)} mentions)`)));
      }
      legend.append(el("li", {}, el("span", { class: "swatch", style: "background:" + color }), name + " · " + num(o.mentions) + " mentions"));
    });
    return el("div", {}, chart, legend);
  }

  // ---- Store browser: per dataset, a table of its first entries by key text. ----------------
  // Key texts in order, numbers by value ("2" before "10").
  const byText = new Intl.Collator("en", { numeric: true }).compare;
  const storeCache = new Map(); // dataset name -> {version, node}
  function renderStores(container) {
    const names = Object.keys(state.datasets).sort();
    if (names.length === 0) return container.replaceChildren(emptyNote("no stores yet: waiting for data…"));
    const nodes = names.map((name) => {
      const d = state.datasets[name];
      let cached = storeCache.get(name);
      if (!cached || cached.version !== d.version) storeCache.set(name, (cached = { version: d.version, node: storeTable(name, d) }));
      return cached.node;
    });
    // Swap only the tables that changed.
    const current = [...container.children];
    if (current.length !== nodes.length) return container.replaceChildren(...nodes);
    nodes.forEach((node, i) => current[i] !== node && container.replaceChild(node, current[i]));
  }

  function storeTable(name, d) {
    const keys = Object.keys(d.entries).sort(byText);
    const shown = keys.slice(0, STORE_ROWS).map((k) => ({ key: parseKey(k), value: d.entries[k] }));
    const isObj = (x) => x !== null && typeof x === "object" && !Array.isArray(x);
    // Columns: the key's fields (or "key"), then the value's fields not already in the key.
    const keyCols = [], valueCols = [];
    for (const r of shown) {
      for (const c of isObj(r.key) ? Object.keys(r.key) : ["key"]) if (!keyCols.includes(c)) keyCols.push(c);
    }
    for (const r of shown) {
      for (const c of isObj(r.value) ? Object.keys(r.value) : ["value"]) {
        if (!keyCols.includes(c) && !valueCols.includes(c)) valueCols.push(c);
      }
    }
    const keyCell = (r, c) => (isObj(r.key) ? r.key[c] : r.key);
    const valueCell = (r, c) => (isObj(r.value) ? r.value[c] : c === "value" ? r.value : undefined);
    // Numbers are right-aligned: so is the heading of a column of numbers.
    const head = (c, get, cls) => el("th", { scope: "col", class: cls + (shown.every((r) => get(r, c) == null || typeof get(r, c) === "number") ? " num" : "") }, c);
    const notes = [];
    if (keys.length > STORE_ROWS) notes.push(`showing the first ${STORE_ROWS} of ${num(keys.length)} entries`);
    if (d.truncated) notes.push("the store has more entries than were read");
    return el("section", { class: "store" },
      el("h3", {}, name, " ", el("small", {}, [d.kind, d.store !== name ? "store " + d.store : null, num(keys.length) + " entries"].filter(Boolean).join(" · "))),
      d.stale ? el("p", { class: "stale-note" }, "not current: " + d.stale + " (showing the last entries read)") : null,
      shown.length === 0 ? emptyNote("no entries") : el("div", { class: "scroll" }, el("table", { class: "entries" },
        el("thead", {}, el("tr", {}, keyCols.map((c) => head(c, keyCell, "key")), valueCols.map((c) => head(c, valueCell, "")))),
        el("tbody", {}, shown.map((r) => el("tr", {},
          keyCols.map((c) => cell(keyCell(r, c), "key")), valueCols.map((c) => cell(valueCell(r, c), ""))))))),
      notes.length ? el("p", { class: "note" }, notes.join("; ")) : null);
  }

  function cell(v, cls) {
    if (v === null || v === undefined) return el("td", { class: cls + " none" }, "—");
    if (typeof v === "number") return el("td", { class: cls + " num" }, Number.isInteger(v) ? String(v) : String(+v.toFixed(4)));
    const text = typeof v === "string" ? v : JSON.stringify(v);
    return el("td", { class: cls, title: text.length > 60 ? text : null }, text.length > 60 ? text.slice(0, 59) + "…" : text);
  }

  // ---- Start. -------------------------------------------------------------------------------
  // index.html loads this script asynchronously: wait for the page if it is still loading.
  function start() {
    $("all-stores").addEventListener("toggle", scheduleRender);
    render();
    connect();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
