"""Clusters, products, templates and registry auths: shapes, types and filters."""

from __future__ import annotations

from typing import Any

from tests.emulator.conftest import Emulator


def products(emu: Emulator, **params: Any) -> list[dict[str, Any]]:
    response = emu.api.get("/products", params=params)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_clusters(emu: Emulator) -> None:
    clusters = emu.api.get("/clusters").json()["data"]
    assert len(clusters) >= 6
    assert {"id": "5", "name": "EU-01"}.items() <= clusters[4].items()
    for cluster in clusters:
        assert set(cluster) == {"id", "name", "availableGpuType", "supportNetworkStorage", "supportInstanceNetwork"}
        assert isinstance(cluster["id"], str) and isinstance(cluster["supportNetworkStorage"], bool)
        assert all(isinstance(name, str) for name in cluster["availableGpuType"])


def test_product_fields_and_types(emu: Emulator) -> None:
    items = products(emu)
    assert len({p["name"] for p in items}) >= 8
    for product in items:
        for key in ("cpuPerGpu", "memoryPerGpu", "diskPerGpu", "minRootFS", "maxRootFS", "price"):
            assert type(product[key]) is int, key
        assert isinstance(product["spotPrice"], str) and product["spotPrice"].isdigit()
        assert isinstance(product["availableDeploy"], bool)
        assert product["inventoryState"] in ("none", "low", "normal", "high")
        assert all(set(m) == {"price", "month"} for m in product["monthlyPrice"])
        assert "onDemand" in product["billingMethods"]


def test_rtx_4090_is_offered_in_several_clusters_at_different_prices(emu: Emulator) -> None:
    offers = products(emu, productName="rtx 4090")
    assert {p["name"] for p in offers} == {"RTX 4090 24GB"}
    assert len({p["id"] for p in offers}) >= 4
    assert len({p["price"] for p in offers}) == len(offers)
    assert len({r for p in offers for r in p["regions"]}) == len(offers)
    sold_out = [p for p in offers if not p["availableDeploy"]]
    assert sold_out and sold_out[0]["inventoryState"] == "none"
    spot = products(emu, productName="4090", billingMethod="spot")
    assert 0 < len(spot) < len(offers) and all(int(p["spotPrice"]) < p["price"] for p in spot)


def test_product_filters(emu: Emulator) -> None:
    in_eu = products(emu, clusterId="5")
    assert in_eu and all("EU-01" in p["regions"] for p in in_eu)
    assert all(p["memoryPerGpu"] >= 100 for p in products(emu, minMemoryPerGpu=100))
    assert products(emu, minCpuPerGpu=1000) == []
    assert all(p["maxRootFS"] >= 1500 for p in products(emu, minRootFSSize=1500))
    assert len(products(emu, gpuNum=4)) == len(products(emu))
    assert "L4 24GB" not in {p["name"] for p in products(emu, gpuNum=8)}  # at most 4 GPUs per instance
    response = emu.api.get("/products", params={"gpuNum": "nine"})
    assert response.status_code == 400 and response.json()["reason"] == "VALIDATOR_PARAM"
    assert emu.api.get("/products", params={"billingMethod": "free"}).status_code == 400


def test_cpu_products(emu: Emulator) -> None:
    items = emu.api.get("/cpu/products").json()["data"]
    assert items and all(type(p["cpuNum"]) is int and type(p["price"]) is int for p in items)
    assert emu.api.get("/cpu/products", params={"clusterId": "2"}).json()["data"] == []


def template_names(emu: Emulator, **params: str) -> set[str]:
    response = emu.api.get("/templates", params={"pageSize": 100, **params})
    assert response.status_code == 200, response.text
    return {t["name"] for t in response.json()["template"]}


def test_templates_need_neither_channel_nor_is_my_community(emu: Emulator) -> None:
    """The reference's own example lists templates with no query at all: absent, every channel
    and both scopes are listed; each narrows the list when given."""
    everything = template_names(emu)
    assert {"pytorch-jupyter", "comfyui", "my-private-app"} <= everything
    assert template_names(emu, channel="official") == {"pytorch-jupyter", "ubuntu-ssh", "vllm-openai"}
    assert template_names(emu, isMyCommunity="true") == {"my-private-app"}
    assert "my-private-app" not in template_names(emu, isMyCommunity="false")
    for params in ({"channel": "x"}, {"isMyCommunity": "maybe"}):
        response = emu.api.get("/templates", params=params)
        assert response.status_code == 400, params
        assert response.json()["reason"] == "VALIDATOR_PARAM"


def test_templates_by_channel_with_pagination(emu: Emulator) -> None:
    official = emu.api.get("/templates", params={"channel": "official", "isMyCommunity": "false"}).json()
    names = {t["name"] for t in official["template"]}
    assert {"pytorch-jupyter", "ubuntu-ssh", "vllm-openai"} <= names and official["total"] == len(names)
    private = emu.api.get("/templates", params={"channel": "private", "isMyCommunity": "true"}).json()
    assert private["total"] >= 1 and all(t["channel"] == "private" for t in private["template"])
    page = emu.api.get(
        "/templates", params={"channel": "official,community", "isMyCommunity": "false", "pageSize": 2, "pageNum": 2}
    ).json()
    assert len(page["template"]) == 2 and page["total"] == 4
    # The older revision of Novita's spec answers the page served too; a typed client requires both.
    assert (page["pageSize"], page["pageNum"]) == (2, 2)
    assert (official["pageSize"], official["pageNum"]) == (10, 1)  # absent: the defaults
    first = emu.api.get("/templates", params={"pageNum": 0}).json()
    assert type(first["pageSize"]) is int and first["pageNum"] == 1  # 0 means the first page
    fuzzy = emu.api.get("/templates", params={"channel": "community", "isMyCommunity": "false", "name": "COMFY"})
    assert [t["name"] for t in fuzzy.json()["template"]] == ["comfyui"]


def test_get_template(emu: Emulator) -> None:
    official = emu.api.get("/templates", params={"channel": "official", "isMyCommunity": "false"}).json()
    pytorch = next(t for t in official["template"] if t["name"] == "pytorch-jupyter")
    assert isinstance(pytorch["Id"], str) and pytorch["Id"].isdigit()
    template = emu.api.get("/template", params={"templateId": pytorch["Id"]}).json()["template"]
    assert template == pytorch
    assert template["ports"] == [{"type": "http", "ports": [8888]}, {"type": "tcp", "ports": [22]}]
    assert template["rootfsSize"] == 60 and template["image"] and template["envs"]
    assert template["createdAt"].isdigit()
    missing = emu.api.get("/template", params={"templateId": "999999"})
    assert missing.status_code == 400 and missing.json()["reason"] == "TEMPLATE_NOT_FOUND"


def test_registry_auths(emu: Emulator) -> None:
    auths = emu.api.get("/repository/auths").json()["data"]
    assert auths
    for auth in auths:
        assert set(auth) == {"id", "name", "username", "password"}
        assert len(auth["id"]) == 32 and auth["id"].isalnum()
