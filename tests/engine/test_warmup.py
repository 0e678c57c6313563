import numpy as np

from gdc import warmup
from gdc.features import cached_stem
from gdc.options import SegmentOptions


def test_the_warm_up_runs_one_step_of_a_photo_sized_scene_under_the_options_samples(monkeypatch):
    calls = []
    monkeypatch.setattr(warmup, "segment", lambda image, scribbles, options: calls.append((image, scribbles, options)))
    warmup.warm_up(SegmentOptions(samples=5, precision="float32", seed=None))
    ((image, scribbles, options),) = calls
    assert image.shape == (*warmup.WARM_UP_SIZE, 3) and image.dtype == np.uint8
    assert scribbles.shape == warmup.WARM_UP_SIZE and set(np.unique(scribbles)) == {0, 1, 2}
    assert (options.steps, options.samples, options.precision, options.seed) == (1, 5, "float32", 0)


def test_the_warm_up_loads_the_stem(device):
    cached_stem.cache_clear()
    warmup.warm_up(SegmentOptions(device=device, samples=1))
    assert cached_stem.cache_info().currsize == 1
