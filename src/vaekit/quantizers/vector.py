"""Vector quantisation with a learned codebook (van den Oord et al. 2017, "Neural Discrete
Representation Learning"): each vector z_e of the encoder's grid is replaced by its nearest code,

    k* = argmin_k ||z_e - e_k||^2,   z_q = e_{k*},   codes = z_e + sg(z_q - z_e)

(straight-through: the decoder's gradient passes to z_e unchanged). The commitment loss
beta ||z_e - sg(z_q)||^2 keeps the encoder near its codes. The codebook learns either

- by exponential moving averages (`update="ema"`, the default; van den Oord et al.'s appendix,
  Razavi et al. 2019): with the batch's counts n_k and sums s_k of the vectors assigned to k,
      N_k <- d N_k + (1 - d) n_k,  S_k <- d S_k + (1 - d) s_k,  e_k = S_k / N~_k,
  N~_k the counts with Laplace smoothing (N_k + eps) n / (n + K eps), decay d = 0.99; or
- by gradient (`update="loss"`): the codebook loss ||sg(z_e) - e_k*||^2 joins the commitment.

Against collapse (codes that nothing is assigned to, and that the EMA never moves again):

- the codebook starts as k-means (farthest-point seeds, then Lloyd's iterations) of the first
  training batch's vectors;
- after every training update, a code whose moving count N_k (kept by both updates) falls
  below `restart_below` is restarted at a batch vector that its code fits worst (the largest
  quantisation errors), its moving statistics reset to that one vector.

Under torch.distributed, the batch's counts and sums are summed over the processes, so every
process makes the same update.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vaekit.errors import ConfigError
from vaekit.quantizers.base import Quantized, Quantizer, code_statistics

_LLOYD_STEPS = 10


class VectorQuantizer(Quantizer):
    """A codebook of `codebook_size` codes of `code_dim` numbers (see the module's docstring)."""

    initialized: Tensor
    counts: Tensor
    sums: Tensor

    def __init__(self, codebook_size: int = 512, code_dim: int = 64, update: str = "ema",
                 decay: float = 0.99, commitment: float = 0.25, restart_below: float = 1e-3,
                 eps: float = 1e-5) -> None:
        super().__init__()
        if not isinstance(codebook_size, int) or codebook_size < 2:
            raise ConfigError(f"--codebook-size must be an integer >= 2, got {codebook_size!r}")
        if not isinstance(code_dim, int) or code_dim < 1:
            raise ConfigError(f"--code-dim must be an integer >= 1, got {code_dim!r}")
        if update not in ("ema", "loss"):
            raise ConfigError(f"the codebook's update must be ema or loss, got {update!r}")
        if not 0 <= decay < 1:
            raise ConfigError(f"the codebook's EMA decay must be in [0, 1), got {decay!r}")
        if not (commitment >= 0 and restart_below >= 0):
            raise ConfigError("the commitment weight and the restart threshold must be >= 0")
        self.codebook_size, self.code_dim, self.update = codebook_size, code_dim, update
        self.decay, self.commitment, self.restart_below, self.eps = \
            decay, commitment, restart_below, eps
        codebook = torch.randn(codebook_size, code_dim)
        if update == "loss":
            self.codebook = nn.Parameter(codebook)
        else:
            self.register_buffer("codebook", codebook)
        self.register_buffer("counts", torch.ones(codebook_size))
        self.register_buffer("sums", codebook.clone())
        #: whether k-means has set the codebook (the first training batch does)
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def nearest(self, flat: Tensor) -> Tensor:
        """The index of each vector's nearest code, (n,), for vectors (n, D)."""
        e = self.codebook.to(flat.dtype)  # (K, D)
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.T
                     + e.pow(2).sum(1))  # (n, K)
        return distances.argmin(1)

    def forward(self, z_e: Tensor) -> Quantized:
        if z_e.dim() < 2 or z_e.shape[1] != self.code_dim:
            raise ValueError(f"expected z_e of shape (B, {self.code_dim}, ...), got "
                             f"{tuple(z_e.shape)}")
        flat = z_e.movedim(1, -1).reshape(-1, self.code_dim)  # (n, D), n = B * grid
        learning = self.training and torch.is_grad_enabled()
        if learning and not bool(self.initialized):
            self._initialize(flat.detach())
        indices = self.nearest(flat.detach())  # (n,)
        if learning:
            self._ema_update(flat.detach(), indices)
        z_q = self.codebook.to(z_e.dtype)[indices]  # (n, D)
        error = (flat - z_q.detach()).pow(2)  # (n, D)
        loss = self.commitment * error
        if self.update == "loss":
            loss = loss + (flat.detach() - z_q).pow(2)
        if learning and self.restart_below > 0:
            self._restart(flat.detach(), error.detach().sum(1))
        grid = (z_e.shape[0], *z_e.shape[2:])
        z_q = z_q.view(*grid, self.code_dim).movedim(-1, 1)  # (B, D, *grid)
        codes = z_e + (z_q - z_e).detach()
        aux = loss.reshape(z_e.shape[0], -1).sum(1)  # (B,)
        return Quantized(codes, indices.view(grid), aux)

    def lookup(self, indices: Tensor) -> Tensor:
        return self.codebook[indices].movedim(-1, 1)  # (B, D, *grid)

    def statistics(self, indices: Tensor) -> dict[str, float]:
        """The batch's code usage and perplexity (`code_statistics`)."""
        return code_statistics(indices, self.codebook_size)

    @torch.no_grad()
    def _initialize(self, flat: Tensor) -> None:
        """k-means of the first batch: Lloyd's iterations from farthest-point seeds (the first
        vector, then each time the vector farthest from the seeds so far; deterministic, and
        every cluster gets one). Under DDP, of the global batch, gathered from every process in
        rank order (the rows one process would see), so that N processes start as one."""
        flat = global_rows(flat)
        n, k = flat.shape[0], self.codebook_size
        if n < k:
            warnings.warn(f"the codebook has {k} codes but the first batch only {n} vectors: at "
                          f"most {n / k:.0%} of the codes can be in use at the start; the rest "
                          f"wait for a restart (see the epochs' code usage)", stacklevel=3)
        seeds = [0]
        nearest = (flat - flat[0]).pow(2).sum(1)  # (n,) squared distance to the nearest seed
        for _ in range(1, min(k, n)):
            seeds.append(int(nearest.argmax()))
            nearest = torch.minimum(nearest, (flat - flat[seeds[-1]]).pow(2).sum(1))
        chosen = torch.tensor(seeds)[torch.arange(k) % len(seeds)]  # repeats where n < K
        centers = flat[chosen].clone()  # (K, D)
        for _ in range(_LLOYD_STEPS):
            e = centers
            assign = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.T
                      + e.pow(2).sum(1)).argmin(1)
            counts = torch.bincount(assign, minlength=k).to(flat.dtype)
            sums = torch.zeros_like(centers).index_add_(0, assign, flat)
            used = counts > 0
            centers[used] = sums[used] / counts[used, None]
        if dist.is_available() and dist.is_initialized():  # the same on every process; rank
            dist.broadcast(centers, 0)  # 0's guards against index_add_'s order on CUDA
        self.codebook.data.copy_(centers)
        self.sums.copy_(centers)
        self.counts.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, indices: Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.codebook_size).to(self.counts.dtype)
        sums = torch.zeros_like(self.sums).index_add_(0, indices, flat.to(self.sums.dtype))
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        d = self.decay
        self.counts.mul_(d).add_(counts, alpha=1 - d)  # kept by both updates: the usage
        if self.update == "loss":
            return
        self.sums.mul_(d).add_(sums, alpha=1 - d)
        total = self.counts.sum()
        smoothed = (self.counts + self.eps) / (total + self.codebook_size * self.eps) * total
        self.codebook.copy_(self.sums / smoothed[:, None])

    @torch.no_grad()
    def _restart(self, flat: Tensor, error: Tensor) -> None:
        """Restart the dead codes at the batch's worst-fitted vectors (one each, worst first).
        Under DDP, the global batch's (gathered in rank order), as one process would choose."""
        dead = (self.counts < self.restart_below).nonzero().squeeze(1)
        if dead.numel() == 0:
            return
        flat, error = global_rows(flat), global_rows(error)
        worst = error.argsort(descending=True)[:dead.numel()]
        dead = dead[:worst.numel()]
        new = flat[worst].to(self.codebook.dtype)
        if dist.is_available() and dist.is_initialized():  # the same on every process; rank
            dist.broadcast(new, 0)  # 0's guards against a nondeterministic kernel (CUDA)
        self.codebook.data[dead] = new
        self.sums[dead] = new
        self.counts[dead] = 1.0


def global_rows(t: Tensor) -> Tensor:
    """The rows of t from every process, in rank order: under DDP each process holds an equal,
    contiguous shard of the global batch, so this is the global batch's t, as one process
    would see it (else t itself)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    parts = [torch.empty_like(t, memory_format=torch.contiguous_format)
             for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)
