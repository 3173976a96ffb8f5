"""Pure logic of the add-on: no ``bpy`` import anywhere under this package.

Everything here is testable with plain Python and numpy, and is shared by the
thin Blender layer (``blender_addon.blender``) and the headless API.
"""
