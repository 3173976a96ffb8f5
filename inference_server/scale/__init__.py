"""Scale-out on Ray Serve (the ``ray`` extra): the same ZeroMQ gateway, jobs run on replicas.

* ``app``: the Ray Serve application, one deployment per stage (``WeightFree``; ``Geometry`` and
  ``Texture`` for the neural backend), each loading its pipeline once per replica.
* ``serve_config``: Ray Serve's own config file format (``serve run/deploy`` read the same file).
* ``bridge``: the gateway's Ray driver, a child process (a lost cluster can take a Ray driver
  down; it never takes the gateway down).
* ``engine``: the gateway's side of the bridge, the server's ``ray`` engine.

Ray is imported only by ``app`` and ``bridge``, inside processes that need it.
"""
