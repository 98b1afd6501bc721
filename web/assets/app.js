// serket live view: renders what /api/events streams about a running pipeline.
//
// Everything shown here comes from an untrusted bus, so the DOM is only ever
// built with createElement/textContent/setAttribute, media is only rendered
// for a short allow-list of types, and URLs are only followed under /api/.
"use strict";

(() => {
  const SVGNS = "http://www.w3.org/2000/svg";

  // Module colours: a fixed palette handed out by sorted module name, so a
  // module keeps its colour across reloads as long as the module set is the same.
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2",
    "#e15759", "#9c755f", "#edc948", "#ff9da7", "#bab0ac"];
  const HEALTH_FILL = { ok: "#2da44e", down: "#d1242f", starting: "#d4a72c" };
  const UNKNOWN_FILL = "#8c959f";
  const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif"]);
  const AUDIO_TYPES = new Set(["audio/wav", "audio/x-wav", "audio/wave"]);
  const MAX_LINE_POINTS = 600; // per line; longer series are bucketed
  const TRAIN_REDRAW_MS = 1000;

  const INT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- helpers

  // el builds an HTML element; attrs "class" and "text" are special, the rest
  // go through setAttribute (never innerHTML).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  function svgEl(tag, attrs, ...children) {
    const e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  function setAttrs(e, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null) continue;
      if (k === "class") e.setAttribute("class", v);
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, String(v));
    }
  }

  // Touch the DOM only when something changed: keeps updates cheap and
  // avoids restarting CSS transitions every second.
  function setAttr(e, k, v) {
    v = String(v);
    if (e.getAttribute(k) !== v) e.setAttribute(k, v);
  }
  function setText(e, v) {
    v = String(v);
    if (e.textContent !== v) e.textContent = v;
  }

  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const str = (v) => (typeof v === "string" ? v : "");
  const arr = (v) => (Array.isArray(v) ? v : []);
  const obj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : null);

  // Fixed en-US formatting, so the page reads the same on every machine.
  const formatters = new Map();
  function fmt(v, digits = 1) {
    v = num(v);
    if (v == null) return "–";
    if (!formatters.has(digits)) formatters.set(digits, new Intl.NumberFormat("en-US", { maximumFractionDigits: digits }));
    return formatters.get(digits).format(v);
  }

  // A value in a tooltip: enough digits to tell neighbours apart.
  function fmtVal(v) {
    v = num(v);
    if (v == null) return "–";
    const a = Math.abs(v);
    return fmt(v, a >= 100 ? 1 : a >= 1 ? 3 : 4);
  }

  function fmtDuration(s) {
    s = num(s);
    if (s == null) return "–";
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  function fmtAge(s) {
    s = num(s);
    if (s == null) return "–";
    return `${s < 60 ? s.toFixed(1) + " s" : fmtDuration(s)} ago`;
  }

  function fmtClock(ms) {
    ms = num(ms);
    if (ms == null) return "";
    const d = new Date(ms);
    const p = (n, w = 2) => String(n).padStart(w, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  // "text/plain; charset=utf-8" -> "text/plain"
  const baseType = (t) => str(t).split(";")[0].trim().toLowerCase();

  // The server only ever hands out relative /api/ paths; anything else is refused.
  const apiURL = (u) => (typeof u === "string" && u.startsWith("/api/") ? u : null);

  // The media type of a data: URL, or "" if it is not one.
  function dataURLType(u) {
    if (typeof u !== "string" || !u.toLowerCase().startsWith("data:")) return "";
    const end = u.search(/[;,]/);
    return end < 0 ? "" : u.slice(5, end).trim().toLowerCase();
  }

  function dataURLBytes(u) {
    const comma = u.indexOf(",");
    if (comma < 0) return 0;
    const payload = u.slice(comma + 1);
    if (/;base64$/i.test(u.slice(0, comma))) {
      const pad = payload.endsWith("==") ? 2 : payload.endsWith("=") ? 1 : 0;
      return Math.max(0, Math.floor((payload.length * 3) / 4) - pad);
    }
    try { return decodeURIComponent(payload).length; } catch { return payload.length; }
  }

  function opaqueLine(bytes, type) {
    const t = type || "unknown type";
    const text = num(bytes) != null ? `${INT.format(bytes)} bytes of ${t}` : `${t} (not shown)`;
    return el("span", { class: "opaque", text });
  }

  // Show small pictures (28×28 digits and garments) four times larger, pixelated
  // by CSS; large ones at a size that still fits.
  function scaleOnLoad(img) {
    img.addEventListener("load", () => {
      const w = img.naturalWidth;
      if (!w) return;
      const k = Math.max(1, Math.min(4, Math.floor(256 / w)));
      img.style.width = `${w * k}px`;
      img.style.height = "auto";
    }, { once: true });
  }

  function chip(text, colour, extraClass) {
    const c = el("span", { class: "chip" + (extraClass ? " " + extraClass : "") });
    if (colour) {
      const dot = el("span", { class: "chip-dot" });
      dot.style.background = colour;
      c.append(dot);
    }
    c.append(text);
    return c;
  }

  // ---------------------------------------------------------------- colours

  const colours = { modules: [], extra: new Map() };

  function setModuleNames(names) {
    const sorted = [...new Set(names)].sort();
    if (sorted.join("\n") === colours.modules.join("\n")) return false;
    colours.modules = sorted;
    return true;
  }

  function paletteAt(i) {
    return i < PALETTE.length ? PALETTE[i] : `hsl(${Math.round((i * 137.508) % 360)}, 55%, 45%)`;
  }

  // Modules use the palette in sorted order; anything else ("belief",
  // "concept 3", a module not yet listed) takes the colours after them.
  function colourFor(name) {
    const i = colours.modules.indexOf(name);
    if (i >= 0) return paletteAt(i);
    if (!colours.extra.has(name)) colours.extra.set(name, colours.extra.size);
    return paletteAt(colours.modules.length + colours.extra.get(name));
  }

  // ---------------------------------------------------------------- connection

  function setConn(state) {
    const c = $("conn");
    setAttr(c, "data-state", state);
    document.body.dataset.conn = state;
    setText($("conn-text"), state === "live" ? "live" : state === "lost" ? "reconnecting…" : "connecting…");
  }

  const handlers = {
    services: onServices,
    train: onTrain,
    belief: onBelief,
    said: onSaid,
    latent: onLatent,
  };

  function connect() {
    const es = new EventSource("/api/events");
    es.addEventListener("open", () => setConn("live"));
    es.addEventListener("notice", (e) => {
      const d = parse(e.data);
      if (d) showNotice(str(d.text) || "the server reported a problem without a message");
    });
    es.addEventListener("error", () => {
      setConn("lost");
      // EventSource retries by itself unless the server answered with a
      // non-stream (it then gives up for good): retry ourselves then.
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        setTimeout(connect, 3000);
      }
    });
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (e) => {
        const d = parse(e.data);
        if (!d) return;
        try {
          fn(d);
        } catch (err) {
          console.warn(`serket: rendering ${name} failed:`, err);
        }
      });
    }
  }

  function parse(text) {
    try {
      return obj(JSON.parse(text));
    } catch {
      console.warn("serket: ignoring an event that is not JSON");
      return null;
    }
  }

  // ---------------------------------------------------------------- notices

  function showNotice(text) {
    const banner = $("banner");
    const last = banner.lastElementChild;
    // A repeated notice bumps a counter rather than stacking up.
    if (last && last.dataset.text === text) {
      const n = Number(last.dataset.count || "1") + 1;
      last.dataset.count = String(n);
      setText(last.querySelector(".notice-time"), `${fmtClock(Date.now()).slice(0, 8)} · ×${n}`);
      return;
    }
    const close = el("button", { class: "notice-close", type: "button", "aria-label": "dismiss", title: "dismiss", text: "×" });
    const n = el("div", { class: "notice" },
      el("span", { class: "notice-text", text }),
      el("span", { class: "notice-time", text: fmtClock(Date.now()).slice(0, 8) }),
      close);
    n.dataset.text = text;
    close.addEventListener("click", () => n.remove());
    banner.append(n);
    while (banner.children.length > 5) banner.firstElementChild.remove();
  }

  // ---------------------------------------------------------------- services

  let servicesSeen = false;

  function onServices(d) {
    const seen = new Set();
    const nodes = arr(d.nodes).filter((n) => {
      if (!obj(n) || !str(n.name) || seen.has(n.name)) return false;
      seen.add(n.name);
      return true;
    });
    const pipeline = str(d.pipeline) || "—";
    setText($("pipeline"), pipeline);
    if (document.title !== `serket — ${pipeline}`) document.title = `serket — ${pipeline}`;

    if (setModuleNames(nodes.filter((n) => n.role !== "integrator").map((n) => n.name))) {
      scheduleTrainDraw(); // curve colours follow the module set
    }
    renderGraph(nodes);
    renderNodeTable(nodes);
    syncAskForm(nodes.filter((n) => n.role === "module").map((n) => n.name));

    const count = (role) => nodes.filter((n) => n.role === role).length;
    const ok = nodes.filter((n) => n.health === "ok").length;
    const parts = [`${count("module")} module${count("module") === 1 ? "" : "s"}`];
    if (count("prior")) parts.push(`${count("prior")} prior${count("prior") === 1 ? "" : "s"}`);
    parts.push(`${ok} of ${nodes.length} answering`);
    setText($("pipeline-summary"), nodes.length ? parts.join(" · ") : "no processes seen");

    if (!servicesSeen) {
      servicesSeen = true;
      refreshEmptyStates();
    }
    document.body.dataset.ready = "1";
  }

  // ---- graph

  const graph = { nodes: new Map(), edges: new Map(), layers: null, decoKey: "" };

  function graphLayers() {
    if (!graph.layers) {
      const svg = $("graph");
      graph.layers = { deco: svgEl("g"), edges: svgEl("g"), nodes: svgEl("g") };
      svg.append(graph.layers.deco, graph.layers.edges, graph.layers.nodes);
    }
    return graph.layers;
  }

  // Integrator in the middle, modules on a circle around it, priors in a
  // column to the right. Returns name -> {x, y, above}: above puts a node's
  // labels over it, for nodes in the upper half whose labels would
  // otherwise sit on the edges.
  const LABEL_W = 72, LABEL_H = 62, RING = 125;
  function layout(nodes) {
    const integ = nodes.filter((n) => n.role === "integrator");
    const priors = nodes.filter((n) => n.role === "prior");
    const mods = nodes.filter((n) => n.role !== "integrator" && n.role !== "prior");
    const cx = 0, cy = 0;
    const pos = new Map();
    integ.forEach((n, i) => pos.set(n.name, { x: cx + (i - (integ.length - 1) / 2) * 80, y: cy, above: false }));
    // The first module at the bottom; two modules go bottom and top.
    const k = mods.length;
    const start = Math.PI / 2 + (k % 2 === 0 && k > 2 ? Math.PI / k : 0);
    let right = cx + LABEL_W;
    mods.forEach((n, i) => {
      const a = start + (i * 2 * Math.PI) / Math.max(1, k);
      const p = { x: cx + RING * Math.cos(a), y: cy + RING * Math.sin(a), above: Math.sin(a) < -0.2 };
      right = Math.max(right, p.x + LABEL_W);
      pos.set(n.name, p);
    });
    // The prior column starts where the modules' labels end.
    const px = right + 40;
    const gap = 118;
    priors.forEach((n, i) => pos.set(n.name, { x: px, y: cy - 10 + (i - (priors.length - 1) / 2) * gap, above: false }));
    return { pos, centre: { x: cx, y: cy }, integ, priors, priorX: px };
  }

  // Crop the drawing to what is there, labels included, so a small
  // pipeline is drawn large.
  function fitViewBox(pos, centre) {
    let x0 = centre.x - 40, x1 = centre.x + 40, y0 = centre.y - 40, y1 = centre.y + 40;
    for (const p of pos.values()) {
      x0 = Math.min(x0, p.x - LABEL_W); x1 = Math.max(x1, p.x + LABEL_W);
      y0 = Math.min(y0, p.y - (p.above ? 28 + LABEL_H : 30));
      y1 = Math.max(y1, p.y + (p.above ? 30 : 30 + LABEL_H));
    }
    const vb = `${Math.floor(x0)} ${Math.floor(y0)} ${Math.ceil(x1 - x0)} ${Math.ceil(y1 - y0)}`;
    setAttr($("graph"), "viewBox", vb);
  }

  function makeGraphNode(name) {
    const g = svgEl("g", { "data-node": name });
    const parts = {
      g,
      title: svgEl("title"),
      ring: svgEl("circle", { class: "node-ring", fill: "none", "stroke-width": 2 }),
      circle: svgEl("circle", { class: "node-circle", stroke: "#fff" }),
      glyph: svgEl("text", { class: "node-glyph", "text-anchor": "middle", dy: "0.35em" }),
      name: svgEl("text", { class: "node-name", "text-anchor": "middle" }),
      rates: svgEl("text", { class: "node-stat", "text-anchor": "middle" }),
      age: svgEl("text", { class: "node-stat", "text-anchor": "middle" }),
      warn: svgEl("text", { class: "node-stat", "text-anchor": "middle" }),
    };
    g.append(parts.title, parts.ring, parts.circle, parts.glyph, parts.name, parts.rates, parts.age, parts.warn);
    return parts;
  }

  function renderGraph(nodes) {
    const layers = graphLayers();
    $("graph-empty").hidden = nodes.length > 0;
    const { pos, centre, integ, priors, priorX } = layout(nodes);
    fitViewBox(pos, centre);

    // Dashed frame around the priors: they are concept modules, not senses.
    const decoKey = `${priors.map((n) => pos.get(n.name).y).join()}|${priorX}|${integ.length}|${nodes.length}`;
    if (decoKey !== graph.decoKey) drawDeco(layers.deco, decoKey, { pos, centre, integ, priors, priorX, nodes });

    syncEdges(layers.edges, nodes, { pos, centre, integ });
    syncGraphNodes(layers.nodes, nodes, pos);
  }

  // Edges: each module and prior to each integrator (or the empty centre).
  // Lines are kept by (from, to) name, so an update moves or restyles them
  // instead of redrawing.
  function syncEdges(layer, nodes, { pos, centre, integ }) {
    const targets = integ.length ? integ.map((n) => ({ name: n.name, ...pos.get(n.name) })) : [{ name: "", ...centre }];
    const wantEdges = new Set();
    for (const n of nodes) {
      if (n.role === "integrator") continue;
      const p = pos.get(n.name);
      for (const t of targets) {
        const key = `${n.name}\u0000${t.name}`;
        wantEdges.add(key);
        let line = graph.edges.get(key);
        if (!line) {
          line = svgEl("line");
          graph.edges.set(key, line);
          layer.append(line);
        }
        updateEdge(line, n, p, t);
      }
    }
    for (const [key, line] of graph.edges) if (!wantEdges.has(key)) { line.remove(); graph.edges.delete(key); }
  }

  function updateEdge(line, n, p, t) {
    setAttr(line, "class", n.role === "prior" ? "edge edge-prior" : "edge");
    setAttr(line, "x1", p.x.toFixed(1)); setAttr(line, "y1", p.y.toFixed(1));
    setAttr(line, "x2", t.x.toFixed(1)); setAttr(line, "y2", t.y.toFixed(1));
    setAttr(line, "data-health", str(n.health) || "unknown");
  }

  // Node groups are kept by name, like the edges, and updated in place, so
  // an update touches only what changed.
  function syncGraphNodes(layer, nodes, pos) {
    const names = new Set(nodes.map((n) => n.name));
    for (const [name, parts] of graph.nodes) if (!names.has(name)) { parts.g.remove(); graph.nodes.delete(name); }
    for (const n of nodes) {
      let parts = graph.nodes.get(n.name);
      if (!parts) {
        parts = makeGraphNode(n.name);
        graph.nodes.set(n.name, parts);
        layer.append(parts.g);
      }
      updateGraphNode(parts, n, pos.get(n.name));
    }
  }

  function drawDeco(deco, key, { pos, centre, integ, priors, priorX, nodes }) {
    graph.decoKey = key;
    deco.replaceChildren();
    if (priors.length) {
      const ys = priors.map((n) => pos.get(n.name).y);
      const top = Math.min(...ys) - 44, bottom = Math.max(...ys) + 84;
      deco.append(
        svgEl("rect", { class: "prior-box", x: priorX - LABEL_W + 4, y: top, width: 2 * LABEL_W - 8, height: bottom - top, rx: 8 }),
        svgEl("text", { class: "prior-label", x: priorX, y: top + 14, "text-anchor": "middle", text: "priors" }));
    }
    // Modules without an integrator: keep its place, say it is missing.
    if (!integ.length && nodes.length) {
      deco.append(
        svgEl("circle", { cx: centre.x, cy: centre.y, r: 24, fill: "none", stroke: UNKNOWN_FILL, "stroke-dasharray": "4 3" }),
        svgEl("text", { class: "node-stat", x: centre.x, y: centre.y + 40, "text-anchor": "middle", text: "no integrator seen" }));
    }
  }

  function updateGraphNode(parts, n, p) {
    const health = str(n.health) || "unknown";
    const isInteg = n.role === "integrator";
    const r = isInteg ? 24 : 18;
    setAttr(parts.g, "transform", `translate(${p.x.toFixed(1)},${p.y.toFixed(1)})`);
    setAttr(parts.g, "data-health", health);
    setAttr(parts.g, "data-role", str(n.role));
    updateNodeMark(parts, n, health, isInteg, r);

    setText(parts.name, n.name);
    setText(parts.rates, `${fmt(n.msg_rate)} msg/s · ${fmt(n.req_rate)} req/s`);
    setText(parts.age, health === "down" && num(n.last_msg_age_s) == null ? "down" : fmtAge(n.last_msg_age_s));

    const restarts = num(n.restarts) || 0, rejected = num(n.rejected) || 0;
    placeNodeLabels(parts, r, p.above, restarts > 0 || rejected > 0);
    updateNodeWarn(parts.warn, restarts, rejected);
    setText(parts.title, nodeDetails(n, health));
  }

  // The circle (filled by health), the ring (module colour) and the glyph.
  function updateNodeMark(parts, n, health, isInteg, r) {
    setAttr(parts.circle, "r", r);
    setAttr(parts.circle, "fill", HEALTH_FILL[health] || UNKNOWN_FILL);
    setAttr(parts.ring, "r", r + 4);
    setAttr(parts.ring, "stroke", isInteg ? "#57606a" : colourFor(n.name));
    setText(parts.glyph, isInteg ? "∏" : n.name.slice(0, 1).toUpperCase());
    setAttr(parts.glyph, "class", isInteg ? "node-glyph node-glyph-big" : "node-glyph");
  }

  // Lines run down from under the circle, or up from over it; the warning
  // line takes a place only when there is something to warn about.
  function placeNodeLabels(parts, r, above, warn) {
    const lines = [parts.name, parts.rates, parts.age];
    if (warn) lines.push(parts.warn);
    const first = above ? -(r + 10) - (lines.length - 1) * 13 : r + 19;
    lines.forEach((t, i) => setAttr(t, "y", first + i * 13 + (i > 0 ? 1 : 0)));
  }

  // Restarts and rejections are rare and worth noticing; build the line
  // only when its content changes.
  function updateNodeWarn(warn, restarts, rejected) {
    const key = `${restarts}/${rejected}`;
    if (warn.dataset.key === key) return;
    warn.dataset.key = key;
    warn.replaceChildren();
    const bits = [];
    if (restarts > 0) bits.push(svgEl("tspan", { text: `↻ ${INT.format(restarts)} restart${restarts === 1 ? "" : "s"}` }));
    if (rejected > 0) bits.push(svgEl("tspan", { class: "node-warn", text: `${INT.format(rejected)} rejected` }));
    bits.forEach((b, i) => { if (i) warn.append(" · "); warn.append(b); });
  }

  // The hover title: everything known about the process, one fact a line.
  function nodeDetails(n, health) {
    const details = [`${n.name} (${str(n.role) || "?"}): ${health}`];
    if (str(n.host)) details.push(`host ${n.host}, pid ${num(n.pid) ?? "–"}`);
    if (num(n.latent) != null) details.push(`latent ${n.latent}`);
    if (str(n.likelihood)) details.push(`likelihood ${n.likelihood}`);
    if (str(n.id)) details.push(`id ${n.id}`);
    return details.join("\n");
  }

  // ---- table

  const tableRows = new Map();
  const COLS = ["name", "role", "health", "pid", "blas", "up", "req", "msg", "age", "restarts", "errors", "rejected", "missed", "lasterr"];
  const NUMERIC = new Set(["pid", "up", "req", "msg", "age", "restarts", "errors", "rejected", "missed"]);
  const ROLE_ORDER = { integrator: 0, module: 1, prior: 2 };

  function renderNodeTable(nodes) {
    const tbody = $("nodes").tBodies[0];
    const names = new Set(nodes.map((n) => n.name));
    for (const [name, row] of tableRows) if (!names.has(name)) { row.tr.remove(); tableRows.delete(name); }
    const sorted = [...nodes].sort((a, b) =>
      (ROLE_ORDER[a.role] ?? 3) - (ROLE_ORDER[b.role] ?? 3) || (a.name < b.name ? -1 : 1));
    sorted.forEach((n, i) => {
      let row = tableRows.get(n.name);
      if (!row) row = makeRow(n.name);
      if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
      updateRow(row, n);
    });
  }

  function makeRow(name) {
    const tr = el("tr", { "data-node": name });
    const cells = {};
    for (const c of COLS) {
      cells[c] = el("td", { class: `col-${c}` + (NUMERIC.has(c) ? " num" : "") });
      tr.append(cells[c]);
    }
    const swatch = el("span", { class: "swatch" });
    const health = el("span", { class: "health" });
    cells.name.append(swatch, el("span", { text: name }));
    cells.health.append(health);
    const err = el("div", { class: "err" }); // clamped to two lines by CSS
    cells.lasterr.append(err);
    const row = { tr, cells, swatch, health, err };
    tableRows.set(name, row);
    return row;
  }

  function updateRow(row, n) {
    const c = row.cells;
    const health = str(n.health) || "unknown";
    row.swatch.style.background = n.role === "integrator" ? "#57606a" : colourFor(n.name);
    setText(c.role, str(n.role) || "–");
    setAttr(row.health, "data-health", health);
    setText(row.health, health);
    setText(c.pid, num(n.pid) ?? "–");
    setText(c.blas, str(n.blas) || "–");
    setText(c.up, fmtDuration(n.up_s));
    setText(c.req, fmt(n.req_rate));
    setText(c.msg, fmt(n.msg_rate));
    setText(c.age, fmtAge(n.last_msg_age_s));
    for (const k of ["restarts", "errors", "rejected", "missed"]) {
      const v = num(n[k]);
      setText(c[k], v == null ? "–" : INT.format(v));
      c[k].classList.toggle("bad", (v || 0) > 0 && k !== "restarts");
    }
    const err = str(n.last_error);
    setText(row.err, err.length > 200 ? err.slice(0, 199) + "…" : err);
    if (err) setAttr(c.lasterr, "title", err);
    else c.lasterr.removeAttribute("title");
  }

  // Empty panels say "waiting for the pipeline…" until the first services
  // event, then explain how to get data into them.
  function refreshEmptyStates() {
    if (!servicesSeen) return;
    // The commands are set in <code>; the text reads the same.
    $("train-empty").replaceChildren("No training run seen yet. Start one with ",
      el("code", { text: "serket train --web" }), ", or watch a pipeline whose integrator trains.");
    $("beliefs-empty").replaceChildren("No beliefs yet: they appear when modules stream from sensors (see ",
      el("code", { text: "docs/streaming.md" }), ").");
    setText($("latent-empty"), "No latent points yet.");
  }

  // ---------------------------------------------------------------- training

  const train = { run: "", points: [], epochs: new Map(), status: null, timer: 0, lastDraw: 0 };

  function onTrain(d) {
    const run = str(d.run);
    // A new run id means a new curve even if the server forgot to say reset.
    if (d.reset === true || (run && train.run && run !== train.run)) {
      train.points = [];
      train.epochs.clear();
      train.status = null;
    }
    if (run) train.run = run;
    const pts = train.points;
    for (const p of arr(d.points)) {
      if (!obj(p) || num(p.step) == null) continue;
      if (pts.length && p.step <= pts[pts.length - 1].step) continue; // duplicate after a reconnect
      pts.push(p);
    }
    for (const e of arr(d.epochs)) {
      if (obj(e) && num(e.epoch) != null) train.epochs.set(e.epoch, e);
    }
    if (obj(d.status)) train.status = d.status;
    setAttr($("train"), "data-points", pts.length); // current at once; the charts follow
    scheduleTrainDraw();
  }

  function scheduleTrainDraw() {
    if (train.timer) return;
    const wait = Math.max(0, TRAIN_REDRAW_MS - (performance.now() - train.lastDraw));
    train.timer = setTimeout(() => {
      train.timer = 0;
      train.lastDraw = performance.now();
      drawTrain();
    }, wait);
  }

  function drawTrain() {
    const pts = train.points, st = train.status;
    const box = $("train");
    setAttr(box, "data-points", pts.length);
    const any = pts.length > 0 || train.epochs.size > 0 || st != null;
    $("train-empty").hidden = any;
    $("train-charts").hidden = !any;
    box.querySelector(".progress-row").hidden = !any;
    if (!any) {
      $("train-missing").replaceChildren();
      setText($("train-meta"), "");
      return;
    }
    drawProgress(pts, st);
    setText($("train-meta"), trainMeta(pts));
    drawTrainCharts(pts);
  }

  // One line on where the run is: run id, step, ELBO and speed.
  function trainMeta(pts) {
    const last = pts[pts.length - 1];
    const meta = [];
    if (train.run) meta.push(`run ${train.run}`);
    if (last) meta.push(`step ${INT.format(last.step)}`);
    if (last && num(last.elbo) != null) meta.push(`ELBO ${fmt(last.elbo)}`);
    if (last && num(last.samples_per_s) != null) meta.push(`${INT.format(last.samples_per_s)} samples/s`);
    return meta.join(" · ");
  }

  // All four charts share the steps as x; col(f) is one figure per step.
  function drawTrainCharts(pts) {
    const xs = pts.map((p) => p.step);
    const col = (f) => pts.map((p) => num(f(p)));
    const marks = epochMarks(pts);
    drawElboChart(xs, col, marks);
    drawLoglikChart(pts, xs, col, marks);
    drawChart($("chart-kl"), {
      xs, legend: true, robust: true,
      series: [
        { name: "KL", colour: "#8250df", ys: col((p) => p.kl) },
        { name: "β", colour: "#8c959f", ys: col((p) => p.beta), axis: "right", dashed: true },
      ],
    });
    drawChart($("chart-speed"), {
      xs, zero: true,
      series: [{ name: "samples/s", colour: "#1f883d", ys: col((p) => p.samples_per_s) }],
    });
  }

  // Test figures come per epoch, not per step: they sit at the last step of
  // their epoch. Returns marks(f, colour, label), the chart markers for the
  // test figure f picks out of an epoch.
  function epochMarks(pts) {
    const epochEnd = new Map();
    for (const p of pts) if (num(p.epoch) != null) epochEnd.set(p.epoch, p.step);
    const epochs = [...train.epochs.values()].sort((a, b) => a.epoch - b.epoch);
    return (f, colour, label) => epochs
      .filter((e) => epochEnd.has(e.epoch) && num(f(e)) != null)
      .map((e) => ({ x: epochEnd.get(e.epoch), y: f(e), colour, label: `${label}, epoch ${e.epoch + 1}: ${fmtVal(f(e))}` }));
  }

  // The joint ELBO is drawn only when the trainer reports it.
  function drawElboChart(xs, col, marks) {
    const elboSeries = [{ name: "ELBO", colour: "#2f6fde", ys: col((p) => p.elbo) }];
    const joint = col((p) => p.joint_elbo);
    if (joint.some((v) => v != null)) elboSeries.push({ name: "joint ELBO", colour: "#8c959f", ys: joint, dashed: true });
    drawChart($("chart-elbo"), {
      xs, series: elboSeries, legend: true, robust: true,
      markers: marks((e) => e.test_elbo, "#e8833a", "test ELBO"),
      markerLegend: { name: "test ELBO", colour: "#e8833a" },
    });
  }

  // One series per module seen in any point, in module colours.
  function drawLoglikChart(pts, xs, col, marks) {
    const mods = new Set();
    for (const p of pts) { const l = obj(p.loglik); if (l) for (const k of Object.keys(l)) mods.add(k); }
    const modList = [...mods].sort();
    drawChart($("chart-loglik"), {
      xs, legend: true, robust: true,
      series: modList.map((m) => ({ name: m, colour: colourFor(m), ys: col((p) => obj(p.loglik) && p.loglik[m]) })),
      markers: modList.flatMap((m) => marks((e) => obj(e.test_loglik) && e.test_loglik[m], colourFor(m), `test ${m}`)),
    });
  }

  function drawProgress(pts, st) {
    const last = pts[pts.length - 1];
    const progress = Math.min(1, Math.max(0, num(st && st.progress) ?? num(last && last.progress) ?? 0));
    const bar = $("train-progress");
    if (Math.abs(Number(bar.value) - progress) > 1e-9) bar.value = progress;
    const epoch = num(st && st.epoch) ?? num(last && last.epoch);
    const epochs = num(st && st.epochs);
    const parts = [];
    // status.epoch counts from 0, people count from 1.
    if (epoch != null) parts.push(epochs != null ? `epoch ${epoch + 1} of ${epochs}` : `epoch ${epoch + 1}`);
    if (epoch != null && epochs != null) {
      // The run's progress is of all its epochs alike: what is left of it
      // beyond the epochs done is the epoch under way's.
      const inEpoch = Math.min(1, Math.max(0, progress * epochs - epoch));
      parts.push(`${Math.floor(inEpoch * 100)}% of the epoch`);
    }
    parts.push(`${Math.floor(progress * 100)}% of the run`);
    const active = !(st && st.active === false);
    if (!active) parts.push(progress >= 1 ? "finished" : "stopped");
    setText($("train-progress-text"), parts.join(" · "));
    setAttr($("train"), "data-active", active);

    const missing = arr(st && st.missing).filter((m) => typeof m === "string");
    const key = missing.join("\n");
    const box = $("train-missing");
    if (box.dataset.key !== key) {
      box.dataset.key = key;
      box.replaceChildren(...missing.map((m) => chip(`waiting for ${m}`, colourFor(m), "chip-warn")));
    }
  }

  // ---- a small hand-made line chart

  function niceStep(range, count) {
    const raw = range / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const n = raw / mag;
    return (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
  }

  function ticksFor(lo, hi, count) {
    const step = niceStep(hi - lo, count);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return { step, ticks: out };
  }

  function fmtTick(v, step) {
    const a = Math.abs(v);
    if (step >= 1000 && a >= 1e6) return `${(v / 1e6).toFixed(Math.max(0, -Math.floor(Math.log10(step / 1e6))))}M`;
    if (step >= 100 && a >= 1e4) return `${(v / 1e3).toFixed(Math.max(0, -Math.floor(Math.log10(step / 1e3))))}k`;
    return v.toFixed(Math.min(6, Math.max(0, -Math.floor(Math.log10(step)))));
  }

  // The range of one series; with robust, a rare spike (a diverging step)
  // is clipped instead of flattening the rest of the curve. A steady early
  // descent is kept: it spans many points, so it widens the 5–95% range.
  function seriesRange(values, robust) {
    const v = values.filter((x) => x != null);
    if (!v.length) return null;
    let lo = v[0], hi = v[0];
    for (const x of v) { if (x < lo) lo = x; if (x > hi) hi = x; }
    if (!robust || v.length < 20) return { lo, hi, clipped: false };
    const s = Float64Array.from(v).sort();
    const q05 = s[Math.floor(0.05 * (s.length - 1))], q95 = s[Math.ceil(0.95 * (s.length - 1))];
    const span = q95 - q05 || Math.abs(q95) * 0.1 || 1;
    const rlo = Math.max(lo, q05 - span), rhi = Math.min(hi, q95 + span);
    return { lo: rlo, hi: rhi, clipped: rlo > lo || rhi < hi };
  }

  // The y range over several series, each judged on its own scale (a
  // module's log-likelihood may be a hundred times another's).
  function yDomain(seriesValues, robust, zero) {
    let lo = Infinity, hi = -Infinity, clipped = false;
    for (const vals of seriesValues) {
      const r = seriesRange(vals, robust);
      if (!r) continue;
      lo = Math.min(lo, r.lo); hi = Math.max(hi, r.hi); clipped = clipped || r.clipped;
    }
    if (lo > hi) return null;
    if (zero) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    if (lo === hi) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
    return { lo, hi, clipped };
  }

  // Paths through (xs, ys), with gaps where y is null. Up to
  // MAX_LINE_POINTS points are drawn as they are; longer series become the
  // mean of each bucket (line) over a faint min–max envelope (band), so the
  // trend reads clearly and a spike still shows.
  function seriesPaths(xs, ys, sx, sy) {
    const n = xs.length;
    const f = (v) => v.toFixed(1);
    let line = "", band = "", pen = false;
    if (n <= MAX_LINE_POINTS) {
      for (let i = 0; i < n; i++) {
        if (ys[i] == null) { pen = false; continue; }
        line += `${pen ? "L" : "M"}${f(sx(xs[i]))},${f(sy(ys[i]))}`;
        pen = true;
      }
      return { line, band };
    }
    const bucket = Math.ceil(n / MAX_LINE_POINTS);
    let run = []; // [x, min, max] of consecutive buckets, closed into a polygon at a gap
    const flush = () => {
      if (run.length > 1) {
        band += "M" + run.map((r) => `${f(r[0])},${f(r[1])}`).join("L") +
          "L" + run.reverse().map((r) => `${f(r[0])},${f(r[2])}`).join("L") + "Z";
      }
      run = [];
    };
    for (let i = 0; i < n; i += bucket) {
      let cnt = 0, sumX = 0, sumY = 0, lo = Infinity, hi = -Infinity;
      for (let j = i; j < Math.min(n, i + bucket); j++) {
        const y = ys[j];
        if (y == null) continue;
        cnt++; sumX += xs[j]; sumY += y;
        if (y < lo) lo = y;
        if (y > hi) hi = y;
      }
      if (!cnt) { pen = false; flush(); continue; }
      const x = sx(sumX / cnt);
      line += `${pen ? "L" : "M"}${f(x)},${f(sy(sumY / cnt))}`;
      pen = true;
      run.push([x, sy(lo), sy(hi)]);
    }
    flush();
    return { line, band };
  }

  function appendSeries(plot, s, xs, sx, sy) {
    const { line, band } = seriesPaths(xs, s.ys, sx, sy);
    if (band) plot.append(svgEl("path", { class: "band", fill: s.colour, d: band }));
    plot.append(svgEl("path", { class: "series" + (s.dashed ? " series-dashed" : ""), stroke: s.colour, d: line }));
  }

  // Left-axis series, optional right-axis series (β), test markers and a
  // legend. What the hover needs is kept on the svg, so a redraw keeps it.
  function drawChart(svg, spec) {
    const xs = spec.xs;
    const left = spec.series.filter((s) => s.axis !== "right");
    const right = spec.series.filter((s) => s.axis === "right");
    const markers = spec.markers || [];
    const box = chartBox(svg, right.length > 0, spec.legend);
    const yl = yDomain([...left.map((s) => s.ys), markers.map((k) => k.y)], spec.robust, spec.zero);
    if (!xs.length || !yl) {
      drawEmptyChart(svg, box);
      return;
    }
    const sc = chartScales(xs, yl, box);
    const axis = chartAxes(box, sc);
    // Lines are clipped to the plot so robust ranges do not spill over.
    const clipId = `${svg.id}-clip`;
    const out = [axis, chartClip(clipId, box)];
    const plot = svgEl("g", { "clip-path": `url(#${clipId})` });
    for (const s of left) {
      appendSeries(plot, s, xs, sc.sx, sc.sy);
    }
    if (right.length) drawRightAxis(axis, plot, right, xs, sc.sx, box);
    appendMarkers(plot, markers, sc.sx, sc.sy);
    out.push(plot);

    if (spec.legend) out.push(chartLegend(spec, markers, box.m));
    if (yl.clipped) out.push(clippedNote(box));
    const { m, ph } = box;
    const cross = svgEl("line", { class: "crosshair", y1: m.t, y2: m.t + ph, visibility: "hidden" });
    out.push(cross);
    svg.replaceChildren(...out);
    svg._hover = { xs, series: spec.series, sx: sc.sx, m, pw: box.pw, xlo: sc.xlo, xhi: sc.xhi, cross };
    attachHover(svg);
    showHover(svg);
  }

  // The chart's size follows its box on the page; the margins make room
  // for the right axis and the legend only when there are any.
  function chartBox(svg, hasRight, legend) {
    const W = Math.max(200, Math.round(svg.clientWidth || 400));
    const H = Math.max(120, Math.round(svg.clientHeight || 200));
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const m = { l: 54, r: hasRight ? 40 : 12, t: legend ? 22 : 8, b: 30 };
    return { W, H, m, pw: W - m.l - m.r, ph: H - m.t - m.b };
  }

  function drawEmptyChart(svg, { W, H }) {
    svg.replaceChildren(svgEl("text", { class: "axis-label", x: W / 2, y: H / 2, "text-anchor": "middle", text: "no data yet" }));
    svg._hover = null;
    showHover(svg);
  }

  // A single step is widened to a range so the scale does not divide by 0.
  function chartScales(xs, yl, { m, pw, ph }) {
    let xlo = xs[0], xhi = xs[xs.length - 1];
    if (xlo === xhi) { xlo -= 1; xhi += 1; }
    const yStep = ticksFor(yl.lo, yl.hi, Math.max(2, Math.floor(ph / 40))).step;
    // Extend y to whole ticks so the top and bottom lines are labelled.
    const ylo = Math.min(yl.lo, Math.floor(yl.lo / yStep) * yStep), yhi = Math.max(yl.hi, Math.ceil(yl.hi / yStep) * yStep);
    const sx = (v) => m.l + ((v - xlo) / (xhi - xlo)) * pw;
    const sy = (v) => m.t + ph - ((v - ylo) / (yhi - ylo)) * ph;
    return { xlo, xhi, ylo, yhi, yStep, sx, sy };
  }

  // Gridlines and labels for y, ticks and labels for x, and the axis lines.
  function chartAxes({ H, m, pw, ph }, { xlo, xhi, ylo, yhi, yStep, sx, sy }) {
    const axis = svgEl("g", { class: "axis" });
    for (const v of ticksFor(ylo, yhi, Math.max(2, Math.floor(ph / 40))).ticks) {
      const y = sy(v).toFixed(1);
      axis.append(svgEl("line", { class: "gridline", x1: m.l, x2: m.l + pw, y1: y, y2: y }),
        svgEl("text", { x: m.l - 6, y, dy: "0.32em", "text-anchor": "end", text: fmtTick(v, yStep) }));
    }
    const xt = ticksFor(xlo, xhi, Math.max(2, Math.floor(pw / 90)));
    for (const v of xt.ticks) {
      const x = sx(v).toFixed(1);
      axis.append(svgEl("line", { x1: x, x2: x, y1: m.t + ph, y2: m.t + ph + 4 }),
        svgEl("text", { x, y: m.t + ph + 15, "text-anchor": "middle", text: fmtTick(v, xt.step) }));
    }
    axis.append(svgEl("line", { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph }),
      svgEl("line", { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ph }),
      svgEl("text", { class: "axis-label", x: m.l + pw, y: H - 2, "text-anchor": "end", text: "step" }));
    return axis;
  }

  function chartClip(clipId, { m, pw, ph }) {
    return svgEl("defs", null, svgEl("clipPath", { id: clipId },
      svgEl("rect", { x: m.l, y: m.t - 2, width: pw, height: ph + 4 })));
  }

  // The right axis has its own scale, from 0 up; it gets labels only, as
  // gridlines of its own would not line up with the left axis's.
  function drawRightAxis(axis, plot, right, xs, sx, { m, pw, ph }) {
    const vals = right.flatMap((s) => s.ys).filter((v) => v != null);
    let hi2 = 1; // β is usually annealed up to 1
    for (const v of vals) if (v > hi2) hi2 = v;
    const sy2 = (v) => m.t + ph - (v / hi2) * ph;
    const t2 = ticksFor(0, hi2, Math.max(2, Math.floor(ph / 40)));
    for (const v of t2.ticks) {
      axis.append(svgEl("text", { x: m.l + pw + 6, y: sy2(v).toFixed(1), dy: "0.32em", text: fmtTick(v, t2.step) }));
    }
    axis.append(svgEl("line", { x1: m.l + pw, x2: m.l + pw, y1: m.t, y2: m.t + ph }));
    for (const s of right) {
      appendSeries(plot, s, xs, sx, sy2);
    }
  }

  // Markers are diamonds centred on their point, named in their title.
  function appendMarkers(plot, markers, sx, sy) {
    for (const k of markers) {
      const x = sx(k.x), y = sy(k.y);
      plot.append(svgEl("path", {
        class: "marker", fill: k.colour,
        d: `M${x.toFixed(1)},${(y - 5).toFixed(1)}l5,5l-5,5l-5,-5z`,
      }, svgEl("title", { text: k.label })));
    }
  }

  // A row over the plot: every series, then the marker kind if any are shown.
  function chartLegend(spec, markers, m) {
    const items = spec.series.map((s) => ({ name: s.name, colour: s.colour, dashed: s.dashed }));
    if (spec.markerLegend && markers.length) items.push({ ...spec.markerLegend, marker: true });
    let x = m.l;
    const lg = svgEl("g");
    for (const it of items) {
      if (it.marker) lg.append(svgEl("path", { class: "marker", fill: it.colour, d: `M${x + 8},5l5,5l-5,5l-5,-5z` }));
      else lg.append(svgEl("line", { class: "series" + (it.dashed ? " series-dashed" : ""), stroke: it.colour, x1: x, x2: x + 16, y1: 10, y2: 10, "stroke-width": 2.5 }));
      lg.append(svgEl("text", { class: "legend-text", x: x + 21, y: 10, dy: "0.32em", text: it.name }));
      x += 30 + it.name.length * 6.5;
    }
    return lg;
  }

  // Say so when a robust range hid a spike, or the curve would mislead.
  function clippedNote({ H, m }) {
    return svgEl("text", { class: "axis-label", x: m.l, y: H - 2, text: "outliers clipped" },
      svgEl("title", { text: "rare extreme values lie outside the y-axis range" }));
  }

  // Hover: a crosshair at the nearest step and a tooltip with every series.
  // The mouse position is kept so a redraw (new data) keeps them in place.
  function attachHover(svg) {
    if (svg._tip) return;
    svg._tip = el("div", { class: "chart-tip", hidden: "" });
    svg.parentElement.append(svg._tip);
    svg.addEventListener("mouseleave", () => { svg._mouse = null; showHover(svg); });
    svg.addEventListener("mousemove", (e) => { svg._mouse = { x: e.clientX, y: e.clientY }; showHover(svg); });
  }

  function showHover(svg) {
    const h = svg._hover, tip = svg._tip, mouse = svg._mouse;
    if (!tip) return;
    const hide = () => {
      tip.hidden = true;
      if (h) h.cross.setAttribute("visibility", "hidden");
    };
    if (!h || !h.xs.length || !mouse) return hide();
    const rect = svg.getBoundingClientRect();
    const figRect = svg.parentElement.getBoundingClientRect();
    const px = mouse.x - rect.left;
    if (px < h.m.l || px > h.m.l + h.pw) return hide();
    const i = nearest(h.xs, h.xlo + ((px - h.m.l) / h.pw) * (h.xhi - h.xlo));
    const x = h.sx(h.xs[i]).toFixed(1);
    h.cross.setAttribute("x1", x);
    h.cross.setAttribute("x2", x);
    h.cross.setAttribute("visibility", "visible");
    const lines = [el("div", { text: `step ${INT.format(h.xs[i])}` })];
    for (const s of h.series) {
      const sw = el("span", { class: "tip-swatch" });
      sw.style.background = s.colour;
      lines.push(el("div", null, sw, `${s.name} ${fmtVal(s.ys[i])}`));
    }
    tip.replaceChildren(...lines);
    tip.hidden = false;
    // Keep the tooltip inside the figure: flip to the left near the right edge.
    const fx = mouse.x - figRect.left;
    const left = fx + 14 + tip.offsetWidth > figRect.width ? fx - 14 - tip.offsetWidth : fx + 14;
    tip.style.left = `${Math.max(0, left)}px`;
    tip.style.top = `${mouse.y - figRect.top + 12}px`;
  }

  function nearest(xs, v) {
    let lo = 0, hi = xs.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] < v) lo = mid; else hi = mid;
    }
    return Math.abs(xs[lo] - v) <= Math.abs(xs[hi] - v) ? lo : hi;
  }

  // ---------------------------------------------------------------- beliefs

  const belief = { spark: null, bars: [], shown: false };

  function onBelief(d) {
    const box = $("belief-now");
    if (!belief.spark) buildBeliefBox(box);
    box.hidden = false;
    $("beliefs-empty").hidden = true;

    setText(belief.title, num(d.seq) != null ? `belief #${d.seq}` : "belief");
    setText(belief.time, fmtClock(d.t_ms));
    const chips = [];
    for (const s of arr(d.sources)) {
      if (!obj(s) || !str(s.module)) continue;
      const age = num(s.age_ms);
      chips.push(chip(age != null ? `${s.module} · ${fmt(age)} ms` : s.module, colourFor(s.module)));
    }
    if (str(d.prior)) chips.push(chip(`prior ${d.prior}`, colourFor(d.prior)));
    if (num(d.concept) != null && d.concept >= 0) chips.push(chip(`concept ${d.concept}`, null, "chip-concept"));
    belief.chips.replaceChildren(...chips);
    setText($("belief-meta"), "bars: fused mean, first 32 dims");
    drawSpark(arr(d.mu).slice(0, 32).map(num));
  }

  function buildBeliefBox(box) {
    belief.title = el("span");
    belief.time = el("span", { class: "muted" });
    belief.spark = svgEl("svg", { class: "spark", viewBox: "0 0 200 40", preserveAspectRatio: "none", role: "img", "aria-label": "belief mean" });
    belief.spark.append(svgEl("line", { class: "baseline", x1: 0, x2: 200, y1: 20, y2: 20 }));
    for (let i = 0; i < 32; i++) {
      const r = svgEl("rect", { x: (i * 200) / 32 + 0.6, width: 200 / 32 - 1.2, y: 20, height: 0 }, svgEl("title"));
      belief.bars.push(r);
      belief.spark.append(r);
    }
    belief.chips = el("div", { class: "chips" });
    box.append(el("div", { class: "belief-title" }, belief.title, belief.time), belief.spark, belief.chips);
  }

  // Bars above or below the middle line; the scale adapts so a belief near
  // the prior (mu ≈ 0) is still readable, but never zooms in below ±0.5.
  function drawSpark(mu) {
    const scale = Math.max(0.5, ...mu.map((v) => Math.abs(v || 0)));
    belief.bars.forEach((r, i) => {
      const v = mu[i];
      const h = v == null ? 0 : (Math.abs(v) / scale) * 19;
      setAttr(r, "y", (v != null && v > 0 ? 20 - h : 20).toFixed(2));
      setAttr(r, "height", h.toFixed(2));
      setAttr(r, "class", v != null && v < 0 ? "bar-neg" : "bar-pos");
      setText(r.firstChild, v == null ? `dim ${i}` : `dim ${i}: ${fmtVal(v)}`);
    });
  }

  // ---- said

  const saidCards = new Map();

  function onSaid(d) {
    const module = str(d.module);
    if (!module) return;
    $("beliefs-empty").hidden = true;
    let card = saidCards.get(module);
    if (!card) card = makeSaidCard(module);
    card.el.style.borderTopColor = colourFor(module);
    setText(card.foot, num(d.seq) != null ? `belief #${d.seq}` : "");

    const type = baseType(d.type);
    const url = apiURL(d.url);
    if (IMAGE_TYPES.has(type) && url) showSaidImage(card, url);
    else if (AUDIO_TYPES.has(type) && url) showSaidAudio(card, url);
    else if (type.startsWith("text/") && typeof d.text === "string") {
      setText(showSaidBody(card, "text", () => el("div", { class: "card-text" })), d.text);
    } else {
      // Not something we render: say what it is (the event may carry its size).
      card.kind = "opaque";
      card.media = opaqueLine(num(d.bytes) ?? num(d.size), type);
      card.body.replaceChildren(card.media);
    }
  }

  function makeSaidCard(module) {
    const head = el("div", { class: "card-head", text: module });
    const body = el("div", { class: "card-body" });
    const foot = el("div", { class: "card-foot" });
    const card = { el: el("div", { class: "card", "data-said": module }, head, body, foot), body, foot, kind: "", media: null, token: 0 };
    saidCards.set(module, card);
    // Cards stay in module name order.
    const container = $("said");
    const after = [...saidCards.keys()].sort().find((k) => k > module);
    container.insertBefore(card.el, after ? saidCards.get(after).el : null);
    return card;
  }

  // The card's media element of a kind, made fresh when the kind changes.
  function showSaidBody(card, kind, make) {
    if (card.kind !== kind || !card.media) {
      card.kind = kind;
      card.media = make();
      card.body.replaceChildren(card.media);
    }
    return card.media;
  }

  // A new picture replaces the old one only once it has loaded, so a stream
  // of them does not blink.
  function showSaidImage(card, url) {
    if (card.kind !== "img" || !card.media) {
      const img = showSaidBody(card, "img", () => el("img", { alt: "" }));
      scaleOnLoad(img);
      img.src = url;
      return;
    }
    if (card.media.getAttribute("src") === url) return;
    const token = ++card.token;
    const next = el("img", { alt: "" });
    next.addEventListener("load", () => {
      if (token !== card.token || card.kind !== "img") return;
      next.style.width = card.media.style.width;
      card.media.replaceWith(next);
      card.media = next;
    }, { once: true });
    scaleOnLoad(next);
    next.src = url;
  }

  // Audio only changes while it is not playing, so a listener is not cut off.
  function showSaidAudio(card, url) {
    const a = showSaidBody(card, "audio", () => el("audio", { controls: "", preload: "none" }));
    if (a.paused && a.getAttribute("src") !== url) a.src = url;
  }

  // ---------------------------------------------------------------- latent

  let lastLatent = null;

  function onLatent(d) {
    lastLatent = d;
    drawLatent();
  }

  function drawLatent() {
    const d = lastLatent;
    if (!d) return;
    const raw = arr(d.points);
    const pts = raw.filter((p) => obj(p) && num(p.x) != null && num(p.y) != null);
    setAttr($("latent"), "data-points", raw.length);
    const svg = $("latent-svg");
    $("latent-empty").hidden = pts.length > 0;
    svg.toggleAttribute("hidden", pts.length === 0); // an SVG element has no .hidden property
    if (!pts.length) {
      $("latent-legend").replaceChildren();
      setText($("latent-meta"), "");
      return;
    }
    const groups = [...new Set([...arr(d.groups).filter((g) => typeof g === "string"), ...pts.map((p) => str(p.g))])];
    const box = latentBox(svg);
    const sc = latentScales(pts, box);
    svg.replaceChildren(latentAxes(box, sc, arr(d.explained)), latentDots(pts, sc));
    drawLatentLegend(groups, pts);
    setText($("latent-meta"), latentMeta(d, pts.length));
  }

  // The plot's width follows the page; its height follows the width, capped.
  function latentBox(svg) {
    const W = Math.max(240, Math.round(svg.clientWidth || 480)), H = Math.min(380, Math.round(W * 0.62));
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const m = { l: 44, r: 12, t: 10, b: 34 };
    return { W, H, m, pw: W - m.l - m.r, ph: H - m.t - m.b };
  }

  // Each axis spans its points plus a margin, so no dot sits on the frame.
  function latentScales(pts, { m, pw, ph }) {
    const dom = (k) => {
      let lo = Infinity, hi = -Infinity;
      for (const p of pts) { lo = Math.min(lo, p[k]); hi = Math.max(hi, p[k]); }
      const pad = (hi - lo) * 0.06 || 1;
      return [lo - pad, hi + pad];
    };
    const [xlo, xhi] = dom("x"), [ylo, yhi] = dom("y");
    const sx = (v) => m.l + ((v - xlo) / (xhi - xlo)) * pw;
    const sy = (v) => m.t + ph - ((v - ylo) / (yhi - ylo)) * ph;
    return { xlo, xhi, ylo, yhi, sx, sy };
  }

  // Gridlines both ways, a frame, and the components as axis labels.
  function latentAxes({ H, m, pw, ph }, { xlo, xhi, ylo, yhi, sx, sy }, explained) {
    const axis = svgEl("g", { class: "axis" });
    const xt = ticksFor(xlo, xhi, Math.max(2, Math.floor(pw / 80)));
    for (const v of xt.ticks) {
      const x = sx(v).toFixed(1);
      axis.append(svgEl("line", { class: "gridline", x1: x, x2: x, y1: m.t, y2: m.t + ph }),
        svgEl("text", { x, y: m.t + ph + 14, "text-anchor": "middle", text: fmtTick(v, xt.step) }));
    }
    const yt = ticksFor(ylo, yhi, Math.max(2, Math.floor(ph / 50)));
    for (const v of yt.ticks) {
      const y = sy(v).toFixed(1);
      axis.append(svgEl("line", { class: "gridline", x1: m.l, x2: m.l + pw, y1: y, y2: y }),
        svgEl("text", { x: m.l - 6, y, dy: "0.32em", "text-anchor": "end", text: fmtTick(v, yt.step) }));
    }
    axis.append(svgEl("rect", { x: m.l, y: m.t, width: pw, height: ph, fill: "none", stroke: "#d0d7de" }));
    axis.append(svgEl("text", { class: "axis-label", x: m.l + pw / 2, y: H - 4, "text-anchor": "middle", text: pcLabel(explained, 0) }),
      svgEl("text", { class: "axis-label", transform: `translate(11,${m.t + ph / 2}) rotate(-90)`, "text-anchor": "middle", text: pcLabel(explained, 1) }));
    return axis;
  }

  // A component's share of the variance, when the server sent it, says how
  // much of the spread the picture shows.
  function pcLabel(explained, i) {
    const e = num(explained[i]);
    return e != null ? `PC${i + 1} (${Math.round(e * 100)}%)` : `PC${i + 1}`;
  }

  // Module points first, the rest (beliefs, concepts) on top and larger:
  // there are few of them and they are what one looks for.
  function latentDots(pts, { sx, sy }) {
    const isModule = (g) => colours.modules.includes(g);
    const layer = (g) => (isModule(g) ? 0 : 1);
    const sorted = [...pts].sort((a, b) => layer(str(a.g)) - layer(str(b.g)));
    const dots = svgEl("g");
    for (const p of sorted) {
      const g = str(p.g);
      const big = !isModule(g);
      dots.append(svgEl("circle", {
        class: "pt", cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: big ? 4.5 : 3,
        fill: colourFor(g), stroke: big ? "#24292f" : null, "stroke-width": big ? 0.8 : null,
      }));
    }
    return dots;
  }

  // Only groups with points get a legend entry, in the server's order and
  // then any it did not list.
  function drawLatentLegend(groups, pts) {
    const counts = new Map();
    for (const p of pts) counts.set(str(p.g), (counts.get(str(p.g)) || 0) + 1);
    $("latent-legend").replaceChildren(...groups.filter((g) => counts.has(g)).map((g) => {
      const sw = el("span", { class: "swatch" });
      sw.style.background = colourFor(g);
      return el("span", { class: "legend-item", "data-group": g }, sw, `${g || "(none)"} `, el("span", { class: "muted", text: String(counts.get(g)) }));
    }));
  }

  // n is how many points the server projected; "of n" shows when fewer
  // could be drawn.
  function latentMeta(d, shown) {
    const by = str(d.by);
    const n = num(d.n);
    return `${INT.format(shown)} points${n != null && n !== shown ? ` of ${INT.format(n)}` : ""}${by ? ` · by ${by}` : ""} · PCA`;
  }

  // ---------------------------------------------------------------- ask it

  const ask = { rows: new Map(), key: null, busy: false };

  // Rows are kept per module and only added or removed, so text typed and
  // files chosen survive a change in the module set.
  function syncAskForm(modules) {
    const sorted = [...new Set(modules)].sort();
    const key = sorted.join("\n");
    if (key === ask.key) return;
    ask.key = key;
    const box = $("ask-rows");
    for (const [m, row] of ask.rows) if (!sorted.includes(m)) { row.remove(); ask.rows.delete(m); }
    for (const c of [...box.children]) if (!c.dataset.module) c.remove();
    for (const m of sorted) {
      const row = ask.rows.get(m) || makeAskRow(m);
      ask.rows.set(m, row);
      box.append(row); // moving keeps its values and chosen file
    }
    for (const row of ask.rows.values()) row.querySelector(".swatch").style.background = colourFor(row.dataset.module);
    if (!sorted.length) box.append(el("p", { class: "empty", text: "No modules are up yet." }));
  }

  function makeAskRow(m) {
    const sw = el("span", { class: "swatch" });
    return el("div", { class: "ask-row", "data-module": m },
      el("span", { class: "ask-name" }, sw, m),
      el("input", { type: "text", name: `text.${m}`, placeholder: `type an input for ${m}, e.g. a caption`, "aria-label": `text input for ${m}` }),
      el("input", { type: "file", name: `file.${m}`, "aria-label": `file input for ${m}` }),
      el("label", { class: "ask-want" },
        el("input", { type: "checkbox", name: "want", value: m }), "generate"));
  }

  function setAskBusy(busy) {
    ask.busy = busy;
    $("ask-submit").disabled = busy;
    $("ask-spinner").hidden = !busy;
    $("ask").setAttribute("aria-busy", String(busy));
  }

  function showAskError(text) {
    const e = $("ask-error");
    e.textContent = text;
    e.hidden = false;
    $("ask-result").replaceChildren();
  }

  async function submitAsk(ev) {
    ev.preventDefault();
    if (ask.busy) return;
    const form = $("ask-form");
    const fd = new FormData(form);
    // Browsers send every field; the server should only see what was given.
    for (const [k, v] of [...fd.entries()]) {
      if (k.startsWith("text.") && typeof v === "string" && v.trim() === "") fd.delete(k);
      if (k.startsWith("file.") && (typeof v === "string" || (v.size === 0 && !v.name))) fd.delete(k);
    }
    const wanted = fd.getAll("want").filter((w) => typeof w === "string");
    setAskBusy(true);
    try {
      const res = await fetch("/api/ask", { method: "POST", body: fd });
      let body = null;
      try { body = obj(await res.json()); } catch { body = null; }
      if (!res.ok) {
        showAskError(body && str(body.error) ? body.error : `the server answered ${res.status} ${res.statusText}`.trim());
      } else if (!body) {
        showAskError("the server's answer was not JSON");
      } else {
        $("ask-error").hidden = true;
        $("ask-error").textContent = "";
        renderAskResult(body, wanted);
        // An incomplete inference is an error, as the CLI's exit status
        // says: an input that did not parse, a module that is not there.
        if (str(body.unanswered)) {
          $("ask-error").textContent = body.unanswered;
          $("ask-error").hidden = false;
        }
      }
    } catch (err) {
      showAskError(`could not reach the server: ${err && err.message ? err.message : err}`);
    } finally {
      setAskBusy(false);
    }
  }

  function renderAskResult(r, wanted) {
    const out = [];
    const contributors = arr(r.contributors).filter((c) => typeof c === "string");
    out.push(el("div", { class: "result-line" }, el("span", { class: "label", text: "fused from" }),
      ...(contributors.length
        ? contributors.map((c) => chip(c, colourFor(c)))
        : [el("span", { text: "the prior alone (no module contributed)" })])));
    const missing = obj(r.missing);
    if (missing) {
      for (const [m, why] of Object.entries(missing)) out.push(el("div", { class: "warn", text: `${m}: ${str(why) || "missing"}` }));
    }
    if (str(r.concept)) {
      out.push(el("div", { class: "result-line" }, el("span", { class: "label", text: "concept" }), chip(r.concept, null, "chip-concept")));
    }
    const outputs = obj(r.outputs) || {};
    const modules = [...wanted, ...Object.keys(outputs).filter((k) => !wanted.includes(k)).sort()];
    for (const m of modules) {
      const items = arr(outputs[m]).filter(obj);
      const block = el("div", { class: "output", "data-output": m },
        el("div", { class: "output-head", text: m }),
        el("div", { class: "output-items" },
          ...(items.length ? items.map(renderOutputItem) : [el("span", { class: "muted", text: "nothing rendered" })])));
      block.style.borderLeftColor = colourFor(m);
      out.push(block);
    }
    $("ask-result").replaceChildren(...out);
  }

  function renderOutputItem(item) {
    const type = baseType(item.type);
    if (typeof item.text === "string" && (!type || type.startsWith("text/"))) {
      return el("div", { class: "output-text", text: item.text });
    }
    if (typeof item.data_url === "string") {
      const t = dataURLType(item.data_url);
      if (IMAGE_TYPES.has(t)) {
        const img = el("img", { alt: `${type || t} output` });
        scaleOnLoad(img);
        img.src = item.data_url;
        return img;
      }
      if (AUDIO_TYPES.has(t)) return el("audio", { controls: "", src: item.data_url });
      return opaqueLine(num(item.bytes) ?? dataURLBytes(item.data_url), type || t);
    }
    return opaqueLine(num(item.bytes), type);
  }

  // ---------------------------------------------------------------- start

  function start() {
    $("ask-form").addEventListener("submit", submitAsk);
    // Charts are drawn at their real pixel size; redraw when that changes.
    let resizeTimer = 0;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { scheduleTrainDraw(); drawLatent(); }, 150);
    });
    connect();
  }

  start();
})();
