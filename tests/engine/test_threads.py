"""segment() runs on the engine's thread policy (gdc/torch_threads.py) and gives the caller's torch setting back."""
import pytest
import torch

import gdc.engine
from gdc.engine import segment
from gdc.options import SegmentOptions
from gdc.threads import DEFAULT_THREADS
from gdc.torch_threads import set_threads

TINY = SegmentOptions(steps=1, samples=1, edges=False)


@pytest.fixture
def caller_threads(monkeypatch):
    """A caller (script, notebook) that chose nothing through gdc and runs torch on 2 threads; both put back after."""
    monkeypatch.setattr("gdc.torch_threads._chosen", None)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def threads_while_segmenting(scene, **kwargs) -> int:
    image, _, scribbles = scene
    seen = set()
    segment(image, scribbles, TINY, progress=lambda *_: seen.add(torch.get_num_threads()), **kwargs)
    (threads,) = seen
    return threads


def test_the_library_runs_on_the_default_and_gives_the_callers_setting_back(scene2, caller_threads):
    assert threads_while_segmenting(scene2) == DEFAULT_THREADS
    assert torch.get_num_threads() == caller_threads


def test_a_count_given_to_segment_is_used(scene2, caller_threads):
    assert threads_while_segmenting(scene2, threads=3) == 3
    assert torch.get_num_threads() == caller_threads


def test_a_count_the_process_chose_is_kept(scene2, caller_threads):
    set_threads(3)  # as `gdc --threads 3` and the workers do
    assert threads_while_segmenting(scene2) == 3


def test_probabilities_read_after_segment_come_on_its_count(scene2, caller_threads, monkeypatch):
    """A shrunk image's full-resolution probabilities are computed when first read, still on segment()'s count."""
    image, _, scribbles = scene2
    seen = []
    upsample = gdc.engine.full_resolution

    def watched(*args):
        seen.append(torch.get_num_threads())
        return upsample(*args)

    monkeypatch.setattr("gdc.engine.full_resolution", watched)
    result = segment(image, scribbles, TINY.model_copy(update={"edges": True, "max_pixels": 10_000}), threads=3)
    assert seen == []
    assert result.probabilities.shape[1:] == image.shape[:2]
    assert seen == [3] and torch.get_num_threads() == caller_threads
