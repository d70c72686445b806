"""Loopline rollout controller."""
