/**
 * The page's client for the gdc HTTP API: every request carries the API key when one is set,
 * and every refusal becomes an ApiError holding the API's own words.
 */

const KEY_STORAGE = "gdc.apiKey";
const POLL_MS = 300;
export const FINAL_STATUSES = new Set(["succeeded", "failed", "canceled"]);

export const apiKey = {
  get: () => localStorage.getItem(KEY_STORAGE) ?? "",
  set: (key) => (key ? localStorage.setItem(KEY_STORAGE, key) : localStorage.removeItem(KEY_STORAGE)),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** FastAPI's `detail` as one sentence: a string as is, pydantic's list of errors as "field: message". */
function describe(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((error) => [error.loc?.slice(1).join("."), error.msg].filter(Boolean).join(": ")).join("; ");
  }
  return JSON.stringify(detail);
}

/** fetch() with the API key; resolves to the Response when it is 2xx, else throws ApiError. */
export async function request(url, { method = "GET", body } = {}) {
  const headers = apiKey.get() ? { "X-API-Key": apiKey.get() } : {};
  let response;
  try {
    response = await fetch(url, { method, body, headers });
  } catch (error) {
    throw new ApiError(0, `the service cannot be reached (${error.message})`);
  }
  if (response.ok) return response;
  // The API always answers errors as JSON {"detail"}; anything else (a proxy's error page) gets its status line.
  const json = response.headers.get("content-type")?.includes("json");
  const detail = json ? (await response.json()).detail : null;
  throw new ApiError(response.status, detail ? describe(detail) : `HTTP ${response.status} ${response.statusText}`);
}

export async function getJson(url) {
  return (await request(url)).json();
}

/**
 * Poll a job until it ends, reporting each state to `onUpdate`.
 *
 * `stopped()` is checked between polls, so a canceled job stops being followed at once.
 * Returns the last job body seen, or null when stopped.
 */
export async function follow(job, onUpdate, stopped) {
  while (!FINAL_STATUSES.has(job.status)) {
    onUpdate(job);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    if (stopped()) return null;
    job = await getJson(job.links.self);
  }
  onUpdate(job);
  return job;
}
