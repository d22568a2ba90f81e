"""Write the example model files in ``data/models/`` that README and docs/inspect.md inspect.

One model, the seed's row classifier at a smaller hidden size (28 input features per row,
2 stacked LSTM layers of 64 units, a 10-way linear head), saved the way people ship it:

* ``rows_lstm.pt``: the PyTorch state dict (``torch.save``);
* ``rows_lstm.safetensors``: the same tensors (``safetensors.torch.save_file``);
* ``rows_lstm.onnx``: ``torch.onnx.export`` of the module (the legacy exporter: LSTM nodes);
* ``rows_lstm.keras``: the same architecture built and saved with Keras 3 (torch backend),
  whose LSTMs have one bias vector per gate block.

Needs the ``[test]`` extra (safetensors, onnx, keras, h5py). The weights are seeded, so a rerun
writes the same tensors (the container formats may still differ byte for byte).

    python scripts/make_example_models.py [--out data/models]
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports keras: no TensorFlow

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


class RowClassifier(nn.Module):
    """``nn.LSTM(28, 64, num_layers=2, batch_first=True)`` + ``nn.Linear(64, 10)``."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(28, 64, num_layers=2, batch_first=True)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(x)[0][:, -1])


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "models")
    out: Path = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    model = RowClassifier().eval()
    torch.save(model.state_dict(), out / "rows_lstm.pt")

    from safetensors.torch import save_file

    save_file(model.state_dict(), str(out / "rows_lstm.safetensors"))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 28, 28),), str(out / "rows_lstm.onnx"), dynamo=False)

    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    km = keras.Sequential(
        [keras.Input((28, 28)), L.LSTM(64, return_sequences=True), L.LSTM(64), L.Dense(10)],
        name="rows_lstm",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km.save(str(out / "rows_lstm.keras"))
    for f in sorted(out.glob("rows_lstm.*")):
        print(f"wrote {f.relative_to(ROOT) if f.is_relative_to(ROOT) else f} ({f.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
