"""``gdc bench peers``: gdc beside the scribble tools people use today (issue 7).

Every method gets the same decoded image and scribbles, is timed per image (wall time
of the call) in one run, and is scored by :func:`apps.evaluate.score`. The peers are
OpenCV's GrabCut, scikit-image's random walker and its trainable segmenter (a random
forest on multiscale features, the recipe of ilastik's pixel classifier). Their
libraries come with gdc's ``bench`` extra and are imported inside each peer.
"""
from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apps.arguments import at_least_one
from apps.evaluate import Sample, load_dataset, score_labels

# (image (H, W, 3) uint8 RGB, scribbles (H, W) 0 unlabeled / one value per class)
#   -> (H, W) label map holding the scribbles' values.
Labeller = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Iterations of cv2.grabCut: the OpenCV-Python tutorial (py_grabcut) passes 5 with
# GC_INIT_WITH_MASK, and Rother et al. 2004 report convergence within a few iterations.
GRABCUT_ITERATIONS = 5


def scribble_values(scribbles: np.ndarray) -> np.ndarray:
    """The sorted class values drawn in ``scribbles`` (0 is unlabeled)."""
    return np.unique(scribbles[scribbles > 0])


def gdc_labels(image: np.ndarray, scribbles: np.ndarray, seed: int = 0, **changes) -> np.ndarray:
    """gdc with its default options, or those with ``changes``, at ``seed``."""
    from gdc.engine import segment
    from gdc.options import SegmentOptions

    return segment(image, scribbles, SegmentOptions(seed=seed, **changes)).labels


def grabcut_labels(image: np.ndarray, scribbles: np.ndarray) -> np.ndarray:
    """OpenCV GrabCut initialised from the scribble mask; exactly two classes.

    The lower scribble value is the foreground (1 in the GrabCut sets). Per
    ``cv2.grabCut.__doc__`` and the GrabCutClasses enum, scribbled pixels are the
    "obvious" GC_FGD / GC_BGD and the mode is GC_INIT_WITH_MASK, as in the
    OpenCV-Python tutorial (py_grabcut). The docs leave the class of unmarked pixels
    open: they start as GC_PR_BGD, because scribbles span the whole frame, so unmarked
    pixels are mostly background (unlike inside a GC_INIT_WITH_RECT rect, which starts
    GC_PR_FGD); on the GrabCut sets GC_PR_FGD scored far lower, so the peer gets the better.
    """
    import cv2

    values = scribble_values(scribbles)
    if len(values) != 2:
        raise ValueError(f"GrabCut separates two classes; the scribbles hold {len(values)}")
    foreground, background = values
    mask = np.full(scribbles.shape, cv2.GC_PR_BGD, np.uint8)
    mask[scribbles == foreground] = cv2.GC_FGD
    mask[scribbles == background] = cv2.GC_BGD
    return np.where(run_grabcut(image, mask, cv2.GC_INIT_WITH_MASK), foreground, background).astype(np.uint8)


def run_grabcut(image: np.ndarray, mask: np.ndarray, mode: int, rectangle=None) -> np.ndarray:
    """(H, W) bool foreground of OpenCV grabCut, GRABCUT_ITERATIONS iterations, on the RGB ``image`` from ``mask``
    (its GrabCutClasses; changed in place) or, with GC_INIT_WITH_RECT, the ``rectangle`` (x, y, width, height)."""
    import cv2

    # Colour models of 1 x 65 float64, zeroed, as the tutorial allocates them.
    background_model, foreground_model = np.zeros((1, 65)), np.zeros((1, 65))
    bgr = np.ascontiguousarray(image[..., ::-1])
    cv2.setRNGSeed(0)  # the GMMs start from k-means on OpenCV's global RNG: seed it so runs repeat
    cv2.grabCut(bgr, mask, rectangle, background_model, foreground_model, GRABCUT_ITERATIONS, mode)
    return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))


def random_walker_labels(image: np.ndarray, scribbles: np.ndarray) -> np.ndarray:
    """scikit-image's random walker on the colour image, scribbles as markers.

    Per ``help(skimage.segmentation.random_walker)``: the Notes ask that each channel
    be normalised separately (weights use one std over all channels), so each goes to
    [0, 1]; ``channel_axis=-1`` for colour; mode ``bf`` because the docstring calls it
    fast for images under 1024x1024, which all of ours are; beta keeps its default, 130.
    """
    from skimage.segmentation import random_walker

    pixels = image.astype(np.float64)
    low, high = pixels.min(axis=(0, 1)), pixels.max(axis=(0, 1))
    normalised = (pixels - low) / np.maximum(high - low, 1.0)
    # It renumbers markers to 1..K and answers in those, so pass 1..K and map back.
    values = scribble_values(scribbles)
    markers = np.where(scribbles > 0, np.searchsorted(values, scribbles) + 1, 0)
    walked = random_walker(normalised, markers, beta=130, mode="bf", channel_axis=-1)
    return values[walked - 1].astype(np.uint8)


def random_forest_labels(image: np.ndarray, scribbles: np.ndarray) -> np.ndarray:
    """scikit-image's trainable segmenter: a random forest on multiscale features.

    The defaults of ``skimage.future.TrainableSegmenter`` (future/trainable_segmentation.py):
    ``multiscale_basic_features`` with its defaults (intensity, edges and texture at
    sigma 0.5..16), here over the colour channels, and RandomForestClassifier(n_estimators=100,
    n_jobs=-1), seeded so runs repeat. Not the gallery example's max_samples=0.05: that
    subsamples its dense training mask, and would leave 45 to 250 scribble pixels per tree.
    """
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    features = multiscale_basic_features(image, channel_axis=-1)
    forest = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=0)
    return predict_segmenter(features, fit_segmenter(scribbles, features, forest)).astype(np.uint8)


@dataclass(frozen=True)
class Method:
    """A benchmarked method: how it labels an image, what it needs, where it applies."""

    labels: Labeller
    modules: tuple[str, ...]  # importable modules it needs, each in EXTRAS
    two_classes_only: bool = False
    seeded: bool = False  # ``labels`` takes ``seed=``, and runs once per seed asked for


METHODS: dict[str, Method] = {
    "gdc": Method(gdc_labels, ("torch",), seeded=True),
    # Without the edge-aware labelling step: the head's argmax, as before issue 14.
    "gdc-no-edges": Method(functools.partial(gdc_labels, edges=False), ("torch",), seeded=True),
    "grabcut": Method(grabcut_labels, ("cv2",), two_classes_only=True),
    "random-walker": Method(random_walker_labels, ("skimage",)),
    "random-forest": Method(random_forest_labels, ("skimage", "sklearn")),
}
# The gdc extra (pyproject.toml) that installs each module the benchmark needs.
EXTRAS = {"torch": "engine", "skimage": "engine", "cv2": "bench", "sklearn": "bench", "matplotlib": "bench"}
DISTRIBUTIONS = ("gdc", "torch", "numpy", "opencv-python-headless", "scikit-image", "scikit-learn")


def two_region_example(height: int = 64, width: int = 96, seed: int = 0) -> Sample:
    """A noisy dark-left / bright-right image with one scribble per side (classes 0, 1)."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((height, width), np.uint8)
    truth[:, width // 2 :] = 1
    image = np.where(truth[..., None] == 1, 190, 60) + rng.normal(0, 12, (height, width, 3))
    scribbles = np.zeros((height, width), np.uint8)
    scribbles[height // 4 : -height // 4, width // 8] = 1
    scribbles[height // 4 : -height // 4, -width // 8] = 2
    return Sample("two-regions", np.clip(image, 0, 255).astype(np.uint8), scribbles, truth)


def applies(method: Method, scribbles: np.ndarray) -> bool:
    """Whether ``method`` can label an image with these scribbles (GrabCut needs exactly two classes)."""
    return not method.two_classes_only or len(scribble_values(scribbles)) == 2


def compare(
    samples: Iterable[Sample],
    names: list[str],
    log: Callable[[str], None] = lambda line: None,
    seeds: tuple[int, ...] = (0,),
) -> dict:
    """Per method, per image (and per seed for a seeded method): name, mIoU, pixel accuracy and seconds.

    Each method first runs once on a small synthetic image, untimed, so imports and
    model loading are not charged to the first real image. Methods take turns on each
    image, so load from other work on the machine falls on all of them alike.
    """
    warm_up = two_region_example()
    for name in names:
        METHODS[name].labels(warm_up.image, warm_up.scribbles, **(dict(seed=seeds[0]) if METHODS[name].seeded else {}))
    rows: dict[str, list[dict]] = {name: [] for name in names}
    for sample in samples:
        for name in names:
            method = METHODS[name]
            if not applies(method, sample.scribbles):
                continue
            for seed in seeds if method.seeded else (None,):
                started = time.perf_counter()
                labels = method.labels(sample.image, sample.scribbles, **({} if seed is None else dict(seed=seed)))
                seconds = time.perf_counter() - started
                miou, accuracy = score_labels(labels, sample.truth)
                row = dict(name=sample.name, miou=miou, accuracy=accuracy, seconds=seconds)
                rows[name].append(row if seed is None else dict(row, seed=seed))
                at = "" if seed is None else f" seed {seed}"
                log(f"{sample.name:<24} {name + at:<21} mIoU {100 * miou:5.1f}  acc {100 * accuracy:5.1f}  {seconds:6.2f} s")
    return rows


def summarise(rows: list[dict]) -> dict:
    """Mean mIoU and accuracy, median and p90 seconds over the runs of a method.

    Rows of a seeded method carry their seed: the mIoU is then the mean over seeds of each
    seed's mean, ``miou_std`` their spread, and ``seeds`` each seed's mean.
    """
    if not rows:
        return dict(images=0, miou=None, accuracy=None, median_seconds=None, p90_seconds=None)
    seconds = [row["seconds"] for row in rows]
    summary = dict(
        images=len({row["name"] for row in rows}),
        miou=float(np.mean([row["miou"] for row in rows])),
        accuracy=float(np.mean([row["accuracy"] for row in rows])),
        median_seconds=float(np.median(seconds)),
        p90_seconds=float(np.percentile(seconds, 90)),
    )
    if "seed" in rows[0]:
        per_seed = {
            seed: float(np.mean([row["miou"] for row in rows if row["seed"] == seed]))
            for seed in sorted({row["seed"] for row in rows})
        }
        summary.update(seeds=per_seed, miou_std=float(np.std(list(per_seed.values()))))
    return summary


def notes(rows: dict[str, list[dict]], total: int) -> list[str]:
    """What the table cannot show: subsets a method was limited to, peers that could not run."""
    lines = []
    for name, method_rows in rows.items():
        ran = {row["name"] for row in method_rows}
        if not METHODS[name].two_classes_only or len(ran) == total:
            continue
        line = f"{name} separates two classes: it ran only on the {len(ran)} of {total} images with exactly 2 scribble classes"
        if ran:
            on_those = ", ".join(
                f"{other} {100 * np.mean([row['miou'] for row in other_rows if row['name'] in ran]):.1f}"
                for other, other_rows in rows.items()
            )
            line += f"; mIoU on those: {on_those}"
        lines.append(line + ".")
    if importlib.util.find_spec("ilastik") is None:
        lines.append(
            "ilastik: not installed (it is not on PyPI: it ships as its own installer and on conda); "
            "its pixel classifier, a random forest on multiscale filter features, is what random-forest reproduces."
        )
    return lines


def versions() -> dict[str, str | None]:
    found = {}
    for distribution in DISTRIBUTIONS:
        try:
            found[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            found[distribution] = None
    return found


def benchmark(
    root: str | Path,
    *,
    scribbles: str = "scribbles",
    names: list[str] | None = None,
    limit: int | None = None,
    seeds: tuple[int, ...] = (0,),
    log: Callable[[str], None] = lambda line: None,
) -> dict:
    """Run the chosen methods (all by default) on a data set; a JSON-ready report."""
    names = names or list(METHODS)
    samples = list(itertools.islice(load_dataset(root, scribbles), limit))
    rows = compare(samples, names, log, seeds)
    report = dict(
        data=str(root),
        scribbles=scribbles,
        images=len(samples),
        seeds=list(seeds),
        machine=dict(platform=platform.platform(), cpus=os.cpu_count()),
        versions=versions(),
        methods={name: dict(summary=summarise(method_rows), images=method_rows) for name, method_rows in rows.items()},
        notes=notes(rows, len(samples)),
    )
    if {"gdc", "gdc-no-edges"} & set(names):
        from gdc.options import SegmentOptions

        report["gdc_options"] = SegmentOptions().model_dump()
    return report


def format_table(report: dict) -> str:
    """The report's summary as a Markdown table, notes below it."""

    def cell(value: float | None, scale: float, digits: int) -> str:
        return "n/a" if value is None else f"{scale * value:.{digits}f}"

    title = f"{Path(report['data']).name}/{report['scribbles']}, {report['images']} images"
    lines = [
        f"**{title}**",
        "",
        "| method | images | mIoU | pixel acc | median s | p90 s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, method in report["methods"].items():
        s = method["summary"]
        spread = f" ± {100 * s['miou_std']:.1f}" if len(s.get("seeds", ())) > 1 else ""
        lines.append(
            f"| {name} | {s['images']} | {cell(s['miou'], 100, 1)}{spread} | {cell(s['accuracy'], 100, 1)} "
            f"| {cell(s['median_seconds'], 1, 2)} | {cell(s['p90_seconds'], 1, 2)} |"
        )
    lines += [""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines)


def image_means(rows: list[dict]) -> dict[str, float]:
    """Each image's mIoU, averaged over its seeds where a seeded method ran it several times."""
    scores: dict[str, list[float]] = {}
    for row in rows:
        scores.setdefault(row["name"], []).append(row["miou"])
    return {name: float(np.mean(values)) for name, values in scores.items()}


def plot(report: dict, path: str | Path) -> None:
    """Per-image mIoU (images sorted by one method's score) and mIoU against seconds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    per_image, versus_time = figure.subplots(1, 2, width_ratios=(3, 2))
    methods = report["methods"]
    means = {name: image_means(method["images"]) for name, method in methods.items()}  # one point per image
    reference = max(methods, key=lambda name: len(means[name]))  # the first that ran on every image
    order = {image: i for i, image in enumerate(sorted(means[reference], key=means[reference].get))}
    for name, method in methods.items():
        rows, summary = method["images"], method["summary"]
        images = means[name]
        colour = per_image.plot([order[image] for image in images], [100 * miou for miou in images.values()], "o",
                                ms=4, alpha=0.8, label=name)[0].get_color()
        versus_time.scatter([row["seconds"] for row in rows], [100 * row["miou"] for row in rows], s=8, alpha=0.3, color=colour)
        if summary["images"]:
            versus_time.errorbar(
                summary["median_seconds"], 100 * summary["miou"],
                xerr=[[0], [summary["p90_seconds"] - summary["median_seconds"]]],
                fmt="D", ms=8, color=colour, capsize=3, label=f"{name} ({summary['images']} images)",
            )
    per_image.set(xlabel=f"image, sorted by {reference} mIoU", ylabel="mIoU (%)", ylim=(0, 101),
                  title=f"{Path(report['data']).name}/{report['scribbles']}: per-image mIoU")
    per_image.legend(loc="lower right")
    versus_time.set(xscale="log", xlabel="seconds per image (dots: images; diamond: median, bar to p90)",
                    ylabel="mIoU (%)  (diamond: mean)", ylim=(0, 101), title="quality against time")
    versus_time.legend(loc="lower right", fontsize="small")
    figure.savefig(path, dpi=120)


def method_list(text: str) -> list[str]:
    """Comma-separated method names, checked against :data:`METHODS`."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(METHODS)}")
    return names


def seed_list(text: str) -> tuple[int, ...]:
    """Comma-separated non-negative whole numbers."""
    seeds = tuple(int(part) for part in text.split(",") if part.strip().isdigit())
    if not seeds or len(seeds) != len(text.split(",")):
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds such as 0,1,2, got {text!r}")
    return seeds


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``peers`` command to a ``bench`` command's subparsers."""
    parser = subparsers.add_parser(
        "peers",
        help="compare gdc (with and without its edge step) with GrabCut, random walker and a random forest on a data set",
        description="Run gdc (default options, and without the edge step) and each peer on the same images and scribbles; print a table, "
        "write JSON and a plot named after the data set and scribble set.",
    )
    parser.add_argument("data_dir", help="folder with images/, gt/ and a scribbles folder")
    parser.add_argument("--scribbles", default="scribbles", help="scribble folder name (default scribbles)")
    parser.add_argument("--limit", type=at_least_one("images"), help="only the first N images")
    parser.add_argument("--seeds", type=seed_list, default=(0,),
                        help="comma-separated seeds for gdc's runs (default 0); the peers are deterministic and run once")
    parser.add_argument("--methods", type=method_list, default=list(METHODS),
                        help=f"comma-separated subset of {','.join(METHODS)} (default all)")
    parser.add_argument("--output-dir", default="benchmarks", help="where the JSON and PNG go (default benchmarks)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    needed = {module: name for name in args.methods for module in METHODS[name].modules} | {"matplotlib": "the plot"}
    missing = [
        f"{user} needs {module} (pip install 'gdc[{EXTRAS[module]}]')"
        for module, user in needed.items()
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        print("gdc bench peers: " + "; ".join(missing), file=sys.stderr)
        return 2
    report = benchmark(args.data_dir, scribbles=args.scribbles, names=args.methods, limit=args.limit, seeds=args.seeds, log=print)
    print()
    print(format_table(report))
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    stem = f"peers-{Path(args.data_dir).resolve().name}-{args.scribbles}"
    (output / f"{stem}.json").write_text(json.dumps(report, indent=2))
    plot(report, output / f"{stem}.png")
    print(f"\nwrote {output / stem}.json and .png")
    return 0


if __name__ == "__main__":
    bench = argparse.ArgumentParser(prog="gdc bench")
    add_parser(bench.add_subparsers(required=True, metavar="COMMAND"))
    parsed = bench.parse_args()
    sys.exit(parsed.func(parsed))
