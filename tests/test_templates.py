"""Template variables (issue 30, item 1) and the diff of every configuration field (item 4):
the sandboxed renderer on plain values, saving versions with variables (syntax errors with line
and column), values from the call, the conversation and the defaults reaching the provider over
HTTP (the fake provider), what is stored with the reply, the bad inputs, another user's 404."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from app import templating
from app.extensions import db
from app.models import Message, PromptVersion
from tests.factories import make_project, make_user

pytestmark = pytest.mark.use_fake()

GREETING = "You help {{ customer_name }}.{% if vip %} Be extra kind.{% endif %}"


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You are Ada's support bot.")


def save(client, owner, project_id, content, **extra):
    return client.post(
        f"/api/projects/{project_id}/prompts",
        json={"content": content, **extra},
        headers=owner.headers,
    )


def send(client, owner, project_id, message="Hi", **body):
    return client.post(
        f"/api/projects/{project_id}/chat", json={"message": message, **body}, headers=owner.headers
    )


def instructions(fake) -> str:
    return fake.calls("responses")[-1].json["instructions"]


def declare_greeting(client, owner, project_id):
    resp = save(
        client,
        owner,
        project_id,
        GREETING,
        variables=[
            {"name": "customer_name", "type": "string", "description": "Who writes"},
            {"name": "vip", "type": "boolean", "default": False, "required": False},
        ],
    )
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


# --- the renderer on plain values -----------------------------------------------------------


def test_render_substitutes_conditions_and_loops():
    text = (
        "Hi {{ name }}.{% for p in plans %} [{{ p|upper }}]{% endfor %}"
        "{% if n > 2 %} many{% endif %}"
    )
    assert templating.check(text) == {"name", "plans", "n"}
    out = templating.render(text, {"name": "Ann", "plans": ["a", "b"], "n": 3})
    assert out == "Hi Ann. [A] [B] many"


def test_raw_keeps_braces():
    text = "Use {% raw %}{{ placeholders }}{% endraw %} literally."
    assert templating.check(text) == set()
    assert templating.render(text, {}) == "Use {{ placeholders }} literally."


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("Hello {{ name ", 1, 7),
        ("Line one\n  {% if x %}never closed", 2, 3),
        ("ok\nok\n {{ x | no_such_filter }}", 3, 2),
        ("{% for x in y %}{{ x }}", 1, 1),
    ],
)
def test_syntax_errors_name_line_and_column(text, line, column):
    with pytest.raises(templating.TemplateProblem) as caught:
        templating.check(text)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert f"line {line}, column {column}" in caught.value.message


@pytest.mark.parametrize(
    "text",
    [
        "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
        "{% for x in xs recursive %}{{ loop(xs) }}{% endfor %}",
        "{% include 'x' %}",
    ],
)
def test_recursion_and_includes_are_refused_at_parse(text):
    with pytest.raises(templating.TemplateProblem):
        templating.check(text)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{{ name.__class__ }}", "unsafe"),
        ("{{ name.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
        ("{{ range.__globals__ }}", "unsafe"),
        ("{% for i in range(10**9) %}x{% endfor %}", "large"),
        ("{% for i in range(2000) %}x{% endfor %}", "range() is limited"),
        (
            "{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}"
            "{% endfor %}{% endfor %}{% endfor %}",
            "loop rounds",
        ),
        ("{{ 'x' * 10000000 }}", "over 100,000"),
        ("{% for i in range(500) %}{{ 'y' * 900 }}{% endfor %}", "over 100,000"),
        (
            "{% set s = namespace(v='ab') %}{% for i in range(40) %}{% set s.v = s.v ~ s.v %}"
            "{% endfor %}",
            "over 100,000",
        ),
        ("{{ 9 ** 99999 }}", "too large"),
        ("{{ 'x'.ljust(10**9) }}", "large"),
        ("{{ '{:>999999999}'.format(1) }}", "unsafe"),
        ("{{ '%999999999d' % 1 }}", "widths"),
    ],
)
def test_sandbox_escapes_and_bombs_are_stopped_quickly(text, says):
    begun = time.monotonic()
    with pytest.raises(templating.VariableProblems) as caught:
        templating.check(text)
        templating.render(text, {"name": "Ann"})
    assert says in str(caught.value)
    assert time.monotonic() - begun < 2


def test_values_are_checked_and_resolved_in_order():
    declared = templating.declare(
        [
            {"name": "a", "type": "string"},
            {"name": "b", "type": "number", "default": 2},
            {"name": "c", "type": "list", "required": False},
        ]
    )
    assert templating.resolve(declared, call={"a": "call"}, conversation={"a": "conv"}) == {
        "a": "call",
        "b": 2,
        "c": None,
    }
    assert templating.resolve(declared, conversation={"a": "conv", "b": 5})["b"] == 5
    with pytest.raises(templating.VariableProblems) as caught:
        templating.resolve(declared)
    assert list(caught.value.problems) == ["variables.a"]
    with pytest.raises(templating.VariableProblems) as caught:
        templating.check_values(declared, {"b": "two", "zz": 1, "c": [{}]})
    assert set(caught.value.problems) == {"variables.b", "variables.zz", "variables.c"}


# --- saving versions ------------------------------------------------------------------------


def test_a_version_declares_its_variables_and_undeclared_ones_are_detected(
    client, owner, project_id
):
    saved = save(
        client,
        owner,
        project_id,
        "Hi {{ customer_name }}, plan {{ plan }}.",
        variables=[{"name": "plan", "type": "string", "default": "free", "description": "Tier"}],
    ).get_json()
    assert saved["templated"] is True
    assert saved["variables"] == [
        {
            "name": "plan",
            "type": "string",
            "default": "free",
            "description": "Tier",
            "required": True,
        },
        {
            "name": "customer_name",
            "type": "string",
            "default": None,
            "description": None,
            "required": True,
        },
    ]
    # A save without ``variables`` keeps them; plain text is not a template.
    again = save(client, owner, project_id, "Hi {{ customer_name }}, plan {{ plan }}!").get_json()
    assert [v["name"] for v in again["variables"]] == ["plan", "customer_name"]
    plain = save(client, owner, project_id, "No braces here.", variables=[]).get_json()
    assert (plain["templated"], plain["variables"]) == (False, [])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": "Hello {{ name "}, "content"),
        ({"content": "ok", "variables": "name"}, "variables"),
        ({"content": "ok", "variables": [{"name": "1abc"}]}, "variables[0].name"),
        ({"content": "ok", "variables": [{"name": "a", "type": "date"}]}, "variables[0].type"),
        (
            {"content": "ok", "variables": [{"name": "a", "type": "number", "default": "x"}]},
            "variables[0].default",
        ),
        ({"content": "ok", "variables": [{"name": "a"}, {"name": "a"}]}, "variables[1].name"),
        ({"content": "ok", "variables": [{"name": "a", "oops": 1}]}, "variables[0]"),
        ({"content": "{{ a.__class__ }}{% macro m() %}{% endmacro %}"}, "content"),
    ],
)
def test_bad_templates_and_declarations_are_refused_at_save(client, owner, project_id, body, field):
    resp = client.post(f"/api/projects/{project_id}/prompts", json=body, headers=owner.headers)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["error"]["fields"]
    assert "not part of this request" not in resp.get_json()["error"]["fields"][field]


def test_the_syntax_error_names_line_and_column_on_the_page(client, owner, project_id):
    client.post("/login", data={"email": owner.email, "password": owner.password})
    resp = client.post(
        f"/projects/{project_id}/prompts",
        data={"content": "Hello\n{{ name ", "model": "gpt-4o-mini", "save_live": "1"},
    )
    assert resp.status_code == 422
    assert "line 2, column 1" in resp.get_data(as_text=True)


# --- turns ----------------------------------------------------------------------------------


def test_call_variables_reach_the_provider_and_are_stored_with_the_reply(
    app, client, owner, project_id, fake
):
    declare_greeting(client, owner, project_id)
    resp = send(client, owner, project_id, variables={"customer_name": "Grace", "vip": True})
    assert resp.status_code == 200, resp.get_json()
    assert instructions(fake) == "You help Grace. Be extra kind."
    reply = resp.get_json()["message"]
    assert reply["variables"] == {"customer_name": "Grace", "vip": True}
    page = client.get(
        f"/api/conversations/{resp.get_json()['conversation_id']}/messages", headers=owner.headers
    ).get_json()
    assert page["data"][-1]["variables"] == {"customer_name": "Grace", "vip": True}
    assert page["data"][0]["variables"] is None  # the user's message
    with app.app_context():
        row = db.session.scalar(select(Message).where(Message.role == "assistant"))
        assert row.variables == {"customer_name": "Grace", "vip": True}


def test_design_chat_takes_variables_too(client, owner, project_id, fake):
    declare_greeting(client, owner, project_id)
    resp = client.post(
        "/api/chat",
        json={"projectId": project_id, "message": "Hi", "variables": {"customer_name": "Lin"}},
        headers=owner.headers,
    )
    assert resp.status_code == 200, resp.get_json()
    assert instructions(fake) == "You help Lin."


def test_the_conversation_keeps_its_values_and_a_call_overrides_them(
    client, owner, project_id, fake
):
    declare_greeting(client, owner, project_id)
    first = send(client, owner, project_id, variables={"customer_name": "Grace"}).get_json()
    cid = first["conversation_id"]
    conversation = client.get(f"/api/conversations/{cid}", headers=owner.headers).get_json()
    assert conversation["variables"] == {"customer_name": "Grace"}
    send(client, owner, project_id, "again", conversation_id=cid)
    assert instructions(fake) == "You help Grace."
    send(client, owner, project_id, "once", conversation_id=cid, variables={"customer_name": "Bo"})
    assert instructions(fake) == "You help Bo."
    changed = client.patch(
        f"/api/conversations/{cid}",
        json={"variables": {"customer_name": "Cy", "vip": True}},
        headers=owner.headers,
    )
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["variables"] == {"customer_name": "Cy", "vip": True}
    send(client, owner, project_id, "later", conversation_id=cid)
    assert instructions(fake) == "You help Cy. Be extra kind."


def test_a_missing_required_variable_is_a_422_naming_it(client, owner, project_id, fake):
    declare_greeting(client, owner, project_id)
    resp = send(client, owner, project_id)
    assert resp.status_code == 422
    error = resp.get_json()["error"]
    assert error["code"] == "variables_invalid"
    assert "variables.customer_name" in error["fields"]
    assert "customer_name" in error["message"]
    assert fake.calls("responses") == []  # nothing (and no literal "{{") reached the model


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"customer_name": 42}, "variables.customer_name"),
        ({"customer_name": "Ann", "vip": "yes"}, "variables.vip"),
        ({"customer_name": "Ann", "unknown_one": "x"}, "variables.unknown_one"),
    ],
)
def test_wrong_types_and_unknown_variables_are_422(
    client, owner, project_id, fake, variables, field
):
    declare_greeting(client, owner, project_id)
    resp = send(client, owner, project_id, variables=variables)
    assert resp.status_code == 422
    assert resp.get_json()["error"]["code"] == "variables_invalid"
    assert field in resp.get_json()["error"]["fields"]
    assert fake.calls("responses") == []


def test_variables_that_are_not_an_object_are_refused_at_the_edge(client, owner, project_id):
    resp = send(client, owner, project_id, variables=["customer_name"])
    assert resp.status_code == 422
    message = resp.get_json()["error"]["fields"]["variables"]
    assert "not part of this request" not in message  # a known field, of the wrong shape


def test_a_plain_version_refuses_call_variables(client, owner, project_id, fake):
    resp = send(client, owner, project_id, variables={"customer_name": "Ann"})
    assert resp.status_code == 422
    assert "variables.customer_name" in resp.get_json()["error"]["fields"]


def test_a_render_failure_at_turn_start_is_a_422(client, owner, project_id, fake):
    saved = save(
        client,
        owner,
        project_id,
        "{% for i in range(n) %}{% for j in range(n) %}{% for k in range(n) %}.{% endfor %}"
        "{% endfor %}{% endfor %}",
        variables=[{"name": "n", "type": "number"}],
    )
    assert saved.status_code == 201, saved.get_json()
    resp = send(client, owner, project_id, variables={"n": 100})
    assert resp.status_code == 422
    assert resp.get_json()["error"]["code"] == "variables_invalid"
    assert "loop rounds" in resp.get_json()["error"]["message"]
    assert fake.calls("responses") == []


def test_versions_from_before_templates_are_sent_verbatim(app, client, owner, project_id, fake):
    """Rows migrated from 0013 have ``templated`` false: their braces reach the model as
    they are, even when they are not valid template syntax."""
    with app.app_context():
        version = db.session.scalar(select(PromptVersion).where(PromptVersion.version == 1))
        version.content = "Reply in {{ JSON }} like {% this }"
        db.session.commit()
    resp = send(client, owner, project_id)
    assert resp.status_code == 200, resp.get_json()
    assert instructions(fake) == "Reply in {{ JSON }} like {% this }"
    assert resp.get_json()["message"]["variables"] is None


def test_other_users_conversation_and_project_are_404(app, client, owner, project_id):
    declare_greeting(client, owner, project_id)
    cid = send(client, owner, project_id, variables={"customer_name": "Ann"}).get_json()[
        "conversation_id"
    ]
    other = make_user(app)
    resp = client.patch(
        f"/api/conversations/{cid}",
        json={"variables": {"customer_name": "X"}},
        headers=other.headers,
    )
    assert resp.status_code == 404
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "Hi", "variables": {"customer_name": "X"}},
        headers=other.headers,
    )
    assert resp.status_code == 404
    resp = client.post(
        f"/api/projects/{project_id}/prompts",
        json={"content": "{{ x }}", "variables": [{"name": "x"}]},
        headers=other.headers,
    )
    assert resp.status_code == 404


def test_conversation_values_are_checked_against_its_version(client, owner, project_id):
    declare_greeting(client, owner, project_id)
    cid = send(client, owner, project_id, variables={"customer_name": "Ann"}).get_json()[
        "conversation_id"
    ]
    for values, field in (({"vip": "no"}, "variables.vip"), ({"zz": 1}, "variables.zz")):
        resp = client.patch(
            f"/api/conversations/{cid}", json={"variables": values}, headers=owner.headers
        )
        assert resp.status_code == 422
        assert field in resp.get_json()["error"]["fields"]
    empty = client.patch(f"/api/conversations/{cid}", json={}, headers=owner.headers)
    assert empty.status_code == 422


# --- the diff shows every difference --------------------------------------------------------


def test_the_diff_shows_variable_changes_in_the_api_and_on_the_page(client, owner, project_id):
    declare_greeting(client, owner, project_id)  # version 2
    diff = client.get(
        f"/api/projects/{project_id}/prompts/diff?from=1&to=2", headers=owner.headers
    ).get_json()
    changes = {c["name"]: c for c in diff["settings"]}
    assert changes["variables"]["label"] == "Variables"
    assert changes["variables"]["from"] == []
    assert [v["name"] for v in changes["variables"]["to"]] == ["customer_name", "vip"]
    client.post("/login", data={"email": owner.email, "password": owner.password})
    page = client.get(f"/projects/{project_id}/prompts/diff?from=1&to=2").get_data(as_text=True)
    assert "Variables" in page
    assert "customer_name" in page


def test_the_diff_iterates_over_every_configuration_field():
    from app.models.prompt import CONFIGURATION

    version = PromptVersion(
        content="x", model="m", temperature=None, max_output_tokens=16, variables=[]
    )
    assert set(version.settings) == set(CONFIGURATION)
    assert "variables" in CONFIGURATION


# --- the editor page ------------------------------------------------------------------------


def test_the_editor_declares_variables_and_puts_errors_on_their_row(client, owner, project_id):
    client.post("/login", data={"email": owner.email, "password": owner.password})
    url = f"/projects/{project_id}/prompts"
    form = {
        "content": "Hi {{ customer_name }}{% for p in plans %} {{ p }}{% endfor %}",
        "model": "gpt-4o-mini",
        "save_live": "1",
        "variables-0-name": "plans",
        "variables-0-type": "list",
        "variables-0-default": "free, pro",
        "variables-0-description": "Plans on offer",
        "variables-0-required": "y",
        "variables-1-name": "",
        "variables-1-type": "string",
    }
    assert client.post(url, data=form).status_code == 302
    saved = client.get(f"/api/projects/{project_id}/prompts/2", headers=owner.headers).get_json()
    assert saved["variables"][0] == {
        "name": "plans",
        "type": "list",
        "default": ["free", "pro"],
        "description": "Plans on offer",
        "required": True,
    }
    assert saved["variables"][1]["name"] == "customer_name"  # found in the text
    page = client.get(url).get_data(as_text=True)
    assert 'value="plans"' in page and 'value="free, pro"' in page
    bad = {**form, "variables-0-type": "number", "variables-0-default": "many"}
    resp = client.post(url, data=bad)
    assert resp.status_code == 422
    text = resp.get_data(as_text=True)
    assert "The default of plans: Give a number." in text
    assert 'aria-invalid="true"' in text


@pytest.mark.parametrize(
    "config_overrides",
    [{"RATELIMIT_ENABLED": True, "RATELIMIT_CONVERSATION_EDITS": "2 per minute"}],
)
def test_conversation_edits_are_rate_limited_per_user(app, client, owner, project_id, fake):
    """Renames and variable values share one budget per user; another user keeps theirs."""
    from tests.factories import make_project, make_user

    def first_conversation(user, project) -> str:
        resp = client.post(
            f"/api/projects/{project}/chat", json={"message": "Hi"}, headers=user.headers
        )
        assert resp.status_code == 200, resp.get_json()
        return f"/api/conversations/{resp.get_json()['conversation_id']}"

    url = first_conversation(owner, project_id)
    assert client.patch(url, json={"title": "One"}, headers=owner.headers).status_code == 200
    assert client.patch(url, json={"title": "Two"}, headers=owner.headers).status_code == 200
    refused = client.patch(url, json={"title": "Three"}, headers=owner.headers)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.get_json()["error"]["code"] == "rate_limited"
    other = make_user(app, email="bea@example.com")
    theirs = first_conversation(other, make_project(app, other, system_prompt="Bea's."))
    assert client.patch(theirs, json={"title": "Mine"}, headers=other.headers).status_code == 200


def test_compare_sends_the_same_variables_to_both_sides(app, client, owner, project_id, fake):
    """Compare with a version that requires a variable: without values a 422 naming it (and
    nothing stored), with them both sides' instructions are rendered from the same values."""
    from tests.test_compare import wait_finished

    declare_greeting(client, owner, project_id)  # v2; v1 is plain text
    url = f"/api/projects/{project_id}/comparisons"
    body = {"message": "Hi", "left": {"version": 1}, "right": {"version": 2}}
    missing = client.post(url, json=body, headers=owner.headers)
    assert missing.status_code == 422
    assert "variables.customer_name" in missing.get_json()["error"]["fields"]
    assert client.get(url, headers=owner.headers).get_json()["data"] == []
    resp = client.post(
        url, json={**body, "variables": {"customer_name": "Ada"}}, headers=owner.headers
    )
    assert resp.status_code == 201, resp.get_json()
    wait_finished(client, owner, resp.get_json()["id"])
    sent = sorted(call.json["instructions"] for call in fake.calls("responses"))
    assert sent[1] == "You help Ada." and "{{" not in sent[0]  # v1 gets none: it declares none
    typo = client.post(url, json={**body, "variables": {"custmer": "Ada"}}, headers=owner.headers)
    assert typo.status_code == 422
    assert typo.get_json()["error"]["fields"] == {
        "variables.custmer": "Neither version declares this variable."
    }
