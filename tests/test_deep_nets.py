"""The deep architectures: output and embedding shapes, ResNet-18's size, GRU padding, settings."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from medspark.deep.config import DeepSettings  # noqa: E402
from medspark.deep.nets import build_model, count_parameters, embedding_dim  # noqa: E402


@pytest.mark.parametrize("arch", ["cnn", "resnet18", "autoencoder", "gru"])
@pytest.mark.parametrize("channels,size,classes", [(1, 32, 10), (3, 64, 2)])
def test_shapes(arch, channels, size, classes):
    cfg = DeepSettings(arch=arch, input_size=size, channels=channels,
                       resnet18={"width": 8}, cnn={"widths": [8, 16]})
    spec = cfg.architecture(classes)
    model = build_model(spec).eval()
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        if arch == "gru":
            series = torch.randn(3, 5, channels, size, size)
            out = model(series, torch.tensor([5, 2, 4]))
            emb = model.embed_slices(x)
        else:
            out = model(x)
            emb = model.embed(x)
    assert emb.shape == (3, embedding_dim(spec))
    assert out.shape == ((3, channels, size, size) if arch == "autoencoder" else (3, classes))
    if arch == "autoencoder":
        assert model.reconstruction_error(x).shape == (3,)


def test_resnet18_has_torchvisions_size():
    """ImageNet-shaped (3 channels, 224 px, 1000 classes) it has exactly torchvision
    resnet18's 11,689,512 parameters: the same stem, 8 BasicBlocks and head."""
    spec = DeepSettings(arch="resnet18", input_size=224, channels=3).architecture(1000)
    model = build_model(spec)
    assert count_parameters(model) == 11_689_512
    assert sum(type(m).__name__ == "BasicBlock" for m in model.modules()) == 8


@pytest.mark.parametrize("readout", ["last", "max", "mean"])
def test_gru_padding_does_not_change_a_series(readout):
    torch.manual_seed(0)
    cfg = DeepSettings(arch="gru", input_size=16, gru={"readout": readout, "pool": "max"})
    model = build_model(cfg.architecture(2)).eval()
    series = torch.randn(1, 3, 1, 16, 16)
    padded = torch.cat([series, torch.zeros(1, 4, 1, 16, 16)], dim=1)
    with torch.no_grad():
        a = model(series, torch.tensor([3]))
        b = model(padded, torch.tensor([3]))
        c = model(padded, torch.tensor([7]))
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-4)


def test_settings_checked_before_anything_runs():
    with pytest.raises(ValueError, match="divisible"):
        DeepSettings(arch="autoencoder", input_size=36)
    with pytest.raises(ValueError, match="n_copies"):
        DeepSettings(augment={"n_copies": 2})
    with pytest.raises(ValueError, match="num_processes"):
        DeepSettings(batch_size=2, num_processes=4)
    with pytest.raises(ValueError, match="extra"):
        DeepSettings(cnn={"width": 3})
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model({"arch": "vit", "in_channels": 1, "input_size": 8, "n_outputs": 2})


def test_gru_reads_normalised_slice_embeddings():
    """The slice encoder's pooled ReLU features share a large offset across slices; the GRU
    reads them layer-normalised (mean 0, sd 1 per slice), so its gates do not saturate on a
    nearly constant input. A spec saved without `norm` builds the raw encoder, as before."""
    torch.manual_seed(0)
    cfg = DeepSettings(arch="gru", input_size=32,
                       gru={"encoder_widths": [8, 16, 32], "pool": "max"})
    spec = cfg.architecture(2)
    assert spec["norm"] == "layer"
    model = build_model(spec).train()
    slices = torch.rand(20, 1, 32, 32)
    with torch.no_grad():
        raw = model.encoder(slices)
        z = model.embed_slices(slices)
    assert float(raw.mean()) > 3 * float(raw.std(dim=0).mean())  # offset >> spread
    assert torch.allclose(z.mean(dim=1), torch.zeros(20), atol=1e-5)
    assert torch.allclose(z.std(dim=1, unbiased=False), torch.ones(20), atol=1e-2)
    old = {k: v for k, v in spec.items() if k != "norm"}
    legacy = build_model(old)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("norm.")}
    legacy.load_state_dict(state)  # strict: an old model.pt still loads
    assert torch.equal(legacy.eval().embed_slices(slices), model.eval().encoder(slices))
