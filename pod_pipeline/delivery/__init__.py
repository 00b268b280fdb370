"""Delivery: the analysts' published marts, trial deliveries, safe CSVs and the `pod ui` command."""
