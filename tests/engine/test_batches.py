import numpy as np
import pytest
import torch

from gdc.batches import LabelledCells
from gdc.engine import segment
from gdc.hooks import Hooks
from gdc.net import GDCHead, head_input
from gdc.options import SegmentOptions
from gdc.training import make_optimiser, train_head


def grid_targets(classes: int = 3, size: tuple[int, int] = (20, 30), labelled: float = 0.3, seed: int = 0):
    """(K, h, w) targets as cell_targets makes them: class-weighted counts over a share of the cells, summing to 1;
    a few cells hold two classes."""
    generator = torch.Generator().manual_seed(seed)
    counts = torch.zeros(classes, *size)
    where = torch.rand(size, generator=generator) < labelled
    which = torch.randint(0, classes, size, generator=generator)
    counts[which, torch.arange(size[0])[:, None], torch.arange(size[1])] = where * torch.randint(1, 17, size).float()
    counts[0, 0, 0], counts[1, 0, 0] = 5.0, 11.0
    weights = counts.sum((1, 2)).sum() / (classes * counts.sum((1, 2)))
    targets = counts * weights.view(-1, 1, 1)
    return targets / targets.sum()


def full_loss(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The loss of every labelled cell: -Σ t log p over the (K, h, w) grid."""
    return -(targets * logits.log_softmax(0)).sum()


def test_the_cells_hold_each_labelled_cells_share_and_class_distribution():
    targets = grid_targets()
    cells = LabelledCells.of(targets, draws=0)
    assert cells.cells.tolist() == targets.sum(0).flatten().nonzero().squeeze(1).tolist()
    torch.testing.assert_close(cells.mass.sum(), torch.tensor(1.0))
    torch.testing.assert_close(cells.targets.sum(1), torch.ones(len(cells.cells)))
    torch.testing.assert_close(cells.mass[:, None] * cells.targets, targets.flatten(1)[:, cells.cells].T)


def test_all_cells_every_step_give_the_full_loss():
    targets = grid_targets()
    logits = torch.randn(targets.shape)
    batch = LabelledCells.of(targets, draws=0).batch(torch.Generator())
    at = logits.flatten(1).T[batch.rings.cells]
    torch.testing.assert_close(batch.loss(at), full_loss(targets, logits))


@pytest.mark.parametrize("draws, everything", [(8, False), (400, True)])
def test_a_ring_no_larger_than_the_draws_apart_trains_on_every_cell(draws, everything):
    cells = LabelledCells.of(grid_targets(labelled=0.1), draws)
    assert (cells.everything is not None) == everything and cells.draws == (0 if everything else draws)


def test_drawn_batches_give_the_full_loss_in_expectation():
    targets = grid_targets()
    logits = torch.randn(targets.shape)
    cells = LabelledCells.of(targets, draws=32)
    assert cells.everything is None
    generator = torch.Generator().manual_seed(0)
    expected_weight = torch.zeros(targets[0].numel())
    losses = []
    rounds = 1000
    for _ in range(rounds):
        batch = cells.batch(generator)
        assert batch.weights.sum().item() == pytest.approx(1.0) and len(batch.rings.cells) <= 32
        expected_weight[batch.rings.cells] += batch.weights / rounds
        losses.append(batch.loss(logits.flatten(1).T[batch.rings.cells]).item())
    # Each cell's weight is its share of the loss on average, so the loss is the full loss on average.
    torch.testing.assert_close(expected_weight[cells.cells], cells.mass, atol=2e-3, rtol=0.1)
    assert np.mean(losses) == pytest.approx(full_loss(targets, logits).item(), rel=0.02)


def test_each_cell_is_drawn_the_floor_or_the_ceiling_of_its_expected_count():
    cells = LabelledCells.of(grid_targets(), draws=64)
    expected = 64 * cells.mass
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        batch = cells.batch(generator)
        counts = torch.zeros(len(cells.cells))
        counts[torch.searchsorted(cells.cells, batch.rings.cells)] = batch.weights * 64
        assert (counts >= expected.floor() - 1e-4).all() and (counts <= expected.ceil() + 1e-4).all()


def test_the_same_generator_draws_the_same_batches():
    cells = LabelledCells.of(grid_targets(), draws=16)
    first, second = (cells.batch(torch.Generator().manual_seed(4)) for _ in range(2))
    assert torch.equal(first.rings.cells, second.rings.cells) and torch.equal(first.weights, second.weights)
    other = cells.batch(torch.Generator().manual_seed(5))
    assert not torch.equal(first.rings.cells, other.rings.cells)


# Σ = 0 puts the GDC's taps on the centre: its draws cannot differ between the two trainings.
@pytest.mark.parametrize("conv, sigma", [("gdc", 0.0), ("normal", 0.2)])
@pytest.mark.parametrize("optimiser", ["adam", "sgd"])
def test_training_on_the_labelled_cells_and_their_rings_equals_training_on_the_whole_grid(conv, sigma, optimiser):
    targets = grid_targets(classes=2, size=(14, 19), labelled=0.2)
    features = torch.randn(1, 40, 14, 19)
    options = SegmentOptions(optimiser=optimiser, conv=conv, sigma=sigma, width=8)
    heads = [
        GDCHead(2, conv=conv, width=8, sigma=sigma, generator=torch.Generator().manual_seed(3)) for _ in range(2)
    ]
    optimisers = [make_optimiser(head.parameters(), options) for head in heads]
    whole, limited = heads
    for _ in range(4):  # the whole grid's head and loss, as training was before it read the rings alone
        loss = full_loss(targets, whole(head_input(features, torch.float32))[0])
        optimisers[0].zero_grad()
        loss.backward()
        optimisers[0].step()
    steps = train_head(
        limited, optimisers[1], features, LabelledCells.of(targets, draws=0), steps=4, stop_below=0.0,
        generator=limited.generator, dtype=torch.float32, hooks=Hooks(None, None),
    )
    assert steps == 4
    for (name, want), got in zip(whole.named_parameters(), limited.parameters(), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4, msg=name)


def test_a_job_with_drawn_batches_repeats_at_its_seed(scene3, device):
    image, _, scribbles = scene3
    options = SegmentOptions(device=device, steps=6, samples=2, train_cells=8, seed=2)
    a, b = (segment(image, scribbles, options) for _ in range(2))
    c = segment(image, scribbles, options.model_copy(update={"seed": 3}))
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    assert not np.allclose(a.probabilities, c.probabilities)
