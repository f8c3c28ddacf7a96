"""Scoring and embedding with a saved model, on numpy columns (what `predict_batch_udf` hands a
predict function, and what a plain loop over Parquet reads).

A model folder holds `model.pt` (state dict) and `model_config.json` (`architecture`,
`transform`, `objective`, `labels`), written by the training job before any process starts,
so the Spark layer, a benchmark loop and a fresh process all build the same network and the
same input transform from the folder alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medspark.deep.data import pad_series
from medspark.deep.nets import build_model
from medspark.deep.transform import ImageTransform, even_subsample

CONFIG_FILE = "model_config.json"


def write_model_config(model_dir: str, doc: dict[str, Any]) -> str:
    """`model_config.json`: architecture, transform, objective, labels (classes in order)."""
    path = os.path.join(model_dir, CONFIG_FILE)
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
    return path


@dataclass
class Scorer:
    """A loaded model in eval mode with its input transform."""

    model: torch.nn.Module
    transform: ImageTransform
    objective: str
    arch: str
    labels: list[Any] | None
    max_slices: int
    device: torch.device
    chunk: int = 256

    @classmethod
    def load(cls, model_dir: str, device: str = "cpu", weights: str = "model.pt") -> Scorer:
        with open(os.path.join(model_dir, CONFIG_FILE)) as fh:
            doc = json.load(fh)
        model = build_model(doc["architecture"])
        state = torch.load(os.path.join(model_dir, weights), map_location="cpu",
                           weights_only=True)
        model.load_state_dict(state)
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           device if device != "auto" else "cpu")
        model.to(dev).eval()
        return cls(model, ImageTransform.from_dict(doc["transform"]), doc["objective"],
                   doc["architecture"]["arch"], doc.get("labels"),
                   int(doc["architecture"].get("max_slices", 64)), dev)

    # -- inputs -------------------------------------------------------------------------------
    def planes(self, heights, widths, channels, dtypes, datas) -> np.ndarray:
        return self.transform.batch(heights, widths, channels, dtypes, datas)

    def series(self, heights, widths, channels, dtypes, datas) -> tuple[torch.Tensor, ...]:
        out = []
        for h, w, c, d, b in zip(heights, widths, channels, dtypes, datas, strict=True):
            keep = even_subsample(len(b), self.max_slices)
            out.append(self.transform.batch([h[i] for i in keep], [w[i] for i in keep],
                                            [c[i] for i in keep], [d[i] for i in keep],
                                            [b[i] for i in keep]))
        return pad_series(out)

    # -- outputs ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, heights, widths, channels, dtypes, datas) -> dict[str, np.ndarray]:
        """score, probability (classification: N x classes; else N x 0), prediction.

        classification: probability = softmax, prediction = class index, score = P(class 1)
        for two classes, else the top probability; regression: score = prediction = output;
        autoencoder: score = reconstruction error (MSE), prediction NaN.
        """
        n = len(datas)
        parts = []
        for s in range(0, n, self.chunk):
            sl = slice(s, s + self.chunk)
            args = (heights[sl], widths[sl], channels[sl], dtypes[sl], datas[sl])
            if self.arch == "gru":
                x, lengths = self.series(*args)
                out = self.model(x.to(self.device), lengths)
            else:
                x = torch.from_numpy(self.planes(*args)).to(self.device)
                out = self.model.reconstruction_error(x) if self.objective == \
                    "reconstruction" else self.model(x)
            parts.append(out.float().cpu().numpy())
        out = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
        if self.objective == "reconstruction":
            err = out.astype(np.float64).reshape(n)
            return {"score": err, "probability": np.zeros((n, 0)),
                    "prediction": np.full(n, np.nan)}
        if self.objective == "regression":
            value = out.astype(np.float64).reshape(n)
            return {"score": value, "probability": np.zeros((n, 0)), "prediction": value}
        prob = torch.softmax(torch.from_numpy(out), dim=1).double().numpy()
        pred = prob.argmax(axis=1).astype(np.float64)
        score = prob[:, 1] if prob.shape[1] == 2 else prob.max(axis=1)
        return {"score": score, "probability": prob, "prediction": pred}

    @torch.no_grad()
    def embed(self, heights, widths, channels, dtypes, datas) -> dict[str, np.ndarray]:
        """Per-image embedding (N x D; the GRU's slice encoder for the GRU) and the
        autoencoder's reconstruction error (NaN for other networks)."""
        n = len(datas)
        embs, errs = [], []
        for s in range(0, n, self.chunk):
            sl = slice(s, s + self.chunk)
            x = torch.from_numpy(self.planes(heights[sl], widths[sl], channels[sl], dtypes[sl],
                                             datas[sl])).to(self.device)
            if self.arch == "gru":
                embs.append(self.model.embed_slices(x).cpu().numpy())
            else:
                embs.append(self.model.embed(x).cpu().numpy())
            if self.objective == "reconstruction":
                errs.append(self.model.reconstruction_error(x).cpu().numpy())
        emb = np.concatenate(embs).astype(np.float64) if embs else np.zeros((0, 0))
        err = np.concatenate(errs).astype(np.float64) if errs else np.full(n, np.nan)
        return {"embedding": emb, "recon_error": err}

    def embedding_dim(self) -> int:
        size, c = self.transform.input_size, self.transform.channels
        x = torch.zeros((1, c, size, size), device=self.device)
        with torch.no_grad():
            z = self.model.embed_slices(x) if self.arch == "gru" else self.model.embed(x)
        return int(z.shape[1])
