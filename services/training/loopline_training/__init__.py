"""Loopline's training service: a jobs API over job runners, and the training job itself."""

__version__ = "0.1.0"
