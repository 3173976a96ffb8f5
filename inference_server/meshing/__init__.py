"""Surfaces from fields and their clean-up: extraction, floaters, decimation, smoothing, normals."""
