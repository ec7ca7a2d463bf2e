"""Engines behind one contract (:mod:`.base`): the flow engine (:mod:`.flow_engine`), a wrapped diffusers
pipeline (:mod:`.diffusers_engine`), and the registry that loads them by name (:mod:`.registry`)."""
