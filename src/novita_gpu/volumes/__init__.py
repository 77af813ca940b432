"""Volumes: Novita's network storages as first-class resources (create, grow, delete, adopt, mount), the
only data that outlives an instance's stop, reclaim, migration or recreation (docs/volumes.md)."""
