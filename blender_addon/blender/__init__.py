"""The thin Blender layer: everything here may import ``bpy``; logic lives in ``..core``."""
