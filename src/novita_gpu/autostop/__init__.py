"""Auto-stop: stop GPUs nobody has used for a while."""
