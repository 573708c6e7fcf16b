"""A topology deployed elsewhere than this machine's loopback, with the existing engines.

One image runs every server (the Dockerfile); ``seambench serve NAME`` (``serve.py``) starts
one server inside it through the launcher's own code; ``seambench deploy`` writes a
docker-compose file (``compose.py``) or Kubernetes manifests (``kubernetes.py``) for a
topology. ``servers.py`` is what both targets share: the servers, their names, their
environment and the deployment's secrets. Generating is pure: no Docker, no cluster.
"""
