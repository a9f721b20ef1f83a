import torch

from aeframe_builtins.techniques.pixel_shuffle_decoder import PixelShuffleICNR, icnr_

from techniques import build, train_cell


def test_parameter_count_counts_weight_norms_g_and_v(registry):
    model = build("pixel-shuffle", registry).model
    assert sum(p.numel() for p in model.parameters()) == 3_079_042
    assert sum(p.numel() for p in model.decoder.parameters()) == 1_538_982
    names = {n for n, _ in model.decoder.named_parameters()}
    assert "2.conv.parametrizations.weight.original0" in names  # g
    assert "2.conv.parametrizations.weight.original1" in names  # v


def test_decoder_layout_and_output(registry):
    model = build("pixel-shuffle", registry).model
    block = model.decoder[2]
    assert isinstance(block, PixelShuffleICNR) and block.conv.kernel_size == (1, 1)
    assert block.conv.out_channels == 48 and model.decoder[4].conv.out_channels == 12
    assert isinstance(model.decoder[3], torch.nn.BatchNorm2d) and isinstance(model.decoder[5], torch.nn.BatchNorm2d)
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 3, 32, 32) and 0 <= out.min() and out.max() <= 1


def test_blur_keeps_the_size_and_averages_the_top_left_neighbours():
    block = PixelShuffleICNR(1, 1)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = block.blur(block.pad(x))
    assert y.shape == x.shape
    assert y[0, 0, 0, 0] == 0 and y[0, 0, 1, 1] == (0 + 1 + 4 + 5) / 4


def sub_pixels(block: PixelShuffleICNR, x: torch.Tensor) -> torch.Tensor:
    return block.shuffle(torch.relu(block.conv(x)))


def test_default_init_is_the_studys_effective_one_not_icnr():
    torch.manual_seed(0)
    y = sub_pixels(PixelShuffleICNR(8, 4), torch.rand(1, 8, 3, 3))
    assert not torch.allclose(y[..., 0::2, 0::2], y[..., 1::2, 1::2])


def test_icnr_makes_every_sub_pixel_start_equal():
    torch.manual_seed(0)
    block = PixelShuffleICNR(8, 4, icnr=True)
    y = sub_pixels(block, torch.rand(1, 8, 3, 3))
    for i, j in ((0, 1), (1, 0), (1, 1)):
        assert torch.allclose(y[..., 0::2, 0::2], y[..., i::2, j::2])
    # Weight norm keeps that: g equals the norm of the ICNR direction.
    v = block.conv.parametrizations.weight.original1
    g = block.conv.parametrizations.weight.original0
    assert torch.allclose(g.flatten(), v.flatten(1).norm(dim=1))


def test_icnr_fill_repeats_one_kernel_per_output_channel():
    w = icnr_(torch.empty(12, 5, 1, 1), 2)
    assert torch.equal(w[0], w[3]) and not torch.equal(w[0], w[4])


def test_scale_one_keeps_the_input_size():
    block = PixelShuffleICNR(6, 3)
    x = torch.rand(2, 6, 8, 8)
    assert block(x).shape == (2, 3, 16, 16)
    block.scale = 1
    assert block(x).shape == (2, 3, 8, 8)


def test_row_name_and_parameter(registry):
    from aeframe.planning.plan import resolve_technique

    assert resolve_technique("pixel-shuffle", registry).label == "Pixel Shuffle"
    assert resolve_technique("pixel-shuffle[icnr=true]", registry).label == "Pixel Shuffle [icnr=true]"


def test_a_few_epochs_on_shapes_reduce_the_loss(registry, workspace):
    record = train_cell("pixel-shuffle", registry, workspace)
    assert record.status == "done"
    assert record.curve[-1]["train_loss"] < record.curve[0]["train_loss"]
    assert record.stats["params"] == 3_079_042
