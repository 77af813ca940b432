"""Teams and their keys, roles and quotas (docs/teams.md)."""
