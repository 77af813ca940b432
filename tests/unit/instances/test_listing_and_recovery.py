"""The shared listing keeps what a replica reading it needs of spot instances, and recovery's names and
windows (instances/recovery.py) read as documented."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import orjson

from novita_gpu.instances import recovery
from novita_gpu.instances.listing import Listing
from novita_gpu.kit.tables import Instance
from novita_gpu.novita import Listed

AT = datetime(2026, 12, 7, tzinfo=UTC)


def test_a_stored_listing_keeps_the_notice_of_a_reclaim() -> None:
    listing = Listing(taken_at=AT)
    listing.add(Listed("a1", "job-0a1b2c3d", "running", "", True, "notified", 1_800_000_000))
    listing.add(Listed("b2", "web-11111111", "running", "", False))
    loaded = Listing.load(AT, listing.dump())
    notified = loaded.by_id["a1"]
    assert notified.spot_notified and notified.spot_reclaim_time == 1_800_000_000 and notified.spot_reclaimed
    assert not loaded.by_id["b2"].spot_notified


def test_a_listing_stored_by_an_older_release_still_loads() -> None:
    body = zlib.compress(orjson.dumps([["a1", "job-0a1b2c3d", "exited", "", True]]), 1)
    [listed] = Listing.load(AT, body).by_id.values()
    assert listed.spot_reclaimed and listed.spot_status == "" and listed.spot_reclaim_time == 0


def test_names_of_recreates_lead_back_to_their_record() -> None:
    assert recovery.name_parts("train-r2-0a1b2c3d") == ("train-r2-0a1b2c3d", 0)  # a user's name may end in -r2
    assert recovery.name_parts("train-r2-0a1b2c3d-r3") == ("train-r2-0a1b2c3d", 3)
    row = Instance(upstream_name="train-0a1b2c3d", upstream_generation=0)
    assert recovery.create_name(row) == "train-0a1b2c3d"
    row.upstream_generation = 2
    assert recovery.create_name(row) == "train-0a1b2c3d-r2"


def test_max_recoveries_counts_a_rolling_day() -> None:
    row = Instance(recovery=None, novita_instance_id="a1", cluster_id="5")
    for hours_ago in (30, 20, 1):
        at = AT - timedelta(hours=hours_ago)
        recovery.begin(row, at, "migrate", reclaimed_at=at)
        recovery.finish(row, at, "recovered", None, keep_reclaimed=False)
    assert recovery.recent(row, AT) == 2  # the one 30 h ago has left the window
    assert [e["attempt"] for e in row.recovery["history"]] == [1, 2, 3]
