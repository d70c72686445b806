"""Loopline monitoring: streaming drift, training–serving skew and canary comparison from the prediction log."""
