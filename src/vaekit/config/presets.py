"""Named setups of published papers and of vaekit's own results (`--preset NAME`): each is a
mapping of Config fields; flags and config files override it."""

from __future__ import annotations

from typing import Any

#: Named setups of published papers; flags and config files override them.
PRESETS: dict[str, dict[str, Any]] = {
    # Burda, Grosse & Salakhutdinov (2016), one stochastic layer, Table 1: VAE 86.76.
    "burda-vae": {"data": "mnist", "net": "mlp", "hidden": (200, 200), "activation": "tanh",
                  "latent_dim": 50, "batch_size": 20, "lr": 1e-3, "lr_schedule": "iwae",
                  "epochs": 3280, "val_fraction": 0.0, "grad_clip": 0.0},
    # The same with the k=50 IWAE bound: 84.78.
    "burda-iwae": {"data": "mnist", "net": "mlp", "hidden": (200, 200), "activation": "tanh",
                   "latent_dim": 50, "batch_size": 20, "lr": 1e-3, "lr_schedule": "iwae",
                   "epochs": 3280, "val_fraction": 0.0, "grad_clip": 0.0, "objective": "iwae",
                   "iw_samples": 50},
    # Tomczak & Welling (2018): one-layer VAE with a VampPrior of 500 pseudo-inputs, 40 latents,
    # 100 epochs of KL warm-up, static binarization: 85.57 (their MLPs are gated; ours are not).
    "vampprior": {"data": "mnist", "net": "mlp", "hidden": (300, 300), "activation": "relu",
                  "latent_dim": 40, "prior": "vamp", "pseudo_inputs": 500, "kl_warmup": 100,
                  "lr": 5e-4, "batch_size": 100, "epochs": 2000, "binarize": "static"},
    # Burda, Grosse & Salakhutdinov (2016), two stochastic layers: 784-200-200-100 (z_1)
    # -100-100-50 (z_2), tanh, their schedule over 3,280 epochs: VAE 85.33, IWAE (k=50) 82.90.
    # Ours is top-down (q(z_1 | z_2, x) reads the state of z_2 as well as x); the layer sizes
    # are theirs.
    "burda-vae-2layer": {"data": "mnist", "model": "hvae", "model_options": {"hvae": {
        "latents": (100, 50), "widths": (200, 100), "depth": 2}}, "activation": "tanh",
        "batch_size": 20, "lr": 1e-3, "lr_schedule": "iwae", "epochs": 3280,
        "val_fraction": 0.0, "grad_clip": 0.0},
    "burda-iwae-2layer": {"data": "mnist", "model": "hvae", "model_options": {"hvae": {
        "latents": (100, 50), "widths": (200, 100), "depth": 2}}, "activation": "tanh",
        "batch_size": 20, "lr": 1e-3, "lr_schedule": "iwae", "epochs": 3280,
        "val_fraction": 0.0, "grad_clip": 0.0, "objective": "iwae", "iw_samples": 50},
    # The hierarchy chosen for one hour of training on 2 CPU cores (see the README's results):
    # three groups of 64, 32 and 16 units, ELU, batch 100, Burda et al.'s schedule, a weight
    # average for evaluation; --time-limit 60 stops it after the last epoch that fits the hour.
    "hvae-mnist": {"data": "mnist", "model": "hvae", "model_options": {"hvae": {
        "latents": (64, 32, 16), "widths": (512, 256, 128), "depth": 2}},
        "activation": "elu", "batch_size": 100, "lr": 1e-3, "lr_schedule": "iwae",
        "epochs": 3280, "val_fraction": 0.0, "ema": 0.999, "time_limit": 60.0},
    # The recommended CPU model (issue #29): hvae-mnist with a fourth group of 8 units, free bits
    # (2 nats per group, so no group switches off) and a cosine schedule over the clock that
    # ends at the 60-minute limit. 83.55 against hvae-mnist's 84.55 (k=1000), trained side by
    # side for an hour on the Xeon, one thread each (docs/results.md, "The best hour").
    "hvae-mnist-hour": {"data": "mnist", "model": "hvae", "model_options": {"hvae": {
        "latents": (64, 32, 16, 8), "widths": (512, 256, 128, 64), "depth": 2}},
        "activation": "elu", "batch_size": 100, "lr": 1e-3, "lr_schedule": "cosine",
        "schedule_over": "time", "free_bits": 2.0, "epochs": 3280, "val_fraction": 0.0,
        "ema": 0.999, "time_limit": 60.0},
    # The convolutional hierarchy for MNIST, sized for an epoch of about a minute and a half on
    # 2 CPU cores (83 s, from 10 steps on the Xeon): residual streams of 8, 16 and 32 channels
    # at 28x28, 14x14 and 7x7; latents of 4 channels, one group at 14x14 and two at 7x7 (a
    # group at 28x28 costs as much again: 177 s an epoch with widths 16, 32, 32). Compiled:
    # torch.compile ran its epochs 1.5 times as fast on the Xeon's 2 cores
    # (benchmarks/conv_compile.py: 5.47 against 8.18 s per 6,000 images).
    "hvae-mnist-conv": {"data": "mnist", "model": "hvae-conv", "model_options": {"hvae-conv": {
        "widths": (8, 16, 32), "groups": (0, 1, 2), "latent_channels": 4, "blocks": 1}},
        "batch_size": 100, "lr": 1e-3, "lr_schedule": "iwae", "epochs": 3280,
        "val_fraction": 0.0, "ema": 0.999, "compile": True},
    # For a GPU (not run on this project's CPU machine): wider, deeper, more groups, VDVAE's
    # stabilisers (update skipping, clipping, a weight average), bf16.
    "hvae-mnist-large": {"data": "mnist", "model": "hvae-conv", "model_options": {"hvae-conv": {
        "widths": (64, 128, 128), "groups": (2, 6, 6), "latent_channels": 16, "blocks": 3}},
        "batch_size": 128, "lr": 5e-4, "lr_schedule": "cosine", "epochs": 400,
        "val_fraction": 0.0, "ema": 0.9995, "skip_threshold": 3000.0, "grad_clip": 400.0,
        "kl_warmup": 10, "bf16": True},
    # 32x32 colour images (an .npz of uint8 (N, 32, 32, 3) or (N, 3, 32, 32)) under the
    # discretized mixture of logistics: give it with --data PATH.npz.
    "hvae-cifar": {"model": "hvae-conv", "model_options": {"hvae-conv": {
        "widths": (64, 128, 128, 128), "groups": (1, 2, 4, 4), "latent_channels": 16,
        "blocks": 2}}, "likelihood": "logistic-mixture", "mixture_components": 10,
        "batch_size": 32, "lr": 2e-4, "lr_schedule": "cosine", "epochs": 200, "ema": 0.9998,
        "skip_threshold": 3000.0, "grad_clip": 200.0},
    # Rezende & Mohamed (2015): 40 latents, 10 planar steps, 400-unit layers: 87.5 (K=10).
    "planar": {"data": "mnist", "net": "mlp", "hidden": (400, 400), "activation": "tanh",
               "latent_dim": 40, "posterior": "planar", "flow_steps": 10, "batch_size": 100,
               "kl_warmup": 10, "epochs": 500},
}
