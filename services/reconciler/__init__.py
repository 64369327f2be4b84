"""Reconciler: proves every agency's copy equal to its view, repairs what is not, and times it.

The engine (engine.py) is pure: acknowledgements (acks.py), anti-entropy by bucketed
digests (antientropy.py), repairs (repair.py), findings (findings.py), time to
consistency (consistency.py). The runner (runner.py) feeds it from Kafka and publishes
what it decides; the Luoshan story told on a real broker lives in services/demo.
"""
