// Same-origin calls to the api. Errors come back in one envelope {"error","code","detail"};
// `ApiError.message` is the human message from it.
const TOKEN_KEY = "discogsography.token";

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const auth = {
  get token() { try { return localStorage.getItem(TOKEN_KEY); } catch { return null; } },
  set token(value) {
    try { if (value) localStorage.setItem(TOKEN_KEY, value); else localStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
  },
};

function messageFrom(body, status) {
  if (body && typeof body === "object") {
    if (typeof body.error === "string") return body.error;
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail) && body.detail.length) return body.detail.map((d) => d.msg).join("; ");
  }
  if (status === 0) return "The server cannot be reached.";
  return `Request failed (HTTP ${status}).`;
}

export async function request(path, { method = "GET", body, params, signal, withAuth = true } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = withAuth ? auth.token : null;
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, messageFrom(null, 0), "network");
  }
  let data = null;
  const text = await response.text();
  if (text) { try { data = JSON.parse(text); } catch { data = null; } }
  if (!response.ok) throw new ApiError(response.status, messageFrom(data, response.status), data?.code);
  return data;
}

export const api = {
  autocomplete: (q, type, signal) => request("/api/autocomplete", { params: { q, type, limit: 8 }, signal, withAuth: false }),
  explore: (name, type) => request("/api/explore", { params: { name, type }, withAuth: false }),
  expand: (name, type, category, offset, limit) =>
    request("/api/expand", { params: { node_id: name, type, category, offset, limit }, withAuth: false }),
  node: (id, type) => request(`/api/node/${encodeURIComponent(id)}`, { params: { type }, withAuth: false }),
  trends: (name, type) => request("/api/trends", { params: { name, type }, withAuth: false }),
  saveSnapshot: (nodes, center) => request("/api/snapshot", { method: "POST", body: { nodes, center }, withAuth: false }),
  loadSnapshot: (token) => request(`/api/snapshot/${encodeURIComponent(token)}`, { withAuth: false }),
  register: (email, password) => request("/api/auth/register", { method: "POST", body: { email, password }, withAuth: false }),
  login: (email, password) => request("/api/auth/login", { method: "POST", body: { email, password }, withAuth: false }),
  logout: () => request("/api/auth/logout", { method: "POST" }),
  me: () => request("/api/auth/me"),
  discogsStatus: () => request("/api/oauth/status/discogs"),
  discogsAuthorize: () => request("/api/oauth/authorize/discogs"),
  discogsVerify: (state, verifier) => request("/api/oauth/verify/discogs", { method: "POST", body: { state, oauth_verifier: verifier } }),
  discogsRevoke: () => request("/api/oauth/revoke/discogs", { method: "DELETE" }),
  startSync: () => request("/api/sync", { method: "POST" }),
  syncStatus: () => request("/api/sync/status"),
  collection: (offset, limit) => request("/api/user/collection", { params: { offset, limit } }),
  wantlist: (offset, limit) => request("/api/user/wantlist", { params: { offset, limit } }),
  recommendations: (limit) => request("/api/user/recommendations", { params: { limit } }),
  stats: () => request("/api/user/collection/stats"),
  releaseStatus: (ids) => request("/api/user/status", { params: { ids: ids.join(",") } }),
};
