"""Geometry backends that need no weights (silhouette inflation)."""
