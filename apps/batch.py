"""``gdc batch``: pseudo-label a folder of images from their scribbles, on a gdc server or locally.

Pairs ``IMAGES_DIR/<stem>.<ext>`` with ``SCRIBBLES_DIR/<stem>.png`` and writes, into OUT_DIR,
``<stem>.png`` (the label map in the scribbles' values), ``coco.json`` (COCO instances, one
annotation per class present in an image) and ``failures.json`` (what failed, and why).

On a server at most ``--concurrency`` jobs are in flight; each result is fetched as soon as
its job succeeds and the job then deleted, so the server's Redis holds only the jobs in
flight and ``GDC_RESULT_TTL`` can be short. A server whose queue is full (429) is waited on.
With ``--local`` the engine runs here instead, one process per core with one torch thread each
(``--processes``, ``--threads``).

Resuming: ``OUT_DIR/journal.jsonl`` records, per image, the job submitted for it (before
waiting on it) and when its label map was written, under a digest of the image, its
scribbles and the options. A second run skips what is done under the same digest; an
interrupted one (Ctrl-C, kill -9) waits on the jobs it had submitted, by id. A job sent just
before a crash, with no journal line yet, is found again by its Idempotency-Key (the run's
nonce, the digest and the attempt), so no image is submitted twice.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import threading
from collections import Counter
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from gdc.errors import InputError
from gdc.options import SegmentOptions
from gdc.threads import DEFAULT_THREADS, usable_cores

from .arguments import add_engine_options, add_server_options, at_least_one, engine_options, given_options
from .coco import coco_instances, read_class_names
from .evaluate import IMAGE_SUFFIXES

JOURNAL = "journal.jsonl"
# How often a thread waiting on a job looks whether the run was interrupted.
STOP_CHECK_SECONDS = 1.0
# Status polls start quick and slow down the longer a job takes: with many jobs in flight most of
# them wait in the queue, and polling those often would only load the API.
FIRST_POLL_SECONDS, POLL_GROWTH, LONGEST_POLL_SECONDS = 0.25, 1.5, 2.0
# A request left unanswered this long is dropped and asked again (an upload under its Idempotency-Key),
# on a new connection that must answer within CONNECT_SECONDS. A request caught by a cut link would
# otherwise wait on TCP's retransmission back-off: after the API's host was cut off for 30 s, the batch
# went on 26 s after the host returned (benchmarks/reliability.md, "Hosts").
REQUEST_SECONDS, CONNECT_SECONDS = 15.0, 5.0


@dataclass(frozen=True)
class Pair:
    stem: str
    image: Path
    scribbles: Path

    def digest(self, options: dict) -> str:
        """What the label map depends on: the image's and scribbles' bytes and the options."""
        content = hashlib.sha256()
        for part in (self.image.read_bytes(), self.scribbles.read_bytes(), json.dumps(options, sort_keys=True).encode()):
            content.update(hashlib.sha256(part).digest())
        return content.hexdigest()


def pair_files(images_dir: Path, scribbles_dir: Path) -> tuple[list[Pair], list[str]]:
    """The images with a scribble PNG of the same stem, and the names of those without one."""
    for folder in (images_dir, scribbles_dir):
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder")
    images = sorted(p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    repeated = sorted(stem for stem, count in Counter(p.stem for p in images).items() if count > 1)
    if repeated:
        raise InputError(f"several images share a stem, so their label maps would collide: {', '.join(repeated)}")
    pairs, unpaired = [], []
    for image in images:
        scribbles = scribbles_dir / f"{image.stem}.png"
        if scribbles.is_file():
            pairs.append(Pair(image.stem, image, scribbles))
        else:
            unpaired.append(image.name)
    return pairs, unpaired


def journal_events(path: Path):
    """The events a journal holds, in order; none when it does not exist."""
    for line in path.read_text().splitlines() if path.exists() else []:
        with suppress(ValueError):  # the torn last line of a killed run
            yield json.loads(line)


class Journal:
    """OUT_DIR/journal.jsonl: one JSON event a line, each written out before the step that follows it.

    Events: ``{"run": nonce}`` first, ``{"options": ...}`` whenever a run's options differ from the last
    recorded ones, then per (stem, digest) ``submitted`` (a job id), ``done``,
    ``failed`` (a reason, and the ``job`` when one ran and failed) or ``lost`` (the server no
    longer knows the job). A job that failed or was lost makes the next try a new attempt, under
    a new Idempotency-Key; a request that never made a job (refused, server unreachable) keeps
    its key, so resending it cannot make a second job.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.nonce = None
        self.options: dict | None = None  # the options of the last run that recorded them
        self.jobs: dict[tuple[str, str], str] = {}
        self.done: set[tuple[str, str]] = set()
        self.attempts: Counter[tuple[str, str]] = Counter()
        for event in journal_events(path):
            self._replay(event)
        self.file = path.open("a")
        if self.nonce is None:
            self.nonce = secrets.token_hex(8)
            self._write({"run": self.nonce})

    def _replay(self, event: dict) -> None:
        if "run" in event:
            self.nonce = event["run"]
            return
        if "options" in event:
            self.options = event["options"]
            return
        key = (event["stem"], event["digest"])
        if "submitted" in event:
            self.jobs[key] = event["submitted"]
        elif "done" in event:
            self.done.add(key)
        else:
            self.jobs.pop(key, None)
            if "lost" in event or event.get("job"):
                self.attempts[key] += 1

    def _write(self, event: dict) -> None:
        self.file.write(json.dumps(event) + "\n")
        self.file.flush()

    def record(self, stem: str, digest: str, **event) -> None:
        event = {"stem": stem, "digest": digest, **event}
        with self.lock:
            self._replay(event)
            self._write(event)

    def note_options(self, options: dict) -> None:
        """Record this run's options when they differ from the last run's."""
        if options != self.options:
            with self.lock:
                self._replay({"options": options})
                self._write({"options": options})

    def finish(self, stem: str, digest: str) -> None:
        """Record that the label map is written (once, whoever says it first)."""
        if (stem, digest) not in self.done:
            self.record(stem, digest, done=True)

    def idempotency_key(self, stem: str, digest: str) -> str:
        """The key of the image's current attempt in this run; per stem, so identical images stay apart."""
        image = hashlib.sha256(f"{stem}\0{digest}".encode()).hexdigest()[:32]
        return f"gdc-batch-{self.nonce}-{image}-{self.attempts[(stem, digest)]}"

    def close(self) -> None:
        self.file.close()


def jobs_submitted(out_dir: Path) -> dict[str, list[str]]:
    """Per image stem, every job id a run over ``out_dir`` submitted for it, in order (from the journal)."""
    submitted: dict[str, list[str]] = {}
    for event in journal_events(out_dir / JOURNAL):
        if "submitted" in event:
            submitted.setdefault(event["stem"], []).append(event["submitted"])
    return submitted


def write_atomically(path: Path, content: bytes) -> None:
    """Write through a temporary file, so a killed run never leaves half a label map."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    os.replace(partial, path)


class Interrupted(Exception):
    """The run is stopping (Ctrl-C); the job stays on the server for the next run."""


class ServerLabeller:
    """Labels one image through a gdc server; several threads share one instance."""

    def __init__(self, client, options: dict, journal: Journal, out_dir: Path) -> None:
        self.client = client
        self.options = options
        self.journal = journal
        self.out_dir = out_dir
        self.stopping = threading.Event()

    def __call__(self, pair: Pair, digest: str) -> None:
        from gdc.client import ApiError, ServerUnreachable

        journal = self.journal
        job_id = journal.jobs.get((pair.stem, digest))
        if job_id is None:
            job_id = self._submit(pair, journal.idempotency_key(pair.stem, digest))
            journal.record(pair.stem, digest, submitted=job_id)
        try:
            self._wait(job_id)
        except ApiError as error:
            if error.status_code != 404:
                raise
            # Expired or deleted while no run was waiting on it: one new job, under a new key.
            journal.record(pair.stem, digest, lost=job_id)
            return self(pair, digest)
        write_atomically(self.out_dir / f"{pair.stem}.png", self._patiently(self.client.result, job_id, "mask"))
        journal.finish(pair.stem, digest)  # before deleting the job, so a crash here never submits it again
        with suppress(ApiError, ServerUnreachable):  # best effort: an ended job left behind expires anyway
            self.client.cancel(job_id)  # an ended job: deleted, so Redis keeps only the jobs in flight

    def _submit(self, pair: Pair, idempotency_key: str) -> str:
        """The job id. The Idempotency-Key makes resending safe, so a busy or unreachable server is asked again."""
        return self._patiently(
            self.client.submit, pair.image, pair.scribbles, idempotency_key=idempotency_key, **self.options
        )

    def _patiently(self, call, *args, **kwargs):
        """``call``'s answer, asked again while the server is busy (429), its Redis down (503) or it cannot be
        reached, until the run stops; other errors are the image's failure."""
        from gdc.client import ApiError, ServerUnreachable

        while True:
            try:
                return call(*args, **kwargs)
            except (ApiError, ServerUnreachable) as error:
                if isinstance(error, ApiError) and error.status_code not in (429, 503):
                    raise
                if self.stopping.wait(STOP_CHECK_SECONDS):
                    raise Interrupted from None

    def _wait(self, job_id: str) -> None:
        poll = FIRST_POLL_SECONDS
        while True:
            try:
                self.client.wait(job_id, timeout=max(STOP_CHECK_SECONDS, poll), poll=poll)
                return
            except TimeoutError:
                if self.stopping.is_set():
                    raise Interrupted from None
                poll = min(LONGEST_POLL_SECONDS, poll * POLL_GROWTH)


def _start_local_process(threads: int) -> None:
    """A --local worker process: ``threads`` torch threads (one by default, a process per core), Ctrl-C left to
    the parent."""
    import signal

    import torch._dynamo  # noqa: F401  imported by torch.optim on its first step: here once, not in a job

    from gdc.torch_threads import set_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_threads(threads)


def label_locally(pair: Pair, options: dict, out_dir: Path) -> None:
    """Segment one pair with the engine in this process and write its label map."""
    from gdc.engine import segment
    from gdc.imageio import encode_png, read_image, read_labels

    result = segment(read_image(pair.image), read_labels(pair.scribbles), SegmentOptions(**options))
    write_atomically(out_dir / f"{pair.stem}.png", encode_png(result.labels))


def _failure(error: BaseException) -> dict:
    """Why an image failed, in one line, and the id of the job that failed, if one ran."""
    from gdc.client import ApiError, JobFailed

    if isinstance(error, JobFailed):
        return {"failed": str(error), "job": error.job["id"]}
    if isinstance(error, (ApiError, InputError)):
        return {"failed": str(error)}
    return {"failed": f"{type(error).__name__}: {error}"}


def follow(executor: Executor, futures: dict[Future, tuple[Pair, str]], journal: Journal, stop=None) -> dict[str, str]:
    """Journal each image as its future ends, with a progress bar; the failures by image name.

    On Ctrl-C, ``stop()`` tells running tasks to give up, and queued ones are dropped.
    """
    from tqdm import tqdm

    failures = {}
    bar = tqdm(total=len(futures), unit="job", desc="labelling", disable=not sys.stderr.isatty())
    try:
        for future in as_completed(futures):
            pair, digest = futures[future]
            if (error := future.exception()) is None:
                journal.finish(pair.stem, digest)
            else:
                failure = _failure(error)
                failures[pair.image.name] = failure["failed"]
                journal.record(pair.stem, digest, **failure)
            bar.update()
            bar.set_postfix(done=bar.n - len(failures), failed=len(failures))
    except KeyboardInterrupt:
        if stop is not None:
            stop()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        bar.close()
    return failures


def server_options(args: argparse.Namespace, accepted: dict, model: type[SegmentOptions] = SegmentOptions) -> dict:
    """The options to send: those given, each of which the server must take (``accepted``: its GET /options)."""
    options = given_options(args, model)
    refused = sorted(set(options) - {name for kind in ("fields", "switches", "choices") for name in accepted[kind]})
    if refused:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in refused)
        raise InputError(f"a gdc server chooses {flags} itself; give them with --local")
    return options


class Batch:
    """One run over OUT_DIR: what is to do, under which digests, and the journal."""

    def __init__(self, pairs: list[Pair], options: dict, out_dir: Path) -> None:
        self.pairs = pairs
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)  # once the server answered: a run that could not start makes none
        self.journal = Journal(out_dir / JOURNAL)
        self.digests = {pair.stem: pair.digest(options) for pair in pairs}
        before = self.journal.options
        if before is not None and before != options:
            changed = sorted(name for name in {*before, *options} if before.get(name) != options.get(name))
            print(
                "gdc batch: the options differ from the last run's: "
                + ", ".join(f"{name} {before.get(name, 'unset')} -> {options.get(name, 'unset')}" for name in changed)
                + "; images labelled under the old options are labelled again",
                file=sys.stderr,
            )
        self.journal.note_options(options)

    def is_done(self, pair: Pair) -> bool:
        return (pair.stem, self.digests[pair.stem]) in self.journal.done and (self.out_dir / f"{pair.stem}.png").exists()

    def todo(self) -> list[tuple[Pair, str]]:
        return [(pair, self.digests[pair.stem]) for pair in self.pairs if not self.is_done(pair)]

    def write_summary(self, failures: dict[str, str], names: dict[int, str]) -> list[Pair]:
        """coco.json over every finished image and failures.json over this run's failures; the finished pairs."""
        done = [pair for pair in self.pairs if self.is_done(pair)]
        coco = coco_instances([(pair.image.name, self.out_dir / f"{pair.stem}.png") for pair in done], names)
        write_atomically(self.out_dir / "coco.json", json.dumps(coco).encode())
        listed = [{"image": name, "reason": reason} for name, reason in sorted(failures.items())]
        write_atomically(self.out_dir / "failures.json", json.dumps(listed, indent=2).encode())
        return done


def server_client(server: str, api_key: str | None):
    """The batch's client: it gives up on a silent server as REQUEST_SECONDS and CONNECT_SECONDS say, and
    leaves a full queue (429) to ServerLabeller._patiently, which also sees Ctrl-C between tries."""
    import httpx

    from gdc.client import Client

    timeout = httpx.Timeout(REQUEST_SECONDS, connect=CONNECT_SECONDS)
    return Client(server, api_key=api_key, timeout=timeout, busy_timeout=STOP_CHECK_SECONDS)


def _label_on_server(args: argparse.Namespace, pairs: list[Pair], out_dir: Path) -> tuple[Batch, dict[str, str]]:
    with server_client(args.server, args.api_key) as client:
        options = server_options(args, client.options())
        batch = Batch(pairs, options, out_dir)
        todo = batch.todo()
        _announce(len(pairs), len(todo))
        labeller = ServerLabeller(client, options, batch.journal, out_dir)
        with ThreadPoolExecutor(args.concurrency) as threads:
            futures = {threads.submit(labeller, pair, digest): (pair, digest) for pair, digest in todo}
            return batch, follow(threads, futures, batch.journal, stop=labeller.stopping.set)


def _label_locally(args: argparse.Namespace, pairs: list[Pair], out_dir: Path) -> tuple[Batch, dict[str, str]]:
    options = engine_options(args).model_dump()
    batch = Batch(pairs, options, out_dir)
    todo = batch.todo()
    _announce(len(pairs), len(todo))
    processes, threads = args.processes or usable_cores(), args.threads or DEFAULT_THREADS
    with ProcessPoolExecutor(processes, initializer=_start_local_process, initargs=(threads,)) as pool:
        futures = {pool.submit(label_locally, pair, options, out_dir): (pair, digest) for pair, digest in todo}
        return batch, follow(pool, futures, batch.journal)


def _announce(total: int, todo: int) -> None:
    print(f"gdc batch: {total} images with scribbles, {total - todo} already done, {todo} to label", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from gdc.client import ServerUnreachable

    out_dir = Path(args.output)
    pairs, unpaired = pair_files(Path(args.images_dir), Path(args.scribbles_dir))
    names = read_class_names(Path(args.classes)) if args.classes else {}
    if unpaired:
        print(f"gdc batch: {len(unpaired)} image(s) have no scribbles, skipped: {', '.join(unpaired)}", file=sys.stderr)
    if not pairs:
        raise InputError(f"no image in {args.images_dir} has scribbles in {args.scribbles_dir}")
    try:
        batch, failures = (_label_locally if args.local else _label_on_server)(args, pairs, out_dir)
    except KeyboardInterrupt:
        print("gdc batch: interrupted; run the same command again to go on where it stopped", file=sys.stderr)
        return 130
    except ServerUnreachable as error:  # at the first request: later ones are asked again until it answers
        print(f"gdc batch: error: {error}; start one (gdc serve), name it with --server, or label here with --local",
              file=sys.stderr)
        return 2
    batch.journal.close()
    done = batch.write_summary(failures, names)
    print(
        f"gdc batch: {len(done)} of {len(pairs)} labelled, {len(failures)} failed; wrote {out_dir}/coco.json"
        + (f", the failures in {out_dir}/failures.json" if failures else ""),
        file=sys.stderr,
    )
    return 1 if failures else 0


def add_parser(commands) -> None:
    """Add ``batch`` to the ``gdc`` command's subparsers."""
    parser = commands.add_parser(
        "batch",
        help="label a folder of images from their scribbles, on a gdc server or locally (resumable)",
        description="Pairs IMAGES_DIR/<stem>.* with SCRIBBLES_DIR/<stem>.png; writes OUT_DIR/<stem>.png, "
        "OUT_DIR/coco.json and OUT_DIR/failures.json. Run it again to go on after an interruption.",
    )
    parser.add_argument("images_dir", help="folder of images (PNG, JPEG, WebP, TIFF, BMP)")
    parser.add_argument("scribbles_dir", help="folder of label PNGs named as the images: 0 unlabeled, 1..K classes")
    parser.add_argument("-o", "--output", required=True, help="folder for the label maps, coco.json and the journal")
    add_server_options(parser)
    parser.add_argument("--concurrency", type=at_least_one("jobs"), default=16, help="jobs in flight on the server (default 16)")
    parser.add_argument("--local", action="store_true", help="run the engine here instead of on a server")
    parser.add_argument("--processes", type=at_least_one("processes"), help="with --local: engine processes (default: one per core)")
    parser.add_argument("--classes", help="text file naming the classes for coco.json: line k names class value k")
    add_engine_options(parser)  # unset: the server's defaults, or the engine's with --local
    # Unset, the command does not load torch here (a server's client needs none; a base install has none):
    # --threads is what each --local process runs.
    parser.set_defaults(func=run, threads=None)
