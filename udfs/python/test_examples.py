"""The example functions as plain Python: what an author's own tests look like."""

import pytest
from currency import count_char, to_usd
from logs import browser, json_field
from stats import ApproxDistinct, WeightedAvg
from urls import url_domain, url_segments


def test_currency():
    assert to_usd(1999) == 19.99
    assert count_char("banana", "a") == 3
    with pytest.raises(ValueError, match="single character"):
        count_char("banana", "an")


def test_urls():
    assert url_domain("https://user@shop.example.com:8080/a?b") == "shop.example.com"
    assert url_domain("no scheme") is None
    assert list(url_segments("https://x.org/a//b/?q=/c")) == [(1, "a"), (2, "b")]


def test_weighted_avg():
    agg = WeightedAvg()
    state = agg.create()
    for value, weight in [(1.0, 1), (4.0, 2)]:
        state = agg.accumulate(state, value, weight)
    assert agg.finish(state) == 3.0
    assert agg.finish(agg.retract(state, 4.0, 2)) == 1.0
    assert agg.finish(agg.create()) is None


def test_approx_distinct_is_close():
    agg = ApproxDistinct()
    state = agg.create()
    for i in range(5000):
        state = agg.accumulate(state, f"user-{i % 1000}")
    assert abs(agg.finish(state) - 1000) < 100


def test_logs():
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
    assert browser(firefox) == "Firefox 121"
    assert browser("curl/8.4.0") == "bot"
    assert json_field('{"user": {"city": "Oslo", "tags": [1, 2]}}', "user.city") == "Oslo"
    assert json_field('{"user": {"tags": [1, 2]}}', "user.tags") == "[1,2]"
    assert json_field('{"items": [{"sku": "A1"}]}', "items.0.sku") == "A1"
    assert json_field("{}", "missing") is None
