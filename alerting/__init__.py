"""Rules, SLO burn rates, alert state, routing and notifiers: built by its issue."""
