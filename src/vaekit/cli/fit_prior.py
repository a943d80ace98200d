"""`vaekit fit-prior`: a prior fitted to a trained model's codes, as a new run directory."""

from __future__ import annotations

import argparse
from typing import Any


def add_fit_prior_parser(sub: Any, positive_int: Any) -> None:
    from vaekit.priors.diffusion import SAMPLERS
    from vaekit.priors.fitted import FITTED_PRIORS

    kinds = "; ".join(f"{name}: {spec.help}" for name, spec in FITTED_PRIORS.items())
    p = sub.add_parser(
        "fit-prior", help="fit p(z) to a trained model's codes (encoder and decoder frozen) and "
        "write a new run directory", description="A second stage: fit a prior to the codes of "
        "RUN's training split, z ~ q(z|x) for a VAE, z = f(x) for an autoencoder, with the "
        f"encoder and decoder frozen. Kinds: {kinds}. NEW_RUN is a run like any other "
        "(sample, evaluate, quality, info).")
    p.add_argument("run", metavar="RUN", help="the trained run (--model vae, ae or vqvae)")
    p.add_argument("--kind", required=True, help=f"the prior: {', '.join(FITTED_PRIORS)}")
    p.add_argument("--out", required=True, metavar="NEW_RUN", help="the new run directory "
                   "(must not exist, unless --resume)")
    p.add_argument("--components", type=positive_int, default=10,
                   help="mixture components of --kind mog (default: 10)")
    p.add_argument("--flow-steps", type=positive_int, default=6,
                   help="coupling steps of --kind flow (default: 6)")
    p.add_argument("--diffusion-steps", type=positive_int, default=100,
                   help="steps T of --kind diffusion (default: 100)")
    p.add_argument("--width", type=positive_int, default=512,
                   help="hidden width of the diffusion's denoiser (default: 512)")
    p.add_argument("--depth", type=positive_int, default=3,
                   help="residual blocks of the diffusion's denoiser (default: 3)")
    p.add_argument("--sampling-steps", type=int, default=0,
                   help="sample the diffusion by DDIM in this many steps; 0: ancestral, all T "
                   "steps (default: 0)")
    diffusion = FITTED_PRIORS["diffusion"]
    p.add_argument("--sampler", default=diffusion.defaults["sampler"],
                   help=f"the diffusion's sampler and likelihood, {', '.join(SAMPLERS)} (ode: "
                   "the probability-flow ODE and its exact log p(z); ancestral: the chain and "
                   "its --trajectories weight; ddim: --sampling-steps, the chain's likelihood) "
                   f"(default: {diffusion.defaults['sampler']})")
    p.add_argument("--trajectories", type=int, default=diffusion.defaults["trajectories"],
                   metavar="M", help="forward trajectories averaged inside the ancestral "
                   f"log p(z) (default: {diffusion.defaults['trajectories']})")
    p.add_argument("--tolerance", type=float, default=diffusion.defaults["tolerance"],
                   help="the ODE solver's rtol = atol (default: "
                   f"{diffusion.defaults['tolerance']:g})")
    regressive = FITTED_PRIORS["autoregressive"].defaults
    p.add_argument("--transformer-width", type=positive_int,
                   default=regressive["transformer_width"], help="channels of --kind "
                   f"autoregressive's transformer (default: {regressive['transformer_width']})")
    p.add_argument("--transformer-depth", type=positive_int,
                   default=regressive["transformer_depth"], help="layers of --kind "
                   f"autoregressive's transformer (default: {regressive['transformer_depth']})")
    p.add_argument("--heads", type=positive_int, default=regressive["heads"],
                   help=f"attention heads of --kind autoregressive (default: "
                   f"{regressive['heads']})")
    p.add_argument("--time-limit", type=float, metavar="SECONDS", help="stop a prior trained "
                   "by gradient steps after the epoch that passes this many seconds (or at "
                   "--epochs, whichever comes first)")
    p.add_argument("--epochs", type=positive_int, default=50,
                   help="passes over the codes for a prior trained by gradient steps (flow, "
                   "diffusion) "
                   "(default: 50)")
    p.add_argument("--batch-size", type=positive_int, default=500,
                   help="codes per step (default: 500)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 0.001)")
    p.add_argument("--seed", type=int, default=0, help="seed of the code draws and the fit "
                   "(default: 0)")
    p.add_argument("--resume", action="store_true", help="continue an unfinished fit in NEW_RUN "
                   "from its prior-checkpoint.safetensors")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def cmd_fit_prior(args: argparse.Namespace) -> int:
    from vaekit.errors import ConfigError
    from vaekit.priors.fitted import FITTED_PRIORS
    from vaekit.train.fit_prior import fit_prior

    if args.kind not in FITTED_PRIORS:
        raise ConfigError(f"unknown --kind {args.kind!r}; choose from: "
                          f"{', '.join(FITTED_PRIORS)}")
    options = {name: getattr(args, name) for name in FITTED_PRIORS[args.kind].defaults
               if hasattr(args, name)}
    out = fit_prior(args.run, args.kind, args.out, options=options, epochs=args.epochs,
                    batch_size=args.batch_size, lr=args.lr, seed=args.seed, resume=args.resume,
                    progress=not args.quiet, time_limit=args.time_limit)
    print(f"run directory: {out}")
    return 0
