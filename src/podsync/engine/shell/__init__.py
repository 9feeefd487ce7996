"""The shell agent: sync with a container that has POSIX ``sh`` and ``tar`` but no Python.

Owns nothing itself; see ``endpoint`` (the Endpoint), ``scripts``/``changes`` (what runs in
the container), ``listing``/``tarstream`` (parsing what comes back), ``reading`` (downloads,
digests) and ``poller`` (remote change detection).
"""
