"""The OpenAI-compatible server answers for the trained tiny model."""

import json
import urllib.request

from {{ cookiecutter.package_name }}.checkpoint import load_model
from {{ cookiecutter.package_name }}.engine import Engine, ServerSettings
from {{ cookiecutter.package_name }}.serve import BackgroundServer, create_app


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_health_and_a_completion(trained_run):
    model, tokenizer, _ = load_model(trained_run)
    engine = Engine(model, tokenizer, ServerSettings("tiny", max_tokens_cap=8))
    with BackgroundServer(create_app(engine)) as server:
        with urllib.request.urlopen(server.url + "/health", timeout=30) as response:
            assert json.load(response)["status"] == "ok"
        reply = post(server.url + "/v1/completions",
                     {"model": "tiny", "prompt": "def ", "max_tokens": 4,
                      "temperature": 0})
    engine.close()
    assert reply["object"] == "text_completion"
    assert reply["usage"]["completion_tokens"] <= 4
