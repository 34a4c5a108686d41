"""Alerting: rule and SLO files, the evaluator and its alert state machine, the notification pipeline, the API.

A service of `vigil up` (`alerting.service.AlertingService`); `alerting.model` describes the path of an
alert from a rule file to a receiver.
"""
