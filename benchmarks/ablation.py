"""``gdc bench ablation``: the paper's Table I (which conv) and Table IV (which Σ) on a data set.

Every configuration is the default engine with one option changed, scored by
:func:`apps.evaluate.evaluate` over several seeds (mean ± std of the per-seed means).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from gdc.options import HEAD_CONVS

DEFAULT_SIGMAS = "0.05,0.1,0.2,0.3"


def configurations(convs: list[str], sigmas: list[float], default_sigma: float) -> list[dict]:
    """The option changes to run: each conv at the default Σ, then GDC at each other Σ."""
    runs = [dict(conv=conv) for conv in convs]
    runs += [dict(conv="gdc", sigma=sigma) for sigma in sigmas if sigma != default_sigma or "gdc" not in convs]
    return runs


def label(change: dict) -> str:
    return " ".join(f"{key}={value}" for key, value in change.items())


def markdown(rows: list[dict]) -> str:
    lines = ["| configuration | mIoU (%) | pixel acc. (%) | s / image |", "|---|---|---|---|"]
    for row in rows:
        s = row["summary"]
        lines.append(
            f"| {row['label']} | {100 * s['miou']['mean']:.2f} ± {100 * s['miou']['std']:.2f} "
            f"| {100 * s['accuracy']['mean']:.2f} | {s['seconds']['mean']:.2f} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from apps.arguments import engine_options
    from apps.evaluate import evaluate

    base = engine_options(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for change in configurations(args.convs, args.sigmas, base.sigma):
        report = evaluate(
            args.data_dir,
            scribbles=args.scribbles,
            options=base.model_copy(update=change),
            seeds=seeds,
            limit=args.limit,
            log=print if args.verbose else lambda line: None,
        )
        rows.append(dict(label=label(change), change=change, summary=report["summary"], runs=report["runs"]))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    table = markdown(rows)
    print(table)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = f"ablation-{Path(args.data_dir).resolve().name}-{args.scribbles}"
    (out / f"{name}.json").write_text(
        json.dumps(dict(data=str(args.data_dir), scribbles=args.scribbles, seeds=seeds, base=base.model_dump(), rows=rows), indent=2)
    )
    (out / f"{name}.md").write_text(table + "\n")
    print(f"wrote {out / name}.json and .md")
    return 0


def add_parser(commands) -> None:
    from apps.arguments import add_engine_options, option_values

    parser = commands.add_parser("ablation", help="Table I (conv) and Table IV (sigma) on a data set, over seeds")
    parser.add_argument("data_dir", help="folder with images/, gt/ and a scribbles folder")
    parser.add_argument("--scribbles", default="scribbles", help="scribble folder name (default scribbles)")
    parser.add_argument("--convs", type=option_values("conv"), default=list(HEAD_CONVS),
                        help="convs to compare, comma-separated (default: all)")
    parser.add_argument("--sigmas", type=option_values("sigma"), default=DEFAULT_SIGMAS,
                        help=f"GDC sigmas to sweep, comma-separated (default {DEFAULT_SIGMAS}; empty: none)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--output-dir", default="benchmarks", help="where to write JSON and the Markdown table")
    parser.add_argument("--verbose", action="store_true", help="print every image's score")
    add_engine_options(parser)
    parser.set_defaults(func=run)
