"""CircuitLoRA: LoRA ranks chosen from how a task's circuit moves during a short probe run.

- :mod:`circuitft.circuitlora.plan`: layer scores, critical layers, rank patterns, parameter counts
- :mod:`circuitft.circuitlora.options`: the ``model.circuit_lora`` options and their checks
- :mod:`circuitft.circuitlora.probe`: the probe run, the two circuits and the plan record
- :mod:`circuitft.circuitlora.apply`: ``model.lora_plan: circuit`` inside a fit (plan file, chart, resume)
"""
