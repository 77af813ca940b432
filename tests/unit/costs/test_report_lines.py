"""A report row sums every stretch of an instance or a volume, and shows it as it was last: a resized
volume's size and price are its latest stretch's, whatever order the stretches are read in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import permutations

from novita_gpu.costs.meter import VOLUME_PRODUCT, Stretch
from novita_gpu.costs.report import _Line, _row

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def volume(size_gb: int, price: float, start_minutes: int, end_minutes: int | None) -> Stretch:
    return Stretch(
        "vol_00000000000000000001",
        "default",
        "data",
        VOLUME_PRODUCT,
        "onDemand",
        0,
        price,
        {},
        T0 + timedelta(minutes=start_minutes),
        None if end_minutes is None else T0 + timedelta(minutes=end_minutes),
        kind="volume",
        region="US-CA-06",
        size_gb=size_gb,
    )


def test_a_resized_volume_row_sums_its_stretches_and_shows_the_latest_size_in_any_order() -> None:
    now = T0 + timedelta(hours=2)
    stretches = [volume(100, 0.01, 0, 30), volume(200, 0.02, 30, 60), volume(400, 0.04, 60, None)]
    for order in permutations(stretches):
        line = _Line(order[0])
        for stretch in order:
            line.add(stretch, stretch.seconds_within(T0, now, now))
        shown = _row("vol_00000000000000000001", line, "product")
        assert (shown["sizeGb"], shown["pricePerHour"], shown["billingNow"]) == (400, 0.04, True)
        assert shown["billedSeconds"] == 2 * 3600
        assert abs(shown["costUsd"] - (0.005 + 0.01 + 0.04)) < 1e-9
        assert (shown["kind"], shown["volumeId"], shown["group"]) == (
            "volume",
            "vol_00000000000000000001",
            "network-storage",
        )


def test_a_deleted_volume_row_shows_its_last_closed_stretch() -> None:
    line = _Line(volume(200, 0.02, 30, 60))
    for stretch in (volume(200, 0.02, 30, 60), volume(100, 0.01, 0, 30)):
        line.add(stretch, stretch.seconds_within(T0, T0 + timedelta(hours=5), T0 + timedelta(hours=5)))
    shown = _row("vol_00000000000000000001", line, "label:team")
    assert (shown["sizeGb"], shown["billingNow"], shown["group"], shown["labels"]) == (200, False, None, {})


def test_an_instance_row_has_no_volume_fields() -> None:
    stretch = Stretch(
        "inst_00000000000000000001", "default", "train", "RTX 4090 24GB", "onDemand", 1, 0.29, {"team": "ml"}, T0, None
    )
    line = _Line(stretch)
    line.add(stretch, 3600)
    shown = _row("inst_00000000000000000001", line, "label:team")
    assert shown["kind"] == "instance" and shown["group"] == "ml"
    assert not {"volumeId", "region", "sizeGb"} & set(shown)
