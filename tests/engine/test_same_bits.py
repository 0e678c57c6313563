"""The engine gives the same bits as before it was split into steps (issue 24).

``same_bits.json`` holds SHA-256 digests of the outputs of ``gdc.engine.segment`` as it was
before the split (one 164-line function), re-recorded six times since (five in issue 26): when the
context branch began reading the features through the fuse conv's folded weights, and when the
upsampling became torch's bilinear resize (the same functions, rounded otherwise; the labels
kept their bits); when the edge step began labelling a shrunk image at its working size (85 of
the cold run's 12,288 labels changed); when Adam became fused (the same update, rounded
otherwise: the probabilities changed, the labels and steps did not); when a refine's momentum
became 0.5 (the refine's outputs changed, the cold run's did not); and when training came to compute
the head on the ring around its cells alone, drawing its offsets there, and sampling added the local
branch inside the context branch's table (issue 41: every output changed; recorded on an AMD
EPYC, where the earlier digests, from an Intel Xeon, could not be checked). At fixed seeds, on a scene
drawn in code from scikit-image photos: a cold run that shrinks the image to its working size, and a refine from
it with more strokes. Any change to what the steps compute, their order or their random draws
changes a digest. Regenerate with ``python -m tests.engine.test_same_bits`` (from the repository's
root) only when a change of the numbers is intended, and say so in the commit.

Floating-point results depend on the CPU's kernels (torch picks them by instruction set, oneDNN
also by the CPU's caches) and on the thread count, so the runs use one thread and the test skips on
a CPU of another capability or model than the one the digests were recorded on.
"""
import hashlib
import json
import platform
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gdc.engine import segment
from gdc.options import SegmentOptions
from tests.conftest import make_scene

RECORDED = Path(__file__).with_name("same_bits.json")
# 96 x 128 is over the smallest max_pixels (10,000), so the cold run shrinks, upsamples, and labels at the working size
# and then along the borders at full size.
COLD = SegmentOptions(seed=3, steps=6, samples=12, precision="float32", max_pixels=10_000)
REFINE = COLD.model_copy(update={"refine_steps": 5, "refine_samples": 3, "edges": False, "refine_stop_loss": 0.0})


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def outputs() -> dict:
    """Digests of the cold run's and the refine's labels, probabilities and uncertainty."""
    image, _, scribbles = make_scene(3, shape=(96, 128))
    first = scribbles.copy()
    first[:, 64:] = 0  # the first round has the left half of the strokes
    cold = segment(image, first, COLD, threads=1)
    refined = segment(image, scribbles, REFINE, previous=cold.warm_start, threads=1)
    assert refined.warm
    return {
        "cpu": cpu(),
        **{
            f"{name}.{part}": digest(getattr(result, part))
            for name, result in (("cold", cold), ("refine", refined))
            for part in ("labels", "probabilities", "uncertainty")
        },
        "cold.steps": cold.steps,
        "refine.steps": refined.steps,
    }


def cpu() -> str:
    """torch's instruction set for the CPU, and the CPU's model (Linux names it in /proc/cpuinfo)."""
    info = Path("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", info.read_text(), re.MULTILINE) if info.exists() else None
    return f"{torch.backends.cpu.get_cpu_capability()} on {model.group(1) if model else platform.processor()}"


def test_segment_gives_the_recorded_bits():
    recorded, here = json.loads(RECORDED.read_text()), cpu()
    if here != recorded["cpu"]:
        pytest.skip(f"digests recorded with {recorded['cpu']}; this CPU is {here}")
    assert outputs() == recorded


if __name__ == "__main__":
    RECORDED.write_text(json.dumps(outputs(), indent=1) + "\n")
