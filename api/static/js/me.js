// The signed-in panel: Discogs link (out-of-band PIN flow), sync with live status, and the
// collection / wantlist / recommendations / stats views.
import { api } from "./api.js";
import { el, fill, toast } from "./util.js";

const $ = (sel) => document.querySelector(sel);
const PAGE = 20;
const ACTIVE = new Set(["queued", "running", "started", "already_running", "pending"]);
const POLL_MS = 1500;

export class Me {
  constructor({ showRelease, onSynced }) {
    this.user = null;
    this.view = "collection";
    this.offset = 0;
    this.showRelease = showRelease;
    this.onSynced = onSynced;
    this.oauthState = null;
    this.pollTimer = null;
    this.lastSyncStatus = null;
    this.visible = false;

    $("#discogs-connect").addEventListener("click", () => this.connect());
    $("#pin-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.verify(); });
    $("#discogs-revoke").addEventListener("click", () => this.revoke());
    $("#sync-btn").addEventListener("click", () => this.startSync());
  }

  setUser(user) {
    this.user = user;
    clearTimeout(this.pollTimer);
    this.lastSyncStatus = null;
    $("#me-signed-out").hidden = Boolean(user);
    $("#me-signed-in").hidden = !user;
    $("#tab-me").textContent = user ? "My records" : "My records";
    if (user) {
      this.refreshDiscogs();
      this.pollSync(false);
      if (this.visible) this.setView(this.view);
    } else {
      fill($("#me-view"));
    }
  }

  show() {
    this.visible = true;
    if (this.user) this.setView(this.view);
  }

  // ---------------------------------------------------------------- Discogs link
  showDiscogsError(text) {
    const e = $("#discogs-error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  async refreshDiscogs() {
    const status = $("#discogs-status");
    status.textContent = "Checking your Discogs link…";
    this.showDiscogsError(null);
    try {
      const data = await api.discogsStatus();
      if (data.connected) {
        status.textContent = `Linked to Discogs as ${data.discogs_username || "(unknown user)"}.`;
        status.dataset.state = "linked";
        $("#discogs-link").hidden = true;
        $("#discogs-linked").hidden = false;
      } else {
        status.textContent = "Your Discogs account is not linked yet.";
        status.dataset.state = "unlinked";
        $("#discogs-link").hidden = false;
        $("#pin-form").hidden = true;
        $("#discogs-linked").hidden = true;
      }
    } catch (err) {
      status.textContent = "Discogs link status unavailable.";
      status.dataset.state = "error";
      this.showDiscogsError(err.message);
    }
  }

  async connect() {
    this.showDiscogsError(null);
    const button = $("#discogs-connect");
    button.disabled = true;
    try {
      const data = await api.discogsAuthorize();
      this.oauthState = data.state;
      const link = $("#authorize-link");
      link.href = data.authorize_url;
      $("#pin-form").hidden = false;
      $("#pin-input").value = "";
      link.focus();
    } catch (err) {
      this.showDiscogsError(`Could not start linking: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  async verify() {
    const pin = $("#pin-input").value.trim();
    if (!pin || !this.oauthState) return;
    this.showDiscogsError(null);
    try {
      const data = await api.discogsVerify(this.oauthState, pin);
      this.oauthState = null;
      toast(`Discogs linked as ${data.discogs_username || "you"}.`);
      await this.refreshDiscogs();
      $("#sync-btn").focus();
    } catch (err) {
      this.showDiscogsError(`Verification failed: ${err.message}`);
    }
  }

  async revoke() {
    try {
      await api.discogsRevoke();
      toast("Discogs unlinked. Synced records stay until the next sync.");
    } catch (err) {
      this.showDiscogsError(err.message);
    }
    await this.refreshDiscogs();
  }

  // ---------------------------------------------------------------- sync
  renderSync(sync) {
    const box = $("#sync-status");
    const button = $("#sync-btn");
    if (!sync) { box.textContent = "Not synced yet."; box.dataset.state = "none"; button.disabled = false; return; }
    const status = sync.status;
    box.dataset.state = status;
    const items = sync.items_synced ?? null;
    const when = sync.completed_at || sync.started_at;
    const at = when ? new Date(when).toLocaleString() : "";
    if (ACTIVE.has(status)) {
      box.textContent = `Sync ${status === "queued" || status === "pending" ? "queued" : "running"}…${items ? ` ${items} items so far.` : ""}`;
      button.disabled = true;
    } else if (status === "completed") {
      box.textContent = `Last sync completed ${at}: ${items ?? 0} items.`;
      button.disabled = false;
    } else if (status === "failed") {
      box.textContent = `Last sync failed ${at}: ${sync.error || "unknown error"}.`;
      button.disabled = false;
    } else {
      box.textContent = `Sync ${status}.`;
      button.disabled = false;
    }
  }

  async startSync() {
    const button = $("#sync-btn");
    button.disabled = true;
    this.showDiscogsError(null);
    try {
      const data = await api.startSync();
      this.renderSync({ status: data.status === "already_running" ? "running" : "queued" });
      this.pollSync(true);
    } catch (err) {
      button.disabled = false;
      this.showDiscogsError(`Could not start a sync: ${err.message}`);
    }
  }

  async pollSync(expectChange) {
    clearTimeout(this.pollTimer);
    if (!this.user) return;
    let latest = null;
    try {
      const data = await api.syncStatus();
      latest = (data.syncs || [])[0] || null;
    } catch (err) {
      $("#sync-status").textContent = `Sync status unavailable: ${err.message}`;
      return;
    }
    if (!this.user) return;
    this.renderSync(latest);
    const previous = this.lastSyncStatus;
    this.lastSyncStatus = latest?.status || null;
    if (latest && ACTIVE.has(latest.status)) {
      this.pollTimer = setTimeout(() => this.pollSync(true), POLL_MS);
    } else if (latest && expectChange && (previous === null || ACTIVE.has(previous))) {
      if (latest.status === "completed") toast(`Sync completed: ${latest.items_synced ?? 0} items.`);
      this.onSynced();
      if (this.visible) this.setView(this.view);
    }
  }

  // ---------------------------------------------------------------- my records views
  setView(view) {
    if (view !== this.view) this.offset = 0;
    this.view = view;
    for (const tab of document.querySelectorAll(".subtabs [role=tab]")) {
      const on = tab.dataset.view === view;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
    }
    this.load();
  }

  async load() {
    const box = $("#me-view");
    if (!this.user) return;
    const view = this.view;
    box.dataset.state = "loading";
    fill(box, el("p", { class: "muted", text: "Loading…" }));
    try {
      if (view === "collection" || view === "wantlist") {
        const data = view === "collection" ? await api.collection(this.offset, PAGE) : await api.wantlist(this.offset, PAGE);
        if (this.view !== view) return;
        this.renderReleases(box, view, data);
      } else if (view === "recommendations") {
        const data = await api.recommendations(20);
        if (this.view !== view) return;
        this.renderRecommendations(box, data);
      } else {
        const data = await api.stats();
        if (this.view !== view) return;
        this.renderStats(box, data);
      }
      box.dataset.state = "ready";
    } catch (err) {
      if (this.view !== view) return;
      box.dataset.state = "error";
      fill(box, el("p", { class: "error", role: "alert", text: `Could not load: ${err.message}` }),
        el("button", { class: "btn", type: "button", text: "Try again", onclick: () => this.load() }));
    }
  }

  releaseTitle(r) {
    return el("button", { class: "linkish", type: "button", text: r.title || `Release ${r.id}`, onclick: () => this.showRelease(r) });
  }

  renderReleases(box, view, data) {
    const releases = data.releases || [];
    if (!releases.length) {
      box.dataset.count = "0";
      fill(box, el("p", { class: "muted", "data-testid": "me-empty",
        text: view === "collection" ? "Your collection is empty here. Link Discogs and sync to import it." : "Your wantlist is empty here. Link Discogs and sync to import it." }));
      return;
    }
    box.dataset.count = String(data.total);
    const from = data.offset + 1;
    const to = data.offset + releases.length;
    fill(box,
      el("p", { class: "muted", text: `${data.total} ${view === "collection" ? "items in your collection" : "releases wanted"}` }),
      el("table", { "data-testid": `${view}-table` },
        el("thead", {}, el("tr", {}, ["Title", "Artist", "Label", "Year", "Rating"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, releases.map((r) => el("tr", { "data-release-id": r.id },
          el("td", {}, this.releaseTitle(r)), el("td", { text: r.artist || "–" }), el("td", { text: r.label || "–" }),
          el("td", { text: r.year ?? "–" }), el("td", { text: r.rating ? "★".repeat(r.rating) : "–" }))))),
      el("div", { class: "pager" },
        el("button", { class: "btn small", type: "button", text: "← Previous", disabled: data.offset <= 0,
          onclick: () => { this.offset = Math.max(0, this.offset - PAGE); this.load(); } }),
        el("span", { class: "muted", text: `${from}–${to} of ${data.total}` }),
        el("button", { class: "btn small", type: "button", text: "Next →", disabled: !data.has_more,
          onclick: () => { this.offset += PAGE; this.load(); } })),
    );
  }

  renderRecommendations(box, data) {
    const recs = data.recommendations || [];
    if (!recs.length) {
      fill(box, el("p", { class: "muted", "data-testid": "me-empty", text: "No recommendations yet: sync a collection first." }));
      return;
    }
    fill(box, el("table", { "data-testid": "recommendations-table" },
      el("thead", {}, el("tr", {}, ["Title", "Artist", "Genres", "Score"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, recs.map((r) => el("tr", { "data-release-id": r.id },
        el("td", {}, this.releaseTitle(r)), el("td", { text: r.artist || "–" }),
        el("td", { text: (r.genres || []).join(", ") || "–" }), el("td", { text: r.score }))))));
  }

  renderStats(box, data) {
    if (!data.total) {
      fill(box, el("p", { class: "muted", "data-testid": "me-empty", text: "No statistics yet: sync a collection first." }));
      return;
    }
    const bars = (rows, label) => {
      const max = Math.max(1, ...rows.map((r) => r.count));
      return el("ul", { class: "bars" }, rows.map((r) => el("li", {},
        el("span", { text: label(r) }), el("span", { class: "bar", style: `width:${Math.max(2, (100 * r.count) / max)}%` }),
        el("span", { class: "n", text: r.count }))));
    };
    fill(box,
      el("p", { "data-testid": "stats-total", text: `${data.total} items in your collection.` }),
      el("h3", { text: "By genre" }), data.by_genre.length ? bars(data.by_genre, (r) => r.name) : el("p", { class: "muted", text: "–" }),
      el("h3", { text: "By decade" }), data.by_decade.length ? bars(data.by_decade, (r) => `${r.decade}s`) : el("p", { class: "muted", text: "–" }),
      el("h3", { text: "By label" }), data.by_label.length ? bars(data.by_label, (r) => r.name) : el("p", { class: "muted", text: "–" }),
    );
  }
}
