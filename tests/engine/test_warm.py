"""Warm starts: a refine reuses a previous result's superpixels, features, head and optimiser (gdc/warm.py)."""
import dataclasses

import numpy as np
import pytest
import torch

from apps.evaluate import score
from gdc.engine import segment
from gdc.options import SegmentOptions
from gdc.training import start_head
from gdc.warm import WarmStart

FAST = dict(steps=10, samples=4)


def half_of_strokes(scribbles: np.ndarray) -> np.ndarray:
    """The scribbles' left half: a first round with fewer strokes."""
    first = scribbles.copy()
    first[:, scribbles.shape[1] // 2 :] = 0
    return first


@pytest.fixture(scope="module")
def first_round(scene2):
    image, _, scribbles = scene2
    return segment(image, half_of_strokes(scribbles), SegmentOptions(**FAST))


def test_a_refine_starts_from_the_previous_head(scene2, device):
    image, _, scribbles = scene2
    # A deterministic head and no steps at all: the trained head alone gives the first answer back
    # (up to the features' float16).
    options = SegmentOptions(device=device, conv="normal", steps=10, refine_steps=0)
    first = segment(image, half_of_strokes(scribbles), options)
    again = segment(image, half_of_strokes(scribbles), options, previous=first.warm_start)
    assert again.warm
    np.testing.assert_allclose(again.probabilities, first.probabilities, atol=0.02)
    untrained = segment(image, half_of_strokes(scribbles), options.model_copy(update={"steps": 0}))
    assert not untrained.warm and not np.allclose(untrained.probabilities, first.probabilities, atol=0.02)


def test_a_refine_learns_the_new_strokes(scene2, first_round, device):
    image, truth, scribbles = scene2
    refined = segment(image, scribbles, SegmentOptions(device=device, **FAST), previous=first_round.warm_start)
    assert refined.warm
    assert score(refined.labels, truth)[0] > 0.7


def test_a_refine_trains_and_samples_its_own_counts(scene2, first_round, device):
    image, _, scribbles = scene2
    totals = {}
    options = SegmentOptions(device=device, **FAST, refine_steps=3, refine_samples=2)
    segment(image, scribbles, options, previous=first_round.warm_start, progress=lambda phase, step, total: totals.update({phase: total}))
    assert (totals["optimise"], totals["sample"]) == (3, 2)
    segment(image, scribbles, options, progress=lambda phase, step, total: totals.update({phase: total}))
    assert (totals["optimise"], totals["sample"]) == (FAST["steps"], FAST["samples"])


def test_a_refine_goes_on_with_the_previous_optimiser(scene2, first_round, device):
    image, _, scribbles = scene2
    options = SegmentOptions(device=device, **FAST, refine_steps=3, refine_stop_loss=0)
    before = {name: value.copy() for name, value in first_round.warm_start.optimiser.items()}
    refined = segment(image, scribbles, options, previous=first_round.warm_start)
    assert (first_round.steps, refined.steps) == (FAST["steps"], 3)
    for name, value in before.items():  # the previous round's state is read, never changed
        np.testing.assert_array_equal(first_round.warm_start.optimiser[name], value)
    # Adam counts on from the first round's steps; a fresh one would count 3.
    assert refined.warm_start.optimiser["fuse.weight/step"] == FAST["steps"] + 3
    moments = first_round.warm_start.optimiser["fuse.weight/exp_avg_sq"]
    assert moments.shape == first_round.warm_start.head["fuse.weight"].shape and moments.any()


@pytest.mark.parametrize(
    "optimiser, momentum_of", [("adam", lambda group: group["betas"][0]), ("sgd", lambda group: group["momentum"])]
)
def test_a_refine_trains_at_its_own_rate_and_momentum(first_round, device, optimiser, momentum_of):
    options = SegmentOptions(
        device=device, optimiser=optimiser, lr=0.01, momentum=0.8, refine_lr=0.002, refine_momentum=0.4
    )
    started = {}
    # A refine's head starts under the refine's options, as segment() runs it (SegmentOptions.for_refine).
    rounds = (("cold", None, options), ("refine", first_round.warm_start, options.for_refine()))
    for name, reuse, round_options in rounds:
        _, made = start_head(first_round.classes, round_options, torch.Generator(device), torch.device(device), reuse)
        group = made.param_groups[0]
        started[name] = (group["lr"], momentum_of(group))
    assert started == {"cold": (0.01, 0.8), "refine": (0.002, 0.4)}


def test_a_warm_start_without_optimiser_state_still_refines(scene2, first_round, device):
    image, _, scribbles = scene2
    stateless = dataclasses.replace(first_round.warm_start, optimiser={}, optimiser_kind="")
    options = SegmentOptions(device=device, **FAST, refine_steps=3, refine_stop_loss=0)
    refined = segment(image, scribbles, options, previous=WarmStart.from_bytes(stateless.to_bytes()))
    assert refined.warm and refined.warm_start.optimiser["fuse.weight/step"] == 3


def test_another_optimiser_starts_its_state_afresh(scene2, first_round, device):
    image, _, scribbles = scene2
    options = SegmentOptions(device=device, **FAST, refine_steps=3, refine_stop_loss=0, optimiser="sgd")
    refined = segment(image, scribbles, options, previous=first_round.warm_start)
    assert refined.warm and refined.warm_start.optimiser_kind == "sgd"
    assert set(key.partition("/")[2] for key in refined.warm_start.optimiser) == {"momentum_buffer"}


def test_a_refine_stops_once_its_strokes_are_fitted(scene2, device):
    image, _, scribbles = scene2
    options = SegmentOptions(device=device, steps=20, samples=4, refine_steps=20)
    first = segment(image, scribbles, options)
    agreeing = segment(image, scribbles, options, previous=first.warm_start)
    # The same places with their classes swapped: every stroke contradicts the head.
    swapped = np.where(scribbles > 0, 3 - scribbles, 0).astype(np.uint8)
    contradicting = segment(image, swapped, options, previous=first.warm_start)
    assert agreeing.steps < contradicting.steps
    never = options.model_copy(update={"refine_stop_loss": 0})
    assert segment(image, scribbles, never, previous=first.warm_start).steps == 20
    assert segment(image, scribbles, options.model_copy(update={"refine_stop_loss": 10}), previous=first.warm_start).steps == 0


def test_a_refine_may_add_and_drop_classes(scene3, device):
    image, _, scribbles = scene3
    two = np.where(scribbles == 3, 0, scribbles).astype(np.uint8)
    first = segment(image, two, SegmentOptions(device=device, **FAST))
    three = segment(image, scribbles, SegmentOptions(device=device, **FAST), previous=first.warm_start)
    assert three.warm and three.classes == (1, 2, 3)
    assert 3 in np.unique(three.labels)
    # A class no longer scribbled is dropped; the shared ones keep their trained rows.
    without_two = np.where(scribbles == 2, 0, scribbles).astype(np.uint8)
    dropped = segment(image, without_two, SegmentOptions(device=device, **FAST), previous=three.warm_start)
    assert dropped.warm and dropped.classes == (1, 3)


def test_a_chain_of_refines_stays_warm(scene2, first_round, device):
    image, _, scribbles = scene2
    options = SegmentOptions(device=device, **FAST)
    second = segment(image, scribbles, options, previous=first_round.warm_start)
    third = segment(image, scribbles, options, previous=WarmStart.from_bytes(second.warm_start.to_bytes()))
    assert second.warm and third.warm
    assert third.warm_start.fingerprint == first_round.warm_start.fingerprint


@pytest.mark.parametrize(
    "change",
    [dict(superpixel_size=60), dict(conv="normal"), dict(width=16), dict(max_pixels=10_000)],
    ids=lambda change: next(iter(change)),
)
def test_other_options_the_parts_depend_on_start_cold(scene2, first_round, device, change):
    image, _, scribbles = scene2
    result = segment(image, scribbles, SegmentOptions(device=device, **FAST, **change), previous=first_round.warm_start)
    assert not result.warm


def test_another_image_starts_cold(scene2, scene3, first_round, device):
    image, _, scribbles = scene3
    result = segment(image, scribbles, SegmentOptions(device=device, **FAST), previous=first_round.warm_start)
    assert not result.warm and result.classes == (1, 2, 3)


def test_warm_start_bytes_round_trip(first_round):
    state = first_round.warm_start
    back = WarmStart.from_bytes(state.to_bytes())
    assert (back.fingerprint, back.classes) == (state.fingerprint, state.classes)
    np.testing.assert_array_equal(back.features, state.features)
    np.testing.assert_array_equal(back.segments, state.segments)
    assert back.head.keys() == state.head.keys()
    for name in state.head:
        np.testing.assert_array_equal(back.head[name], state.head[name])
    assert back.optimiser_kind == state.optimiser_kind == "adam"
    assert back.optimiser.keys() == state.optimiser.keys()
    for name in state.optimiser:
        np.testing.assert_array_equal(back.optimiser[name], state.optimiser[name])


def test_warm_start_is_plain_and_bounded(first_round):
    state = first_round.warm_start
    assert state.features.dtype == np.float16 and state.segments.dtype == np.uint16
    # 120x160 working pixels: features at 1/16 of them, 40 channels, float16; segments 2 bytes each.
    assert state.features.nbytes == 40 * 30 * 40 * 2
    # The head's weights, Adam's two moments per weight, and the archive's own headers.
    weights = sum(value.nbytes for value in state.head.values())
    assert len(state.to_bytes()) < state.features.nbytes + state.segments.nbytes + 3 * weights + 64_000


def test_no_superpixels_round_trip(scene2, device):
    image, _, scribbles = scene2
    first = segment(image, scribbles, SegmentOptions(device=device, **FAST, superpixel_size=0))
    back = WarmStart.from_bytes(first.warm_start.to_bytes())
    assert back.segments is None
    assert segment(image, scribbles, SegmentOptions(device=device, **FAST, superpixel_size=0), previous=back).warm


def test_garbage_is_not_a_warm_start():
    with pytest.raises(ValueError, match="not a warm start"):
        WarmStart.from_bytes(b"not an npz")
