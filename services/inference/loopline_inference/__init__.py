"""Loopline's model server: KServe's Open Inference Protocol v2 over REST and gRPC on ONNX Runtime."""
