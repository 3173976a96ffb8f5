"""Model code of the geometry stage, with upstream's parameter names."""
