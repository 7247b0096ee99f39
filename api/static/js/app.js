// Explore UI controller: search -> graph (center, categories, children, load more) -> details,
// trends, share/restore snapshots, and the signed-in views (Discogs link, sync, my records).
import { api, ApiError, auth } from "./api.js";
import { GraphView } from "./graph.js";
import { renderDetails, renderCategoryDetails } from "./details.js";
import { Me } from "./me.js";
import { el, fill, toast } from "./util.js";

const PAGE = 30;
const RESTORE_PAGE = 200;
const RESTORE_MAX_PAGES = 5;
const SNAPSHOT_MAX_NODES = 100;
const EXPLORABLE = new Set(["artist", "label", "genre", "style"]);
const TYPE_LABEL = { artist: "Artist", label: "Label", genre: "Genre", style: "Style", release: "Release", master: "Master" };
// Which category of a center holds children of a given type (for restoring snapshots).
const CATEGORY_OF = {
  artist: { release: "releases", label: "labels", artist: "aliases" },
  genre: { release: "releases", artist: "artists", label: "labels", style: "styles" },
  label: { release: "releases", artist: "artists", genre: "genres" },
  style: { release: "releases", artist: "artists", label: "labels", genre: "genres" },
};

const $ = (sel) => document.querySelector(sel);
const S = {
  center: null, categories: new Map(), selected: null, status: new Map(), user: null,
  exploreSeq: 0, trendsTarget: null, trendsLoaded: null, chart: null,
};

// ------------------------------------------------------------------ small helpers
function setGraphStatus(kind, text, retry) {
  const box = $("#graph-status");
  box.dataset.state = kind;
  if (kind === "none") { box.hidden = true; fill(box); return; }
  box.hidden = false;
  const children = [];
  if (kind === "loading") children.push(el("div", { class: "spinner", "aria-hidden": "true" }));
  children.push(el("p", { class: kind === "error" ? "error" : "", text }));
  if (retry) children.push(el("button", { class: "btn", type: "button", text: "Try again", onclick: retry }));
  fill(box, el("div", {}, children));
}

const childKey = (type, id) => `${type}:${id}`;
const truncate = (s, n = 26) => (s && s.length > n ? `${s.slice(0, n - 1)}…` : s || "");

// ------------------------------------------------------------------ graph model
const graph = new GraphView($("#graph"), { onActivate: activate, onExplore: exploreNode });

function buildGraph() {
  const nodes = [];
  const links = [];
  if (!S.center) { graph.clear(); return; }
  const c = S.center;
  const centerKey = childKey(c.type, c.id);
  nodes.push({ key: centerKey, kind: "center", type: c.type, id: c.id, name: c.name, label: truncate(c.name, 34),
    aria: `${TYPE_LABEL[c.type]} ${c.name} (center)` });
  for (const cat of S.categories.values()) {
    if (cat.count <= 0) continue;
    const key = `cat:${cat.category}`;
    const suffix = cat.loading ? " …" : "";
    nodes.push({ key, kind: "category", type: "category", id: cat.id, name: cat.name, category: cat.category,
      parentKey: centerKey, expanded: cat.expanded, label: `${cat.name} (${cat.count})${suffix}`,
      aria: `${cat.name}, ${cat.count} items, ${cat.expanded ? "expanded" : "collapsed"}` });
    links.push({ source: centerKey, target: key });
    if (!cat.expanded) continue;
    for (const child of cat.children) {
      const key2 = childKey(child.type, child.id);
      if (key2 === centerKey) continue;
      const st = child.type === "release" ? S.status.get(child.id) : null;
      const extra = child.year ? ` (${child.year})` : "";
      nodes.push({ key: key2, kind: "child", type: child.type, id: child.id, name: child.name, category: cat.category,
        parentKey: key, year: child.year, label: truncate(child.name), inCollection: Boolean(st?.in_collection),
        inWantlist: Boolean(st?.in_wantlist),
        aria: `${TYPE_LABEL[child.type] || child.type} ${child.name}${extra}${st?.in_collection ? ", in your collection" : ""}${st?.in_wantlist ? ", in your wantlist" : ""}` });
      links.push({ source: key, target: key2 });
    }
    if (cat.hasMore) {
      const remaining = cat.total - cat.children.length;
      const moreKey = `more:${cat.category}`;
      nodes.push({ key: moreKey, kind: "more", type: "more", id: moreKey, name: "more", category: cat.category, parentKey: key,
        label: cat.loading ? "loading…" : `+${Math.min(PAGE, remaining)} more`, aria: `Load ${Math.min(PAGE, remaining)} more ${cat.name.toLowerCase()} (${remaining} not shown)` });
      links.push({ source: key, target: moreKey });
    }
  }
  // Nodes reachable from two categories (e.g. an artist that is also a label's artist) appear once.
  const seen = new Set();
  const unique = nodes.filter((n) => (seen.has(n.key) ? false : seen.add(n.key)));
  graph.setData(unique, links);
  if (S.selected) graph.select(S.selected);
  $("#share-btn").disabled = false;
}

async function explore(name, type, { keepUrl = false } = {}) {
  const seq = ++S.exploreSeq;
  closeSuggestions();
  setGraphStatus("loading", `Loading ${type} “${name}”…`);
  let data;
  try {
    data = await api.explore(name, type);
  } catch (err) {
    if (seq !== S.exploreSeq) return false;
    S.center = null; S.categories.clear(); S.selected = null;
    graph.clear();
    $("#share-btn").disabled = true;
    if (err instanceof ApiError && err.status === 404) setGraphStatus("empty", `No ${type} named “${name}” was found.`);
    else setGraphStatus("error", `Could not load “${name}”: ${err.message}`, () => explore(name, type, { keepUrl }));
    return false;
  }
  if (seq !== S.exploreSeq) return false;
  S.center = data.center;
  S.categories = new Map(data.categories.map((c) => [c.category, {
    ...c, expanded: false, loading: false, children: [], fetched: 0, total: c.count, hasMore: false,
  }]));
  S.selected = childKey(S.center.type, S.center.id);
  graph.clear();
  if (!data.categories.some((c) => c.count > 0)) setGraphStatus("empty", `“${S.center.name}” has no connections yet.`);
  else setGraphStatus("none");
  buildGraph();
  if (!keepUrl && location.search) history.replaceState(null, "", "/");
  showNode({ kind: "center", type: S.center.type, id: S.center.id, name: S.center.name, key: S.selected });
  setTimeout(() => graph.focus(S.selected), 0);
  return true;
}

async function fetchPage(cat, offset, limit) {
  const page = await api.expand(S.center.name, S.center.type, cat.category, offset, limit);
  cat.total = page.total;
  return page;
}

function appendChildren(cat, children) {
  const have = new Set(cat.children.map((c) => childKey(c.type, c.id)));
  for (const child of children) {
    const key = childKey(child.type, child.id);
    if (!have.has(key)) { have.add(key); cat.children.push(child); }
  }
}

async function expandCategory(cat, { more = false } = {}) {
  if (cat.loading) return;
  if (!more && cat.fetched > 0) { cat.expanded = true; buildGraph(); return; }
  cat.loading = true;
  cat.expanded = true;
  buildGraph();
  const centerAtStart = S.center;
  try {
    const page = await fetchPage(cat, cat.fetched, PAGE);
    if (S.center !== centerAtStart) return;
    cat.fetched += page.children.length;
    appendChildren(cat, page.children);
    cat.hasMore = page.has_more && cat.children.length < page.total;
    if (!page.children.length && !more) toast(`No ${cat.name.toLowerCase()} to show.`);
    await loadStatuses(page.children);
  } catch (err) {
    toast(`Could not load ${cat.name.toLowerCase()}: ${err.message}`);
    if (!more) cat.expanded = cat.children.length > 0;
  } finally {
    cat.loading = false;
    if (S.center === centerAtStart) buildGraph();
  }
}

function collapseCategory(cat) {
  cat.expanded = false;
  if (S.selected && S.selected !== childKey(S.center.type, S.center.id)) {
    const stillVisible = [...S.categories.values()].some((c) => c.expanded && c.children.some((ch) => childKey(ch.type, ch.id) === S.selected));
    if (!stillVisible) S.selected = null;
  }
  buildGraph();
}

function activate(node) {
  if (node.kind === "category") {
    const cat = S.categories.get(node.category);
    if (!cat) return;
    if (cat.expanded) collapseCategory(cat); else expandCategory(cat);
    showCategory(cat);
  } else if (node.kind === "more") {
    const cat = S.categories.get(node.category);
    if (cat) expandCategory(cat, { more: true }).then(() => graph.focus(`more:${cat.category}`));
  } else {
    S.selected = node.key;
    graph.select(node.key);
    showNode(node);
  }
}

function exploreNode(node) {
  if (node.kind !== "child" && node.kind !== "center") return;
  if (!EXPLORABLE.has(node.type)) { toast(`${TYPE_LABEL[node.type] || node.type}s cannot be the center of the graph.`); return; }
  if (node.kind === "center") return;
  explore(node.name, node.type);
}

// ------------------------------------------------------------------ details and trends
function showNode(node) {
  selectTab("details", { focus: false });
  const panel = $("#panel-details");
  renderDetails(panel, node, {
    status: node.type === "release" ? S.status.get(node.id) : null,
    isCenter: S.center && node.key === childKey(S.center.type, S.center.id),
    explore: (name, type) => explore(name, type),
    showTrends: () => { setTrendsTarget(node); selectTab("trends"); },
    signedIn: Boolean(S.user),
    onStatus: (id) => (S.user ? loadStatuses([{ id, type: "release" }]) : Promise.resolve()),
  });
  if (EXPLORABLE.has(node.type)) setTrendsTarget(node);
}

function showCategory(cat) {
  renderCategoryDetails($("#panel-details"), S.center, cat, {
    toggle: () => { if (cat.expanded) collapseCategory(cat); else expandCategory(cat); showCategory(cat); },
  });
  selectTab("details", { focus: false });
}

function setTrendsTarget(node) {
  S.trendsTarget = { name: node.name, type: node.type };
  if (!$("#panel-trends").hidden) loadTrends();
}

async function loadTrends() {
  const target = S.trendsTarget;
  const status = $("#trends-status");
  if (!target) { status.textContent = "Select an artist, label, genre or style."; return; }
  const key = `${target.type}:${target.name}`;
  if (S.trendsLoaded === key) return;
  $("#trends-title").textContent = `Releases per year · ${target.name}`;
  status.textContent = "Loading…";
  status.dataset.state = "loading";
  let data;
  try {
    data = await api.trends(target.name, target.type);
  } catch (err) {
    status.textContent = `Could not load trends: ${err.message}`;
    status.dataset.state = "error";
    return;
  }
  if (S.trendsTarget !== target) return;
  S.trendsLoaded = key;
  const points = data.data || [];
  if (S.chart) { S.chart.destroy(); S.chart = null; }
  if (!points.length) {
    status.textContent = `No dated releases for “${target.name}”.`;
    status.dataset.state = "empty";
    return;
  }
  // The api returns a sparse series; show the empty years between as zero bars.
  const byYear = new Map(points.map((p) => [p.year, p.count]));
  const years = [];
  for (let y = points[0].year; y <= points[points.length - 1].year; y++) years.push(y);
  const total = points.reduce((s, p) => s + p.count, 0);
  status.textContent = `${total} release${total === 1 ? "" : "s"} from ${years[0]} to ${years[years.length - 1]}.`;
  status.dataset.state = "ready";
  if (!window.Chart) return;
  S.chart = new window.Chart($("#trends-chart"), {
    type: "bar",
    data: { labels: years, datasets: [{ label: "Releases", data: years.map((y) => byYear.get(y) || 0), backgroundColor: "#f0b429" }] },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      scales: { y: { beginAtZero: true, ticks: { precision: 0, color: "#93a1af" }, grid: { color: "#2b3642" } },
        x: { ticks: { color: "#93a1af" }, grid: { display: false } } },
      plugins: { legend: { display: false } },
    },
  });
}

// ------------------------------------------------------------------ release status marks
async function loadStatuses(children) {
  if (!S.user) return;
  const ids = [...new Set(children.filter((c) => c.type === "release").map((c) => c.id))];
  if (!ids.length) return;
  try {
    for (let i = 0; i < ids.length; i += 100) {
      const data = await api.releaseStatus(ids.slice(i, i + 100));
      for (const [id, st] of Object.entries(data.status || {})) S.status.set(id, st);
    }
  } catch { /* marks are a bonus; the graph works without them */ }
}

async function refreshAllStatuses() {
  S.status.clear();
  const all = [...S.categories.values()].flatMap((c) => c.children);
  await loadStatuses(all);
  buildGraph();
}

// ------------------------------------------------------------------ snapshots
function snapshotPayload() {
  const c = S.center;
  const nodes = [{ id: c.id, type: c.type }];
  for (const cat of S.categories.values()) {
    if (!cat.expanded) continue;
    nodes.push({ id: cat.id, type: "category" });
    for (const ch of cat.children) nodes.push({ id: ch.id, type: ch.type });
  }
  return { nodes: nodes.slice(0, SNAPSHOT_MAX_NODES), center: { id: c.name, type: c.type }, truncated: nodes.length > SNAPSHOT_MAX_NODES };
}

async function share() {
  if (!S.center) return;
  const dialog = $("#share-dialog");
  const status = $("#share-status");
  const input = $("#share-link");
  input.value = "";
  status.textContent = "Saving…";
  status.className = "muted";
  dialog.showModal();
  const { nodes, center, truncated } = snapshotPayload();
  try {
    const saved = await api.saveSnapshot(nodes, center);
    input.value = `${location.origin}/?snapshot=${encodeURIComponent(saved.token)}`;
    const expires = saved.expires_at ? ` It stays available until ${new Date(saved.expires_at).toLocaleDateString()}.` : "";
    status.textContent = `Anyone with this link sees this graph.${expires}${truncated ? ` (Only the first ${SNAPSHOT_MAX_NODES} nodes are kept.)` : ""}`;
    input.focus();
    input.select();
  } catch (err) {
    status.textContent = `Could not save the snapshot: ${err.message}`;
    status.className = "error";
  }
}

async function copyShareLink() {
  const input = $("#share-link");
  if (!input.value) return;
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    $("#share-status").textContent = "Link copied to the clipboard.";
  } catch {
    $("#share-status").textContent = "Press Ctrl+C (⌘C) to copy the selected link.";
  }
}

async function restoreSnapshot(token) {
  setGraphStatus("loading", "Opening shared graph…");
  let snap;
  try {
    snap = await api.loadSnapshot(token);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) setGraphStatus("empty", "This shared link has expired or does not exist.");
    else setGraphStatus("error", `Could not open the shared graph: ${err.message}`, () => restoreSnapshot(token));
    return;
  }
  const ok = await explore(snap.center.id, snap.center.type, { keepUrl: true });
  if (!ok) return;
  const mapping = CATEGORY_OF[S.center.type] || {};
  const wanted = new Map(); // category -> Set of child keys
  const expandedCats = new Set();
  for (const n of snap.nodes) {
    if (n.type === "category") { expandedCats.add(String(n.id).replace(/^cat-/, "")); continue; }
    const category = mapping[n.type];
    if (!category || childKey(n.type, n.id) === childKey(S.center.type, S.center.id)) continue;
    if (!wanted.has(category)) wanted.set(category, new Set());
    wanted.get(category).add(childKey(n.type, n.id));
    expandedCats.add(category);
  }
  setGraphStatus("loading", "Restoring the shared graph…");
  const restored = [];
  for (const category of expandedCats) {
    const cat = S.categories.get(category);
    if (!cat || cat.count <= 0) continue;
    const keys = wanted.get(category);
    if (!keys) { await expandCategory(cat); continue; }
    cat.loading = true;
    try {
      for (let pageNo = 0, offset = 0; pageNo < RESTORE_MAX_PAGES; pageNo++) {
        const page = await fetchPage(cat, offset, RESTORE_PAGE);
        offset += page.children.length;
        appendChildren(cat, page.children.filter((ch) => keys.has(childKey(ch.type, ch.id))));
        if (!page.has_more || cat.children.length >= keys.size) break;
      }
      cat.expanded = true;
      cat.hasMore = cat.children.length < cat.total;
      restored.push(...cat.children);
    } catch (err) {
      toast(`Could not restore ${cat.name.toLowerCase()}: ${err.message}`);
    } finally {
      cat.loading = false;
    }
  }
  await loadStatuses(restored);
  setGraphStatus("none");
  buildGraph();
  setTimeout(() => graph.fit(), 900);
}

// ------------------------------------------------------------------ autocomplete
const search = { timer: null, controller: null, items: [], active: -1 };
const input = $("#search-input");
const list = $("#suggestions");

function closeSuggestions() {
  list.hidden = true;
  fill(list);
  input.setAttribute("aria-expanded", "false");
  input.removeAttribute("aria-activedescendant");
  search.items = [];
  search.active = -1;
}

function showNote(text) {
  fill(list, el("li", { class: "note", role: "option", "aria-disabled": "true", text }));
  list.hidden = false;
  input.setAttribute("aria-expanded", "true");
}

function renderSuggestions() {
  if (!search.items.length) { showNote("No matches"); return; }
  fill(list, ...search.items.map((item, i) => el("li", {
    id: `sugg-${i}`, role: "option", "aria-selected": String(i === search.active), "data-type": item.type, "data-name": item.name,
    onmousedown: (ev) => { ev.preventDefault(); choose(i); },
  }, el("span", { text: item.name }), el("span", { class: "kind", text: TYPE_LABEL[item.type] }))));
  list.hidden = false;
  input.setAttribute("aria-expanded", "true");
  if (search.active >= 0) input.setAttribute("aria-activedescendant", `sugg-${search.active}`);
  else input.removeAttribute("aria-activedescendant");
}

async function runAutocomplete(q) {
  search.controller?.abort();
  const controller = new AbortController();
  search.controller = controller;
  const type = $("#search-type").value;
  const types = type === "all" ? ["artist", "label", "genre", "style"] : [type];
  showNote("Searching…");
  const results = await Promise.allSettled(types.map((t) => api.autocomplete(q, t, controller.signal)
    .then((data) => (data.results || []).map((r) => ({ ...r, type: t })))));
  if (controller.signal.aborted) return;
  const failed = results.filter((r) => r.status === "rejected");
  const items = results.filter((r) => r.status === "fulfilled").flatMap((r) => r.value.slice(0, type === "all" ? 5 : 8));
  search.items = items;
  search.active = -1;
  if (!items.length && failed.length) showNote(`Search failed: ${failed[0].reason.message}`);
  else renderSuggestions();
}

function choose(i) {
  const item = search.items[i];
  if (!item) return;
  input.value = item.name;
  closeSuggestions();
  explore(item.name, item.type);
}

input.addEventListener("input", () => {
  clearTimeout(search.timer);
  const q = input.value.trim();
  if (q.length < 2) { search.controller?.abort(); closeSuggestions(); return; }
  search.timer = setTimeout(() => runAutocomplete(q).catch(() => {}), 250);
});
input.addEventListener("keydown", (ev) => {
  if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
    if (!search.items.length) return;
    ev.preventDefault();
    const n = search.items.length;
    search.active = ev.key === "ArrowDown" ? (search.active + 1) % n : (search.active - 1 + n) % n;
    renderSuggestions();
  } else if (ev.key === "Escape") {
    closeSuggestions();
  }
});
input.addEventListener("blur", () => setTimeout(closeSuggestions, 150));
$("#search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  clearTimeout(search.timer);
  if (search.active >= 0) { choose(search.active); return; }
  const q = input.value.trim();
  if (q.length < 1) return;
  const type = $("#search-type").value;
  const exact = search.items.find((it) => it.name.toLowerCase() === q.toLowerCase());
  if (exact) { choose(search.items.indexOf(exact)); return; }
  if (type === "all" && search.items.length) { choose(0); return; }
  closeSuggestions();
  explore(q, type === "all" ? "artist" : type);
});
$("#search-type").addEventListener("change", () => { if (input.value.trim().length >= 2) runAutocomplete(input.value.trim()).catch(() => {}); });

// ------------------------------------------------------------------ tabs
function selectTab(name, { focus = true } = {}) {
  for (const t of ["details", "trends", "me"]) {
    const tab = $(`#tab-${t}`);
    const on = t === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`#panel-${t}`).hidden = !on;
    if (on && focus) tab.focus();
  }
  if (name === "trends") loadTrends();
  if (name === "me") me.show();
}
function wireTablist(container, onSelect) {
  const tabs = [...container.querySelectorAll('[role="tab"]')];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => onSelect(tab));
    tab.addEventListener("keydown", (ev) => {
      let j = null;
      if (ev.key === "ArrowRight") j = (i + 1) % tabs.length;
      else if (ev.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
      else if (ev.key === "Home") j = 0;
      else if (ev.key === "End") j = tabs.length - 1;
      if (j !== null) { ev.preventDefault(); onSelect(tabs[j]); tabs[j].focus(); }
    });
  });
}
wireTablist($(".tabs"), (tab) => selectTab(tab.id.replace("tab-", ""), { focus: false }));

// ------------------------------------------------------------------ account
const me = new Me({
  showRelease: (r) => showNode({ kind: "child", type: "release", id: r.id, name: r.title || r.id, key: childKey("release", r.id) }),
  onSynced: () => refreshAllStatuses(),
});
wireTablist($(".subtabs"), (tab) => me.setView(tab.dataset.view));

const authDialog = $("#auth-dialog");
let authMode = "login";
function setAuthMode(mode) {
  authMode = mode;
  $("#auth-title").textContent = mode === "login" ? "Sign in" : "Create an account";
  $("#auth-submit").textContent = mode === "login" ? "Sign in" : "Register";
  $("#auth-switch").textContent = mode === "login" ? "Create an account instead" : "I already have an account";
  $("#auth-password").autocomplete = mode === "login" ? "current-password" : "new-password";
  $("#auth-error").hidden = true;
}
function openAuth() { setAuthMode("login"); authDialog.showModal(); $("#auth-email").focus(); }
$("#signin-btn").addEventListener("click", openAuth);
for (const b of document.querySelectorAll("[data-open-signin]")) b.addEventListener("click", openAuth);
$("#auth-switch").addEventListener("click", () => setAuthMode(authMode === "login" ? "register" : "login"));
$("#auth-cancel").addEventListener("click", () => authDialog.close());
$("#auth-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const email = $("#auth-email").value.trim();
  const password = $("#auth-password").value;
  const error = $("#auth-error");
  const submit = $("#auth-submit");
  error.hidden = true;
  submit.disabled = true;
  try {
    if (authMode === "register") await api.register(email, password);
    const token = await api.login(email, password);
    auth.token = token.access_token;
    await loadUser();
    authDialog.close();
    $("#auth-password").value = "";
    toast(authMode === "register" ? "Account created; you are signed in." : "Signed in.");
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  } finally {
    submit.disabled = false;
  }
});
$("#signout-btn").addEventListener("click", async () => {
  try { await api.logout(); } catch { /* the token is dropped locally either way */ }
  auth.token = null;
  setUser(null);
  toast("Signed out.");
});

function setUser(user) {
  S.user = user;
  $("#signin-btn").hidden = Boolean(user);
  $("#user-menu").hidden = !user;
  $("#user-email").textContent = user ? user.email : "";
  me.setUser(user);
  if (!user) { S.status.clear(); buildGraphIfAny(); }
  else refreshAllStatuses();
}
function buildGraphIfAny() { if (S.center) buildGraph(); }

async function loadUser() {
  if (!auth.token) { setUser(null); return; }
  try {
    setUser(await api.me());
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) auth.token = null;
    setUser(null);
  }
}

// ------------------------------------------------------------------ toolbar, keyboard, start
$("#zoom-in").addEventListener("click", () => graph.zoomBy(1.3));
$("#zoom-out").addEventListener("click", () => graph.zoomBy(1 / 1.3));
$("#zoom-fit").addEventListener("click", () => graph.fit());
$("#collapse-all").addEventListener("click", () => { for (const c of S.categories.values()) c.expanded = false; buildGraphIfAny(); });
$("#share-btn").addEventListener("click", share);
$("#share-copy").addEventListener("click", copyShareLink);
$("#share-close").addEventListener("click", () => $("#share-dialog").close());
document.addEventListener("keydown", (ev) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName) || document.querySelector("dialog[open]");
  if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "/") { ev.preventDefault(); input.focus(); }
  else if (ev.key === "+" || ev.key === "=") graph.zoomBy(1.3);
  else if (ev.key === "-") graph.zoomBy(1 / 1.3);
  else if (ev.key === "0") graph.fit();
});
window.addEventListener("resize", () => { if (S.center) graph.fit(); });

async function start() {
  await loadUser();
  const params = new URLSearchParams(location.search);
  const token = params.get("snapshot");
  if (token) await restoreSnapshot(token);
  else if (params.get("name")) await explore(params.get("name"), params.get("type") || "artist", { keepUrl: true });
}
start();
