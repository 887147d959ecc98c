"""Built-in task generators: arithmetic (prior-work tasks) and language tasks with known circuits (IOI,
GreaterThan). Each module exports a list of :class:`~circuitft.data.generators.spec.TaskSpec`."""
