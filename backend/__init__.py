"""Everything that talks to the kernel, netfilter, the store, Docker and remote hosts.

Never imports textual or prompt_toolkit (see tests/test_import_hygiene.py).
"""
