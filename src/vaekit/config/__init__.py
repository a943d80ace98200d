"""The typed run configuration: one dataclass that is the CLI's flags, the YAML/JSON config file
and the `config.json` saved in every run directory; its presets (`presets`) and the coercion of
values into its fields (`values`).

Values are validated here, before anything is built, so that a bad value is reported as one
clear line naming the field rather than as an error from deep inside torch. Layer: the typed
configuration, above the parts it names (data, distributions, nets, flows, priors,
posteriors) and below the models built from it; it may import those lower layers. The choices
of a field are read from the registries by name (REGISTRIES), so a registered part is valid at
once (see tests/test_architecture.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from vaekit.config.conditions import check_condition
from vaekit.config.presets import PRESETS as PRESETS  # re-exported: vaekit.config.PRESETS
from vaekit.config.values import (
    _flag,
    _jsonable,
    _literal_choices,
    _unknown,
    coerce,
)
from vaekit.config.values import load_config_file as load_config_file  # re-exported
from vaekit.errors import ConfigError

#: Fields whose choices are the keys of a registry ("module:NAME"), never a list kept here: a
#: likelihood, prior, posterior, net, activation or learning-rate schedule registered there is
#: a valid value at once.
REGISTRIES = {
    "model": "vaekit.models:MODELS",
    "net": "vaekit.nets:NETS",
    "activation": "vaekit.nets:ACTIVATION_LAYERS",
    "likelihood": "vaekit.distributions:LIKELIHOODS",
    "posterior": "vaekit.posteriors:POSTERIORS",
    "prior": "vaekit.priors:PRIORS",
    "lr_schedule": "vaekit.train.schedules:LR_SCHEDULES",
}


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


#: The fields of Config that describe a one-layer model's parts; a model's ModelSpec.reads
#: names those that apply to it.
ONE_LAYER_FIELDS = ("latent_dim", "hidden", "channels", "net", "posterior", "prior")


def registry(field_name: str) -> dict[str, Any]:
    """The registry whose keys are the valid values of `field_name` (see REGISTRIES)."""
    module, name = REGISTRIES[field_name].split(":")
    return dict(getattr(importlib.import_module(module), name))


def field_choices(f: dataclasses.Field[Any]) -> tuple[str, ...]:
    """The valid values of a Config field with a fixed set: its registry's keys, or its
    Literal's values; () for free values."""
    if f.name in REGISTRIES:
        return tuple(registry(f.name))
    return _literal_choices(f.type)


@dataclass
class Config:
    """Everything that defines a run: data, model, objective and optimisation.

    Each field is a command-line flag (`latent_dim` is `--latent-dim`; the CLI reference lists
    them all, with their help, generated from these fields), a key of a YAML/JSON config file
    (`vaekit train --config FILE`), and a key of the `config.json` saved in each run. Fields
    whose values come from a registry (`model`, `net`, `activation`, `likelihood`,
    `posterior`, `prior`, `lr_schedule`) accept whatever is registered there.

    Example:
        >>> cfg = Config(data="digits", latent_dim=4, epochs=5).validate()
        >>> cfg.replace(beta=4.0).beta
        4.0
    """

    # --- data
    data: str = field(default="digits", metadata=_help(
        "dataset: digits (built in), mnist, fashion-mnist, a path to a .npy/.npz file, or a "
        "folder of PNG/JPEG images (class subfolders are labels)"))
    image_size: tuple[int, ...] = field(default=(), metadata=_help(
        "an image folder's images resized to H[,W] pixels (default: their own size, which "
        "must then be the same for all)"))
    columns: str = field(default="", metadata=_help(
        "a table's column types, overriding the inferred ones: NAME:TYPE,... with TYPE one of "
        "continuous, integer, binary, categorical, drop"))
    table: dict[str, Any] = field(default_factory=dict, metadata=_help(
        "a table's fitted schema (columns, types, transforms), written by training on a "
        ".csv/.parquet file, never given"))
    image_channels: int = field(default=0, metadata=_help(
        "an image folder's images converted to 1 (grey) or 3 (RGB) channels (default 0: the "
        "majority's)"))
    data_dir: str | None = field(default=None, metadata=_help(
        "directory with the IDX files of mnist / fashion-mnist (default: the first that holds "
        "them of $VAEKIT_DATA_DIR/NAME, ~/.cache/vaekit/NAME and, for fashion-mnist, "
        "/usr/share/datasets/fashion-mnist)"))
    val_fraction: float = field(default=0.1, metadata=_help(
        "fraction of the training data held out for validation (0 disables validation)"))
    binarize: Literal["auto", "dynamic", "static", "none"] = field(default="auto", metadata=_help(
        "binarization of [0,1] data: dynamic (resampled at every step), static (once), none; "
        "auto = dynamic for a Bernoulli likelihood on image datasets, else none"))
    dequantize: bool = field(default=False, metadata=_help(
        "add uniform noise within each quantization bin of 8-bit/16-level image data (for a "
        "gaussian likelihood; makes bits/dim a bound on the discrete likelihood)"))
    condition: str = field(default="", metadata=_help(
        "train a conditional VAE (Sohn et al. 2015): 'label', the data's class labels (mnist, "
        "fashion-mnist, digits, a folder's subfolders, an .npz's labels), or a table's column, "
        "whose values become the classes; the encoder and decoder both see the class (default: "
        "none)"))
    condition_classes: tuple[str, ...] = field(default=(), metadata=_help(
        "the class names of a conditional run, in label order: written by training, never "
        "given"))
    # --- model
    model: str = field(default="vae", metadata=_help(
        "latent structure: vae (one layer: --latent-dim, --net, --prior, --posterior), ae (a "
        "plain autoencoder: --latent-dim, --net; no likelihood), hvae (a top-down hierarchy of "
        "dense layers: --hvae-*) or hvae-conv (of feature maps, for images: --hvae-conv-*)"))
    model_options: dict[str, Any] = field(default_factory=dict, metadata=_help(
        "the chosen model's own settings, as {MODEL: {OPTION: VALUE}} in a config file; on the "
        "command line --MODEL-OPTION"))
    fitted_prior: dict[str, Any] = field(default_factory=dict, metadata=_help(
        "a prior fitted to the codes after training ({kind: gaussian|mog|flow|diffusion, "
        "...}), written by vaekit fit-prior, never trained; empty for the model's own prior"))
    net: str = field(default="mlp", metadata=_help("encoder/decoder networks"))
    hidden: tuple[int, ...] = field(default=(512, 256), metadata=_help(
        "hidden layer widths, comma separated (mlp, and the dense layer of conv)"))
    channels: tuple[int, ...] = field(default=(32, 64), metadata=_help(
        "conv channels per stride-2 stage, comma separated (conv only)"))
    activation: str = field(default="relu", metadata=_help("activation between layers"))
    latent_dim: int = field(default=8, metadata=_help("dimension of the latent z"))
    likelihood: str = field(default="bernoulli", metadata=_help(
        "p(x|z): bernoulli on logits (binary data; grey levels as soft targets), "
        "continuous-bernoulli (grey levels in [0,1]) or gaussian (real-valued data)"))
    mixture_components: int = field(default=10, metadata=_help(
        "logistics per pixel of --likelihood logistic-mixture"))
    variance: Literal["fixed", "shared", "diagonal"] = field(default="shared", metadata=_help(
        "gaussian likelihood variance: fixed (=1), shared (one learned scalar), "
        "diagonal (one learned value per dimension). The variance is of the space the model "
        "works in: standardised (see --standardize), shared is one variance per data dimension's "
        "own scale, not one in the data's units; a linear model is then probabilistic PCA only "
        "with --standardize off"))
    posterior: str = field(
        default="gaussian", metadata=_help(
            "q(z|x): a diagonal gaussian, or one refined by --flow-steps planar / inverse "
            "autoregressive / affine-coupling flows"))
    flow_steps: int = field(default=4, metadata=_help(
        "number of flow steps of a flow posterior or flow prior"))
    standardize: Literal["auto", "on", "off"] = field(default="auto", metadata=_help(
        "standardise each data dimension inside the model (mean 0, sd 1 over the training set; "
        "samples, reconstructions and log p(x) stay in the data's own units, log p(x) with the "
        "Jacobian); auto = on for a likelihood on the real line (gaussian) on non-image data"))
    prior: str = field(default="normal", metadata=_help(
        "p(z): standard normal, a learned mixture of gaussians (--components), a VampPrior "
        "(--pseudo-inputs) or a RealNVP flow (--flow-steps)"))
    components: int = field(default=10, metadata=_help("mixture components of --prior mog"))
    pseudo_inputs: int = field(default=500, metadata=_help("pseudo-inputs of --prior vamp"))
    # --- objective
    objective: Literal["elbo", "iwae"] = field(default="elbo", metadata=_help(
        "training objective: the ELBO, or the importance-weighted bound of --iw-samples"))
    iw_samples: int = field(default=1, metadata=_help(
        "samples of z per example in training (the k of the IWAE bound; with elbo, averaged)"))
    beta: float = field(default=1.0, metadata=_help("weight of the KL term (beta-VAE)"))
    free_bits: float = field(default=0.0, metadata=_help(
        "free bits: nats per latent dimension below which the KL is not penalised"))
    kl_warmup: int = field(default=0, metadata=_help(
        "epochs over which the KL weight rises linearly from 0 to 1 (0 = no warm-up)"))
    # --- optimisation
    epochs: int = field(default=100, metadata=_help("number of passes over the training data"))
    batch_size: int = field(default=100, metadata=_help(
        "global minibatch size (split across processes under torchrun)"))
    drop_last: bool = field(default=False, metadata=_help(
        "leave out each epoch's last, partial batch (its rows go unseen that epoch); by default "
        "it is a step of its own. A run whose config.json predates this option dropped it, and "
        "resumes so"))
    lr: float = field(default=1e-3, metadata=_help("Adam learning rate"))
    lr_schedule: str = field(
        default="constant", metadata=_help(
            "learning-rate schedule: constant, cosine (to 0 over the run), step (x0.1 at 50%% "
            "and 75%% of the epochs), iwae (Burda et al. 2016: lr x 10^(-i/7) for 3^i epochs)"))
    lr_warmup: float = field(default=0.0, metadata=_help(
        "epochs (fractions allowed) over which the learning rate rises linearly from 0 to the "
        "schedule's (Goyal et al. 2017; 0 = none)"))
    schedule_over: Literal["epochs", "time"] = field(default="epochs", metadata=_help(
        "what the learning-rate schedule's progress counts: epochs (to --epochs), or time: "
        "the schedule runs over --time-limit, its end re-estimated after every epoch from the "
        "epochs' seconds so that it reaches its end when the time is up (or at --epochs, "
        "whichever comes first)"))
    grad_clip: float = field(default=100.0, metadata=_help(
        "clip the gradient norm to this value (0 disables)"))
    skip_threshold: float = field(default=0.0, metadata=_help(
        "skip an update whose gradient norm (before clipping) is above this value, as for a "
        "NaN (VDVAE; 0 disables)"))
    ema: float = field(default=0.0, metadata=_help(
        "decay of an exponential moving average of the weights, used for validation, the saved "
        "model, evaluation and sampling (e.g. 0.999; 0 disables)"))
    seed: int = field(default=0, metadata=_help("random seed: the same seed gives the same run"))
    time_limit: float = field(default=0.0, metadata=_help(
        "minutes of training: stop after the last epoch that fits (training and validation "
        "seconds, across resumes; 0 = no limit). The run stays resumable"))
    checkpoint_every: float = field(default=60.0, metadata=_help(
        "seconds between checkpoints (checkpoint.safetensors and the best weights, "
        "model.safetensors): one is also written after the first epoch, at the end, on "
        "SIGINT/SIGTERM, after a rollback and when --time-limit ends the run; a SIGKILL loses at "
        "most this much training, never a file. 0 = after every epoch"))
    # --- machine
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda or cuda:N"))
    threads: int = field(default=0, metadata=_help("torch intra-op threads (0 = torch's default)"))
    bf16: bool = field(default=False, metadata=_help("bf16 autocast on GPU"))
    compile: bool = field(default=False, metadata=_help("torch.compile the model's loss"))
    # --- looking
    tensorboard: bool = field(default=False, metadata=_help(
        "write TensorBoard event files to RUN/tensorboard: the epoch's metrics as scalars, grids "
        "of samples and reconstructions every 5 epochs (needs the tensorboard extra)"))

    # Fields that describe the model's architecture (all that is needed to rebuild it).
    MODEL_FIELDS: typing.ClassVar[tuple[str, ...]] = (
        "model", "model_options", "fitted_prior", "table", "net", "hidden", "channels",
        "activation", "latent_dim", "likelihood", "variance",
        "mixture_components", "posterior", "flow_steps", "standardize", "prior", "components",
        "pseudo_inputs", "condition", "condition_classes")

    def validate(self) -> Config:
        """Check every value; raise ConfigError naming the first bad one."""
        positive_ints = ("latent_dim", "epochs", "batch_size", "flow_steps", "components",
                         "mixture_components", "pseudo_inputs", "iw_samples")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"--{_flag(name)} must be a positive integer, got {value!r}")
        for name in ("kl_warmup", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"--{_flag(name)} must be an integer >= 0, got {value!r}")
        for name in ("hidden", "channels"):
            sizes = getattr(self, name)
            if any((not isinstance(s, int)) or s <= 0 for s in sizes):
                raise ConfigError(f"--{_flag(name)} sizes must be positive integers, got {sizes!r}")
        if self.net == "mlp" and not self.hidden:
            raise ConfigError("--hidden needs at least one width for --net mlp")
        if len(self.image_size) > 2 or any(not isinstance(s, int) or isinstance(s, bool)
                                           or s <= 0 for s in self.image_size):
            raise ConfigError(f"--image-size must be H or H,W in pixels, got {self.image_size!r}")
        if self.likelihood == "table" and not self.table:
            raise ConfigError("--likelihood table is chosen by training on a .csv/.parquet "
                              "table (--data FILE.csv), not given")
        if self.image_channels not in (0, 1, 3):
            raise ConfigError(f"--image-channels must be 1 or 3, got {self.image_channels!r}")
        if self.net == "conv" and not self.channels:
            raise ConfigError("--channels needs at least one stage for --net conv")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a finite number > 0, got {self.lr!r}")
        for name in ("beta", "free_bits"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{_flag(name)} must be a finite number >= 0, got {value!r}")
        if self.dequantize and (getattr(registry("likelihood").get(self.likelihood),
                                        "discrete", False)
                                or self.binarize not in ("auto", "none")):
            raise ConfigError("--dequantize is for densities: use it with --likelihood gaussian "
                              "or continuous-bernoulli, and without binarization")
        from vaekit.distributions import likelihood_support  # late: the registry imports torch

        if self.standardize == "on" and likelihood_support(self.likelihood) is not None:
            raise ConfigError(f"--standardize on is for likelihoods on the real line; "
                              f"--likelihood {self.likelihood} is defined on a bounded range")
        if self.objective == "iwae" and (self.beta != 1 or self.free_bits or self.kl_warmup):
            raise ConfigError("--beta, --free-bits and --kl-warmup reshape the ELBO's KL term; "
                              "the iwae objective has none (use --objective elbo)")
        for name in ("grad_clip", "skip_threshold", "time_limit", "checkpoint_every", "lr_warmup"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{_flag(name)} must be a finite number >= 0, got {value!r}")
        if self.schedule_over == "time":
            if not self.time_limit:
                raise ConfigError("--schedule-over time runs the learning-rate schedule over "
                                  "the training time: give it --time-limit MINUTES")
            if self.lr_schedule == "iwae":
                raise ConfigError("--schedule-over time: the iwae schedule is defined by "
                                  "absolute epochs; use cosine, step or constant")
        if not (math.isfinite(self.ema) and 0 <= self.ema < 1):
            raise ConfigError(f"--ema must be a decay in [0, 1), got {self.ema!r}")
        if not (math.isfinite(self.val_fraction) and 0 <= self.val_fraction < 1):
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction!r}")
        for f in fields(self):
            choices = field_choices(f)
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(_unknown(_flag(f.name), getattr(self, f.name), choices))
        self._check_model_fields()
        check_condition(self)
        if not (self.device in ("auto", "cpu", "cuda")
                or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        return self

    def options(self) -> Any:
        """The chosen model's own settings: an instance of its options dataclass (MODELS), from
        `model_options[model]` and its defaults; None for a model without any."""
        spec = registry("model")[self.model]
        if not isinstance(self.model_options, dict):
            raise ConfigError("model_options must be a mapping {MODEL: {OPTION: VALUE}}")
        for other in self.model_options:
            if other != self.model:
                raise ConfigError(f"--{other}-* options apply to --model {other}; this run's "
                                  f"model is {self.model}")
        given = self.model_options.get(self.model) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"model_options: {self.model} must map option names to values")
        if spec.options is None:
            if given:
                raise ConfigError(f"--model {self.model} has no options of its own; got "
                                  f"{', '.join(map(str, given))}")
            return None
        known = {f.name: f for f in fields(spec.options)}
        kwargs = {}
        for key, value in given.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise ConfigError(_unknown(f"--{self.model}- option", key, map(_flag, known)))
            kwargs[name] = coerce(known[name], value, source="model_options",
                                  prefix=f"{self.model}-")
        options = spec.options(**kwargs)
        options.check()
        return options

    def _check_model_fields(self) -> None:
        """The one-layer fields are refused for a model that does not read them, and the model's
        options are checked and recorded in full (defaults included)."""
        spec = registry("model")[self.model]
        options = self.options()
        self.model_options = {} if options is None else {self.model: {
            f.name: _jsonable(getattr(options, f.name)) for f in fields(options)}}
        defaults = {f.name: f.default for f in fields(Config)}
        for name in ONE_LAYER_FIELDS:
            if name not in spec.reads and getattr(self, name) != defaults[name]:
                own = f"takes --{self.model}-* options" if spec.options is not None else \
                    f"does not read it ({spec.help})"
                raise ConfigError(f"--{_flag(name)} is an option of the one-layer model (--model "
                                  f"vae); --model {self.model} {own}")
        if self.fitted_prior:
            from vaekit.priors.fitted import (
                DISCRETE_KINDS,
                FITTED_PRIOR_MODELS,
                fitted_prior_options,
            )

            if self.model not in FITTED_PRIOR_MODELS:
                raise ConfigError(f"a fitted prior applies to --model "
                                  f"{', '.join(FITTED_PRIOR_MODELS)}, not --model {self.model}")
            kind, _ = fitted_prior_options(self.fitted_prior)
            if (self.model == "vqvae") != (kind in DISCRETE_KINDS):
                raise ConfigError(f"a fitted {kind} prior does not fit --model {self.model}'s "
                                  f"{'discrete' if self.model == 'vqvae' else 'continuous'} "
                                  "codes")
        if not spec.has_likelihood:
            for name in ("objective", "iw_samples", "beta", "free_bits", "kl_warmup"):
                if getattr(self, name) != defaults[name]:
                    raise ConfigError(f"--{_flag(name)} does not apply to --model {self.model}: "
                                      "it has no KL term and no likelihood (it is trained on "
                                      "reconstruction)")

    def model_dict(self) -> dict[str, Any]:
        return {name: _jsonable(getattr(self, name)) for name in self.MODEL_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> Config:
        """Build a config from a mapping, rejecting unknown keys and ill-typed values."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of option names to values")
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise ConfigError(f"{source}: " + _unknown("key", key, [_flag(k) for k in known]))
            kwargs[name] = coerce(known[name], value, source=source)
        return cls(**kwargs).validate()

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes).validate()
