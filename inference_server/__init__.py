"""Step1X-3D inference server: job server, pipelines and the mesh/texture toolchain."""

__version__ = "0.1.0"
