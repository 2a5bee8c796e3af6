"""Sampling: text-to-video and image-to-video pipelines, context windows, FreeInit, base loading."""
