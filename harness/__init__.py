"""Verisim's own test library: stack providers, fault injection, SLO checks, ledger, report.

Nothing in ``system/`` may import from here.
"""
