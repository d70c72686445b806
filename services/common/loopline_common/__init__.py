"""Loopline's shared service runtime.

Every service builds on the same small pieces: settings (`settings`), JSON logging with request ids
(`logs`), one error hierarchy with one status table (`errors`), the gRPC and HTTP bootstraps
(`grpc_server`, `http_app`, `runner`), Prometheus metric naming (`metrics`) and Kafka I/O (`kafka_io`).
Nothing here touches disk or network at import time.
"""
