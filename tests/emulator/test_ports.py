"""The instances' own http ports, served by the emulator: 502 until the app boots, 200 while up."""

from __future__ import annotations

from tests.emulator.conftest import Emulator


def endpoint(emu: Emulator, instance_id: str, port: int) -> str:
    mappings = emu.get(instance_id)["portMappings"]
    return str(next(m for m in mappings if m["port"] == port)["endpoint"])


def test_http_port_answers_502_until_booted_then_200_then_502_when_stopped(emu: Emulator) -> None:
    instance_id = emu.create()
    url = endpoint(emu, instance_id, 8888)
    assert url == f"{emu.url}/_instances/{instance_id}/8888/"
    codes = []
    for delay in (0, 10, 3.9, 0.1):  # toCreate, running (app booting), still booting, booted
        emu.advance(delay)
        codes.append(emu.http.get(url).status_code)
    assert codes == [502, 502, 502, 200]
    answer = emu.http.post(url + "v1/models?x=1")
    assert answer.status_code == 200 and answer.json()["path"] == "/v1/models"

    emu.action("stop", instance_id)
    assert emu.http.get(url).status_code == 502
    emu.advance(3)
    assert emu.http.get(url).status_code == 502
    emu.action("start", instance_id)
    emu.advance(5 + 2.9)
    assert emu.http.get(url).status_code == 502
    emu.advance(0.1)
    assert emu.http.get(url).status_code == 200

    emu.action("delete", instance_id)
    emu.advance(2)
    assert emu.http.get(url).status_code == 503


def test_restart_takes_the_app_down_until_it_boots_again(emu: Emulator) -> None:
    instance_id = emu.create()
    emu.advance(14)
    url = endpoint(emu, instance_id, 8888)
    assert emu.http.get(url).status_code == 200
    emu.action("restart", instance_id)
    assert emu.http.get(url).status_code == 502
    emu.advance(4 + 3)
    assert emu.http.get(url).status_code == 200


def test_unknown_instance_or_port_is_404(emu: Emulator) -> None:
    instance_id = emu.create()
    emu.advance(14)
    assert emu.http.get(f"/_instances/{instance_id}/9999/").status_code == 404
    assert emu.http.get(f"/_instances/{instance_id}/22/").status_code == 404  # tcp ports are not served
    assert emu.http.get("/_instances/0000000000000000/8888/").status_code == 404


def test_connect_components(emu: Emulator) -> None:
    instance_id = emu.create()
    before = emu.get(instance_id)
    ssh, jupyter = before["connectComponentSSH"], before["connectComponentJupyter"]
    host, _, port = endpoint(emu, instance_id, 22).partition(":")
    assert host == "127.0.0.1" and port.isdigit()
    assert ssh["sshCommand"] == f"ssh root@127.0.0.1 -p {port}" and ssh["password"]
    assert jupyter["port"] == 8888 and jupyter["address"] == endpoint(emu, instance_id, 8888)
    assert ssh["isRunning"] is False and jupyter["isRunning"] is False
    emu.advance(14)
    after = emu.get(instance_id)
    assert after["connectComponentSSH"]["isRunning"] and after["connectComponentJupyter"]["isRunning"]
    logs = emu.http.get(after["connectComponentLog"]["instanceLogAddress"])
    assert logs.status_code == 200 and "status=running" in logs.text
    bare = emu.get(emu.create(ports="8000/http"))
    assert bare["connectComponentSSH"] == {"sshCommand": "", "password": "", "isRunning": False}
    assert bare["connectComponentJupyter"]["address"] == ""


def test_endpoints_only_in_get(emu: Emulator) -> None:
    instance_id = emu.create()
    [item] = emu.api.get("/gpu/instances").json()["instances"]
    assert all("endpoint" not in m for m in item["portMappings"])
    assert all("endpoint" in m for m in emu.get(instance_id)["portMappings"])
