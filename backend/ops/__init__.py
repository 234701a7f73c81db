"""Operations: build and repair container networks from the store's desired state.

Each operation validates all input first (``backend.validate``), then changes the
store and the kernel inside an ``Undo`` so that a failure half-way leaves nothing
behind. Operations take a ``Context`` — the store and the hosts — and return
plain data for the command line to print or emit as JSON.
"""
