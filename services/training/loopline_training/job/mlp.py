"""A PyTorch MLP for tabular data on CPU: seeded, deterministic, early-stopped, exported to ONNX.

The network holds its own preprocessing (missing values filled with the training mean, standardisation,
one embedding per categorical feature), so its ONNX graph takes the same `input` tensor as every other
Loopline model and answers the same `label` and `probabilities` outputs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from loopline_training.job.errors import JobError

Report = Callable[[int, int, dict[str, float]], None]


class TabularNet(nn.Module):
    """[batch, features] float32 → logit [batch, 1]."""

    numeric_index: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self, *, numeric: list[int], categorical: list[tuple[int, int]], mean: np.ndarray, std: np.ndarray,
        hidden: list[int], dropout: float, embedding_dim: int,
    ) -> None:
        super().__init__()
        self.register_buffer("numeric_index", torch.tensor(numeric, dtype=torch.int64))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.categorical = [index for index, _ in categorical]
        self.embeddings = nn.ModuleList(nn.Embedding(size + 1, embedding_dim) for _, size in categorical)
        self.sizes = [size for _, size in categorical]
        width = len(numeric) + embedding_dim * len(categorical)
        layers: list[nn.Module] = []
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(dropout)]
            width = units
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.numeric_index.numel():
            numeric = x.index_select(1, self.numeric_index)
            numeric = torch.where(torch.isnan(numeric), self.mean, numeric)
            parts.append((numeric - self.mean) / self.std)
        for column, embedding, size in zip(self.categorical, self.embeddings, self.sizes, strict=True):
            # Index 0 is "unknown or missing" (encoded -1); known values are 1..size.
            raw = torch.nan_to_num(x[:, column], nan=-1.0)
            codes = torch.clamp(raw + 1.0, 0.0, float(size)).to(torch.int64)
            parts.append(embedding(codes))
        logits: torch.Tensor = self.body(torch.cat(parts, dim=1))
        return logits


class Serving(nn.Module):
    """The exported graph: `label` int64 [batch] and `probabilities` float32 [batch, 2]."""

    def __init__(self, net: TabularNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positive = torch.sigmoid(self.net(x))
        probabilities = torch.cat([1.0 - positive, positive], dim=1)
        label = (positive[:, 0] > 0.5).to(torch.int64)
        return label, probabilities


@dataclass
class MlpModel:
    net: TabularNet
    best_epoch: int
    epochs: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(class 1), computed in float32 as ONNX does, returned as float64."""
        self.net.eval()
        with torch.no_grad():
            logits = self.net(torch.from_numpy(x.astype(np.float32)))
            return torch.sigmoid(logits)[:, 0].numpy().astype(np.float64)

    def save(self, path: str) -> None:
        torch.save(self.net.state_dict(), path)

    def to_onnx(self, n_features: int) -> bytes:
        """The dynamo exporter (needs onnxscript), with the weights inside the file (external_data=False)."""
        import onnx

        serving = Serving(self.net).eval()
        example = torch.zeros((4, n_features), dtype=torch.float32)
        batch = torch.export.Dim("batch")
        # The exporter's own chatter (optional torchvision ops, deprecations inside torch) is not ours to act on.
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            path = Path(folder) / "model.onnx"
            torch.onnx.export(
                serving, (example,), str(path), input_names=["input"], output_names=["label", "probabilities"],
                dynamic_shapes=({0: batch},), dynamo=True, external_data=False, optimize=True, verbose=False,
            )
            if any(p.name != "model.onnx" for p in Path(folder).iterdir()):
                raise JobError("the ONNX exporter wrote external weight files; the model must be one file")
            model = onnx.load(str(path))
            for tensor in model.graph.initializer:
                if tensor.data_location == onnx.TensorProto.EXTERNAL:
                    raise JobError(f"ONNX initializer {tensor.name} is stored outside the model file")
            return path.read_bytes()


def _configure(threads: int, seed: int) -> None:
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:
        with contextlib.suppress(RuntimeError):  # already fixed for this process
            torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)


def _bce(logits: torch.Tensor, target: torch.Tensor) -> float:
    return float(nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target).item())


def train(
    *, x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
    params: dict[str, Any], categorical: list[tuple[int, int]], seed: int, report: Report,
) -> MlpModel:
    """Adam on binary cross-entropy; stops when the early-stopping loss has not improved for `patience`
    epochs and keeps the weights of the best epoch."""
    _configure(int(params["num_threads"]), seed)
    categorical_columns = {index for index, _ in categorical}
    numeric = [i for i in range(x_train.shape[1]) if i not in categorical_columns]
    numeric_train = x_train[:, numeric]
    with np.errstate(all="ignore"):
        mean = np.nan_to_num(np.nanmean(numeric_train, axis=0), nan=0.0) if numeric else np.zeros(0)
        std = np.nan_to_num(np.nanstd(numeric_train, axis=0), nan=1.0) if numeric else np.zeros(0)
    std = np.where(std > 1e-12, std, 1.0)
    hidden = [int(v) for v in str(params["hidden_layers"]).split(",")]
    net = TabularNet(numeric=numeric, categorical=categorical, mean=mean, std=std, hidden=hidden,
                     dropout=float(params["dropout"]), embedding_dim=int(params["embedding_dim"]))
    optimizer = torch.optim.Adam(net.parameters(), lr=float(params["learning_rate"]),
                                 weight_decay=float(params["weight_decay"]))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(float(params["pos_weight"])))
    xt, yt = torch.from_numpy(x_train.astype(np.float32)), torch.from_numpy(y_train.astype(np.float32))
    xv, yv = torch.from_numpy(x_valid.astype(np.float32)), torch.from_numpy(y_valid.astype(np.float32))
    generator = torch.Generator().manual_seed(seed)
    batch_size = int(params["batch_size"])
    max_epochs, patience = int(params["max_epochs"]), int(params["patience"])
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(net.state_dict())
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        net.train()
        order = torch.randperm(len(xt), generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(net(xt[index])[:, 0], yt[index])
            loss.backward()
            optimizer.step()
            total_loss += float(loss.item()) * len(index)
        net.eval()
        with torch.no_grad():
            valid_loss = _bce(net(xv), yv)
        if not math.isfinite(valid_loss):
            raise JobError(f"training diverged at epoch {epoch} (early-stopping loss {valid_loss}); "
                           "lower the learning rate")
        report(epoch, max_epochs, {"train_loss": total_loss / len(xt), "early_stopping_loss": valid_loss})
        if valid_loss < best_loss - 1e-7:
            best_loss, best_epoch, best_state = valid_loss, epoch, copy.deepcopy(net.state_dict())
        elif patience and epoch - best_epoch >= patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    return MlpModel(net=net, best_epoch=best_epoch, epochs=epoch)
