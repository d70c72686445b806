"""The training job, run as its own process: `python -m loopline_training.job --help`.

Training set from the features service → train (LightGBM or a PyTorch MLP) → evaluate on a time-based
hold-out → MLflow run → ONNX export + parity gate → reference profile → registration in the registry.
"""
