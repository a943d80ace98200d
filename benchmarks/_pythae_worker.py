"""Runs inside a separate environment with Pythae installed (see train_throughput.py and
eval_throughput.py): Pythae's VAE with the given MLP, trained by its own TrainingPipeline, or
evaluated with its own get_nll. Prints one JSON line."""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig
from torch import nn

ACT = {"tanh": nn.Tanh, "relu": nn.ReLU}


class Encoder(BaseEncoder):
    def __init__(self, hidden: list[int], latent: int, act: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in zip([784, *hidden][:-1], hidden):
            layers += [nn.Linear(a, b), ACT[act]()]
        self.net = nn.Sequential(*layers)
        self.mu, self.log_var = nn.Linear(hidden[-1], latent), nn.Linear(hidden[-1], latent)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.net(x.reshape(x.shape[0], -1))
        return ModelOutput(embedding=self.mu(h), log_covariance=self.log_var(h))


class Decoder(BaseDecoder):
    def __init__(self, hidden: list[int], latent: int, act: str) -> None:
        super().__init__()
        sizes = [latent, *hidden[::-1]]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), ACT[act]()]
        self.net = nn.Sequential(*layers, nn.Linear(sizes[-1], 784), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=self.net(z).reshape(-1, 1, 28, 28))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help=".npz with train, val, test in [0, 1]")
    p.add_argument("--hidden", required=True)
    p.add_argument("--latent", type=int, required=True)
    p.add_argument("--activation", required=True)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--nll", type=int, default=0, help="evaluate get_nll with this many samples")
    p.add_argument("--n", type=int, default=1000)
    args = p.parse_args()
    hidden = [int(h) for h in args.hidden.split(",")]
    d = np.load(args.data)
    torch.manual_seed(0)
    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=args.latent,
                          reconstruction_loss="bce"),
                encoder=Encoder(hidden, args.latent, args.activation),
                decoder=Decoder(hidden, args.latent, args.activation))
    if args.nll:
        x = torch.from_numpy(d["test"][:args.n])
        start = time.perf_counter()
        nll = model.get_nll(x, n_samples=args.nll, batch_size=1000)
        print(json.dumps({"seconds": time.perf_counter() - start, "nll": float(nll)}))
        return
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(output_dir=out, num_epochs=args.epochs, learning_rate=1e-3,
                                   per_device_train_batch_size=args.batch_size,
                                   per_device_eval_batch_size=1000, no_cuda=True,
                                   optimizer_cls="Adam")
        start = time.perf_counter()
        TrainingPipeline(training_config=config, model=model)(train_data=d["train"],
                                                               eval_data=d["val"])
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds_per_epoch": seconds / args.epochs}))


if __name__ == "__main__":
    main()
