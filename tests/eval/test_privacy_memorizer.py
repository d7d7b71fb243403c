"""Known answer for the LOSS attack on a real trained model (not a replay): an MLP VAE with free per-pixel
logits, no dropout and no free bits, trained 600 steps (38 epochs) on the 1,000 digits training images,
fits them far better than the test images, and `attack_model` catches it (AUC >= 0.9; measured 0.957).
The same set-up under DP-SGD is in benchmarks/privacy/memorization.sh (too slow for a unit test)."""

import pytest
import torch

from genzoo import api
from genzoo.eval.privacy import attack_model

MEMORIZER = {"architecture": "mlp", "latent_dim": 16, "hidden_widths": [512, 512], "pixel_distribution": "categorical",
             "dropout": 0.0, "free_bits": 0.0}


@pytest.mark.slow  # 7 s (load 1) to 21 s (load 3.4) on 2 cores: 600 training steps
def test_a_vae_that_memorized_digits_is_caught_by_the_loss_attack():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, _ = api.train("vae", "digits", out=None, steps=600, batch_size=64, lr=3e-3, val_every=0, seed=0,
                             model_overrides=MEMORIZER, progress=False)
        loss, distance = attack_model(model, "digits", nll_options={"k": 8})
    finally:
        torch.set_num_threads(threads)
    assert loss["attack"].startswith("LOSS") and loss["n_members"] == loss["n_nonmembers"] == 447
    assert loss["auc"] >= 0.9 and loss["auc_ci95"][0] >= 0.85 and loss["tpr_at_1pct_fpr"] >= 0.2
    # its samples are new images (a replay would score ~1 here): only the likelihood reveals the memorization
    assert distance["auc"] < 0.75
