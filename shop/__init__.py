"""The shop: auth, billing, search and notify, written once.

Each component is an interface (``api.py``), an implementation with its own storage
(``service.py``), a Flask blueprint (``routes.py``) and an HTTP client stub
(``client.py``). ``placement.py`` decides, per process, which of the two a caller gets.
"""
