"""The runtime: model presets and loading, the steering basis, the engine and its decoders, the
scheduler, and the one shared runtime per preset a process uses."""
