"""The safety classifiers' parts on synthetic embeddings: the neighbour vote, cross-validation,
the answer training rows and the thresholds."""

import numpy as np
import pytest

from quora_kids import safety_model
from quora_kids.safety_model import (
    NeighbourVote,
    QuestionModel,
    answer_training_set,
    cross_val_scores,
    fit_answer_model,
    read_rows,
    sentences,
)


def unit(*v):
    v = np.array(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def clusters(n=20, seed=0):
    """Unsafe rows around +x, safe rows around +y (unit vectors in 3-d)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([unit(1, 0, 0) + 0.1 * rng.normal(size=(n, 3)), unit(0, 1, 0) + 0.1 * rng.normal(size=(n, 3))])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.array([True] * n + [False] * n)


def test_the_vote_separates_clusters_and_a_close_safe_example_wins():
    x, y = clusters()
    clf = NeighbourVote(x, y)
    p = clf.score(np.stack([unit(1, 0, 0), unit(0, 1, 0)]))
    assert p[0] > 0.8 and p[1] < 0.2
    # A safe row right next to the unsafe cluster: its neighbourhood vote pulls that point down.
    near = unit(0.95, 0.3, 0)
    x2, y2 = np.concatenate([x, np.stack([near] * 5)]), np.concatenate([y, [False] * 5])
    assert NeighbourVote(x2, y2, mix=0.0).score(near[None])[0] < NeighbourVote(x, y, mix=0.0).score(near[None])[0]
    assert clf.score(np.zeros((0, 3))).shape == (0,)


def test_vote_only_rows_change_their_neighbourhood_not_the_regression():
    """Chat rows ("thanks", "tell me a joke") only vote: far from them nothing moves."""
    x, y = clusters()
    near = unit(0.95, 0.3, 0)
    x2, y2 = np.concatenate([x, np.stack([near] * 5)]), np.concatenate([y, [False] * 5])
    base = NeighbourVote(x, y)
    as_rows, voting = NeighbourVote(x2, y2), NeighbourVote(x2, y2, vote_only=np.arange(len(y2)) >= len(y))
    assert voting.coef == pytest.approx(base.coef) and voting.intercept == pytest.approx(base.intercept)
    assert as_rows.coef != pytest.approx(base.coef)  # as ordinary rows they would move the regression
    assert voting.score(near[None])[0] < base.score(near[None])[0] - 0.2
    far = np.stack([unit(0, 1, 0.3), unit(0.2, 0.1, 1)])
    assert voting.score(far) == pytest.approx(base.score(far), abs=1e-9)
    p = cross_val_scores(x2, y2, seed=0, vote_only=voting.vote_only)
    assert p.shape == (len(y2),) and not np.allclose(p, cross_val_scores(x2, y2, seed=0))  # the folds honour the mask


def test_cross_validated_scores_are_held_out_and_groups_stay_together():
    x, y = clusters()
    p = cross_val_scores(x, y, seed=0)
    assert p.shape == (40,) and p[y].mean() > 0.7 and p[~y].mean() < 0.3
    groups = np.repeat(np.arange(20), 2)
    assert cross_val_scores(x, y, seed=0, groups=groups).shape == (40,)


def test_answer_rows_keep_each_answers_sentences_in_one_group():
    rows = [{"text": "q1", "topic": "t"}, {"text": "q2", "topic": "u"}]
    answers = [{"text": "Mix bleach. Hide it well.", "label": "unsafe", "topic": "danger"}, {"text": "Cats purr. They sleep.", "label": "safe"}]
    t = answer_training_set(rows, np.array([True, False]), answers, ["Hello there.", "Nice day."])
    assert t.texts == ["q1", "q2", "Mix bleach.", "Hide it well.", "Cats purr.", "They sleep.", "Hello there.", "Nice day."]
    assert t.labels == [True, False, True, True, False, False, False, False]
    assert t.groups[:6] == [0, 1, -1, -1, -2, -2] and len(set(t.groups[6:])) == 2
    assert t.answer_safe == [4, 5, 6, 7] and t.safe_answers == [[4, 5]] and t.topics[2:6] == ["danger", "danger", "answer", "answer"]


def test_the_answer_threshold_is_the_strictest_of_its_three_rules(monkeypatch):
    x, y = clusters(10)
    questions = QuestionModel(NeighbourVote(x, y), x, ["unsafe"] * 10 + ["safe"] * 10, 0.5, {})
    t = answer_training_set([{"text": f"r{i}", "topic": "t"} for i in range(20)], y, [], [])
    model = fit_answer_model(questions, t, 20, seed=0, target_recall=0.9, safe_quantile=0.99, pass_quantile=0.99, vote={})
    p = cross_val_scores(x, y, 0, groups=np.array(t.groups))
    recall_t = float(np.sort(p[y])[int((1 - 0.9) * 10)])  # the highest score that still refuses 90%
    assert model.threshold == pytest.approx(max(recall_t, float(np.quantile(p[t.answer_safe], 0.99)) if t.answer_safe else recall_t))
    assert set(model.cv) == {"unsafe_refused", "safe_answer_sentences_refused", "safe_answers_withheld"} and model.y.tolist() == y.tolist()


def test_advice_rows_train_but_stay_out_of_the_calibration_pools():
    rows = [{"text": "Tell a grown-up. Stay safe.", "label": "safe", "calibrate": False},
            {"text": "Plain answer. Two sentences.", "label": "safe"}, {"text": "Bad one.", "label": "unsafe"}]
    t = answer_training_set([], np.zeros(0, bool), rows, [])
    assert t.texts[:2] == ["Tell a grown-up.", "Stay safe."] and t.labels == [False, False, False, False, True]
    assert t.answer_safe == [2, 3] and t.safe_answers == [[2, 3]]


def test_sentences_and_rows(tmp_path):
    assert sentences("One two. Three four! Five?") == ["One two.", "Three four!", "Five?"]
    assert sentences("ok") == ["ok"]
    (tmp_path / "a.jsonl").write_text('{"text": "x", "label": "safe"}\n\n{"text": "y", "label": "unsafe"}\n')
    assert [r["text"] for r in read_rows([tmp_path / "a.jsonl", tmp_path / "missing.jsonl"])] == ["x", "y"]
    assert safety_model.ANSWER_VOTE == {"C": 4.0, "mix": 0.3}


def test_the_regression_part_is_scikit_learns_probability():
    from sklearn.linear_model import LogisticRegression

    x, y = clusters()
    e = np.stack([unit(1, 0.2, 0), unit(0.3, 1, 0.1)])
    ref = LogisticRegression(C=16.0, class_weight="balanced", max_iter=3000).fit(x, y).predict_proba(e)[:, 1]
    assert NeighbourVote(x, y).regression(e) == pytest.approx(ref, abs=1e-6)  # float32 inputs


def test_fitted_models_are_cached_on_disk_and_read_back_alike(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path))
    x, y = clusters(10)
    fits = []

    def fit_questions():
        fits.append("q")
        return QuestionModel(NeighbourVote(x, y, mix=0.3, vote_only=np.arange(20) >= 17), x, ["u"] * 10 + ["s"] * 10, 0.42, {"unsafe_refused": 0.9})

    key = safety_model.fit_key("rows", 0, 0.96)
    first = safety_model.cached_fit("questions", key, fit_questions)
    again = safety_model.cached_fit("questions", key, fit_questions)
    assert fits == ["q"] and isinstance(again, QuestionModel)  # the second one came from disk
    e = np.stack([unit(1, 0.2, 0), unit(0.3, 1, 0.1), unit(0.6, 0.6, 0.5)])
    assert again.clf.score(e) == pytest.approx(first.clf.score(e), abs=1e-12)
    assert (again.threshold, again.cv, again.topics, again.clf.mix) == (0.42, {"unsafe_refused": 0.9}, first.topics, 0.3)
    assert again.clf.vote_only.tolist() == [False] * 17 + [True] * 3
    # An answer model keeps its labels; a different key, a damaged file or STEERING_SAFETY_CACHE=0 refits.
    t = answer_training_set([{"text": f"r{i}", "topic": "t"} for i in range(20)], y, [], [])
    answers = safety_model.cached_fit("answers", "k2", lambda: fit_answer_model(first, t, 20, 0, 0.9, 0.99, 0.99, {}))
    back = safety_model.cached_fit("answers", "k2", lambda: pytest.fail("refitted"))
    assert back.y.tolist() == answers.y.tolist() and back.threshold == answers.threshold
    assert safety_model.fit_key("rows", 0, 0.95) != key
    (path,) = tmp_path.glob("safety/questions-*.npz")
    path.write_bytes(b"not an npz")
    safety_model.cached_fit("questions", key, fit_questions)
    assert fits == ["q", "q"] and safety_model.load_model(path).threshold == 0.42  # rewritten whole
    monkeypatch.setenv("STEERING_SAFETY_CACHE", "0")
    safety_model.cached_fit("questions", key, fit_questions)
    assert fits == ["q", "q", "q"]


def test_callers_starting_together_fit_once(tmp_path, monkeypatch):
    import threading
    import time

    monkeypatch.setenv("STEERING_CACHE", str(tmp_path))
    x, y = clusters(10)
    fits = []

    def slow_fit():
        fits.append(1)
        time.sleep(0.3)
        return QuestionModel(NeighbourVote(x, y), x, ["t"] * 20, 0.5, {})

    out = []
    threads = [threading.Thread(target=lambda: out.append(safety_model.cached_fit("questions", "same", slow_fit))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fits) == 1 and len(out) == 3 and all(m.threshold == 0.5 for m in out)
