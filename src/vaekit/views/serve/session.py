"""One trained model behind the latent explorer: loaded once, shared by every request.

`ExplorerSession` does the work of each endpoint of `vaekit.views.serve.app` on tensors and returns
plain JSON-able values; the web layer only validates and routes. A lock serialises the model's
calls, so concurrent requests are safe whatever the model (a flow, a fitted diffusion prior).

The sliders: each latent dimension gets a range of the held-out posterior means' mean ± 3
standard deviations, and the dimensions are ordered by their mean KL on held-out data where
the model's KL splits into dimensions, else by the variance of their posterior means (the
active-units statistic of Burda et al. 2016), the most informative first.
"""

from __future__ import annotations

import base64
import io
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.errors import VaekitError

#: held-out examples kept for choosing by index and for the slider ranges
HELD_OUT = 1000
#: importance samples of an upload's anomaly score (-log p(x))
SCORE_K = 100
#: the largest image (in pixels) an upload may decode to
MAX_UPLOAD_PIXELS = 4096 * 4096
#: points of the 2-D latent map
MAP_POINTS = 1000

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


class RequestError(VaekitError):
    """A request the explorer cannot answer: a 400 with this message."""


def png_data_uri(image: Tensor) -> str:
    """An image (C, H, W) with values in [0, 1] as a PNG data: URI (grey or RGB)."""
    from PIL import Image

    array = (image.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(array[0]) if array.shape[0] == 1 else \
        Image.fromarray(np.moveaxis(array, 0, -1))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class ExplorerSession:
    """A run's model, its held-out examples and slider settings (see the module's docstring)."""

    def __init__(self, run_dir: str | Path, data_dir: str | None = None) -> None:
        from vaekit.models.describe import describe_model
        from vaekit.run import load_run

        self.run_dir = Path(run_dir)
        self.model, self.info = load_run(self.run_dir)
        #: a conditional model's class names: every request that decodes names one
        self.classes = self.model.condition_classes
        self.lock = threading.Lock()
        shape = self.model.event_shape
        self.image_shape = shape if bool(self.info.data.get("images", True)) and \
            len(shape) == 3 and shape[0] in (1, 3) else None
        self.description = describe_model(self.info.config)
        self.schema: Any = None  # a table's columns (vaekit.data.tables.TableSchema)
        if self.info.config.table:
            from vaekit.data.tables import TableSchema

            self.schema = TableSchema.from_dict(self.info.config.table)
        self.held_out, self.labels, self.data_note = self._held_out(data_dir)
        self.sliders = self._sliders()

    # ------------------------------------------------------------------ setup

    def _held_out(self, data_dir: str | None) -> tuple[Tensor | None, Tensor | None, str]:
        """The first HELD_OUT examples of the run's test (else validation) split, or None with
        the reason where the run's data cannot be read."""
        from vaekit.data import load_dataset
        from vaekit.run import ARRAY_DATA

        config = self.info.config
        if config.data == ARRAY_DATA:
            return None, None, "trained on an in-memory array: no held-out examples"
        try:
            data = load_dataset(config.data, data_dir or config.data_dir, config.val_fraction,
                                download=False, images=self.info.data.get("images"),
                                settings=config)
        except VaekitError as e:
            return None, None, f"the run's data could not be read ({e})"
        split = "test" if len(data.test) else "val"
        x = data.split(split)[:HELD_OUT]
        labels = data.split_labels(split)
        return (x if len(x) else None,
                labels[:HELD_OUT] if labels is not None and len(x) else None,
                f"{data.name} {split}, first {len(x)} examples")

    def _sliders(self) -> list[dict[str, float]]:
        from vaekit.evaluate import kl_per_dimension, posterior_means
        from vaekit.evaluate.elbo import condition_rows

        d = self.model.latent_dim
        if self.held_out is None:
            return [{"dim": j, "lo": -3.0, "hi": 3.0, "value": 0.0} for j in range(d)]
        labels = self.labels if self.classes else None  # each example's own class
        with torch.no_grad():
            mu = posterior_means(self.model, self.held_out, 500, labels)  # (N, d)
            kl = kl_per_dimension(self.model, self.held_out[:500], condition=condition_rows(
                labels, 0, 500)) if self.model.has_likelihood else None
        centre, spread = mu.mean(0), mu.std(0).clamp_min(1e-3)
        weight = kl if kl is not None else mu.var(0)
        order = torch.argsort(weight.float(), descending=True).tolist()
        first = mu[0]
        return [{"dim": j, "lo": float(centre[j] - 3 * spread[j]),
                 "hi": float(centre[j] + 3 * spread[j]), "value": float(first[j]),
                 "weight": float(weight[j])} for j in order]

    # ------------------------------------------------------------------ what the page shows

    def describe(self) -> dict[str, Any]:
        m = self.model
        return {"run": self.run_dir.name, "model": self.description,
                "likelihood": self.info.config.likelihood, "latent_dim": m.latent_dim,
                "latent_groups": list(m.latent_groups), "event_shape": list(m.event_shape),
                "image": self.image_shape is not None, "has_likelihood": m.has_likelihood,
                "can_sample": m.can_sample, "sliders": self.sliders,
                "held_out": 0 if self.held_out is None else len(self.held_out),
                "held_out_note": self.data_note, "latent_map": m.latent_dim == 2,
                "classes": list(self.classes)}

    def condition(self, name: str | None) -> str | None:
        """The class a request names, checked: required by a conditional model, refused by
        any other."""
        if not self.classes:
            if name is not None:
                raise RequestError("this model is not conditional: give no condition")
            return None
        if name is None:
            raise RequestError(f"this model is conditional: give condition, one of "
                               f"{', '.join(self.classes[:20])}")
        if name not in self.classes:
            raise RequestError(f"unknown class {name!r}; the model's classes are "
                               f"{', '.join(self.classes[:20])}")
        return name

    def own_class(self, index: int) -> str | None:
        """The class of held-out example `index` (a conditional model), else None."""
        if not self.classes or self.labels is None:
            return None
        return self.classes[int(self.labels[index])]

    def show(self, x: Tensor) -> Any:
        """One example (event_shape) for the page: a PNG data URI; a table's row as
        {"row": {column: value}} (means: the most likely category); else its values."""
        if self.image_shape is not None:
            return png_data_uri(x.reshape(self.image_shape))
        if self.schema is not None:
            frame = self.schema.inverse(x.reshape(1, -1))
            return {"row": {k: _plain(v) for k, v in frame.iloc[0].items()}}
        return [round(float(v), 6) for v in x.flatten()]

    def decode(self, z: list[float], condition: str | None = None) -> dict[str, Any]:
        if len(z) != self.model.latent_dim:
            raise RequestError(f"z has {len(z)} values; this model's latent has "
                               f"{self.model.latent_dim}")
        if not all(math.isfinite(v) for v in z):
            raise RequestError("z must hold finite numbers")
        with self.lock:
            x = self.model.decode_mean(torch.tensor([z], dtype=torch.float32),
                                       condition=self.condition(condition))[0]
        return {"x": self.show(x)}

    def example(self, index: int) -> Tensor:
        if self.held_out is None:
            raise RequestError(f"no held-out examples: {self.data_note}")
        if not 0 <= index < len(self.held_out):
            raise RequestError(f"index {index} is out of range: there are "
                               f"{len(self.held_out)} held-out examples (0 to "
                               f"{len(self.held_out) - 1})")
        return self.held_out[index]

    def encode(self, x: Tensor, condition: str | None = None) -> dict[str, Any]:
        """The posterior, reconstruction and anomaly score of one example x (event_shape) (of
        class `condition`, for a conditional model)."""
        from vaekit.evaluate import log_likelihood

        batch, c = x[None], self.condition(condition)
        with self.lock, torch.no_grad():
            q = self.model.encode(batch, condition=c)
            base = getattr(q, "base", q)  # a flow posterior: its Gaussian q_0
            mean, std = q.mean[0], base.variance[0].sqrt()
            recon = self.model.decode_mean(q.mean, condition=c)[0]
            if self.model.has_likelihood:
                score = -float(log_likelihood(self.model, batch, k=SCORE_K, compile=False,
                                              condition=c).per_example[0])
                given = f" given class {c}, -log p(x|c)" if c is not None else ""
                kind = f"-log p(x){given}, importance-weighted, k={SCORE_K} (nats)"
            else:
                score = float(-self.model.terms(batch).log_px_z[0, 0])
                kind = "reconstruction error -log p(x|f(x)) (nats): an autoencoder has no p(x)"
        return {"input": self.show(x), "reconstruction": self.show(recon),
                "mean": [float(v) for v in mean], "std": [float(v) for v in std],
                "score": score, "score_kind": kind, "condition": c}

    def sample(self, n: int, temperature: float, seed: int,
               condition: str | None = None) -> dict[str, Any]:
        if not self.model.can_sample:
            raise RequestError("this model has no prior to sample from (a plain autoencoder): "
                               "fit one with vaekit fit-prior")
        with self.lock:
            g = torch.Generator().manual_seed(seed)
            x = self.model.sample(n, generator=g, temperature=temperature,
                                  condition=self.condition(condition))
        return {"samples": [self.show(v) for v in x]}

    def interpolate(self, a: Tensor, b: Tensor, steps: int, condition: str | None = None,
                    classes: tuple[str | None, str | None] = (None, None)) -> dict[str, Any]:
        """Frames decoded (as class `condition`, for a conditional model) along the line
        between the posterior means of a and b, each encoded with its own class where it is
        known (`classes`: held-out examples'), else with `condition`."""
        c = self.condition(condition)
        ends = [own or c for own in classes] if c is not None else None
        with self.lock:
            mu = self.model.encode(torch.stack([a, b]), condition=ends).mean  # (2, d)
            t = torch.linspace(0, 1, steps)[:, None]
            frames = self.model.decode_mean((1 - t) * mu[0] + t * mu[1], condition=c)
        return {"frames": [self.show(f) for f in frames]}

    def latent_map(self) -> dict[str, Any]:
        if self.model.latent_dim != 2:
            raise RequestError("the latent map is for models with a 2-D latent")
        if self.held_out is None:
            raise RequestError(f"no held-out examples: {self.data_note}")
        with self.lock:  # a conditional model: each example encoded with its own class
            mu = self.model.encode(self.held_out[:MAP_POINTS], condition=(
                self.labels[:MAP_POINTS] if self.classes and self.labels is not None
                else None)).mean
        labels = self.labels[:MAP_POINTS].tolist() if self.labels is not None else None
        return {"points": mu.tolist(), "labels": labels}

    # ------------------------------------------------------------------ uploads

    def read_upload(self, payload: str) -> Tensor:
        """An uploaded example: a base64 PNG/JPEG (a data: URI or bare) for an image model,
        converted to its channels and resized to its size; for other data, one row of
        comma-separated numbers."""
        if self.image_shape is None:
            return self._read_row(payload)
        text = payload
        if payload.startswith("data:"):
            _, comma, text = payload.partition(",")
            if not comma:
                raise RequestError("the upload is a data: URI without its data (no comma)")
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            raise RequestError("the upload is not valid base64") from None
        if not (raw.startswith(PNG_MAGIC) or raw.startswith(JPEG_MAGIC)):
            raise RequestError("the upload is not a PNG or JPEG image (checked by its content)")
        return self._decode_image(raw)

    def _decode_image(self, raw: bytes) -> Tensor:
        from PIL import Image, UnidentifiedImageError

        assert self.image_shape is not None
        c, h, w = self.image_shape
        try:
            with Image.open(io.BytesIO(raw)) as picture:
                from vaekit.data.folders import WIDE_MODES, has_16_bit_tiles

                if picture.mode in WIDE_MODES or has_16_bit_tiles(picture):
                    raise RequestError("the image has more than 8 bits per channel: upload an "
                                       "8-bit PNG or JPEG")
                if picture.width * picture.height > MAX_UPLOAD_PIXELS:
                    raise RequestError(f"the image is {picture.width}x{picture.height} pixels; "
                                       f"at most {MAX_UPLOAD_PIXELS} pixels are accepted")
                picture = picture.convert("L" if c == 1 else "RGB").resize(
                    (w, h), Image.Resampling.BILINEAR)
                array = np.asarray(picture, dtype=np.float32) / 255.0
        except Image.DecompressionBombError:
            raise RequestError(f"the image is larger than {MAX_UPLOAD_PIXELS} pixels") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise RequestError(f"the image could not be decoded: {e}") from None
        x = torch.from_numpy(array.copy())
        return x[None] if c == 1 else x.permute(2, 0, 1)

    def _read_row(self, payload: str) -> Tensor:
        if self.schema is not None:
            return self._read_table_row(payload)
        try:
            values = [float(v) for v in payload.replace("\n", ",").split(",") if v.strip()]
        except ValueError:
            raise RequestError("the row must be comma-separated numbers") from None
        if len(values) != self.model.data_dim or not all(map(math.isfinite, values)):
            raise RequestError(f"the row must hold {self.model.data_dim} finite numbers, got "
                               f"{len(values)}")
        return torch.tensor(values, dtype=torch.float32).reshape(self.model.event_shape)

    def _read_table_row(self, payload: str) -> Tensor:
        """One CSV row of a table run: with a header line naming the columns, or the values
        alone in the training columns' order."""
        import pandas as pd

        names = [c.name for c in self.schema.columns]
        lines = [line for line in payload.strip().splitlines() if line.strip()]
        if not lines:
            raise RequestError("the row is empty")
        try:
            first = pd.read_csv(io.StringIO(lines[0]), header=None, index_col=False)
            has_header = str(first.iloc[0, 0]) in names
            if first.shape[1] != len(names):
                raise RequestError(f"the row has {first.shape[1]} fields; the table has "
                                   f"{len(names)} columns ({', '.join(names)})")
            frame = pd.read_csv(io.StringIO("\n".join(lines)), header=0 if has_header else None,
                                names=None if has_header else names, index_col=False)
        except (ValueError, pd.errors.ParserError) as e:
            raise RequestError(f"the row is not CSV: {str(e).splitlines()[0]}") from None
        if len(frame) != 1:
            raise RequestError(f"give one row, got {len(frame)}")
        try:
            return self.schema.transform(frame, "the uploaded row")[0]
        except VaekitError as e:
            raise RequestError(str(e)) from None


def _plain(value: Any) -> Any:
    """A table cell as JSON: None for missing, Python numbers and strings."""
    import pandas as pd

    if value is None or bool(pd.isna(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (bool, int, float, str)) else str(value)
