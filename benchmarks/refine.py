"""``gdc bench refine``: a second round of strokes, warm against cold (issue 16).

Per photo: round 1 segments the first strokes; round 2 segments all strokes twice, cold
(from scratch) and warm (``previous`` = round 1's warm start, for each refine setting asked
for: ``refine_steps`` by ``refine_stop_loss``). Rounds come from two scribble folders (GrabCut's scribbles-1, then the union
of scribbles-1 and scribbles-2) or from one folder split in two (half of each class's
connected strokes, then all of them). The engine time of a round is the sum of its
timings. With ``--server`` every round is a job on a running ``gdc serve`` and round 2's
warm run is a refine job, timed by the job's own timings.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

TIME_TARGET = 0.4  # the refine's engine time at most this fraction of a cold run's (median)
MIOU_TARGET = 0.5  # the refine's mIoU at most this many points below the cold run's (mean)


def union(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Both rounds' scribbles in one map; where they overlap the second round's strokes win."""
    return np.where(second > 0, second, first)


def first_half(scribbles: np.ndarray) -> np.ndarray:
    """Half of each class's connected strokes (rounded up, so every class keeps one), in reading order."""
    from skimage.measure import label

    kept = np.zeros_like(scribbles)
    for value in np.unique(scribbles[scribbles > 0]):
        strokes = label(scribbles == value, connectivity=2)
        count = int(strokes.max())
        kept[(strokes > 0) & (strokes <= (count + 1) // 2)] = value
    return kept


def rounds(data_dir: str, scribbles: str, second: str | None, limit: int | None):
    """(sample, round-1 scribbles, round-2 scribbles) per photo."""
    from apps.evaluate import load_dataset

    samples = list(load_dataset(data_dir, scribbles))[:limit]
    if second is None:
        return [(sample, first_half(sample.scribbles), sample.scribbles) for sample in samples]
    later = {sample.name: sample.scribbles for sample in load_dataset(data_dir, second)}
    return [(sample, sample.scribbles, union(sample.scribbles, later[sample.name])) for sample in samples]


class InProcess:
    """Rounds as :func:`gdc.engine.segment` calls in this process."""

    def __init__(self, options) -> None:
        self.options = options

    def first(self, image, scribbles):
        from gdc.engine import segment

        result = segment(image, scribbles, self.options)
        return result.warm_start, result.labels, result.timings

    def cold(self, image, scribbles):
        from gdc.engine import segment

        result = segment(image, scribbles, self.options)
        return result.labels, result.timings

    def refine(self, previous, image, scribbles, setting: dict):
        from gdc.engine import segment

        result = segment(image, scribbles, self.options.model_copy(update=setting), previous=previous)
        assert result.warm, "the refine ran cold"
        return result.labels, result.timings, result.steps


class ThroughService:
    """Rounds as jobs on a gdc server; the refine is a job with ``previous``."""

    def __init__(self, server: str) -> None:
        from gdc.client import Client

        self.client = Client(server)

    def _finish(self, job_id: str):
        job = self.client.wait(job_id, timeout=600)
        return self.client.mask(job_id), job

    def first(self, image, scribbles):
        job_id = self.client.submit(image, scribbles)
        labels, job = self._finish(job_id)
        return job_id, labels, job["timings"]

    def cold(self, image, scribbles):
        labels, job = self._finish(self.client.submit(image, scribbles))
        return labels, job["timings"]

    def refine(self, previous, image, scribbles, setting: dict):
        labels, job = self._finish(self.client.refine(previous, scribbles, **setting))
        assert job["warm"], f"the refine job {job['id']} ran cold"
        return labels, job["timings"], None  # a job does not say how many steps it took


def setting_name(setting: dict) -> str:
    return f"{setting['refine_steps']} steps, stop at {setting['refine_stop_loss']:g}"


def measure(runner, photos, settings: list[dict], log) -> list[dict]:
    """Per photo: round 1, cold and warm round 2 (per refine setting), with engine seconds, steps and mIoU."""
    from apps.evaluate import score_labels

    rows = []
    for sample, first, both in photos:
        previous, labels, timings = runner.first(sample.image, first)
        row = dict(name=sample.name, first=dict(seconds=sum(timings.values()), miou=score_labels(labels, sample.truth)[0]))
        labels, timings = runner.cold(sample.image, both)
        row["cold"] = dict(seconds=sum(timings.values()), miou=score_labels(labels, sample.truth)[0], timings=timings)
        row["warm"] = {}
        for setting in settings:
            labels, timings, steps = runner.refine(previous, sample.image, both, setting)
            row["warm"][setting_name(setting)] = dict(
                seconds=sum(timings.values()), miou=score_labels(labels, sample.truth)[0], steps=steps, timings=timings
            )
        log(
            f"{sample.name:<24} round 1 {100 * row['first']['miou']:5.1f}  cold {100 * row['cold']['miou']:5.1f} "
            f"{row['cold']['seconds']:5.2f} s  "
            + "  ".join(
                f"warm ({name}) {100 * warm['miou']:5.1f} {warm['seconds']:5.2f} s" for name, warm in row["warm"].items()
            )
        )
        rows.append(row)
    return rows


def summarise(rows: list[dict], settings: list[dict]) -> list[dict]:
    """Per refine setting: median time ratio warm / cold and steps, mean mIoU of round 1, cold and warm, the verdict."""
    cold_miou = float(np.mean([row["cold"]["miou"] for row in rows]))
    summary = []
    for setting in settings:
        warm = [row["warm"][setting_name(setting)] for row in rows]
        ratio = statistics.median(run["seconds"] / row["cold"]["seconds"] for run, row in zip(warm, rows, strict=True))
        warm_miou = float(np.mean([run["miou"] for run in warm]))
        steps = [run["steps"] for run in warm if run["steps"] is not None]
        summary.append(
            dict(
                **setting,
                steps_median=statistics.median(steps) if steps else None,
                time_ratio_median=ratio,
                cold_seconds_median=statistics.median(row["cold"]["seconds"] for row in rows),
                warm_seconds_median=statistics.median(run["seconds"] for run in warm),
                first_miou=float(np.mean([row["first"]["miou"] for row in rows])),
                cold_miou=cold_miou,
                warm_miou=warm_miou,
                meets_targets=bool(ratio <= TIME_TARGET and 100 * (cold_miou - warm_miou) <= MIOU_TARGET),
            )
        )
    return summary


def markdown(summary: list[dict]) -> str:
    lines = [
        "| refine | steps (median) | warm / cold time (median) | cold s | warm s | mIoU round 1 | mIoU cold | mIoU warm "
        "| targets |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        steps = "—" if s["steps_median"] is None else f"{s['steps_median']:g}"
        lines.append(
            f"| {setting_name(s)} | {steps} | {100 * s['time_ratio_median']:.0f}% | {s['cold_seconds_median']:.2f} "
            f"| {s['warm_seconds_median']:.2f} | {100 * s['first_miou']:.2f} | {100 * s['cold_miou']:.2f} "
            f"| {100 * s['warm_miou']:.2f} | {'met' if s['meets_targets'] else 'missed'} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from apps.arguments import engine_options

    options = engine_options(args)
    settings = [
        dict(refine_steps=steps, refine_stop_loss=stop)
        for steps in args.refine_step_counts or [options.refine_steps]
        for stop in args.refine_stop_losses or [options.refine_stop_loss]
    ]
    runner = ThroughService(args.server) if args.server else InProcess(options)
    photos = rounds(args.data_dir, args.scribbles, args.second, args.limit)
    rows = measure(runner, photos, settings, (lambda line: print(line, flush=True)) if args.verbose else lambda line: None)
    summary = summarise(rows, settings)
    table = markdown(summary)
    print(table)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"refine-{Path(args.data_dir).resolve().name}" + ("-service" if args.server else "")
    report = dict(
        data=str(args.data_dir),
        scribbles=args.scribbles,
        second=args.second or "first half of each class's strokes, then all",
        path="service" if args.server else "in-process",
        options=options.model_dump(),
        summary=summary,
        images=rows,
    )
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / name}.json")
    return 0


def add_parser(commands) -> None:
    from apps.arguments import add_engine_options, option_values
    from gdc.options import SegmentOptions

    parser = commands.add_parser("refine", help="a second round of strokes: refine (warm) against from scratch (cold)")
    parser.add_argument("data_dir", help="folder with images/, gt/ and a scribbles folder")
    parser.add_argument("--scribbles", default="scribbles", help="round 1's scribble folder (default scribbles)")
    parser.add_argument(
        "--second",
        help="round 2 adds this folder's strokes to round 1's (e.g. scribbles-2); "
        "unset: round 1 is half of each class's strokes, round 2 all",
    )
    parser.add_argument(
        "--refine-steps",
        dest="refine_step_counts",
        type=option_values("refine_steps"),
        help="refine_steps to compare, comma-separated (default: the engine's)",
    )
    parser.add_argument(
        "--refine-stop-loss",
        dest="refine_stop_losses",
        type=option_values("refine_stop_loss"),
        help="refine_stop_loss values to compare, comma-separated, each with every --refine-steps (default: the engine's)",
    )
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--server", help="run every round as a job on this gdc server (e.g. http://127.0.0.1:8000)")
    parser.add_argument("--output-dir", default="benchmarks", help="where to write the JSON report")
    parser.add_argument("--verbose", action="store_true", help="print every image's figures")
    compared = ("refine_steps", "refine_stop_loss")  # their flags above take lists to compare
    add_engine_options(parser, names=tuple(name for name in SegmentOptions.model_fields if name not in compared))
    parser.set_defaults(func=run)
