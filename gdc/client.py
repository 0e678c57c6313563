"""A small Python client for a gdc server (httpx; no torch).

from gdc.client import Client

client = Client("http://127.0.0.1:8000")
job_id = client.submit("photo.jpg", "scribbles.png", steps=50)
client.wait(job_id, timeout=120, on_progress=print)
labels = client.mask(job_id)            # (H, W) uint8 in the scribbles' values
second = client.refine(job_id, "more-scribbles.png")  # all strokes so far; the image stays on the server
boxed = client.submit("photo.jpg", box=(170, 15, 410, 310))  # the object in a box: class 1, the rest class 2
clicked = client.refine(boxed, points=[(283, 133, 1), (50, 40, 0)])  # clicks on (1) and off (0) the object
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import numpy as np

from .imageio import encode_png, read_labels, unstack_probabilities

# An image or label map given as a file path, the file's bytes, or an array.
Source = str | Path | bytes | np.ndarray
# A box around the object, (x0, y0, x1, y1) in pixels, x1 and y1 excluded; clicks, each (x, y, label): 1 on it, 0 off.
BoxCorners = tuple[int, int, int, int]
Points = Sequence[tuple[float, float, int]]
ENDED = ("succeeded", "failed", "canceled")


class ApiError(RuntimeError):
    """The server answered with an error; ``status_code`` and the server's ``detail``."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class ServerUnreachable(ConnectionError):
    """No answer came from the server (refused, unknown host, timed out, dropped); ``url`` is what was asked."""

    def __init__(self, url: str, cause: httpx.TransportError) -> None:
        super().__init__(f"cannot reach the gdc server at {url}: {str(cause) or type(cause).__name__}")
        self.url = url


class JobFailed(RuntimeError):
    """The job ended without a result (failed or canceled); ``job`` is its last status."""

    def __init__(self, job: dict) -> None:
        error = job.get("error") or {}
        super().__init__(f"job {job['id']} {job['status']}" + (f": {error['message']}" if error else ""))
        self.job = job


def _file(source: Source) -> bytes:
    if isinstance(source, np.ndarray):
        return encode_png(source)
    if isinstance(source, bytes):
        return source
    return Path(source).read_bytes()


def _retry_after(response: httpx.Response) -> float:
    """The seconds a busy server asked us to wait (Retry-After in seconds; 1 when absent or a date)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return 1.0


class Client:
    """Submit images with scribbles to a gdc server, follow the jobs, fetch the results."""

    def __init__(
        self,
        server: str,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = 60.0,
        busy_timeout: float | None = 600.0,
    ) -> None:
        """``timeout``: seconds a request may wait on the server (an ``httpx.Timeout`` sets connecting and
        reading apart). ``busy_timeout``: seconds to keep resending a request the server refused as busy
        (429, its queue full), waiting its ``Retry-After`` each time; None: for as long as it takes."""
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)
        self.busy_timeout = busy_timeout

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise ServerUnreachable(str(self.http.base_url.join(path)), error) from error

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        deadline = None if self.busy_timeout is None else time.monotonic() + self.busy_timeout
        response = self._send(method, path, **kwargs)
        while response.status_code == 429 and (deadline is None or time.monotonic() < deadline):
            time.sleep(_retry_after(response))
            response = self._send(method, path, **kwargs)
        if response.is_error:
            try:
                detail = response.json()["detail"]
            except (ValueError, KeyError, TypeError):
                detail = response.text
            raise ApiError(response.status_code, str(detail))
        return response

    def submit(
        self,
        image: Source,
        scribbles: Source | None = None,
        *,
        strokes: list[dict] | None = None,
        box: BoxCorners | None = None,
        points: Points = (),
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        **options,
    ) -> str:
        """Queue a segmentation; the job id.

        Arguments:
          image: the image file (path or bytes) or an (H, W, 3) uint8 array.
          scribbles: label map (path, PNG bytes or (H, W) uint8 array): 0 unlabeled, 1..K classes; or
            colour scribbles (RGB/RGBA PNG or (H, W, 3) array): black unlabeled, each colour a class.
          strokes: instead of scribbles, ``[{"label": k, "points": [[x, y], ...], "width": px}]``.
          box: (x0, y0, x1, y1) pixels around one object, x1 and y1 excluded: beyond it is background.
          points: clicks (x, y, label), label 1 on the object, 0 off it. With a box or points the object
            is class 1 and its background class 2; scribbles are optional then.
          options: engine options a request may set (:func:`gdc.options.request_options`; the server's
            defaults and limits: :meth:`options`); an unknown name is refused (ApiError 422).
        """
        files = {"image": ("image", _file(image))}
        return self._segment(files, scribbles, strokes, box, points, callback_url, idempotency_key, options)

    def refine(
        self,
        job_id: str,
        scribbles: Source | None = None,
        *,
        strokes: list[dict] | None = None,
        box: BoxCorners | None = None,
        points: Points = (),
        image: Source | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        **options,
    ) -> str:
        """Queue a refine of job ``job_id`` with the complete current scribbles, box and clicks (every click so far)
        on its image; the new job's id.

        The new job starts from the previous one's superpixels, features and trained head
        and trains until the strokes are fitted, at most ``refine_steps`` steps; it keeps
        that job's options unless given. Send
        ``image`` (the same one) where the previous job may have expired: the refine then
        runs from scratch instead of failing, and its status says ``"warm": false``.

        Raises:
          ApiError: 410 when the previous job's data expired and no image was given; 422
            when ``image`` is not the previous job's; 409 while that job is still running.
        """
        files = {} if image is None else {"image": ("image", _file(image))}
        options = {"previous": job_id, **options}
        return self._segment(files, scribbles, strokes, box, points, callback_url, idempotency_key, options)

    def _segment(
        self, files: dict, scribbles, strokes, box, points, callback_url, idempotency_key, options: dict
    ) -> str:
        if scribbles is not None and strokes is not None:
            raise ValueError("give scribbles or strokes, not both")
        if scribbles is None and strokes is None and box is None and not points:
            raise ValueError("give scribbles, strokes, a box or points")
        data = {name: str(value) for name, value in options.items() if value is not None}
        if scribbles is not None:
            files["scribbles"] = ("scribbles.png", _file(scribbles))
        if strokes is not None:
            data["strokes"] = json.dumps(strokes)
        if box is not None:
            data["box"] = ",".join(str(corner) for corner in box)
        if points:
            data["points"] = json.dumps([[x, y, int(label)] for x, y, label in points])
        if callback_url:
            data["callback_url"] = callback_url
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/segment", files=files, data=data, headers=headers).json()["id"]

    def options(self) -> dict:
        """The server's engine-option defaults and limits (see GET /options)."""
        return self._call("GET", "/options").json()

    def status(self, job_id: str) -> dict:
        """The job's status body (see GET /jobs/{id})."""
        return self._call("GET", f"/jobs/{job_id}").json()

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
        poll: float = 0.5,
    ) -> dict:
        """Poll until the job succeeded and return its status; ``on_progress(phase, step, total)`` as it runs.

        A server that cannot be reached or answers 503 (restarting, its Redis down) is asked
        again at the next poll: the job is kept server-side meanwhile.

        Raises:
          JobFailed: the job failed or was canceled.
          TimeoutError: it had not ended after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                job = self.status(job_id)
            except (ServerUnreachable, ApiError) as error:
                if isinstance(error, ApiError) and error.status_code != 503:
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {job_id}: the server was still unavailable after {timeout} s") from error
                time.sleep(poll)
                continue
            if on_progress is not None and job["status"] == "running":
                progress = job["progress"]
                on_progress(progress["phase"], progress["step"], progress["total"])
            if job["status"] == "succeeded":
                return job
            if job["status"] in ENDED:
                raise JobFailed(job)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout} s")
            time.sleep(poll)

    def result(self, job_id: str, kind: str = "mask", **params) -> bytes:
        """A result file: ``mask`` (label PNG; ``format=rle`` or ``polygons`` for JSON), ``overlay``,
        ``probabilities`` or ``uncertainty``."""
        return self._call("GET", f"/jobs/{job_id}/{kind}", params=params).content

    def mask(self, job_id: str) -> np.ndarray:
        """The label map as (H, W) uint8 in the scribbles' class values."""
        return read_labels(self.result(job_id, "mask"))

    def probabilities(self, job_id: str) -> tuple[list[int], np.ndarray]:
        """The class values and their probabilities, (K, H, W) float32 (quantised to 1/255)."""
        response = self._call("GET", f"/jobs/{job_id}/probabilities")
        classes = [int(value) for value in response.headers["X-Classes"].split(",")]
        return classes, unstack_probabilities(read_labels(response.content), len(classes))

    def cancel(self, job_id: str) -> dict:
        """Cancel a queued or running job (or delete an ended one); its status after that."""
        return self._call("DELETE", f"/jobs/{job_id}").json()
