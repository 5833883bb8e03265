"""The engine: how a pass runs. ``network`` runs the layers in order and owns the pass (its span, metrics and
timeout), ``layer`` runs a layer's nodes side by side under its error policy, ``node`` runs one operator.

:mod:`nons.core.network`, :mod:`nons.core.layer` and :mod:`nons.core.node` say what a network, layer and node
are; ``NoN.run`` loads this package at the first pass, on a worker thread.
"""
