"""The shipped emoji64 model loads strictly with the public API and behaves like its model card."""

import json
from pathlib import Path

import torch

import dq_edge
from dq_edge.models import generate, load_transformer, load_vae

SHIPPED = Path(dq_edge.__file__).parent / "assets" / "model"


def test_shipped_model_loads_and_round_trips_a_sample_image():
    torch.set_num_threads(1)
    vae = load_vae(SHIPPED)
    tr = load_transformer(SHIPPED)
    cfg = json.loads((SHIPPED / "config.json").read_text())
    assert cfg["transformer"] is not None and tr.config.layout.n_classes == 10
    assert (SHIPPED / "MODEL_CARD.md").is_file() and (SHIPPED / "sample_grid.png").is_file()

    from PIL import Image
    import numpy as np

    sample = sorted((SHIPPED.parent / "samples").glob("*.png"))[0]
    img = np.asarray(Image.open(sample).convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    x = torch.from_numpy(img).permute(2, 0, 1)[None]  # [1, 3, 64, 64]
    with torch.no_grad():
        enc = vae.encode(x)
        recon = vae.decode_codes(enc.codes).clamp(-1, 1)
    assert enc.grain.shape == (1, 8, 8) and enc.codes.shape == (1, 16, 16)
    # a trained model reconstructs far better than chance (model card: 20.9 dB mean on test)
    mse = ((recon - x) ** 2).mean().item() / 4.0  # images in [-1,1] -> [0,1] scale
    assert 10 * np.log10(1.0 / mse) > 14.0


def test_shipped_model_generates_complete_token_maps():
    torch.set_num_threads(1)
    tr = load_transformer(SHIPPED)
    out = generate(tr, 2, classes=[0, 5], seed=0, top_k=100)
    assert out.grain.shape == (2, 8, 8) and out.codes.shape == (2, 16, 16)
    assert int(out.codes.max()) < tr.config.layout.n_codes
