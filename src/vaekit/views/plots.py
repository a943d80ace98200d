"""Pictures of a run: image grids (no torchvision needed), learning curves, latent plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from vaekit.io import atomic_write_bytes


def image_grid(images: Tensor, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Tile images (N, C, H, W) with values in [0, 1] into one (H', W', C) uint8 array."""
    n, c, h, w = images.shape
    ncol = nrow
    rows = math.ceil(n / ncol)
    grid = torch.ones(c, rows * (h + pad) + pad, ncol * (w + pad) + pad)
    for i, img in enumerate(images.detach().float().cpu().clamp(0, 1)):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = img
    out = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return np.repeat(out, 3, axis=2) if c == 1 else out


def save_png(array: np.ndarray, path: str | Path, scale: int = 1) -> None:
    """Save an (H, W, 3) uint8 array as PNG, enlarged `scale` times (nearest neighbour)."""
    import io

    if scale > 1:
        array = array.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    plt.imsave(buf, array, format="png")
    atomic_write_bytes(path, buf.getvalue())


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _save_figure(fig: Any, path: str | Path) -> None:
    atomic_write_bytes(path, figure_png(fig))


def display_scale(h: int) -> int:
    """Small images are enlarged so a grid is readable: 8x8 digits x6, 28x28 x2."""
    return max(1, 64 // h)


def save_grid(images: Tensor, path: str | Path, nrow: int = 8) -> None:
    save_png(image_grid(images, nrow=nrow), path, scale=display_scale(images.shape[-2]))


#: A conditional model's picture of samples: this many per class, in one row per class, for
#: at most MAX_CLASS_ROWS classes.
PER_CLASS, MAX_CLASS_ROWS = 10, 16


@torch.no_grad()
def draw_samples(model: Any, generator: torch.Generator | None,
                 n: int = 64) -> tuple[Tensor, list[str] | None]:
    """The samples a picture shows (means of p(x|z)): n from the prior, or, for a conditional
    model, PER_CLASS of each class (the first MAX_CLASS_ROWS), class by class, with the rows'
    class names (None for an unconditional model)."""
    if not model.condition_dim:
        return model.sample(n, generator=generator), None
    names = list(model.condition_classes[:MAX_CLASS_ROWS])
    classes = torch.arange(len(names)).repeat_interleave(PER_CLASS)
    return model.sample(len(classes), generator=generator, condition=classes), names


def sample_picture(model: Any, generator: torch.Generator | None) -> np.ndarray:
    """`draw_samples` laid out as an image (H, W, 3) uint8: a grid of 8 columns, or one row
    per class named in a left margin."""
    images, rows = draw_samples(model, generator)
    images = images.float().cpu()
    return image_grid(images) if rows is None else labelled_grid(images, PER_CLASS, rows)


def save_samples(model: Any, path: str | Path, generator: torch.Generator | None) -> None:
    """samples.png: `sample_picture`, enlarged where the images are small."""
    picture = sample_picture(model, generator)
    save_png(picture, path, scale=1 if model.condition_dim else display_scale(
        model.event_shape[-2]))


#: Width in pixels of the left margin that names the rows of a reconstruction grid.
LABEL_MARGIN = 56


def save_reconstructions(x: Tensor, recon: Tensor, path: str | Path) -> None:
    """Pairs of rows, up to 32 examples: up to 8 inputs in a row marked 'input' in a grey left
    margin, their reconstructions in the row below, marked 'recon'."""
    n = min(len(x), 32)
    ncol = min(n, 8)
    rows, labels = [], []
    for start in range(0, n, ncol):
        for images, label in ((x, "input"), (recon, "recon")):
            row = images[start:start + ncol].detach().float().cpu()
            blank = torch.ones(ncol - len(row), *row.shape[1:])  # the grid's background
            rows.append(torch.cat([row, blank]))
            labels.append(label)
    save_png(labelled_grid(torch.cat(rows), ncol, labels), path)


@torch.no_grad()
def save_latent_classes(model: Any, x: Tensor, path: str | Path) -> None:
    """latent_classes.png, for a categorical model: one row per variable z_n, one column per
    class c: the mean of p(x|z) with z_n = c and the other variables at the posterior mode of
    the example x (1, *event_shape)."""
    mode = model.mode(x[:1]).view(model.variables, model.categories)  # (N, K)
    codes = mode.expand(model.variables, model.categories, -1, -1).clone()  # (N, K, N, K)
    eye = torch.eye(model.categories, dtype=codes.dtype, device=codes.device)
    for n in range(model.variables):
        codes[n, :, n] = eye  # row n: variable n set to each class in turn
    images = model.decode_mean(codes.flatten(-2).flatten(0, 1)).float().cpu()  # (N K, *event)
    labels = [f"z{n + 1}" for n in range(model.variables)]
    save_png(labelled_grid(images, model.categories, labels), path)


def labelled_grid(images: Tensor, nrow: int, labels: list[str]) -> np.ndarray:
    """A grid of `images` (N, C, H, W), `nrow` to a row, enlarged where they are small, with
    each row named by `labels` in a left margin (`label_rows`)."""
    scale = display_scale(images.shape[-2])
    grid = image_grid(images, nrow=nrow)  # (H', W', 3)
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return label_rows(grid, labels, images.shape[-2] * scale, scale)


def label_rows(grid: np.ndarray, labels: list[str], row_height: int, pad: int = 1) -> np.ndarray:
    """`grid` (H, W, 3) uint8 of len(labels) rows of images `row_height` pixels high, each under
    `pad` pixels of padding (as `image_grid` lays them out), with a left margin of
    LABEL_MARGIN pixels naming each row; rows labelled 'input' get a grey margin."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    h, w, _ = grid.shape
    margin = np.full((h, LABEL_MARGIN, 3), 255, np.uint8)
    for i, label in enumerate(labels):
        if label == "input":
            top = pad + i * (row_height + pad)
            margin[top:top + row_height] = 225
    dpi = 100
    fig = plt.figure(figsize=((w + LABEL_MARGIN) / dpi, h / dpi), dpi=dpi)
    fig.figimage(np.concatenate([margin, grid], axis=1), xo=0, yo=0, origin="upper")
    for i, label in enumerate(labels):
        centre = pad + i * (row_height + pad) + row_height / 2  # pixels from the top
        fig.text(LABEL_MARGIN / 2 / (w + LABEL_MARGIN), 1 - centre / h, label, ha="center",
                 va="center", fontsize=9, family="monospace")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    out = np.asarray(canvas.buffer_rgba())[..., :3].copy()  # (H, W + margin, 3)
    plt.close(fig)
    return out


def save_curves(history: list[dict[str, Any]], path: str | Path) -> None:
    """ELBO, reconstruction and KL per epoch, train and validation."""
    _save_figure(curves_figure(history), path)


def curves_figure(history: list[dict[str, Any]]) -> Any:
    """The figure of `save_curves`."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in zip(axes, ("elbo", "reconstruction", "kl"),
                              ("ELBO (nats)", "E_q log p(x|z) (nats)", "KL(q || p) (nats)")):
        for split, style in (("train", "-"), ("val", "--")):
            values = [row.get(f"{split}_{key}") for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, label=split)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def kl_groups_figure(history: list[dict[str, Any]], names: list[str] | None = None) -> Any:
    """The validation KL of each latent group of a hierarchy per epoch, the lines labelled by
    the model's `group_names` (else numbered), or None where the history has no per-group
    KL."""
    rows = [row for row in history if len(row.get("val_kl_groups", ())) > 1]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for g in range(len(rows[0]["val_kl_groups"])):
        ax.plot([r["epoch"] for r in rows], [r["val_kl_groups"][g] for r in rows],
                label=names[g] if names and g < len(names) else f"group {g + 1}")
    ax.set_title("KL of each latent group (validation, nats)")
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def save_kl_per_dimension(kl: Tensor, path: str | Path) -> None:
    """Bar chart of the mean KL(q(z_j|x) || p(z_j)) of each latent dimension: dimensions near
    0 nats carry no information about x (posterior collapse)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.25 * len(kl) + 2), 3.2))
    ax.bar(range(len(kl)), kl.numpy())
    ax.axhline(0.01, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    ax.set_title(f"KL per latent dimension (total {float(kl.sum()):.2f} nats)")
    _save_figure(fig, path)


#: Up to this many classes get a legend of discrete colours; more get a colour bar.
LEGEND_CLASSES = 10


def _scatter_by_label(ax: Any, mu: np.ndarray, labels: np.ndarray) -> None:
    """Points coloured by class: a legend for up to LEGEND_CLASSES classes, else a colour bar."""
    classes = np.unique(labels)
    if len(classes) <= LEGEND_CLASSES:
        for c, label in enumerate(classes):
            at = labels == label
            ax.scatter(mu[at, 0], mu[at, 1], s=4, alpha=0.5, color=plt.cm.tab10(c),
                       label=str(label))
        ax.legend(title="label", markerscale=3, fontsize="small", loc="best")
    else:
        points = ax.scatter(mu[:, 0], mu[:, 1], s=4, alpha=0.5, c=labels, cmap="viridis")
        ax.figure.colorbar(points, ax=ax, label="label")


def save_latent_plots(model: Any, x: Tensor, path: str | Path, image_shape: tuple[int, ...] | None,
                      labels: Tensor | None = None) -> None:
    """For a 2-D latent space: posterior means of `x` scattered, coloured by `labels` (one per
    row of x) where given, and (for images) the decoder's means on a grid of prior quantiles
    (the 'manifold' of Kingma & Welling 2014, fig. 4)."""
    from torch.distributions import Normal

    conditional = bool(getattr(model, "condition_dim", 0))
    with torch.no_grad():  # a conditional model encodes each example with its class
        q = model.encode(x, condition=labels) if conditional else model.encode(x)
        mu = q.mean.cpu().numpy()
    panels = 2 if image_shape is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 5.5), squeeze=False)
    ax = axes[0, 0]
    if labels is None:
        ax.scatter(mu[:, 0], mu[:, 1], s=4, alpha=0.5)
    else:
        _scatter_by_label(ax, mu, labels[:len(mu)].cpu().numpy())
    ax.set_title("posterior means E_q[z|x]")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    if image_shape is not None:
        steps = 15
        q = Normal(0.0, 1.0).icdf(torch.linspace(0.03, 0.97, steps))
        zz = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), -1).reshape(-1, 2)
        shown = model.condition_classes[0] if conditional else None
        with torch.no_grad():
            device = next(model.parameters()).device
            imgs = (model.decode_mean(zz.to(device), condition=shown) if conditional
                    else model.decode_mean(zz.to(device))).cpu()
        axes[0, 1].imshow(image_grid(imgs.reshape(-1, *image_shape), nrow=steps))
        axes[0, 1].set_title("decoder means over the prior's quantiles"
                             + (f" (class {shown})" if shown is not None else ""))
        axes[0, 1].axis("off")
    _save_figure(fig, path)
