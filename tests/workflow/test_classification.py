"""Tickets filed without a category: classified from their text, routed or sent to the desk; the desk's
labels recorded as overrides; retraining from them through the API; who may do what."""

import hashlib

from cloud.classify import corpus, model, store
from cloud.storage.db import connect
from tests.workflow.conftest import World

T = "/api/v1/tickets"
C = "/api/v1/classifier"


def classified(ticket: dict) -> dict:
    """The data of the ticket's one classification entry."""
    entries = [e for e in ticket["timeline"] if e["kind"] == "classified"]
    assert len(entries) == 1, ticket["timeline"]
    assert entries[0]["visibility"] == "internal"
    return entries[0]


def overrides(world: World) -> list[dict]:
    return world.sql("SELECT * FROM classifier_overrides ORDER BY id")


def test_a_stuck_lift_is_classified_routed_and_assigned(world: World) -> None:
    t = world.as_("resident").ok(
        "post", T, {"title": "The lift is stuck", "description": "The lift in building 1 is stuck on floor 5 again."}
    )
    assert (t["category"], t["subcategory"]) == ("facility", "elevator")
    # the seed's rule: facility/elevator → Engineering, assigned at once to a technician with the lift skill
    assert (t["department_name"], t["assignee_name"], t["status"]) == ("Engineering", "Liu Yang", "assigned")
    entry = classified(world.as_("desk").ok("get", f"{T}/{t['number']}"))
    model = world.sql("SELECT id FROM classifier_models WHERE active")[0]["id"]
    assert entry["data"]["model_id"] == model and entry["data"]["applied"] is True
    assert entry["data"]["confidence"] >= world.settings.classifier_min_confidence
    assert f"model {model}" in entry["body"]
    [prediction] = world.sql("SELECT * FROM classifier_predictions")
    assert prediction["applied"] and prediction["subcategory"] == "elevator" and "stuck" in prediction["text"]
    # the resident does not see the internal entry
    assert "classified" not in [e["kind"] for e in world.as_("resident").ok("get", f"{T}/{t['number']}")["timeline"]]


def test_a_chinese_complaint_is_classified_likewise(world: World) -> None:
    t = world.as_("resident").ok("post", T, {"title": "电梯卡住了", "description": "有人被困在电梯里"})
    assert (t["category"], t["subcategory"], t["department_name"]) == ("facility", "elevator", "Engineering")
    assert t["assignee_name"] == "Liu Yang"
    assert classified(world.as_("desk").ok("get", f"{T}/{t['number']}"))["data"]["applied"] is True


def test_a_vague_text_goes_to_the_desk_and_its_triage_is_an_override(world: World) -> None:
    t = world.as_("resident").ok("post", T, {"title": "hello?", "description": "please call me"})
    assert (t["category"], t["subcategory"], t["status"]) == ("other", None, "new")
    assert t["department_name"] == "Customer service" and t["assignee_name"] is None
    entry = classified(world.as_("desk").ok("get", f"{T}/{t['number']}"))
    assert entry["data"]["applied"] is False
    assert entry["data"]["confidence"] < world.settings.classifier_min_confidence
    assert "service desk" in entry["body"] and "best guess" in entry["body"]
    assert "assignment_pending" not in [
        e["kind"] for e in world.as_("desk").ok("get", f"{T}/{t['number']}")["timeline"]
    ]

    triaged = world.as_("desk").ok(
        "post", f"{T}/{t['number']}/triage", {"category": "service", "subcategory": "efficiency"}
    )
    assert (triaged["category"], triaged["subcategory"]) == ("service", "efficiency")
    [override] = overrides(world)
    assert (override["category"], override["subcategory"]) == ("service", "efficiency")
    assert override["text"] == "hello?\nplease call me"
    assert override["user_id"] == world.a.users["desk"] and override["actor"] == "a.desk"
    [prediction] = world.sql("SELECT * FROM classifier_predictions")
    assert (override["predicted_category"], override["predicted_subcategory"]) == (
        prediction["category"],
        prediction["subcategory"],
    )
    assert override["agrees"] is (prediction["subcategory"] == "efficiency")


def test_a_confirmed_guess_is_recorded_too_and_a_ticket_filed_with_a_category_is_left_alone(world: World) -> None:
    t = world.as_("desk").ok("post", T, {"title": "hello?", "site_id": "estate-a", "channel": "web"})
    assert t["status"] == "new" and t["category"] == "other"
    [guess] = world.sql("SELECT category, subcategory FROM classifier_predictions")
    world.as_("desk").ok("post", f"{T}/{t['number']}/triage", guess)
    [override] = overrides(world)
    assert override["agrees"] is True and override["subcategory"] == guess["subcategory"]
    given = world.as_("resident").ok("post", T, {"category": "other", "title": "The lift is stuck again"})
    assert (given["category"], given["subcategory"]) == ("other", None)
    assert "classified" not in [e["kind"] for e in world.as_("desk").ok("get", f"{T}/{given['number']}")["timeline"]]
    world.as_("desk").ok("post", f"{T}/{given['number']}/triage", {"category": "facility"})
    assert len(overrides(world)) == 1  # no prediction, no override


#: an unusual text the corpus has nothing like; the desk teaches the model what it is
TAUGHT = "Sculpture by the koi pond hums"


def file_and_label(world: World, text: str, category: str, subcategory: str) -> dict:
    t = world.as_("resident").ok("post", T, {"title": text})
    assert t["status"] == "new", t  # with the desk, so the desk triages it
    return world.as_("desk").ok("post", f"{T}/{t['number']}/triage", {"category": category, "subcategory": subcategory})


def test_retraining_learns_the_desks_labels_and_replaces_the_running_model(world: World) -> None:
    admin = world.as_("admin")
    before = world.as_("desk").ok("post", f"{C}/suggest", {"text": TAUGHT})
    assert before["subcategory"] != "public_facility" and before["above_threshold"] is False
    running = admin.ok("get", C)["model"]
    for _ in range(5):
        file_and_label(world, TAUGHT, "facility", "public_facility")
    assert admin.ok("get", C)["overrides"]["total"] == 5

    report = admin.ok("post", f"{C}/retrain", {})
    assert report["replaced"] is True and report["forced"] is False and report["reason"].startswith("replaced")
    assert report["overrides_used"] == 5 and report["running_model_id"] == running["id"]
    for key in ("subcategory_macro_f1", "subcategory_accuracy", "category_macro_f1", "category_accuracy"):
        assert 0 <= report["baseline"][key] < report["new"][key] <= 1
    # the running model re-evaluated on the same held-out texts scores what it scored when stored
    assert report["running"]["subcategory_macro_f1"] == running["figures"]["subcategory_macro_f1"]
    assert report["new"]["n_held_out"] == report["running"]["n_held_out"] == report["corpus_held_out"]

    shown = admin.ok("get", C)
    assert shown["model"]["id"] == report["model_id"] == report["active_model_id"]
    assert shown["model"]["overrides_used"] == 5 and shown["model"]["created_by"] == world.a.accounts["admin"][0]
    after = world.as_("resident").ok("post", f"{C}/suggest", {"text": TAUGHT})
    assert (after["category"], after["subcategory"], after["model_id"]) == (
        "facility",
        "public_facility",
        report["model_id"],
    )
    assert after["confidence"] > before["confidence"]
    # a new ticket with the taught text is now classified with the new model
    t = world.as_("resident").ok("post", T, {"title": TAUGHT})
    assert classified(world.as_("desk").ok("get", f"{T}/{t['number']}"))["data"]["model_id"] == report["model_id"]


def test_a_worse_model_is_kept_out_unless_forced(world: World) -> None:
    admin = world.as_("admin")
    ticket = file_and_label(world, "hello?", "service", "efficiency")
    running = admin.ok("get", C)["model"]["id"]
    # a desk that labelled every lift and pipe text of the corpus' training part as pets
    wrong = [e.text for e in corpus.split(corpus.load()).training if e.subcategory in ("elevator", "plumbing")]
    for text in wrong:
        world.sql(
            """INSERT INTO classifier_overrides (ticket_id, text, predicted_category, predicted_subcategory,
                   category, subcategory, agrees, actor, created_at)
               VALUES (%s, %s, 'facility', 'elevator', 'other', 'pets', false, 'a.desk', now()) RETURNING id""",
            (ticket["id"], text),
        )
    kept = admin.ok("post", f"{C}/retrain", {})
    assert kept["replaced"] is False and kept["reason"].startswith("kept the running model")
    assert kept["new"]["subcategory_macro_f1"] < kept["running"]["subcategory_macro_f1"] - kept["tolerance"]
    assert kept["active_model_id"] == running == admin.ok("get", C)["model"]["id"]
    stored = world.sql("SELECT active, note FROM classifier_models WHERE id = %s", (kept["model_id"],))[0]
    assert stored["active"] is False and stored["note"] == kept["reason"]

    forced = admin.ok("post", f"{C}/retrain", {"force": True})
    assert forced["replaced"] is True and forced["forced"] is True and "by force" in forced["reason"]
    assert admin.ok("get", C)["model"]["id"] == forced["model_id"] != running
    assert len(world.sql("SELECT id FROM classifier_models WHERE active")) == 1


def test_who_may_see_ask_and_retrain(world: World) -> None:
    for role in ("admin", "manager", "desk"):
        shown = world.as_(role).ok("get", C)
        assert shown["threshold"] == world.settings.classifier_min_confidence
        assert (
            shown["model"]["figures"]["subcategory_macro_f1"]
            > shown["model"]["figures"]["baseline_subcategory_macro_f1"]
        )
    for role in ("tech1", "guard", "resident"):
        assert world.as_(role).get(C).status_code == 403
    for role in ("tech1", "guard"):
        assert world.as_(role).post(f"{C}/suggest", json={"text": "lift stuck"}).status_code == 403
    for role in ("manager", "desk", "resident"):
        assert world.as_(role).post(f"{C}/retrain", json={}).status_code == 403
    # the resident's own site's rules name the department
    s = world.as_("resident").ok("post", f"{C}/suggest", {"text": "The lift is stuck on floor 5"})
    assert (s["category"], s["subcategory"], s["department_name"], s["site_id"]) == (
        "facility",
        "elevator",
        "Engineering",
        "estate-a",
    )
    assert s["above_threshold"] is (s["confidence"] >= s["threshold"])
    assert world.as_("resident").post(f"{C}/suggest", json={"text": "lift", "site_id": "estate-b"}).status_code == 404


def test_a_bad_suggest_request_says_why(world: World) -> None:
    desk = world.as_("desk")
    for body, reason in (
        ({"text": ""}, "text: empty"),
        ({"text": "   \n "}, "text: empty"),
        ({"text": "x" * 5201}, "text"),
        ({}, "text"),
    ):
        resp = desk.post(f"{C}/suggest", json=body)
        assert resp.status_code == 422 and reason in resp.json()["error"], (body, resp.text)
    resp = world.as_("resident").post(T, json={"subcategory": "elevator", "title": "stuck"})
    assert resp.status_code == 422 and "category" in resp.json()["error"]


def store_and_activate(world: World, texts: list[str], labels: list[str], *, blob: bytes | None = None) -> int:
    """What another process does when it activates a model: rows only, nothing in this process' memory."""
    data = blob if blob is not None else model.to_bytes(model.fit(texts, labels))
    new = store.NewModel(data, hashlib.sha256(data).hexdigest(), {}, {}, "elsewhere", len(texts), 0, 0)
    with connect(world.database_url) as conn:
        model_id = store.insert_model(conn, new, created_by="elsewhere", user_id=None, now=world.clock.now())
        store.activate(conn, model_id, world.clock.now())
    return model_id


def test_a_model_another_process_activated_is_used_at_the_next_classification(world: World) -> None:
    desk = world.as_("desk")
    first = desk.ok("post", f"{C}/suggest", {"text": "the lift is stuck"})
    assert first["subcategory"] == "elevator"
    # a deliberately odd model, so that its answers cannot be the corpus model's
    texts = ["the lift is stuck", "a dog barks", "rats in the bins"]
    other = store_and_activate(world, texts, ["pets", "noise", "pests"])
    second = desk.ok("post", f"{C}/suggest", {"text": "the lift is stuck"})
    assert second["model_id"] == other != first["model_id"] and second["subcategory"] == "pets"
    assert len(world.sql("SELECT id FROM classifier_models WHERE active")) == 1


def test_an_unreadable_model_is_refused_with_the_way_out_and_retraining_replaces_it(world: World) -> None:
    broken = store_and_activate(world, [], [], blob=b"not a pickle")
    resp = world.as_("desk").post(f"{C}/suggest", json={"text": "the lift is stuck"})
    assert resp.status_code == 503 and f"model {broken} cannot be loaded" in resp.json()["error"]
    assert "retrain" in resp.json()["error"]
    report = world.as_("admin").ok("post", f"{C}/retrain", {})
    assert report["replaced"] and report["running"] is None and "unreadable" in report["reason"]
    assert world.as_("desk").ok("post", f"{C}/suggest", {"text": "the lift is stuck"})["model_id"] == report["model_id"]
