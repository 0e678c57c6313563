import pytest
import torch

from gdc.cells import Rings
from gdc.net import GDCHead, head_input


def seeded_head(conv: str, sigma: float = 0.2) -> GDCHead:
    return GDCHead(3, conv=conv, width=8, sigma=sigma, generator=torch.Generator().manual_seed(1))


def some_cells(height: int = 12, width: int = 17) -> torch.Tensor:
    where = torch.zeros(height, width, dtype=torch.bool)
    where[2:5, 3:9] = True
    where[11, 16] = where[0, 0] = True  # corner cells: their rings run off the map
    return where.flatten().nonzero().squeeze(1)


# Σ = 0 puts a random conv's taps on the centre, so its draws cannot differ between the two paths.
@pytest.mark.parametrize("conv, sigma", [("gdc", 0.0), ("uniform", 0.0), ("normal", 0.2), ("dilated", 0.2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_logits_at_some_cells_equal_the_whole_head_there(conv, sigma, dtype):
    features = head_input(torch.randn(1, 40, 12, 17), dtype)
    cells = some_cells()
    head = seeded_head(conv, sigma)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        full = head(features)[0].flatten(1).T[cells]
        limited = head.logits_at(features, Rings.around(cells, 12, 17))
    tolerance = 1e-5 if dtype == torch.float32 else 0.05
    torch.testing.assert_close(limited.float(), full.float(), atol=tolerance, rtol=tolerance)


def test_logits_at_some_cells_give_the_whole_heads_weight_gradients_there():
    features = head_input(torch.randn(1, 40, 12, 17), torch.float32)
    cells = some_cells()
    heads = [seeded_head("gdc", 0.0) for _ in range(2)]
    full = heads[0](features)[0].flatten(1).T[cells]
    limited = heads[1].logits_at(features, Rings.around(cells, 12, 17))
    full.square().sum().backward()
    limited.square().sum().backward()
    for (name, want), got in zip(heads[0].named_parameters(), heads[1].parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_logits_at_draw_offsets_at_the_inner_ring_alone():
    features = head_input(torch.randn(1, 40, 12, 17), torch.float32)
    head = seeded_head("gdc")
    rings = Rings.around(torch.tensor([5 * 17 + 5]), 12, 17)
    state = head.generator.get_state()
    head.logits_at(features, rings)
    drawn = torch.Generator().set_state(state)
    torch.randn(1, 9, 2, len(rings.inner), generator=drawn)  # what one step's offsets take
    assert torch.equal(head.generator.get_state(), drawn.get_state())
