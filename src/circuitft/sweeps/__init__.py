"""Sweeps: many fits from one sweep file, the runs' plan (``--dry_run``) and shared stream prefixes.

``spec`` reads a sweep file into runs; ``plan`` counts each run's steps and analyses, reads its state and
estimates the time; ``prefix`` finds the stream prefixes runs share, trains each once and starts every
longer run from its end; ``execute`` runs a sweep (or one shard of it). ``circuitft sweep`` parses and calls
them.
"""
