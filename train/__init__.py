"""Torch side: datasets, models, training, post-training quantization, baselines."""
