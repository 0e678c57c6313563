import math
import pickle

import numpy as np
import pytest
import torch

from apps.evaluate import score
from gdc.engine import segment
from gdc.errors import Cancelled, InputError
from gdc.features import cached_stem
from gdc.options import HEAD_CONVS, SegmentOptions
from gdc.sampling import full_resolution
from gdc.scribbles import block_counts, shrink, working_size
from gdc.training import class_weights, head_dtype

FAST = dict(steps=10, samples=4)


@pytest.mark.parametrize("scene", ["scene2", "scene3"])
def test_segments_a_scene_from_thin_scribbles(scene, request, device):
    image, truth, scribbles = request.getfixturevalue(scene)
    result = segment(image, scribbles, SegmentOptions(device=device))
    miou, accuracy = score(result.labels, truth)
    # Chance is about 1/K; the textures are photos, so a few thin legs are lost.
    assert miou > 0.7 and accuracy > 0.85


def test_result_contract(scene3, device):
    image, truth, scribbles = scene3
    # Any positive values name the classes; the result speaks in the same values.
    relabelled = np.choose(scribbles, [0, 10, 20, 30]).astype(np.uint8)
    result = segment(image, relabelled, SegmentOptions(device=device, **FAST))
    height, width = truth.shape
    assert result.classes == (10, 20, 30)
    assert result.labels.shape == (height, width) and result.labels.dtype == np.uint8
    assert set(np.unique(result.labels)) <= {10, 20, 30}
    assert result.probabilities.shape == (3, height, width) and result.probabilities.dtype == np.float32
    np.testing.assert_allclose(result.probabilities.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(result.labels, np.array([10, 20, 30])[result.probabilities.argmax(0)])
    assert result.uncertainty.shape == (height, width)
    assert 0 <= result.uncertainty.min() and result.uncertainty.max() <= 1
    assert set(result.timings) == {"superpixels", "features", "optimise", "sample", "upsample", "edges"}


def test_same_seed_same_result_other_seed_differs(scene2, device):
    image, _, scribbles = scene2
    cached_stem.cache_clear()  # the first call loads the stem: it must not shift the draws
    torch.manual_seed(123)  # nor may torch's global random state matter
    a, b = (segment(image, scribbles, SegmentOptions(device=device, seed=5, **FAST)) for _ in range(2))
    c = segment(image, scribbles, SegmentOptions(device=device, seed=6, **FAST))
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    assert not np.allclose(a.probabilities, c.probabilities)


def test_uncertainty_is_highest_where_classes_meet(scene2, device):
    image, truth, scribbles = scene2
    result = segment(image, scribbles, SegmentOptions(device=device))
    edge = np.zeros_like(truth, dtype=bool)
    edge[:, 1:] |= truth[:, 1:] != truth[:, :-1]
    edge[1:, :] |= truth[1:, :] != truth[:-1, :]
    assert result.uncertainty[edge].mean() > 2 * result.uncertainty[~edge].mean()


@pytest.mark.parametrize("conv", HEAD_CONVS)
def test_every_head_conv_runs(conv, scene2, device):
    image, truth, scribbles = scene2
    result = segment(image, scribbles, SegmentOptions(device=device, conv=conv, samples=4))
    assert score(result.labels, truth)[1] > 0.8


@pytest.mark.parametrize("optimiser", ["sgd", "adam"])
def test_each_optimiser_trains_the_head(optimiser, scene2, device):
    image, truth, scribbles = scene2
    # The edge step off: it alone lifts an untrained head's labels on this scene.
    untrained = segment(image, scribbles, SegmentOptions(device=device, steps=0, samples=4, edges=False))
    trained = segment(image, scribbles, SegmentOptions(device=device, optimiser=optimiser, steps=20, samples=4, edges=False))
    assert score(trained.labels, truth)[0] > score(untrained.labels, truth)[0] + 0.2


def test_progress_reports_each_phase_in_order(scene2, device):
    image, _, scribbles = scene2
    calls = []
    segment(image, scribbles, SegmentOptions(device=device, steps=3, samples=25), progress=lambda *a: calls.append(a))
    phases = [phase for phase, _, _ in calls]
    assert list(dict.fromkeys(phases)) == ["superpixels", "features", "optimise", "sample", "edges"]
    assert ("optimise", 3, 3) in calls and ("sample", 25, 25) in calls
    steps = [step for phase, step, _ in calls if phase == "optimise"]
    assert steps == sorted(steps)


def test_cancel_stops_between_steps(scene2, device):
    image, _, scribbles = scene2
    calls = []
    with pytest.raises(Cancelled):
        segment(
            image,
            scribbles,
            SegmentOptions(device=device, steps=50),
            progress=lambda *a: calls.append(a),
            cancel=lambda: len(calls) > 5,
        )
    assert max(step for phase, step, _ in calls if phase == "optimise") < 10


@pytest.mark.parametrize(
    "image,message",
    [
        (np.zeros((20, 20, 4), dtype=np.uint8), "must be RGB"),
        (np.zeros((20, 20, 3), dtype=np.float32), "must be uint8"),
        (np.zeros((4, 20, 3), dtype=np.uint8), "at least 8 pixels"),
    ],
)
def test_bad_images_say_what_is_wrong(image, message):
    scribbles = np.zeros(image.shape[:2], dtype=np.uint8)
    scribbles[0, 0], scribbles[1, 1] = 1, 2
    with pytest.raises(InputError, match=message):
        segment(image, scribbles)


def test_grey_images_are_accepted(scene2, device):
    image, truth, scribbles = scene2
    result = segment(image.mean(2).astype(np.uint8), scribbles, SegmentOptions(device=device, **FAST))
    assert result.labels.shape == truth.shape


def test_large_images_run_at_a_working_size_and_come_back_full_size(scene2, device):
    image, truth, scribbles = scene2
    result = segment(image, scribbles, SegmentOptions(device=device, max_pixels=10_000))
    # The labels read the head's probabilities along their borders alone; the rest come when first read.
    assert "edges" in result.timings and "upsample" not in result.timings
    assert result.labels.shape == truth.shape and result.probabilities.shape[1:] == truth.shape
    assert "upsample" in result.timings
    assert score(result.labels, truth)[0] > 0.65
    # Made to agree with the edge-aware labels, the head's entropy kept.
    classes = np.asarray(result.classes)
    assert np.array_equal(classes[result.probabilities.argmax(0)], result.labels)
    np.testing.assert_allclose(result.probabilities.sum(0), 1, atol=1e-5)
    entropy = -(result.probabilities * np.log(np.maximum(result.probabilities, 1e-30))).sum(0) / math.log(len(classes))
    np.testing.assert_allclose(result.uncertainty, entropy.clip(0, 1), atol=1e-4)


def test_working_size_keeps_the_aspect_and_the_pixel_budget():
    assert working_size(391, 625, 2_000_000) == (391, 625)
    height, width = working_size(4000, 6000, 2_000_000)
    assert height * width <= 2_000_000 and abs(width / height - 1.5) < 0.01


def test_shrinking_keeps_one_pixel_scribbles():
    image = np.zeros((400, 600, 3), dtype=np.uint8)
    labels = np.full((400, 600), -1)
    labels[100, 50:550] = 0  # a 1-pixel line: a plain resize would drop most of it
    labels[300, 50:550] = 1
    small_image, small_labels = shrink(image, labels, (100, 150))
    assert small_image.shape == (100, 150, 3)
    # Columns 50..549 fall in cells 50//4 = 12 to 549//4 = 137.
    assert (small_labels[25, 12:138] == 0).all() and (small_labels[75, 12:138] == 1).all()
    assert np.count_nonzero(small_labels >= 0) == 2 * 126


@pytest.mark.parametrize("size", [(68, 92), (9, 10), (17, 23)])
def test_the_full_resolution_result_holds_the_resized_probabilities_their_entropy_and_argmax(size, monkeypatch):
    import gdc.sampling

    maps = torch.rand(3, 17, 23)
    maps /= maps.sum(0)
    monkeypatch.setattr(gdc.sampling, "BAND_ELEMENTS", 3 * size[1] * 5)  # several bands
    probabilities, uncertainty, top = full_resolution(maps, *size)
    expected = torch.nn.functional.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(torch.from_numpy(probabilities), expected)
    entropy = -(expected * expected.log()).sum(0) / math.log(3)
    torch.testing.assert_close(torch.from_numpy(uncertainty), entropy)
    np.testing.assert_array_equal(top, expected.argmax(0).numpy())


def test_block_counts_add_up_to_the_labelled_pixels():
    labels = np.full((8, 10), -1)
    labels[0, 0] = labels[0, 1] = 0
    labels[7, 9] = 1
    counts = block_counts(labels, 2, (4, 5))
    assert counts.shape == (2, 4, 5)
    assert counts[0, 0, 0] == 2 and counts[1, 3, 4] == 1 and counts.sum() == 3


@pytest.mark.parametrize(
    "scheme,expected", [("paper", [0.75, 0.25]), ("inverse", [2 / 3, 2.0]), ("none", [1.0, 1.0])]
)
def test_class_weights(scheme, expected):
    torch.testing.assert_close(class_weights(torch.tensor([30.0, 10.0]), scheme), torch.tensor(expected))


@pytest.mark.parametrize(
    "capabilities,kernels,expected",
    [
        ({"avx512_bf16": True}, "AVX512", torch.bfloat16),
        ({"amx_bf16": True}, "AVX512", torch.bfloat16),
        ({}, "AVX512", torch.float32),
        ({"avx512_bf16": True}, "AVX2", torch.float32),  # ATEN_CPU_CAPABILITY=avx2: torch's kernels emulate it
    ],
)
def test_auto_precision_uses_bfloat16_only_where_the_cpu_and_torchs_kernels_have_it(
    capabilities, kernels, expected, monkeypatch
):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: kernels)
    assert head_dtype("auto", torch.device("cpu")) == expected
    assert head_dtype("float32", torch.device("cpu")) == torch.float32


def test_bfloat16_and_float32_agree(scene2, device):
    image, truth, scribbles = scene2
    full, half = (
        segment(image, scribbles, SegmentOptions(device=device, precision=p, steps=30, samples=10))
        for p in ("float32", "bfloat16")
    )
    assert (full.labels == half.labels).mean() > 0.95
    assert half.probabilities.dtype == np.float32
    assert abs(score(full.labels, truth)[0] - score(half.labels, truth)[0]) < 0.03


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_agrees_with_cpu(scene2):
    image, truth, scribbles = scene2
    cpu = segment(image, scribbles, SegmentOptions(device="cpu"))
    gpu = segment(image, scribbles, SegmentOptions(device="cuda"))
    assert (cpu.labels == gpu.labels).mean() > 0.97


def test_edge_step_off_gives_the_heads_argmax_and_on_keeps_its_values(scene3, device):
    image, truth, scribbles = scene3
    on, off = (segment(image, scribbles, SegmentOptions(device=device, edges=edges, **FAST)) for edges in (True, False))
    classes = np.array(off.classes)
    # Off: the head's argmax, as before the step existed; on: relabelled, scribbles kept, probabilities agreeing.
    np.testing.assert_array_equal(off.labels, classes[off.probabilities.argmax(0)])
    assert "edges" not in off.timings and on.timings["edges"] > 0
    assert not np.array_equal(on.labels, off.labels)
    marked = scribbles > 0
    np.testing.assert_array_equal(on.labels[marked], scribbles[marked])
    np.testing.assert_array_equal(on.labels, classes[on.probabilities.argmax(0)])
    np.testing.assert_array_equal(np.sort(on.probabilities, 0), np.sort(off.probabilities, 0))
    np.testing.assert_array_equal(on.uncertainty, off.uncertainty)


@pytest.mark.parametrize("max_pixels", [1_000_000, 10_000], ids=["at its size", "shrunk"])
def test_a_result_pickles_whole(scene2, max_pixels):
    """Results cross process boundaries (a pool of workers): a shrunk image's details come along uncomputed."""
    image, _, scribbles = scene2
    result = segment(image, scribbles, SegmentOptions(max_pixels=max_pixels, **FAST))
    copy = pickle.loads(pickle.dumps(result))
    assert np.array_equal(copy.labels, result.labels) and copy.classes == result.classes
    np.testing.assert_array_equal(copy.probabilities, result.probabilities)
    np.testing.assert_array_equal(copy.uncertainty, result.uncertainty)
