"""Warm pools: idle members kept ready or stopped, handed out on claim, refilled in the background."""
