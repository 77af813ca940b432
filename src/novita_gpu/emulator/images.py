"""Images and nodes: how long an instance pulls its image, which node of its cluster it lands on, which images
each node holds already, and the starts the control API refuses for capacity.

A mixin of `World` (world.py), kept apart so that the world's module stays readable: it runs under the
world's lock and declares below what it uses of the world.

- A create lands on the nodes of its cluster in turn (round robin per cluster, `nodes_per_cluster` of them):
  deterministic, and it draws nothing from the seeded random source, so every seeded id stays as it was.
- An image with a size (`ImageSettings.size_gb`) pulls in size / rate seconds, or `cached_pull_seconds` when
  the node has it (an earlier instance there pulled it) or a prewarm task for it has succeeded in the
  cluster; a pull still under way there is waited for, never started over. An image without a size pulls in
  `timings.pulling`, as it always has.
- A node keeps what it pulled until a reset (no eviction [INF]); a prewarm counts while its task exists.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from novita_gpu.emulator.account import Account
from novita_gpu.emulator.config import EmulatorConfig, ImageSettings
from novita_gpu.emulator.errors import EmulatedError, invalid_param
from novita_gpu.emulator.instance import EmulatedInstance
from novita_gpu.emulator.state_file import StateFile

NODE_IMAGE, IMAGE_SETTINGS = "node_image", "image_settings"  # state file kinds


def no_capacity_to_start() -> EmulatedError:
    """What Novita answers a start it has no GPUs for (reference §4.7: `INSUFFICIENT_RESOURCE`)."""
    return EmulatedError(
        400, "INSUFFICIENT_RESOURCE", "insufficient resource: the instance's node has no free GPUs to start it"
    )


@dataclass
class StartRefusals:
    """Starts refused for capacity (control API): each listed instance's next start, and the next `next`
    starts of any instance. Each refusal is used up by the start it refuses."""

    instance_ids: list[str] = field(default_factory=list)
    next: int = 0

    def json(self) -> dict[str, Any]:
        return {"instanceIds": list(self.instance_ids), "next": self.next}


class ImageMixin:
    config: EmulatorConfig
    account: Account
    _lock: threading.RLock
    _state: StateFile | None
    _instances: dict[str, EmulatedInstance]
    _images: ImageSettings
    # (cluster id, node, image URL) -> when the image is (or was) on that node, pulled there.
    _node_images: dict[tuple[str, int, str], float]
    _placed: Counter[str]  # creates placed per cluster (the round robin's position)
    _refusals: StartRefusals

    if TYPE_CHECKING:  # World's

        def now(self) -> float: ...
        def _seconds(self, timing: str) -> float: ...

    def _fresh_images(self) -> None:
        self._images = self.config.images.model_copy(deep=True)
        self._node_images = {}
        self._placed = Counter()
        self._refusals = StartRefusals()

    def _load_images(self, state: StateFile) -> None:
        """After the instances are loaded: the round robin goes on where it was, nodes keep their images."""
        self._placed = Counter(i.cluster_id for i in self._instances.values())
        for body in state.objects(NODE_IMAGE):
            key = (body["clusterId"], int(body["node"]), body["imageUrl"])
            self._node_images[key] = float(body["readyAt"])
        for settings in state.objects(IMAGE_SETTINGS):  # set through the control API before the restart
            self._images = ImageSettings.model_validate({k: v for k, v in settings.items() if k != "id"})

    # --- control API -----------------------------------------------------------------------------

    def image_settings(self) -> ImageSettings:
        with self._lock:
            return self._images.model_copy(deep=True)

    def set_image_settings(self, changes: dict[str, object]) -> ImageSettings:
        """Apply a partial update (camelCase fields; `sizesGb` replaces the whole map); raises
        pydantic.ValidationError on bad fields or values. Kept in the state file, as the spot settings are.
        Applies to pulls and prewarm tasks that begin afterwards."""
        with self._lock:
            self._images = ImageSettings.model_validate({**self._images.model_dump(by_alias=True), **changes})
            if self._state is not None:
                self._state.save_object(IMAGE_SETTINGS, "images", {"id": "images", **self._images.model_dump()})
            return self._images.model_copy(deep=True)

    def node_images(self) -> list[dict[str, Any]]:
        """`[{clusterId, node, imageUrl, readyAt}]`: what each node has pulled (or is pulling: readyAt ahead)."""
        with self._lock:
            return [
                {"clusterId": cluster, "node": node, "imageUrl": image, "readyAt": ready}
                for (cluster, node, image), ready in sorted(self._node_images.items())
            ]

    def start_refusals(self) -> dict[str, Any]:
        with self._lock:
            return self._refusals.json()

    def set_start_refusals(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{instanceIds?, next?}`: the fields given replace what was set (`{"instanceIds": [], "next": 0}`
        clears all). Instance ids must be known (404 otherwise)."""
        with self._lock:
            ids, count = body.get("instanceIds"), body.get("next")
            if set(body) - {"instanceIds", "next"}:
                raise invalid_param(f"unknown fields: {', '.join(sorted(set(body) - {'instanceIds', 'next'}))}")
            if ids is not None:
                if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
                    raise invalid_param("instanceIds must be a list of instance ids")
                unknown = [i for i in ids if i not in self._instances]
                if unknown:
                    raise EmulatedError(404, "RESOURCE_NOT_FOUND", f"instance {unknown[0]!r} not found")
                self._refusals.instance_ids = list(dict.fromkeys(ids))
            if count is not None:
                if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                    raise invalid_param("next must be an integer >= 0")
                self._refusals.next = count
            return self._refusals.json()

    # --- used by create, start and migrate -------------------------------------------------------

    def _place(self, instance: EmulatedInstance) -> None:
        """Put a new instance on the next node of its cluster."""
        instance.node = self._placed[instance.cluster_id] % self._images.nodes_per_cluster
        self._placed[instance.cluster_id] += 1

    def _next_node(self, node: int) -> int:
        """Another node of the same cluster, for a migration (the same one when the cluster has one node)."""
        return (node + 1) % self._images.nodes_per_cluster

    def _pull_seconds(self, instance: EmulatedInstance, start: float) -> float:
        """How long the instance is `pulling` when it starts pulling at `start` (emulator seconds)."""
        size = self._images.size_gb(instance.image_url)
        if size is None:
            return self._seconds("pulling")
        speed = self.config.speed
        cold = size / self._images.pull_gb_per_second / speed
        on_node = self._node_images.get((instance.cluster_id, instance.node, instance.image_url))
        prewarmed = self.account.prewarmed_at(instance.cluster_id, instance.image_url, instance.product_id)
        ready = min((t for t in (on_node, prewarmed) if t is not None), default=None)
        if ready is None:
            return cold
        return min(cold, max(self._images.cached_pull_seconds / speed, ready - start))

    def _pulled(self, instance: EmulatedInstance, ready_at: float) -> None:
        """The instance's node has its image from `ready_at` on (the earliest pull there counts)."""
        key = (instance.cluster_id, instance.node, instance.image_url)
        known = self._node_images.get(key)
        if known is not None and known <= ready_at:
            return
        self._node_images[key] = ready_at
        if self._state is not None:
            body = {"clusterId": key[0], "node": key[1], "imageUrl": key[2], "readyAt": ready_at}
            self._state.save_object(NODE_IMAGE, f"{key[0]}/{key[1]}/{key[2]}", body)

    def _take_start_refusal(self, instance_id: str) -> bool:
        """Use up a refusal set for this start, if any: the instance's own first, else one of `next`."""
        if instance_id in self._refusals.instance_ids:
            self._refusals.instance_ids.remove(instance_id)
            return True
        if self._refusals.next > 0:
            self._refusals.next -= 1
            return True
        return False
