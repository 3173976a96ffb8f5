"""Wire contract shared by the Blender add-on, the CLI client and the server.

Pure Python plus numpy: no bpy, no torch. The server imports this package too,
so that both ends agree on message types, limits and job settings.
"""
