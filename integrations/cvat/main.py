"""Nuclio handler of CVAT's gdc interactor: forwards CVAT's event to a gdc server and its answer back.

Standard library only, so the function's image needs nothing installed. GDC_URL is the
gdc server (``http://HOST:8000``), GDC_API_KEY its key when it has keys.
"""
import json
import os
import urllib.error
import urllib.request

# gdc answers within GDC_INTERACTIVE_WAIT (50 s by default); this leaves it the time, and
# stays under the function's eventTimeout (function.yaml, 60 s).
FORWARD_TIMEOUT = 58


def init_context(context):
    url = os.environ.get("GDC_URL", "").rstrip("/")
    if not url:
        raise RuntimeError("set GDC_URL to the gdc server, e.g. http://gdc:8000")
    context.user_data.interactor_url = url + "/cvat/interactor"
    context.user_data.headers = {"Content-Type": "application/json"}
    if os.environ.get("GDC_API_KEY"):
        context.user_data.headers["X-API-Key"] = os.environ["GDC_API_KEY"]


def handler(context, event):
    body = event.body if isinstance(event.body, bytes) else json.dumps(event.body).encode()
    request = urllib.request.Request(context.user_data.interactor_url, data=body, headers=context.user_data.headers)
    try:
        with urllib.request.urlopen(request, timeout=FORWARD_TIMEOUT) as answer:
            status, payload = answer.status, answer.read()
    except urllib.error.HTTPError as error:  # gdc's 4xx/5xx carry {"detail": "..."}, which CVAT shows
        status, payload = error.code, error.read()
        context.logger.warn(f"gdc answered {status}: {payload[:500]!r}")
    except (urllib.error.URLError, TimeoutError) as error:
        status, payload = 502, json.dumps({"detail": f"gdc at {context.user_data.interactor_url} failed: {error}"})
        context.logger.error(payload)
    return context.Response(body=payload, headers={}, content_type="application/json", status_code=status)
