"""How a `Trainer` is set up, in the order `Trainer.__init__` calls the steps: the machine
(device, threads, processes), the run's config resolved against its data, the optimiser and
its fault flags, the training state and generators, the data on the device, the model's
data-dependent initialisation, and the loss wrapped for DDP and torch.compile. A part of
`Trainer`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vaekit.compiling import CompiledOrEager
from vaekit.config import Config
from vaekit.data import Dataset, binarize
from vaekit.device import resolve_device
from vaekit.errors import ConfigError, DataError
from vaekit.train.adam import AdamStep, make_adam
from vaekit.train.checkpoint import Snapshot, TrainState
from vaekit.train.distributed import DistInfo, init_distributed
from vaekit.train.ema import WeightAverage
from vaekit.train.loss import LossModule
from vaekit.train.prepare import (
    check_data_fits,
    prepare_eval_data,
    resolve_binarize,
    resolve_standardize,
)
from vaekit.train.schedules import Segment
from vaekit.train.tensorboard import check_available

#: On a GPU the host reads the steps' skip flags and the stop flag every this many steps:
#: reading a device tensor waits for the whole queue, which at small batches costs more than
#: the step. On a CPU reading costs nothing, so it looks at every step.
GPU_CHECK_EVERY = 50
CPU_CHECK_EVERY = 1


class TrainerSetup:
    """The set-up steps of `Trainer`, one method each."""

    config: Config
    data: Dataset
    run_dir: Any
    model: Any
    batch: int

    def _log(self, message: str) -> None:
        raise NotImplementedError

    def _describe_steps(self) -> str:
        raise NotImplementedError

    def _condition(self, rows: Tensor | slice) -> Tensor | None:
        raise NotImplementedError

    def _place(self, config: Config) -> None:
        """The device, torch's threads and the torchrun processes."""
        self.device = resolve_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.dist: DistInfo = init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if config.batch_size % self.dist.world_size:
            raise ConfigError(f"--batch-size {config.batch_size} must be divisible by the "
                              f"number of processes ({self.dist.world_size})")

    def _resolve_config(self, config: Config, data: Dataset) -> Config:
        """The config as the run records it: a table's own likelihood, binarization and
        standardisation resolved for the data, the classes of a conditional model."""
        if data.table is not None:  # a table: its own likelihood, its own standardisation
            if config.likelihood not in ("bernoulli", "table"):
                self._log(f"note: --likelihood {config.likelihood} is replaced by the table's "
                          "per-column likelihoods")
            config = config.replace(likelihood="table", table=data.table, standardize="off")
        self.binarize = resolve_binarize(config, data)
        check_data_fits(config, data, self.binarize)
        if config.tensorboard and self.run_dir is not None and self.dist.is_main:
            check_available()
        if config.standardize == "auto":  # recorded resolved: the run's model is rebuilt from it
            config = config.replace(standardize=resolve_standardize(config, data))
        if (config.net == "linear" and config.likelihood == "gaussian"
                and config.variance == "shared" and config.standardize == "on"):
            self._log("note: --variance shared is one noise variance in the standardised space "
                      "(each dimension scaled to sd 1), not in the data's units, so this linear "
                      "model is not probabilistic PCA; --standardize off makes it so")
        if config.condition:  # a conditional VAE: the classes are part of the model
            classes = data.classes()
            if config.condition_classes and config.condition_classes != classes:
                raise DataError(f"--condition {config.condition}: {data.name}'s classes "
                                f"({', '.join(classes)}) are not the run's "
                                f"({', '.join(config.condition_classes)})")
            config = config.replace(condition_classes=classes)
        return config

    def _build_optimizer(self) -> None:
        """Adam, and the flags by which a step is skipped."""
        self.optimizer = make_adam(self.model, self.config.lr)
        self.optimizer_step = AdamStep(self.optimizer)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._bad_step = torch.zeros((), device=self.device)  # 1 where this step is skipped
        self._one = torch.ones((), device=self.device)
        # A fused Adam skips its update on the device where `found_inf` is set, so the host
        # need not look at every step; elsewhere the host looks, and skips the step itself.
        fused = bool(self.optimizer.defaults.get("fused"))
        self.check_every = 1 if not fused else \
            GPU_CHECK_EVERY if self.device.type == "cuda" else CPU_CHECK_EVERY
        if self.check_every > 1:
            self.optimizer.found_inf = self._bad_step  # type: ignore[attr-defined]
        # Between two looks of the host, step i's skip flag waits on the device in slot
        # i % check_every: the host then finds the runs of skips and the first faulty step.
        self._fault_flags = torch.zeros(self.check_every, device=self.device)
        self._fault_slots = list(self._fault_flags.unbind())  # 0-d views, made once

    def _start_state(self) -> None:
        """The counters, the generators of the data order and of the noise, the epoch's sums."""
        config = self.config
        self.state = TrainState(schedule=[Segment(0.0, float(config.epochs))])
        self.perm_generator = torch.Generator().manual_seed(config.seed)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(config.seed + 1)
        self.epoch_perm: Tensor | None = None
        # [sum of reconstruction, sum of KL, examples]; ELBO = reconstruction - KL
        self.epoch_stats = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.best_weights: dict[str, Tensor] | None = None
        self._switched_off: set[int] = set()  # latent groups already reported as switched off
        self.last_good: Snapshot | None = None

    def _load_data(self, data: Dataset) -> None:
        """The training and validation data on the device, binarized or dequantized as the
        run says, with a conditional model's labels beside them."""
        config = self.config
        self.train_x = data.train.to(self.device)
        # a conditional model's class labels, beside x: sliced by the same index, one-hot per step
        self.train_labels = data.labels["train"].to(self.device) \
            if config.condition and data.labels is not None else None
        self.val_labels = data.labels["val"] if config.condition and data.labels else None
        world = self.dist.world_size
        self.batch = min(config.batch_size, len(self.train_x) // world * world)
        if self.batch == 0:
            raise DataError(f"{data.name}: {len(self.train_x)} training examples cannot feed "
                            f"{world} processes")
        if data.table is not None:
            self._log(self._describe_steps())
        if self.binarize == "static":
            self.train_x = binarize(self.train_x, torch.Generator(self.device).manual_seed(
                config.seed + 2))
        self.dequantize = data.bin_width if config.dequantize and data.bin_width else None
        if config.dequantize and not data.bin_width:
            raise ConfigError(f"--dequantize needs quantized image data; {data.name} is not")
        # on the device, like the training data: validation copies nothing per epoch
        self.val_x = prepare_eval_data(data.val, self.binarize, self.dequantize).to(self.device)

    def _initialise_from_data(self) -> None:
        """Standardisation's statistics, the VampPrior's pseudo-inputs, then the weight
        average (which starts at the initial weights)."""
        if self.model.standardize is not None:
            self.model.standardize.fit(self.train_x)
        init_from_data = getattr(getattr(self.model, "prior", None), "init_from_data", None)
        if init_from_data is not None:  # VampPrior: pseudo-inputs start at training examples
            init_from_data(self.model.to_model_units(self.train_x),
                           torch.Generator().manual_seed(self.config.seed + 3))
        self.ema = WeightAverage(self.model, self.config.ema) if self.config.ema else None

    def _wrap_loss(self) -> None:
        """The loss module, wrapped in DDP under torchrun and compiled with --compile."""
        config = self.config
        loss_module = LossModule(self.model, config.objective, config.free_bits, self.dist)
        self.loss_module: nn.Module = loss_module
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = DDP(loss_module, device_ids=ids)
        self.loss_fn: Callable[..., tuple[Tensor, Tensor]] = self.loss_module
        if config.compile:
            # One eager call fills torch's table of KL functions: its first lookup, traced,
            # would split the compiled graph in two.
            with torch.no_grad():
                loss_module(self.train_x[:1], self.model.draw_noise(1, 1, torch.Generator(
                    self.device), self.device), 1.0, self._condition(slice(0, 1)))
            self.loss_fn = CompiledOrEager(self.loss_module, "training")
