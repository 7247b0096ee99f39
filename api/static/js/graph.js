// Force-directed graph view (d3, loaded as the global `d3` from /vendor/d3.min.js).
// It only draws: the controller in app.js owns the data and passes callbacks for activation.
const RADIUS = { center: 24, category: 17, child: 9, more: 11 };
const DISTANCE = { category: 95, child: 70, more: 70 };

export class GraphView {
  constructor(svgElement, { onActivate, onExplore }) {
    const d3 = window.d3;
    this.d3 = d3;
    this.svgElement = svgElement;
    this.svg = d3.select(svgElement);
    this.root = this.svg.append("g").attr("class", "zoom-layer");
    this.linkLayer = this.root.append("g").attr("class", "links");
    this.nodeLayer = this.root.append("g").attr("class", "nodes");
    this.onActivate = onActivate;
    this.onExplore = onExplore;
    this.nodes = [];
    this.links = [];
    this.selectedKey = null;
    this.placed = false;

    this.zoom = d3.zoom().scaleExtent([0.15, 5]).on("zoom", (event) => this.root.attr("transform", event.transform));
    this.svg.call(this.zoom).on("dblclick.zoom", null);

    this.simulation = d3.forceSimulation()
      .force("link", d3.forceLink().id((d) => d.key).distance((l) => l.distance).strength(0.8))
      .force("charge", d3.forceManyBody().strength((d) => (d.kind === "center" ? -900 : d.kind === "category" ? -420 : -140)))
      .force("collide", d3.forceCollide((d) => d.r + 8))
      .force("x", d3.forceX(0).strength(0.03))
      .force("y", d3.forceY(0).strength(0.03))
      .on("tick", () => this.tick());

    this.drag = d3.drag()
      .clickDistance(4)
      .on("start", (event, d) => {
        if (!event.active) this.simulation.alphaTarget(0.25).restart();
        d.fx = d.x; d.fy = d.y;
      })
      .on("drag", (event, d) => { d.fx = event.x; d.fy = event.y; })
      .on("end", (event, d) => {
        if (!event.active) this.simulation.alphaTarget(0);
        if (d.kind !== "center") { d.fx = null; d.fy = null; }
      });
  }

  size() {
    const box = this.svgElement.getBoundingClientRect();
    return { width: box.width || 800, height: box.height || 600 };
  }

  setData(nodes, links) {
    const previous = new Map(this.nodes.map((n) => [n.key, n]));
    const byKey = new Map();
    for (const node of nodes) {
      const old = previous.get(node.key);
      const merged = old ? Object.assign(old, node) : { ...node };
      merged.r = RADIUS[merged.kind] || 9;
      if (!old) {
        const parent = merged.parentKey ? byKey.get(merged.parentKey) || previous.get(merged.parentKey) : null;
        const jitter = () => (Math.random() - 0.5) * 40;
        merged.x = (parent?.x ?? 0) + jitter();
        merged.y = (parent?.y ?? 0) + jitter();
      }
      if (merged.kind === "center") { merged.fx = 0; merged.fy = 0; }
      byKey.set(merged.key, merged);
    }
    this.nodes = [...byKey.values()];
    const siblings = new Map();
    for (const l of links) siblings.set(l.source, (siblings.get(l.source) || 0) + 1);
    this.links = links
      .filter((l) => byKey.has(l.source) && byKey.has(l.target))
      .map((l) => {
        const kind = byKey.get(l.target).kind;
        const spread = kind === "category" ? 0 : 7 * Math.sqrt(siblings.get(l.source) || 1);
        return { source: l.source, target: l.target, distance: (DISTANCE[kind] || 70) + spread };
      });
    // Many children: labels only on hover, focus or selection, so the graph stays readable.
    this.svg.classed("dense", this.nodes.filter((n) => n.kind === "child").length > 40);
    this.render();
    this.simulation.nodes(this.nodes);
    this.simulation.force("link").links(this.links);
    this.simulation.alpha(previous.size ? 0.5 : 1).restart();
    if (!this.placed && this.nodes.length) {
      this.placed = true;
      const { width, height } = this.size();
      this.svg.call(this.zoom.transform, this.d3.zoomIdentity.translate(width / 2, height / 2));
    }
  }

  clear() {
    this.nodes = [];
    this.links = [];
    this.placed = false;
    this.selectedKey = null;
    this.simulation.nodes([]);
    this.simulation.force("link").links([]);
    this.render();
  }

  render() {
    this.linkLayer.selectAll("line").data(this.links, (l) => `${l.source.key || l.source}>${l.target.key || l.target}`)
      .join("line").attr("class", "link");
    const view = this;
    const nodes = this.nodeLayer.selectAll("g.node").data(this.nodes, (d) => d.key).join((enter) => {
      const g = enter.append("g").attr("tabindex", 0).attr("role", "button");
      g.append("title");
      g.append("circle").attr("class", "halo");
      g.append("circle").attr("class", "mark");
      g.append("circle").attr("class", "body");
      g.append("text").attr("text-anchor", "middle");
      g.call(view.drag);
      g.on("click", (event, d) => { event.stopPropagation(); view.onActivate(d); });
      g.on("dblclick", (event, d) => { event.stopPropagation(); if (d.kind === "child" || d.kind === "center") view.onExplore(d); });
      g.on("keydown", (event, d) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); view.onActivate(d); }
        else if (event.key === "e" || event.key === "E") { event.preventDefault(); view.onExplore(d); }
      });
      return g;
    });
    nodes
      .attr("class", (d) => [
        "node", `k-${d.kind}`, `t-${d.type}`, d.expanded ? "expanded" : "", d.inCollection ? "in-collection" : "",
        d.inWantlist ? "in-wantlist" : "", d.key === view.selectedKey ? "selected" : "",
      ].filter(Boolean).join(" "))
      .attr("data-key", (d) => d.key)
      .attr("data-kind", (d) => d.kind)
      .attr("data-type", (d) => d.type)
      .attr("data-id", (d) => d.id)
      .attr("data-name", (d) => d.name)
      .attr("aria-label", (d) => d.aria || d.label)
      .attr("aria-expanded", (d) => (d.kind === "category" ? String(Boolean(d.expanded)) : null))
      .attr("aria-pressed", (d) => (d.kind === "child" || d.kind === "center" ? String(d.key === view.selectedKey) : null));
    nodes.select("title").text((d) => d.aria || d.label);
    nodes.select("circle.body").attr("r", (d) => d.r);
    nodes.select("circle.halo").attr("r", (d) => d.r + 6);
    nodes.select("circle.mark").attr("r", (d) => d.r + 3);
    nodes.select("text").attr("dy", (d) => (d.kind === "more" ? 4 : d.r + 13)).text((d) => d.label);
    this.tick();
  }

  tick() {
    this.linkLayer.selectAll("line")
      .attr("x1", (l) => l.source.x ?? 0).attr("y1", (l) => l.source.y ?? 0)
      .attr("x2", (l) => l.target.x ?? 0).attr("y2", (l) => l.target.y ?? 0);
    this.nodeLayer.selectAll("g.node").attr("transform", (d) => `translate(${d.x ?? 0},${d.y ?? 0})`);
  }

  select(key) {
    this.selectedKey = key;
    this.nodeLayer.selectAll("g.node")
      .classed("selected", (d) => d.key === key)
      .attr("aria-pressed", (d) => (d.kind === "child" || d.kind === "center" ? String(d.key === key) : null));
  }

  focus(key) {
    const el = this.svgElement.querySelector(`g.node[data-key="${CSS.escape(key)}"]`);
    if (el) el.focus();
  }

  zoomBy(factor) { this.svg.transition().duration(200).call(this.zoom.scaleBy, factor); }

  fit() {
    if (!this.nodes.length) return;
    const xs = this.nodes.map((n) => n.x), ys = this.nodes.map((n) => n.y);
    const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const { width, height } = this.size();
    const scale = Math.max(0.15, Math.min(2, 0.85 / Math.max((maxX - minX + 80) / width, (maxY - minY + 80) / height)));
    const t = this.d3.zoomIdentity.translate(width / 2, height / 2).scale(scale).translate(-(minX + maxX) / 2, -(minY + maxY) / 2);
    this.svg.transition().duration(300).call(this.zoom.transform, t);
  }
}
