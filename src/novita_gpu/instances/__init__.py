"""Instances: the API's resource, its lifecycle and the worker that reconciles it with Novita."""
