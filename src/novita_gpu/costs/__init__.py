"""Costs and budgets: what each instance has cost so far, reports over any period, and caps per API key."""
