"""Quality and speed of gdc through the annotation tools (issue 19), on GrabCut photos.

Label Studio path: each photo is uploaded to a real Label Studio project with gdc as its
interactive ML backend; the scribbles go in as BrushLabels regions (label-studio-sdk's
RLE, as the editor writes it) through Label Studio's interactive-annotating API, and the
brush regions it hands back are decoded and scored. CVAT path: POINTS clicks per class,
sampled from the same strokes, go through the nuclio function (integrations/cvat/main.py)
to gdc's /cvat/interactor, and the 0/255 mask is scored.

    python benchmarks/annotation_tools.py --gdc http://127.0.0.1:8000 --gdc-key KEY \\
        --label-studio http://127.0.0.1:8080 --token TOKEN --redis redis://127.0.0.1:6379 \\
        --json benchmarks/annotation-tools.json

Needs gdc's test extra (label-studio-sdk); gdc and Label Studio already running. With
``--redis`` (gdc's Redis), each Label Studio call also reports its gdc job's own engine
timings, found as the route remembers the task's last job, and the load average after it.
"""
from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
from label_studio_sdk.client import LabelStudio
from label_studio_sdk.converter import brush
from redis import Redis

from apps.evaluate import load_dataset, score, score_labels
from service.labelstudio import task_key

REPO = Path(__file__).resolve().parents[1]
LABELS = ("Foreground", "Background")  # GrabCut scribbles: 1 foreground, 2 background
CONFIG = f"""
<View>
  <Image name="image" value="$image" smart="true"/>
  <BrushLabels name="tag" toName="image">{"".join(f'<Label value="{label}"/>' for label in LABELS)}</BrushLabels>
</View>
"""


def brush_context(scribbles: np.ndarray) -> dict:
    height, width = scribbles.shape
    return {
        "result": [
            {
                "type": "brushlabels",
                "from_name": "tag",
                "to_name": "image",
                "original_width": width,
                "original_height": height,
                "value": {
                    "format": "rle",
                    "rle": brush.mask2rle(((scribbles == value) * 255).astype(np.uint8)),
                    "brushlabels": [label],
                },
            }
            for value, label in enumerate(LABELS, start=1)
        ]
    }


def decode_regions(result: list[dict], width: int, height: int) -> np.ndarray:
    """Label Studio's brush regions as a label map: 1 foreground, 2 background, 0 none."""
    labels = np.zeros((height, width), np.uint8)
    for region in result:
        mask = np.reshape(brush.decode_rle(region["value"]["rle"]), (height, width, 4))[..., 3] > 0
        labels[mask] = LABELS.index(region["value"]["brushlabels"][0]) + 1
    return labels


def label_studio_path(args, samples, files) -> list[dict]:
    ls = LabelStudio(base_url=args.label_studio, api_key=args.token)
    project = ls.projects.create(title=f"gdc GrabCut {time.strftime('%H:%M:%S')}", label_config=CONFIG)
    backend = ls.ml.create(
        project=project.id,
        url=f"{args.gdc}/labelstudio",
        title="gdc",
        is_interactive=True,
        timeout=args.timeout,  # Label Studio's own wait for this backend (100 s unless set)
        auth_method="BASIC_AUTH" if args.gdc_key else "NONE",
        **({"basic_auth_user": "label-studio", "basic_auth_pass": args.gdc_key} if args.gdc_key else {}),
    )
    token = {"Authorization": f"Token {args.token}"}
    uploads = {name: (path.name, path.read_bytes()) for name, path in files.items()}
    imported = httpx.post(
        f"{args.label_studio}/api/projects/{project.id}/import", headers=token, files=uploads, timeout=120
    )
    imported.raise_for_status()
    tasks = {Path(task.data["image"]).stem.split("-", 1)[1]: task for task in ls.tasks.list(project=project.id)}
    rows = []
    for sample in samples:
        started = time.perf_counter()
        answer = httpx.post(
            f"{args.label_studio}/api/ml/{backend.id}/interactive-annotating",
            headers=token,
            json={"task": tasks[sample.name].id, "context": brush_context(sample.scribbles)},
            timeout=args.timeout,
        )
        seconds = time.perf_counter() - started
        body = answer.json()
        if "data" not in body:
            raise RuntimeError(f"{sample.name}: Label Studio answered {body}")
        # Saved as the task's annotation, as the editor does when the annotator accepts it; scored as stored.
        ls.annotations.create(id=tasks[sample.name].id, result=body["data"]["result"])
        (stored,) = ls.annotations.list(id=tasks[sample.name].id)
        height, width = sample.scribbles.shape
        labels = decode_regions(stored.result, width, height)
        miou, accuracy = score_labels(labels, sample.truth)  # classes 0 fg, 1 bg as the truth
        row = {"name": sample.name, "miou": miou, "accuracy": accuracy, "seconds": seconds}
        if args.redis:
            row |= {"timings": job_timings(args, project, tasks[sample.name].id, files[sample.name].read_bytes())}
            row["load_average"] = os.getloadavg()[0]
        rows.append(row)
    print(f"Label Studio project {project.id}: {args.label_studio}/projects/{project.id}/data")
    return rows


def job_timings(args, project, task_id: int, image: bytes) -> dict[str, float]:
    """The engine timings of the job gdc ran last for the task (its route keeps the task's last job id in Redis)."""
    uid = f"{project.id}.{int(project.created_at.timestamp())}"  # the project as Label Studio names it to backends
    with Redis.from_url(args.redis) as redis:
        job_id = redis.get(task_key(uid, {"id": task_id}, image)).decode()
    job = httpx.get(f"{args.gdc}/jobs/{job_id}", headers={"X-API-Key": args.gdc_key}, timeout=30).json()
    return job["timings"]


def sample_points(scribbles: np.ndarray, value: int, count: int, rng: np.random.Generator) -> list[list[int]]:
    ys, xs = np.nonzero(scribbles == value)
    chosen = rng.choice(ys.size, size=min(count, ys.size), replace=False)
    return [[int(xs[i]), int(ys[i])] for i in chosen]


def cvat_path(args, samples, files) -> list[dict]:
    spec = importlib.util.spec_from_file_location("gdc_cvat_function", REPO / "integrations" / "cvat" / "main.py")
    function = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(function)
    function.FORWARD_TIMEOUT = args.timeout  # on a shared machine a job may take longer than a deployment allows
    os.environ["GDC_URL"], os.environ["GDC_API_KEY"] = args.gdc, args.gdc_key or ""
    context = SimpleNamespace(
        user_data=SimpleNamespace(),
        logger=SimpleNamespace(info=print, warn=print, error=print),
        Response=lambda **fields: SimpleNamespace(**fields),
    )
    function.init_context(context)
    rng = np.random.default_rng(args.seed)
    rows = []
    for sample in samples:
        body = {
            "image": base64.b64encode(files[sample.name].read_bytes()).decode(),
            "pos_points": sample_points(sample.scribbles, 1, args.points, rng),
            "neg_points": sample_points(sample.scribbles, 2, args.points, rng),
        }
        started = time.perf_counter()
        answer = function.handler(context, SimpleNamespace(body=body))
        seconds = time.perf_counter() - started
        if answer.status_code != 200:
            raise RuntimeError(f"{sample.name}: gdc answered {answer.status_code} {answer.body[:300]!r}")
        mask = np.array(json.loads(answer.body)["mask"])
        miou, accuracy = score(np.where(mask == 255, 0, 1), sample.truth)
        rows.append({"name": sample.name, "miou": miou, "accuracy": accuracy, "seconds": seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gdc", required=True, help="gdc's URL, as Label Studio reaches it")
    parser.add_argument("--gdc-key", default="", help="gdc's API key, if it has keys")
    parser.add_argument("--label-studio", required=True, help="Label Studio's URL")
    parser.add_argument("--token", required=True, help="a Label Studio legacy API token")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "grabcut"))
    parser.add_argument("--scribbles", default="scribbles-2")
    parser.add_argument("--limit", type=int, default=5, help="the first N photos by name")
    parser.add_argument("--points", type=int, default=20, help="CVAT clicks per class")
    parser.add_argument("--seed", type=int, default=0, help="seed of the click sampling")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for one call")
    parser.add_argument("--redis", help="gdc's Redis URL: report each Label Studio call's engine timings too")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    samples = [sample for _, sample in zip(range(args.limit), load_dataset(args.data, args.scribbles))]
    files = {sample.name: next((Path(args.data) / "images").glob(f"{sample.name}.*")) for sample in samples}
    report = {"data": f"{Path(args.data).name}/{args.scribbles}", "photos": [sample.name for sample in samples]}
    for path, run in (("label_studio", label_studio_path), ("cvat", cvat_path)):
        rows = run(args, samples, files)
        report[path] = {
            "miou": 100 * float(np.mean([row["miou"] for row in rows])),
            "seconds_mean": float(np.mean([row["seconds"] for row in rows])),
            "per_photo": rows,
        }
        print(f"{path}: mIoU {report[path]['miou']:.2f}, {report[path]['seconds_mean']:.2f} s per call")
        for row in rows:
            engine = (
                f"  (engine {sum(row['timings'].values()):.2f} s, load average {row['load_average']:.2f})"
                if "timings" in row
                else ""
            )
            print(f"  {row['name']}: mIoU {100 * row['miou']:.2f}  {row['seconds']:.2f} s{engine}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
