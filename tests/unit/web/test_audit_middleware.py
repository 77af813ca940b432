"""A request's audit row from what the middleware sees: the principal, the route's action, the path's
parameters, the status and the answer (of which only an id and the error code are read)."""

from __future__ import annotations

from novita_gpu.audit.actions import route_action
from novita_gpu.teams.keys import Principal
from novita_gpu.web.audit_middleware import entry_for

ALICE = Principal("team_ml", "ak_alice", "alice", "member")
OWNER = Principal("key-0123456789ab", "key-0123456789ab", "key-0123456789ab", "owner")


def test_a_create_names_its_new_id_and_a_refused_one_none() -> None:
    spec = route_action("POST", "/api/instances")
    made = entry_for(ALICE, spec, {}, 201, {"instanceId": "inst_1", "name": "job"}, "req-1")
    assert (made.actor, made.actor_name, made.team, made.action) == ("ak_alice", "alice", "team_ml", "instance.create")
    assert (made.target, made.outcome, made.request_id, made.details) == ("inst_1", "ok", "req-1", {"status": 201})
    refused = entry_for(ALICE, spec, {}, 403, {"error": {"code": "QUOTA_EXCEEDED", "message": "..."}}, "req-2")
    assert (refused.target, refused.outcome, refused.details) == (None, "QUOTA_EXCEEDED", {"status": 403})


def test_the_path_names_the_target_of_an_action_on_one_resource() -> None:
    spec = route_action("POST", "/api/instances/{instance_id}/stop")
    stopped = entry_for(ALICE, spec, {"instance_id": "inst_1"}, 404, {"error": {"code": "INSTANCE_NOT_FOUND"}}, None)
    assert (stopped.action, stopped.target, stopped.outcome) == ("instance.stop", "inst_1", "INSTANCE_NOT_FOUND")


def test_a_key_or_team_made_for_another_team_is_recorded_in_that_team_and_no_secret_is_kept() -> None:
    answer = {"id": "ak_new", "team": "team_ml", "secret": "ngk_secret", "prefix": "ngk_secret"}
    made = entry_for(OWNER, route_action("POST", "/api/keys"), {}, 201, answer, "req")
    assert (made.team, made.target) == ("team_ml", "ak_new")
    assert "ngk_secret" not in repr(made)
    refused = entry_for(OWNER, route_action("PATCH", "/api/teams/{ref}"), {"ref": "ml"}, 404, {}, "req")
    assert (refused.team, refused.target, refused.outcome) == (OWNER.team, "ml", "HTTP_404")
