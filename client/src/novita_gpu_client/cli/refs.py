"""How a command finds the instance a user names: `ID|NAME`, and what it needs from its view (ssh, ports).

A ref that starts with `inst_` is an id (ours are `inst_` + 20 hex digits); anything else is a name. A
name may itself start with `inst_`: an id that is not found is then tried as a name.

One rule for names, in every command: a name means the live instance of that name (there is at most
one); when none is live, the most recent terminated instance of that name. Reading commands (`get`,
`events`, `wait`) show that one; `delete` answers as it does for its id (already terminated); the other
actions say "NAME is terminated (ID)" rather than "not found", which would contradict `get`.

Start, stop and delete by name use the API's by-name routes, so the server resolves the name in the same
transaction as the action (no window between looking a name up and acting on a different instance);
only when that route finds no live instance is the name looked up again, to say what it refers to.
"""

from __future__ import annotations

import re
import shlex

from novita_gpu_client import ApiError, Client, Json
from novita_gpu_client.calls import Action
from novita_gpu_client.cli.output import UP
from novita_gpu_client.cli.session import fail
from novita_gpu_client.vocabulary import NAME_PATTERN

ID_PREFIX = "inst_"
_NAME = re.compile(NAME_PATTERN)


def _checked(ref: str) -> str:
    if ref.startswith(ID_PREFIX) or _NAME.fullmatch(ref):
        return ref
    raise fail(
        f"{ref!r} is neither an instance id (inst_...) nor an instance name "
        "(letters, digits, - and _, starting with a letter or digit)",
        2,
    )


def _by_id_first(ref: str, by_name: bool) -> bool:
    return not by_name and ref.startswith(ID_PREFIX)


def view(client: Client, ref: str, *, by_name: bool = False) -> Json:
    """The instance's view, by id or by name."""
    ref = _checked(ref)
    if not _by_id_first(ref, by_name):
        return client.get_by_name(ref)
    try:
        return client.get(ref)
    except ApiError as exc:
        if exc.status != 404 or not _NAME.fullmatch(ref):
            raise
        try:
            return client.get_by_name(ref)
        except ApiError:
            raise exc from None


def instance_id(client: Client, ref: str) -> str:
    """The id of `ref` (no request when it is an id: the command's own request says if it is unknown)."""
    ref = _checked(ref)
    if ref.startswith(ID_PREFIX):
        return ref
    return str(client.get_by_name(ref)["instanceId"])


def live_id(client: Client, ref: str, action: str) -> str:
    """The id of `ref` for an action (touch): by name, a live instance; a terminated one is refused, saying so."""
    ref = _checked(ref)
    if ref.startswith(ID_PREFIX):
        return ref
    found = client.get_by_name(ref)
    if found.get("status") == "terminated":
        raise _terminated(ref, found, action)
    return str(found["instanceId"])


def _terminated(name: str, view: Json, action: str) -> Exception:
    return fail(
        f"{name} is terminated ({view.get('instanceId')}): no live instance has this name, "
        f"so there is nothing to {action}",
        1,
    )


def act(client: Client, action: Action, ref: str, *, by_name: bool, return_to_pool: bool = False) -> Json:
    """Start, stop or delete by id, or by name through the API's by-name route (see the module's rule for a
    name whose instances are all terminated). A stop may return a claimed pool instance to its pool."""
    ref = _checked(ref)

    def stop(instance_id: str) -> Json:
        return client.stop(instance_id, return_to_pool=return_to_pool)

    def stop_by_name(name: str) -> Json:
        return client.stop_by_name(name, return_to_pool=return_to_pool)

    by_id = {"start": client.start, "stop": stop, "delete": client.delete}[action]
    named = {"start": client.start_by_name, "stop": stop_by_name, "delete": client.delete_by_name}[action]

    def by_name_route() -> Json:
        try:
            return named(ref)
        except ApiError as exc:
            if exc.status != 404:
                raise
            try:
                last = client.get_by_name(ref)  # no live one: the most recent terminated one, if any
            except ApiError:
                raise exc from None
            if action == "delete":
                return by_id(str(last["instanceId"]))  # as for its id: "already terminated"
            raise _terminated(ref, last, action) from None

    if not _by_id_first(ref, by_name):
        return by_name_route()
    try:
        return by_id(ref)
    except ApiError as exc:
        if exc.status != 404 or not _NAME.fullmatch(ref):
            raise
        try:
            return by_name_route()
        except ApiError as again:
            if again.status == 404:
                raise exc from None
            raise


def _label(view: Json) -> str:
    return f"{view.get('name')} ({view.get('instanceId')})"


def _not_up(view: Json, what: str) -> None:
    status = view.get("status")
    if status == "terminated":
        raise fail(f"{_label(view)} is terminated: it has no {what}, and will not run again", 1)
    if status not in UP:
        hint = f"; `novita-gpu instances start {view.get('name')}`" if status == "stopped" else ""
        raise fail(f"{_label(view)} is {status}: it has no {what} until it runs{hint}", 1)


def _ports(view: Json) -> list[Json]:
    return list((view.get("connectionDetails") or {}).get("ports") or [])


def _port_list(view: Json) -> str:
    return ", ".join(f"{p.get('port')}/{p.get('type')}" for p in _ports(view)) or "none"


def ssh_command(view: Json) -> list[str]:
    """The ssh command Novita gives for the instance's port 22 (`ssh root@host -p 31022`), else one built
    from the tcp mapping of port 22."""
    _not_up(view, "ssh port")
    given = ((view.get("connectionDetails") or {}).get("ssh") or {}).get("command")
    if given:
        return shlex.split(given)
    mapping = next((p for p in _ports(view) if p.get("port") == 22 and p.get("type") == "tcp"), None)
    host, sep, port = str((mapping or {}).get("endpoint") or "").rpartition(":")
    if mapping is None or not sep or not port.isdigit():
        raise fail(f"{_label(view)} exposes no ssh port (its ports: {_port_list(view)})", 1)
    return ["ssh", f"root@{host}", "-p", port]


def endpoint(view: Json, port: int | None) -> str:
    """The public endpoint of `port`, or of the first http port."""
    _not_up(view, "endpoint")
    ports = _ports(view)
    if port is None:
        chosen = next((p for p in ports if p.get("type") == "http"), None)
        if chosen is None:
            raise fail(f"{_label(view)} has no http port (its ports: {_port_list(view)}); name one", 1)
    else:
        chosen = next((p for p in ports if p.get("port") == port), None)
        if chosen is None:
            raise fail(f"{_label(view)} has no port {port} (its ports: {_port_list(view)})", 1)
    return str(chosen.get("endpoint"))
