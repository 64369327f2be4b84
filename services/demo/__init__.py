"""The Luoshan story told against a real backbone: `accord demo luoshan` (tooling, not a service)."""
