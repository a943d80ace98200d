"""AIS throughput: `vaekit.evaluate.ais_log_likelihood` against a minimal hand-written batched AIS
loop (the same sigmoid schedule, HMC with L leapfrog steps and a per-chain step size adapted
towards 0.65, all chains and examples in one batch) on the same model, measured side by side in
one run, in (examples x chains x steps)/s. Both start from the prior; the goal is a ratio of
at least 1.0. The models are the MNIST one-layer VAE of Burda et al. (`--preset burda-vae`) and
the `hvae-mnist` hierarchy, with their initial weights (a trained run costs the same) or, with
`--vae RUN --hvae RUN`, trained ones.

    python benchmarks/ais_throughput.py --examples 50 --chains 8 --steps 20 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch
from torch import Tensor

import vaekit
from vaekit.config import PRESETS
from vaekit.evaluate import ais_log_likelihood
from vaekit.models import LatentVariableModel


def plain_ais(model: LatentVariableModel, x: Tensor, steps: int, chains: int, leapfrog: int,
              seed: int = 0) -> Tensor:
    """The textbook loop: U(z) = -(log p(z) + beta log p(x|z)) and its gradient by autograd at
    every leapfrog position, Metropolis-Hastings, step sizes x1.02 / x0.98."""
    g = torch.Generator().manual_seed(seed)
    s = torch.sigmoid(torch.linspace(-4, 4, steps + 1, dtype=torch.float64))
    betas = ((s - s[0]) / (s[-1] - s[0])).tolist()
    n = len(x)
    z = model.sample_latents(chains * n, g).view(chains, n, -1)

    def energy(z: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor]:
        z = z.detach().requires_grad_(True)
        log_pz, log_px_z = model.joint_terms(x, z)
        u = -(log_pz + beta * log_px_z)
        (grad,) = torch.autograd.grad(u.sum(), z)
        return u.detach(), grad, log_px_z.detach()

    log_w = torch.zeros(chains, n, dtype=torch.float64)
    step = torch.full((chains, n, 1), 0.05)
    avg = torch.full((chains, n), 0.65)
    for t in range(1, steps + 1):
        u0, grad, log_px_z = energy(z, betas[t])
        log_w += (betas[t] - betas[t - 1]) * log_px_z.double()
        if t == steps:
            break
        p0 = torch.randn(z.shape, generator=g)
        p = p0 - 0.5 * step * grad
        z1 = z
        for i in range(leapfrog):
            z1 = z1 + step * p
            u1, grad, _ = energy(z1, betas[t])
            p = p - (step if i + 1 < leapfrog else 0.5 * step) * grad
        log_a = (u0 + 0.5 * p0.pow(2).sum(-1) - u1 - 0.5 * p.pow(2).sum(-1)).clamp(max=0)
        log_a = torch.nan_to_num(log_a, nan=-math.inf)
        accept = torch.rand(log_a.shape, generator=g).log() < log_a
        z = torch.where(accept[..., None], z1, z)
        avg = 0.9 * avg + 0.1 * log_a.exp()
        step = step * torch.where(avg > 0.65, 1.02, 0.98)[..., None]
        step = step.clamp(1e-4, 0.5)
    return torch.logsumexp(log_w, 0) - math.log(chains)


def _model(name: str, run: str | None) -> LatentVariableModel:
    if run:
        return vaekit.load(run)
    torch.manual_seed(0)
    config = vaekit.Config(**{**PRESETS[name], "data": "digits"}).validate()
    return vaekit.build_model(config, (784,)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--leapfrog", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vae", help="a trained one-layer run (default: initial weights)")
    parser.add_argument("--hvae", help="a trained hierarchy run (default: initial weights)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.examples * args.chains * args.steps
    results = {}
    for name, run in (("burda-vae", args.vae), ("hvae-mnist", args.hvae)):
        model = _model(name, run)
        x = (torch.rand(args.examples, *model.event_shape,
                        generator=torch.Generator().manual_seed(0)) < 0.3).float()
        times: dict[str, list[float]] = {"vaekit": [], "plain": []}
        for _ in range(args.repeats):  # interleaved: both see the same machine load
            for kind in times:
                start = time.perf_counter()
                if kind == "vaekit":
                    ais_log_likelihood(model, x, args.steps, args.chains, args.leapfrog)
                else:
                    plain_ais(model, x, args.steps, args.chains, args.leapfrog)
                times[kind].append(time.perf_counter() - start)
        best = {kind: min(t) for kind, t in times.items()}
        results[name] = {"vaekit_per_s": work / best["vaekit"], "plain_per_s": work / best["plain"],
                         "ratio": best["plain"] / best["vaekit"]}
        print(f"{name}: vaekit {work / best['vaekit']:.0f}, plain loop "
              f"{work / best['plain']:.0f} (examples x chains x steps)/s, ratio "
              f"{best['plain'] / best['vaekit']:.2f}x")
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "torch": torch.__version__, "threads": args.threads,
                      "examples": args.examples, "chains": args.chains, "steps": args.steps,
                      "leapfrog": args.leapfrog, "results": results}))


if __name__ == "__main__":
    main()
