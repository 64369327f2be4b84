"""Accord: one package per service; every service depends on `services.core`, never on another."""
