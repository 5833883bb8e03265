"""The engine: types, nodes, layers, networks, the scheduler and error policies."""
