// The detail panel: one renderer per node type, with the fields /api/node/{id} returns and a
// link to the same entity on Discogs.
import { api } from "./api.js";
import { el, fill } from "./util.js";

const EXPLORABLE = new Set(["artist", "label", "genre", "style"]);
const TYPE_LABEL = { artist: "Artist", label: "Label", genre: "Genre", style: "Style", release: "Release", master: "Master" };
// list field -> [heading, type of its items]
const LISTS = [
  ["artists", "Artists", "artist"], ["labels", "Labels", "label"], ["groups", "Groups", "artist"],
  ["members", "Members", "artist"], ["aliases", "Aliases", "artist"], ["parent_labels", "Parent labels", "label"],
  ["sublabels", "Sublabels", "label"], ["genres", "Genres", "genre"], ["styles", "Styles", "style"],
];
const FACTS = [
  ["year", "Year"], ["released", "Released"], ["country", "Country"], ["realname", "Real name"],
  ["release_count", "Releases"], ["artist_count", "Artists"],
];

export function discogsUrl(type, id, name) {
  const slug = (s) => encodeURIComponent(String(s).toLowerCase()).replace(/%20/g, "+");
  switch (type) {
    case "artist": return `https://www.discogs.com/artist/${encodeURIComponent(id)}`;
    case "label": return `https://www.discogs.com/label/${encodeURIComponent(id)}`;
    case "release": return `https://www.discogs.com/release/${encodeURIComponent(id)}`;
    case "master": return `https://www.discogs.com/master/${encodeURIComponent(id)}`;
    case "genre": return `https://www.discogs.com/genre/${slug(name)}`;
    case "style": return `https://www.discogs.com/style/${slug(name)}`;
    default: return null;
  }
}

let renderSeq = 0;

export async function renderDetails(panel, node, opts) {
  const seq = ++renderSeq;
  fill(panel,
    el("div", { class: "detail-head" }, el("h2", { text: node.name }), el("span", { class: "type-chip", text: TYPE_LABEL[node.type] || node.type })),
    el("p", { class: "muted", role: "status", "data-state": "loading", text: "Loading details…" }),
  );
  panel.dataset.state = "loading";
  let data;
  try {
    if (opts.signedIn && node.type === "release") await opts.onStatus(node.id);
    data = await api.node(node.id, node.type);
  } catch (err) {
    if (seq !== renderSeq) return;
    panel.dataset.state = "error";
    fill(panel,
      el("div", { class: "detail-head" }, el("h2", { text: node.name }), el("span", { class: "type-chip", text: TYPE_LABEL[node.type] || node.type })),
      el("p", { class: "error", role: "alert", text: `Could not load details: ${err.message}` }),
      el("button", { class: "btn", type: "button", text: "Try again", onclick: () => renderDetails(panel, node, opts) }),
    );
    return;
  }
  if (seq !== renderSeq) return;
  panel.dataset.state = "ready";
  panel.dataset.type = node.type;
  panel.dataset.id = data.id;

  const facts = FACTS.filter(([k]) => data[k] !== null && data[k] !== undefined && data[k] !== "")
    .map(([k, label]) => [el("dt", { text: label }), el("dd", { "data-field": k, text: String(data[k]) })]);
  const status = opts.status;
  const badges = node.type === "release" && status && (status.in_collection || status.in_wantlist)
    ? el("div", { class: "badges" },
      status.in_collection ? el("span", { class: "badge collection", "data-testid": "badge-collection", text: "In your collection" }) : null,
      status.in_wantlist ? el("span", { class: "badge wantlist", "data-testid": "badge-wantlist", text: "In your wantlist" }) : null)
    : null;
  const lists = LISTS.filter(([k]) => Array.isArray(data[k]) && data[k].length).map(([k, heading, itemType]) => [
    el("h3", { text: `${heading} (${data[k].length})` }),
    el("ul", { class: "chips", "data-field": k }, data[k].slice(0, 60).map((name) => el("li", {},
      el("button", { type: "button", title: `Explore ${TYPE_LABEL[itemType].toLowerCase()} ${name}`, text: name, onclick: () => opts.explore(name, itemType) })))),
  ]);
  const url = discogsUrl(node.type, data.id, data.name);
  const actions = el("div", { class: "detail-actions" },
    EXPLORABLE.has(node.type) && !opts.isCenter
      ? el("button", { class: "btn primary", type: "button", "data-testid": "detail-explore", text: "Explore from here", onclick: () => opts.explore(data.name, node.type) }) : null,
    EXPLORABLE.has(node.type)
      ? el("button", { class: "btn", type: "button", "data-testid": "detail-trends", text: "Releases per year", onclick: opts.showTrends }) : null,
    url ? el("a", { class: "btn", href: url, target: "_blank", rel: "noopener noreferrer", "data-testid": "discogs-link", text: "Open on Discogs ↗" }) : null);

  fill(panel,
    el("div", { class: "detail-head" }, el("h2", { "data-testid": "detail-name", text: data.name }), el("span", { class: "type-chip", text: TYPE_LABEL[node.type] || node.type })),
    badges,
    facts.length ? el("dl", { class: "facts" }, facts) : null,
    actions,
    data.profile ? [el("h3", { text: "Profile" }), el("p", { class: "profile", text: data.profile })] : null,
    lists,
  );
}

export function renderCategoryDetails(panel, center, cat, { toggle }) {
  renderSeq++;
  panel.dataset.state = "ready";
  panel.dataset.type = "category";
  fill(panel,
    el("div", { class: "detail-head" }, el("h2", { text: `${cat.name}` }), el("span", { class: "type-chip", text: "Category" })),
    el("p", {}, `${cat.count} ${cat.name.toLowerCase()} connected to ${center.name}.`,
      cat.children.length ? ` ${cat.children.length} shown.` : ""),
    el("div", { class: "detail-actions" },
      el("button", { class: "btn", type: "button", text: cat.expanded ? "Collapse" : "Expand", onclick: toggle })),
  );
}
