"""The feedback store: records per worker and day, selected images read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from visionops.feedback.store import FeedbackStore, new_id, utc_now


def _record(when: datetime, **extra):
    return {"id": new_id(), "time": when.isoformat(), "source": "test", **extra}


def test_records_land_in_one_folder_per_day_and_read_back(tmp_path):
    store = FeedbackStore(tmp_path, source="service")
    yesterday = utc_now() - timedelta(days=1)
    store.append(_record(yesterday, n=1))
    store.append(_record(utc_now(), n=2))
    days = sorted(p.name for p in (tmp_path / "records").iterdir())
    assert days == [f"{yesterday:%Y-%m-%d}", f"{utc_now():%Y-%m-%d}"]
    assert [r["n"] for r in store.records()] == [1, 2]
    assert [r["n"] for r in store.records(since=utc_now() - timedelta(hours=1))] == [2]


def test_a_line_cut_short_is_skipped(tmp_path):
    store = FeedbackStore(tmp_path)
    store.append(_record(utc_now(), n=1))
    (day,) = (tmp_path / "records").iterdir()
    (day / "other-host-1.jsonl").write_text('{"id": "x", "time": "20')
    assert [r["n"] for r in store.records()] == [1]


def test_selected_images_wait_until_a_review_takes_them(tmp_path):
    store = FeedbackStore(tmp_path)
    first, second = _record(utc_now()), _record(utc_now() + timedelta(seconds=1))
    for record in (first, second):
        store.keep_selected(record, {"counts": {}}, b"\xff\xd8jpeg")
    assert [s.id for s in store.selected(pending=True)] == [first["id"], second["id"]]
    store.mark_reviewed([first["id"]], "outputs/review/x")
    assert [s.id for s in store.selected(pending=True)] == [second["id"]]
    assert len(store.selected()) == 2
    assert store.reviews()[0]["batch"] == "outputs/review/x"
    assert store.selected()[0].image.read_bytes() == b"\xff\xd8jpeg"
    assert datetime.fromisoformat(store.reviews()[0]["time"]).tzinfo == UTC
