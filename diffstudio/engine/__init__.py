"""The diffusion engine: data, schedules, networks, objectives, samplers, training and runs.

Nothing here imports Qt (a test keeps it so); the GUI subscribes to the callbacks and events
the engine emits.
"""
