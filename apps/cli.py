"""The ``gdc`` command: segment one image, evaluate on a data set, run the service, benchmark.

The top floor: engine commands live here, ``serve``, ``worker`` and ``submit`` in
:mod:`apps.service_commands`, ``batch`` in :mod:`apps.batch`, and ``bench`` in the checkout's
``benchmarks/`` package (it is not in the wheel). Heavy modules (torch) are imported inside the
commands that need them, so ``gdc --help`` and the service commands start fast.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from gdc.errors import InputError
from gdc.options import unknown_names
from gdc.threads import passive_openmp

from . import batch, service_commands
from .arguments import (
    ProgressBar,
    add_engine_options,
    add_prompt_options,
    check_decodable,
    check_files,
    engine_options,
    prompts,
)

# The source checkout this package runs from, when it does (an editable install, ./run gdc): its benchmarks/
# package gives `gdc bench`. An installed wheel has none.
CHECKOUT = Path(__file__).resolve().parents[1]


def cmd_segment(args: argparse.Namespace) -> int:
    # Before any work, torch's import included: a missing file or folder is found in a second, not after the run.
    outputs = {"-o": args.output, "--probs": args.probs, "--overlay": args.overlay, "--uncertainty": args.uncertainty}
    box, clicks = prompts(args)
    if args.scribbles is None and box is None and not clicks:
        raise InputError("give the scribbles, --box or --points")
    check_files(read={"image": args.image, "scribbles": args.scribbles}, write=outputs)
    check_decodable(args.image)

    import numpy as np
    from PIL import Image

    from gdc.engine import segment_prompted
    from gdc.imageio import colour_table, encode_png, overlay, read_image, read_scribbles
    from gdc.prompts import check_prompts
    from gdc.warmup import warm_up

    options = engine_options(args)
    started = time.perf_counter()
    image = read_image(args.image)
    check_prompts(image.shape[1], image.shape[0], box, clicks)
    scribbles, colours = read_scribbles(args.scribbles) if args.scribbles is not None else (None, None)
    if colours is not None and (box is not None or clicks):
        raise InputError("beside --box or --points, give label scribbles (1 the object, 2 its background), not colours")
    decoded = time.perf_counter()
    # Start-up, as importing torch is, and not timed: torch._dynamo's import, the stem's weights, first-use loads
    # (gdc/warmup.py); after reading the files, so that a bad one fails at once.
    warm_up(options)
    warmed = time.perf_counter()
    bar = ProgressBar(sys.stderr.isatty())
    try:
        result = segment_prompted(image, scribbles, options, box=box, clicks=clicks, progress=bar)
    finally:
        bar.close()
    encode_start = time.perf_counter()
    table = colour_table(list(result.classes), colours)
    # Colour scribbles get their mask back in the same colours; label scribbles in their values.
    Path(args.output).write_bytes(encode_png(result.labels if colours is None else table[result.labels]))
    if args.probs:
        np.save(args.probs, result.probabilities)
    if args.overlay:
        Image.fromarray(overlay(image, result.labels, table=table)).save(args.overlay)
    if args.uncertainty:
        Image.fromarray((result.uncertainty * 255).round().astype(np.uint8)).save(args.uncertainty)
    finished = time.perf_counter()
    if args.timings:
        phases = {"decode": decoded - started, **result.timings, "encode": finished - encode_start}
        for phase, seconds in phases.items():
            print(f"{phase:<12} {seconds:.2f} s")
        print(f"total {decoded - started + finished - warmed:.2f} s")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    seeds = [int(s) for s in args.seeds.split(",")]
    report = evaluate(
        args.data_dir,
        scribbles=args.scribbles,
        prompt=args.prompt,
        options=engine_options(args),
        seeds=seeds,
        limit=args.limit,
        log=print,
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, naming the closest flag of the chosen command for each unknown one (``--stepz``: ``--steps``)."""

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            command = self
            while command._subparsers is not None:  # down to the (sub)command that was chosen
                (choose,) = command._subparsers._group_actions
                command = choose.choices[getattr(parsed, choose.dest)]
            flags = [word.split("=")[0] for word in extra if word.startswith("--")]
            known = [flag for flag in command._option_string_actions if flag.startswith("--")]
            if flags:
                command.error(unknown_names(flags, known, "argument", listed=False))
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gdc", description="Scribbles to full label maps with Gaussian dynamic convolution.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    seg = commands.add_parser("segment", help="segment one image from its scribbles, a box or clicks")
    seg.add_argument("image", help="the image (PNG, JPEG, WebP, TIFF, BMP)")
    seg.add_argument(
        "scribbles",
        nargs="?",
        help="PNG of the image's size: labels (0 unlabeled, 1..K classes) or colours (black or transparent "
        "unlabeled, each colour a class); optional with --box or --points",
    )
    seg.add_argument(
        "-o", "--output", required=True, help="mask PNG to write, in the scribbles' values (or colours)"
    )
    seg.add_argument("--probs", help="write per-class probabilities (K, H, W) float32 as .npy")
    seg.add_argument("--overlay", help="write the image tinted by class as PNG")
    seg.add_argument("--uncertainty", help="write the uncertainty map as a grey PNG")
    seg.add_argument("--timings", action="store_true", help="print the time of each phase and the total")
    add_prompt_options(seg)
    add_engine_options(seg)
    seg.set_defaults(func=cmd_segment)

    ev = commands.add_parser("eval", help="score the engine on a data set with ground truth")
    ev.add_argument("data_dir", help="folder with images/, gt/ and a scribbles folder")
    ev.add_argument("--scribbles", default="scribbles", help="scribble folder name (default scribbles)")
    ev.add_argument(
        "--prompt", choices=("scribbles", "box"), default="scribbles",
        help="what the engine is given: the scribble folder's strokes (default), or a box around the ground truth's "
        "object (class 0) grown by apps.evaluate.BOX_MARGIN pixels, scored as the object against the rest",
    )
    ev.add_argument("--seeds", default="0", help="comma-separated seeds, each a full run (default 0)")
    ev.add_argument("--limit", type=int, help="only the first N images")
    ev.add_argument("--json", help="write per-image and mean scores here")
    add_engine_options(ev)
    ev.set_defaults(func=cmd_eval)

    batch.add_parser(commands)

    add_bench_parser(commands)
    service_commands.register(commands)
    return parser


def add_bench_parser(commands) -> None:
    """``gdc bench BENCHMARK``: the checkout's ``benchmarks/`` package registers its commands; without a checkout,
    ``gdc bench`` says where they are."""
    bench = commands.add_parser("bench", help="benchmarks of a source checkout: speed, and quality and time against "
                                "other tools")
    if not (CHECKOUT / "benchmarks" / "__init__.py").is_file():
        bench.set_defaults(func=_no_benchmarks)
        return
    if str(CHECKOUT) not in sys.path:
        sys.path.append(str(CHECKOUT))
    from benchmarks.commands import add_parsers

    add_parsers(bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK"))


def _no_benchmarks(args: argparse.Namespace) -> int:
    print("gdc bench: error: the benchmarks live in the source checkout's benchmarks/ folder, not in the installed "
          "package; clone the repository and run ./run gdc bench there", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    passive_openmp()  # before any command imports torch
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "threads", None) is not None:  # the engine commands'
            from gdc.torch_threads import set_threads

            set_threads(args.threads)
        return args.func(args)
    except (InputError, FileNotFoundError) as error:
        print(f"gdc: error: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:  # an option out of range
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        print(f"gdc: error: {problems}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gdc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
