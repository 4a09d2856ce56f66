"""Watching a model once it is live: the prediction log (every prediction served or batch
scored), and what the `monitor` stage reads from it."""
