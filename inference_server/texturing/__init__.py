"""Texturing: projection of reference images (project.py), PBR maps (pbr.py), tangents.

Kept free of imports so ``import inference_server.texturing`` costs nothing; import the
submodules you need.
"""
