"""Runbooks: YAML files of steps, the run engine, its audit trail in the store, automatic starts from alerts."""
