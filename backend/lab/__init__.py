"""Labs: whole multi-host topologies from one TOML file, built in namespaces on one machine."""
