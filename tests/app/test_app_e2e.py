"""The launched app, driven through gradio_client over HTTP on 127.0.0.1 (real model, real SAE)."""

import json

import pytest

from app_server import AppServer
from steering.artefacts.profile import SteeringProfile

pytestmark = [pytest.mark.e2e, pytest.mark.model]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    server = AppServer(tmp_path_factory.mktemp("app")).wait()
    yield server
    server.stop()
    assert "Traceback" not in server.logs(), server.logs()[-3000:]


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


def test_every_event_has_an_api_name(client):
    info = client.view_api(return_format="dict", print_info=False)
    names = set(info["named_endpoints"])
    assert {"/autosteer", "/stop", "/kids_answer", "/compare", "/search_features", "/vote_steered"} <= names
    assert not info["unnamed_endpoints"]


def test_autosteer_streams_two_epochs_and_returns_a_valid_profile(client):
    job = client.submit("Behave like a dog", "What is your favourite food?", 2, 2, "metric", "gradient", "", "", "", 10, api_name="/autosteer")
    final = job.result(timeout=900)
    updates = job.outputs()
    epoch_logs = {next(line for line in u[1].splitlines() if line.startswith("### ")) for u in updates if "### Epoch" in u[1]}
    assert len(epoch_logs) == 2, [u[0] for u in updates]
    status, log_md, plot, feats, held, prof, prof_file = final
    assert "Done" in status
    # SmolLM2-135M barely writes like a dog even when told to: the run says so above the log and at the end.
    assert log_md.startswith("> **Heads-up:** the model shows little of this behaviour") and "Expect a weak effect" in status
    profile = SteeringProfile.from_dict(prof)
    assert profile.behavior == "Behave like a dog" and len(profile.scores["epochs"]) == 2
    assert all(-1 <= f.weight <= 1 for f in profile.features) and profile.features
    assert {"plain model", "prompted (the behaviour as a system prompt)", "steered", "prompted + steered"} <= set(json.dumps(held).split('"'))


def test_learned_profile_is_listed_for_its_own_session_only(app, client):
    """After the auto-steer run above, this session lists and can use its profile; another
    session (a second client) neither sees it nor can use it by name."""
    from gradio_client import Client

    mine = client.predict(api_name="/kids_profiles")
    learned = [p for p in mine if p["learned"]]
    assert learned and learned[-1]["name"].startswith("my-") and "dog" in learned[-1]["title"].lower()
    assert {"kids", "pirate", "(unsteered)"} <= {p["name"] for p in mine}
    assert all(p["description"] for p in mine)
    name = learned[-1]["name"]
    other = Client(app.url, verbose=False)
    theirs = other.predict(api_name="/kids_profiles")
    assert not [p for p in theirs if p["learned"]] and name not in {p["name"] for p in theirs}
    steered, plain, notice, answer_id, _ = other.predict("Why do cats purr?", name, api_name="/kids_answer")
    assert "no profile with that name" in notice and steered == "" and answer_id is None and name not in notice
    steered, plain, notice, answer_id, _ = client.predict("Why do cats purr?", name, api_name="/kids_answer")
    assert "answer steered" in steered and "Mine" in steered and answer_id is not None
    # The session can download its own profile.
    path = client.predict(name, api_name="/kids_profile_download")
    assert json.loads(open(path).read())["behavior"] == "Behave like a dog"


@pytest.mark.parametrize("name", ["/etc/passwd", "../../../../etc/hostname", "assets/profiles/kids.json", "/nonexistent/x.json", ".."])
def test_profile_paths_are_refused_and_reveal_nothing(app, client, name):
    steered, plain, notice, answer_id, _ = client.predict("Why is the sky blue?", name, api_name="/kids_answer")
    assert steered == plain == "" and answer_id is None
    assert "no profile with that name" in notice and "kids" in notice
    for leak in ("passwd", "hostname", "nonexistent", "not found", "JSON", "exist", "assets/"):
        assert leak not in notice
    assert client.predict(name, api_name="/kids_profile_download") is None


def test_kids_question_returns_both_answers(client):
    steered, plain, notice, answer_id, recent = client.predict("Why do cats purr?", "(unsteered)", api_name="/kids_answer")
    assert "answer steered" in steered and "Plain model answer" in plain
    assert "grade" in steered and "grade" in plain
    assert answer_id is not None and "Why do cats purr?" in recent
    message, recent = client.predict(answer_id, api_name="/vote_steered")
    assert message.startswith("Thanks! 1 person") and "Why do cats purr? <small>(👍 1 / 0)" in recent  # the list updates at once
    message, _ = client.predict(answer_id, api_name="/vote_unsteered")
    assert message.startswith("You already voted")  # one vote per answer per session


def test_empty_behaviour_and_huge_question_get_clear_messages(client):
    out = client.predict("", "Hi", 2, 2, "metric", "numeric", "", "", "", 7, api_name="/autosteer")
    assert "describe a behaviour" in out[0].lower()
    steered, plain, notice, answer_id, _ = client.predict("why " * 12_500, "(unsteered)", api_name="/kids_answer")
    assert "very long" in notice and steered == "" and answer_id is None


def test_llm_judge_without_endpoint_is_a_clear_message(client):
    out = client.predict("Behave like a dog", "Hi", 2, 2, "llm", "numeric", "", "", "", 7, api_name="/autosteer")
    assert "endpoint" in out[0]


def test_manual_compare(client):
    steered, plain = client.predict("Tell me about your weekend.", 0, 1.0, 1, 1.0, None, 0, None, 0, None, 0, api_name="/compare")
    assert steered and plain and steered != plain
