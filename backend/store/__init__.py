"""The cluster store: desired state every host can see (``backend.records``).

``open_store(url)`` picks the back-end: an embedded SQLite file by default, or
consul (``consul://HOST:8500[/prefix]``) for real clusters. Both implement the
same small KV contract (``kv.KV``) with check-and-set, and ``registry.Registry``
builds networks, hosts, containers, endpoints and allocations on top of it.
"""
