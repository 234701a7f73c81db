"""The cluster store: desired state every host can see (``backend.records``).

``open_store(url)`` picks the back-end: an embedded SQLite file by default, consul
(``consul://HOST:8500[/prefix]``) or etcd (``etcd://HOST:2379[,HOST:2379…][/prefix]``)
for real clusters. All implement the same small KV contract (``kv.KV``) with
check-and-set, and ``registry.Registry`` builds networks, hosts, containers,
endpoints and allocations on top of it. ``flannel_layout`` reads what flannel keeps
in etcd, for the flannel networks that name it.
"""
