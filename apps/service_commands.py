"""``gdc serve``, ``gdc worker`` and ``gdc submit``, registered into ``apps.cli``'s parser.

Each handler imports what it needs when it runs, so ``gdc --help`` stays fast and only
``gdc worker`` loads torch.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gdc.options import request_options
from service.settings import Settings

from .arguments import (
    add_engine_options,
    add_prompt_options,
    add_server_options,
    at_least_one,
    check_files,
    given_options,
    prompts,
)

SENTINELS_HELP = (
    "Redis Sentinels to ask for the primary named GDC_REDIS_SENTINEL_MASTER, comma-separated; follows a failover "
    "(default: GDC_REDIS_SENTINELS)"
)


def _settings(**overrides) -> Settings:
    return Settings(**{name: value for name, value in overrides.items() if value is not None})


def cmd_serve(args: argparse.Namespace) -> int:
    from service.serve import serve

    return serve(
        _settings(redis_sentinels=args.redis_sentinels), host=args.host, port=args.port, workers=args.workers,
        api_workers=args.api_workers, data_dir=args.data_dir,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.main import run

    settings = _settings(redis_url=args.redis, redis_sentinels=args.redis_sentinels, device=args.device)
    if not settings.redis_configured:
        print("gdc worker: error: give --redis URL or --redis-sentinels, or set REDIS_URL", file=sys.stderr)
        return 2
    queues = [name.strip() for name in (args.queues or settings.queue).split(",") if name.strip()]
    return run(settings, queues, burst=args.burst)


def cmd_submit(args: argparse.Namespace) -> int:
    from apps.arguments import ProgressBar
    from gdc.client import ApiError, Client, JobFailed, ServerUnreachable
    from gdc.imageio import read_scribbles

    box, clicks = prompts(args)
    named = [path for path in (args.image, args.scribbles) if path is not None]
    if args.previous is not None and len(named) < 2:
        named.insert(0, None)  # with --previous the image is optional: one file given is the scribbles
    image, scribbles = (named + [None, None])[:2]
    if (image is None and args.previous is None) or (scribbles is None and box is None and not clicks):
        print("gdc submit: error: give the image (or --previous JOB) and its scribbles, --box or --points",
              file=sys.stderr)
        return 2
    check_files(read={"image": image, "scribbles": scribbles}, write={"-o": args.output, "--overlay": args.overlay})
    given = {"box": None if box is None else (box.x0, box.y0, box.x1, box.y1),
             "points": [(click.x, click.y, int(click.positive)) for click in clicks]}
    mask_format = "png"
    if scribbles is not None and Path(scribbles).suffix.lower() == ".json":
        given["strokes"] = json.loads(Path(scribbles).read_text())
    elif scribbles is not None:
        given["scribbles"] = Path(scribbles)
        # Colour scribbles get their mask back in their colours, as from `gdc segment`.
        mask_format = "colour" if read_scribbles(scribbles)[1] is not None else "png"
    options = given_options(args)
    bar = ProgressBar(sys.stderr.isatty())
    try:
        with Client(args.server, api_key=args.api_key) as client:
            if args.previous is not None:
                job_id = client.refine(args.previous, image=image, **given, **options)
            else:
                job_id = client.submit(image, **given, **options)
            job = client.wait(job_id, timeout=args.timeout, on_progress=bar)
            Path(args.output).write_bytes(client.result(job_id, "mask", format=mask_format))
            if args.overlay:
                Path(args.overlay).write_bytes(client.result(job_id, "overlay"))
    except ApiError as error:
        # A refused request (4xx: a bad option, file or job id) is the user's to fix, like the CLI's other exit-2
        # errors; a server-side failure (5xx) is not.
        print(f"gdc submit: error: {error}", file=sys.stderr)
        return 2 if error.status_code < 500 else 1
    except (JobFailed, TimeoutError) as error:
        print(f"gdc submit: error: {error}", file=sys.stderr)
        return 1
    except ServerUnreachable as error:  # no server at that URL: for the user to fix, like the CLI's other exit-2 errors
        print(f"gdc submit: error: {error}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    started = {True: f", refining {args.previous}", False: f", from scratch: {args.previous} had expired", None: ""}
    print(f"wrote {args.output} (job {job_id}{started[job['warm']]})")
    return 0


def register(commands) -> None:
    """Add ``serve``, ``worker`` and ``submit`` to the ``gdc`` command's subparsers."""
    serve = commands.add_parser(
        "serve",
        help="run the web API; without REDIS_URL also an embedded Redis and workers",
        description="Without REDIS_URL: an embedded Redis-protocol server, N worker processes (restarted when "
        "they exit) and the API. With REDIS_URL or Sentinels: the API alone (start workers with `gdc worker`). "
        "Settings: GDC_* variables.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes to start without REDIS_URL (default: on the CPU, usable cores / GDC_WORKER_THREADS; "
        "on a GPU, 1)",
    )
    serve.add_argument(
        "--api-workers",
        metavar="N",
        type=at_least_one("API processes"),
        default=1,
        help="API processes answering on the port, each with its own connections to Redis (default 1)",
    )
    serve.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        help="keep the embedded Redis's data in an append-only file in this folder, so that queued jobs and kept "
        "results outlive a restart (default: in memory, gone when gdc serve stops)",
    )
    serve.add_argument("--redis-sentinels", metavar="HOST:PORT,...", help=SENTINELS_HELP + "; then no embedded Redis or workers")
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser("worker", help="run a segmentation worker: load the engine once, then run jobs")
    worker.add_argument("--redis", help="Redis URL (default: REDIS_URL)")
    worker.add_argument("--redis-sentinels", metavar="HOST:PORT,...", help=SENTINELS_HELP)
    worker.add_argument("--device", help="torch device for the engine, e.g. cpu or cuda:0 (default: GDC_DEVICE or cpu)")
    worker.add_argument("--queues", help="comma-separated queues to work, first first (default: GDC_QUEUE or gdc)")
    worker.add_argument("--burst", action="store_true", help="stop once the queues are empty")
    worker.set_defaults(func=cmd_worker)

    submit = commands.add_parser("submit", help="segment an image on a gdc server and save the mask")
    submit.add_argument("image", nargs="?", help="the image (PNG, JPEG, WebP, TIFF, BMP); optional with --previous")
    submit.add_argument(
        "scribbles",
        nargs="?",
        help="PNG of the image's size, labels (0 unlabeled, 1..K) or colours (black unlabeled, each colour a "
        "class), or strokes as a .json file; optional with --box or --points",
    )
    submit.add_argument(
        "--previous",
        metavar="JOB",
        help="refine job JOB: send all strokes so far; it starts from that job's head and trains until they are "
        "fitted, at most refine_steps steps (the image may be left out; given, it must be the same)",
    )
    add_server_options(submit)
    submit.add_argument(
        "-o", "--output", required=True, help="mask PNG to write, in the scribbles' values (or colours)"
    )
    submit.add_argument("--overlay", help="also write the image tinted by class here")
    submit.add_argument("--timeout", type=float, default=600, help="seconds to wait for the job (default 600)")
    add_prompt_options(submit)
    add_engine_options(submit, names=request_options(), defaults="the server's", threads=False)
    submit.set_defaults(func=cmd_submit)
