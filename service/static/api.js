/**
 * The page's client for the gdc HTTP API: every request carries the API key when one is set,
 * and every refusal becomes an ApiError holding the API's own words.
 */

const KEY_STORAGE = "gdc.apiKey";
const POLL_MS = 300; // how often the progress bar asks; the result itself comes by a long poll
const WAIT_SECONDS = 20; // each long poll for a job's mask; the page asks again while the job runs
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

/**
 * fetch() with the API key; resolves to the Response when it is 2xx, else throws ApiError.
 * An aborted `signal` rejects with the browser's AbortError, not an ApiError.
 */
export async function request(url, { method = "GET", body, signal } = {}) {
  const headers = apiKey.get() ? { "X-API-Key": apiKey.get() } : {};
  let response;
  try {
    response = await fetch(url, { method, body, headers, signal });
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new ApiError(0, `the service cannot be reached (${error.message})`);
  }
  if (response.ok) return response;
  // The API always answers errors as JSON {"detail"}; anything else (a proxy's error page) gets its status line.
  const json = response.headers.get("content-type")?.includes("json");
  const detail = json ? (await response.json()).detail : null;
  throw new ApiError(response.status, detail ? describe(detail) : `HTTP ${response.status} ${response.statusText}`);
}

export async function getJson(url, signal) {
  return (await request(url, { signal })).json();
}

/**
 * The job's mask, in as few requests as the job's length allows: `GET mask?wait` is answered
 * the moment the worker stores the mask, before the job's other results. Resolves to `{ mask }`
 * (the mask PNG's Response, its Server-Timing header holding the job's phases) or, when the job
 * failed or was canceled, to `{ job }`, its final body.
 */
export async function jobEnd(job, signal) {
  for (;;) {
    try {
      return { mask: await request(`${job.links.mask}?wait=${WAIT_SECONDS}`, { signal }) };
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 409)) throw error; // 409: not succeeded (yet)
    }
    const now = await getJson(job.links.self, signal);
    if (FINAL_STATUSES.has(now.status) && now.status !== "succeeded") return { job: now };
  }
}

/** The job's body once it ended (within a long poll's WAIT_SECONDS): all its results are stored then. */
export async function jobEnded(job, signal) {
  return getJson(`${job.links.self}?wait=${WAIT_SECONDS}`, signal);
}

/** Report the job's progress to `onUpdate` every POLL_MS until `signal` aborts; errors end the reports. */
export async function watchProgress(job, onUpdate, signal) {
  while (!signal.aborted) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    if (signal.aborted) return;
    const now = await getJson(job.links.self, signal).catch(() => null);
    if (!now || FINAL_STATUSES.has(now.status) || signal.aborted) return;
    onUpdate(now);
  }
}

/** Seconds of a job's phases, from a response's Server-Timing header (milliseconds). */
export function serverSeconds(response) {
  const header = response.headers.get("Server-Timing") ?? "";
  return [...header.matchAll(/dur=([0-9.]+)/g)].reduce((sum, match) => sum + Number(match[1]) / 1000, 0);
}
