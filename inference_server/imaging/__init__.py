"""Image input handling. Import submodules directly (``from inference_server.imaging.decode import ...``)."""
