"""Where the per-step time goes: milliseconds per training step of (1) a minimal hand-written
loop, (2) vaekit's model (`VAE.terms`, analytic KL) inside that same bare loop, and (3) vaekit's
trainer, alternating blocks of steps in one process.

    python benchmarks/step_overhead.py --data-dir ../shared/data/mnist --batch-size 20

(2) - (1) is the cost of the model's abstractions (distribution objects, clamped log-variance,
(samples, batch, latent) tensors); (3) - (2) is the trainer's (non-finite flags, on-device
sums and skip counters, resumable random streams).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import vaekit
from vaekit.data import load_dataset
from vaekit.train.loop import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data/mnist")
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--hidden", default="200,200")
    p.add_argument("--activation", choices=["tanh", "relu"], default="tanh")
    p.add_argument("--latent-dim", type=int, default=50)
    p.add_argument("--steps", type=int, default=1000, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--compile", action="store_true", help="also time the trainer with --compile")
    args = p.parse_args()
    hidden = tuple(int(h) for h in args.hidden.split(","))
    batch, latent, steps = args.batch_size, args.latent_dim, args.steps
    data = load_dataset("mnist", args.data_dir)
    config = vaekit.Config(data="mnist", hidden=hidden, activation=args.activation,
                           latent_dim=latent, batch_size=batch, grad_clip=0.0, epochs=1)
    trainer = Trainer(config, data, None, progress=False)
    trainer.steps_per_epoch = lambda: steps  # type: ignore[method-assign]

    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[args.activation]
    sizes = [784, *hidden]
    enc = nn.Sequential(*itertools.chain.from_iterable(
        (nn.Linear(a, b), act()) for a, b in itertools.pairwise(sizes)),
        nn.Linear(sizes[-1], 2 * latent))
    dec_sizes = [latent, *hidden[::-1]]
    dec = nn.Sequential(*itertools.chain.from_iterable(
        (nn.Linear(a, b), act()) for a, b in itertools.pairwise(dec_sizes)),
        nn.Linear(dec_sizes[-1], 784))
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3, fused=True)
    x_flat, x_images = data.train.flatten(1), trainer.train_x

    def minimal() -> None:
        perm = torch.randperm(len(x_flat))
        for i in range(steps):
            xb = torch.bernoulli(x_flat[perm[i * batch:(i + 1) * batch]])
            mu, log_var = enc(xb).chunk(2, -1)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            rec = F.binary_cross_entropy_with_logits(dec(z), xb, reduction="none").sum(-1)
            kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1)
            loss = (rec + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    model = trainer.model
    model_opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    def model_in_bare_loop() -> None:
        perm = torch.randperm(len(x_images))
        for i in range(steps):
            xb = torch.bernoulli(x_images[perm[i * batch:(i + 1) * batch]])
            t = model.terms(xb, noise=torch.randn(1, batch, latent))
            assert t.kl is not None
            loss = -(t.log_px_z.mean(0) - t.kl).mean()
            model_opt.zero_grad(set_to_none=True)
            loss.backward()
            model_opt.step()

    def vaekit_trainer() -> None:
        trainer.state.step_in_epoch, trainer.epoch_perm = 0, None
        trainer.train_epoch({"signal": 0})

    loops: list[tuple[str, Callable[[], None]]] = [
        ("minimal loop", minimal), ("vaekit model in the bare loop", model_in_bare_loop),
        ("vaekit trainer", vaekit_trainer)]
    if args.compile:
        compiled = Trainer(config.replace(compile=True), data, None, progress=False)
        compiled.steps_per_epoch = lambda: steps  # type: ignore[method-assign]

        def compiled_trainer() -> None:
            compiled.state.step_in_epoch, compiled.epoch_perm = 0, None
            compiled.train_epoch({"signal": 0})

        compiled_trainer()  # compile outside the timed blocks
        loops.append(("vaekit trainer, --compile", compiled_trainer))
    times: dict[str, list[float]] = {name: [] for name, _ in loops}
    for _ in range(args.repeats):
        for name, run in loops:
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    print(f"784-{'-'.join(map(str, hidden))}-{latent} {args.activation}, batch {batch}, "
          f"{torch.get_num_threads()} threads; ms per step, best and median of {args.repeats} "
          f"blocks of {steps} steps")
    best_minimal = min(times["minimal loop"])
    for name, values in times.items():
        median = sorted(values)[len(values) // 2]
        print(f"{name:32s} best {min(values):6.3f}  median {median:6.3f}  "
              f"minimal / this {best_minimal / min(values):.2f}x")


if __name__ == "__main__":
    main()
