"""Hierarchical training throughput: vaekit's trainer on `--model hvae` against a minimal
hand-written top-down VAE of the same architecture (the same layers, the same relative
posterior and soft bounds, Adam, dynamic binarization, a validation ELBO per epoch), measured
side by side in one run. The goal is a ratio of at least 0.9.

    python benchmarks/hvae_throughput.py --data-dir ../shared/data/mnist --epochs 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import platform

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from train_throughput import plain_loop_seconds  # beside this script

import vaekit
from vaekit.data import Dataset, binarize_fixed, load_dataset

CASES = {
    # the hvae-mnist preset's architecture
    "latents 64,32,16, widths 512,256,128, elu, batch 100": dict(
        latents=(64, 32, 16), widths=(512, 256, 128), activation="elu", batch_size=100),
    # Burda et al.'s two-layer shape: small steps, per-step overhead dominates
    "latents 100,50, widths 200,100, tanh, batch 20": dict(
        latents=(100, 50), widths=(200, 100), activation="tanh", batch_size=20),
}
ACT = {"elu": nn.ELU, "tanh": nn.Tanh}
LOG_2PI = math.log(2 * math.pi)


def _mlp(sizes: list[int], act: type[nn.Module], final: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if final or i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class MinimalTopDown(nn.Module):
    """The top-down VAE written out plainly: what `HierarchicalVAE` computes, and nothing else."""

    def __init__(self, latents: tuple[int, ...], widths: tuple[int, ...], act: type[nn.Module],
                 depth: int = 2) -> None:
        super().__init__()
        top = len(latents) - 1
        self.latents, self.top = latents, top
        self.up = nn.ModuleList(_mlp([n, *[w] * depth], act)
                                for n, w in zip([784, *widths[:-1]], widths, strict=True))
        self.down = nn.ModuleList(_mlp([latents[i + 1] + (widths[i + 1] if i + 1 < top else 0),
                                        *[widths[i]] * depth], act) for i in range(top))
        self.prior = nn.ModuleList(nn.Linear(widths[i], 2 * latents[i]) for i in range(top))
        self.post = nn.ModuleList(nn.Linear(widths[i] * (2 if i < top else 1), 2 * latents[i])
                                  for i in range(top + 1))
        self.dec = _mlp([latents[0] + (widths[0] if top else 0), *[widths[0]] * depth, 784],
                        act, final=False)

    def neg_elbo(self, x: Tensor) -> Tensor:
        d, h = [], x
        for stage in self.up:
            h = stage(h)
            d.append(h)
        kl = x.new_zeros(len(x))
        state: Tensor | None = None
        z: Tensor | None = None
        for i in range(self.top, -1, -1):
            if i == self.top:
                mu, lv = self.post[i](d[i]).chunk(2, -1)
                lv = 10 * torch.tanh(lv / 10)
                kl = kl + 0.5 * (mu * mu + lv.exp() - 1 - lv).sum(-1)
            else:
                assert z is not None
                state = self.down[i](z if state is None else torch.cat([z, state], -1))
                mu_p, lv_p = self.prior[i](state).chunk(2, -1)
                lv_p = 8 * torch.tanh(lv_p / 8)
                dmu, dlv = self.post[i](torch.cat([state, d[i]], -1)).chunk(2, -1)
                dlv = 10 * torch.tanh(dlv / 10)
                mu, lv = mu_p + dmu, lv_p + dlv
                kl = kl + 0.5 * (dmu * dmu * torch.exp(-lv_p) + dlv.exp() - 1 - dlv).sum(-1)
            z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        assert z is not None
        logits = self.dec(z if state is None else torch.cat([z, state], -1))
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return rec + kl


def minimal_epoch_seconds(data: Dataset, case: dict, epochs: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    model = MinimalTopDown(case["latents"], case["widths"], ACT[case["activation"]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x_train, x_val = data.train.flatten(1), binarize_fixed(data.val).flatten(1)
    return plain_loop_seconds(model.neg_elbo, opt, x_train, x_val, case["batch_size"], epochs)


def vaekit_epoch_seconds(data: Dataset, case: dict, epochs: int) -> float:
    config = vaekit.Config(data="mnist", model="hvae", model_options={"hvae": {
        "latents": case["latents"], "widths": case["widths"]}}, activation=case["activation"],
        batch_size=case["batch_size"], grad_clip=0.0, epochs=epochs, lr=1e-3)
    result = vaekit.train(config, data=data, progress=False, save=False)
    return min(row["seconds"] for row in result.history)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default="../shared/data/mnist")
    p.add_argument("--epochs", type=int, default=1, help="epochs per measurement (best kept)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats of each loop")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = p.parse_args()
    data = load_dataset("mnist", args.data_dir, val_fraction=0.1)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; {len(data.train)} training images, {len(data.val)} validation")
    for name in args.cases:
        ours, minimal = [], []
        for _ in range(args.repeats):  # alternate, so drift in the machine hits both alike
            minimal.append(minimal_epoch_seconds(data, CASES[name], args.epochs))
            ours.append(vaekit_epoch_seconds(data, CASES[name], args.epochs))
        paired = sorted(m / o for m, o in zip(minimal, ours, strict=True))
        print(json.dumps({"case": name, "minimal_s_per_epoch": round(min(minimal), 3),
                          "vaekit_s_per_epoch": round(min(ours), 3),
                          "vaekit_vs_minimal": round(min(minimal) / min(ours), 3),
                          "vaekit_vs_minimal_paired": [round(r, 3) for r in paired],
                          "vaekit_vs_minimal_median": round(paired[len(paired) // 2], 3)}),
              flush=True)


if __name__ == "__main__":
    main()
