import pytest
import torch

from gdc.cells import Rings, conv_at


def test_the_inner_ring_holds_the_cells_and_their_neighbours_inside_the_map():
    rings = Rings.around(torch.tensor([0, 4 * 7 + 3]), 6, 7)  # a corner cell and one inside
    inner = {(r, c) for r in range(2) for c in range(2)} | {(r, c) for r in range(3, 6) for c in range(2, 5)}
    assert [divmod(i, 7) for i in rings.inner.tolist()] == sorted(inner)


def test_taps_point_at_the_neighbours_rows_and_off_the_map_at_the_zero_row():
    rings = Rings.around(torch.tensor([0]), 6, 7)
    inner = rings.inner.tolist()  # (0, 0), (0, 1), (1, 0), (1, 1)
    off = len(inner)
    assert rings.cell_taps.tolist() == [[off, off, off, off, inner.index(0), inner.index(1), off, inner.index(7),
                                         inner.index(8)]]
    for cell, taps in zip(inner, rings.inner_taps.tolist(), strict=True):
        row, col = divmod(cell, 7)
        expected = [(row + dy) * 7 + col + dx if 0 <= row + dy < 6 and 0 <= col + dx < 7 else 6 * 7
                    for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert taps == expected


CELLS = torch.tensor([0, 10, 17, 50, 98])  # on a 9 x 11 map: corners, an edge, inside


@pytest.mark.parametrize("bias", [True, False])
def test_two_convs_at_some_cells_equal_the_whole_maps_convs_there(bias):
    torch.manual_seed(0)
    x = torch.randn(1, 5, 9, 11)
    conv, then = torch.nn.Conv2d(5, 4, 3, padding=1, bias=bias), torch.nn.Conv2d(4, 3, 3, padding=1, bias=bias)
    rings = Rings.around(CELLS, 9, 11)
    first = conv_at(x[0].flatten(1).T, rings.inner_taps, conv)
    second = conv_at(first, rings.cell_taps, then)
    whole_first = conv(x)
    torch.testing.assert_close(first, whole_first[0].flatten(1).T[rings.inner], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second, then(whole_first)[0].flatten(1).T[CELLS], atol=1e-5, rtol=1e-5)


def test_a_folded_pointwise_conv_gives_the_conv_of_its_output_and_the_same_weight_gradients():
    torch.manual_seed(0)
    x = torch.randn(1, 5, 9, 11)
    pointwise, conv = torch.nn.Conv2d(5, 6, 1), torch.nn.Conv2d(6, 4, 3, padding=1)
    rings = Rings.around(CELLS, 9, 11)
    # Zero padding pads the pointwise conv's output: a tap off the map reads zero, not its bias.
    separate = conv(pointwise(x))[0].flatten(1).T[rings.inner]
    folded = conv_at(x[0].flatten(1).T, rings.inner_taps, conv, after=pointwise)
    torch.testing.assert_close(folded, separate, atol=1e-5, rtol=1e-5)
    parameters = [pointwise.weight, pointwise.bias, conv.weight, conv.bias]
    for want, got in zip(torch.autograd.grad(separate.square().sum(), parameters),
                         torch.autograd.grad(folded.square().sum(), parameters), strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
