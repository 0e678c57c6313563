import pytest
import torch

from gdc.net import GDCHead


def seeded_head(conv: str) -> GDCHead:
    return GDCHead(3, conv=conv, width=8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("conv", ["gdc", "uniform", "normal"])
def test_logits_where_wanted_equal_the_full_head_there(conv):
    features = torch.randn(1, 40, 12, 17)
    where = torch.zeros(12, 17, dtype=torch.bool)
    where[2:5, 3:9] = True
    where[11, 16] = True  # a corner cell: its ring runs off the map
    full = seeded_head(conv)(features)
    head = seeded_head(conv)
    limited = head(features, context_at=head.context_cells(where))
    torch.testing.assert_close(limited[0][:, where], full[0][:, where], atol=1e-5, rtol=1e-5)


def test_limited_head_skips_the_context_far_from_wanted_cells():
    features = torch.randn(1, 40, 12, 17)
    where = torch.zeros(12, 17, dtype=torch.bool)
    where[5, 5] = True
    full = seeded_head("gdc")(features)
    head = seeded_head("gdc")
    limited = head(features, context_at=head.context_cells(where))
    # Two cells away the logits no longer see the context branch.
    assert not torch.allclose(limited[0][:, 9, 12], full[0][:, 9, 12])


def test_context_cells_are_the_wanted_ones_and_one_ring_around():
    where = torch.zeros(4, 5, dtype=torch.bool)
    where[0, 0] = True
    assert seeded_head("gdc").context_cells(where).tolist() == [0, 1, 5, 6]
