"""A reply looks final while it streams: the page's Markdown render (markdown-it + DOMPurify,
``static/js/markdown.js``) equals the server's (markdown-it-py + nh3, ``app/chat/render.py``) on a
corpus of tricky Markdown, in real Chromium, once Pygments' colour spans are set aside (the only
difference the server adds when the reply ends). And a formatted reply is formatted while it
streams, and keeps its size when the server's HTML replaces it."""

from __future__ import annotations

import pytest

from app.chat.render import render_markdown
from tests.browser.helpers import chat_ready, login, reply_done, wait_until
from tests.factories import make_project, make_user
from tools.fake_provider import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5)]

CORPUS = {
    "fence in a list": "1. Install:\n\n   ```bash\n   pip install x\n   ```\n2. Run `x --help`\n",
    "fence with a language": '```python\ndef greet(name):\n    return f"Hi {name}" < 3\n```\n',
    "unclosed fence (mid-stream)": "Here:\n\n```js\nconst a = 1;\n",
    "table with alignment": "| a | b | c |\n|:--|:-:|--:|\n| 1 | **2** | `3` |\n| x | y |\n",
    "table cut mid-stream": "| a | b |\n|---|",
    "links": (
        '[ok](https://example.com "T") [mail](mailto:a@b.c) [rel](/projects/1) '
        "[js](javascript:alert(1)) [JS](JAVASCRIPT:alert(1)) [data](data:text/html,x) "
        "[vb](vbscript:msgbox) [file](file:///etc/passwd) [spaced]( javascript:alert(1) )"
    ),
    "autolinks": "<https://example.com/a?b=c&d=e> <javascript:alert(1)> <mailto:a@b.c>",
    "raw html": (
        "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)> <b>bold?</b>\n\n"
        '<a href="javascript:alert(1)">x</a>\n\n<div onclick="x()">block</div>\n'
    ),
    "image": '![alt text](https://example.com/i.png "title") and ![x](javascript:alert(1))',
    "entities": "&amp; &copy; &#x3C;script&#x3E; &lt;b&gt; &nbsp;x",
    "emphasis edges": "**a*b** *a **b*** ~~gone~~ _under_score_ 2*3*4 __x__",
    "code spans": "`` `tick` `` and `<b>not html</b>` and ```a```",
    "headings and rules": "# H1\n## H2 ##\n###### H6\n\n---\n\nSetext\n======\n",
    "ordered from 3": "3. three\n4. four\n\n- a\n  - nested\n    1. deep\n",
    "blockquote with code": "> quote\n> ```\n> code <x>\n> ```\n> > nested\n",
    "hard breaks": "line one  \nline two\\\nline three\n",
    "reference links": (
        "[one][1] and [two]\n\n[1]: https://example.com/1 'One'\n[two]: javascript:x\n"
    ),
    "unicode": "Ünïcödé — 日本語 — مرحبا — 👍🏽 `код`",
    "html in table": "| <i>x</i> | [a](javascript:y) |\n|---|---|\n| <script>z</script> | ok |\n",
}

# Both renders parsed by the browser, Pygments' spans unwrapped, then serialised alike.
COMPARE = """async ([texts, servers]) => {
  const { renderMarkdown } = await import("/static/js/markdown.js");
  const norm = (html) => {
    const t = document.createElement("template");
    t.innerHTML = html;
    const spans = t.content.querySelectorAll("span[class^='hl-']");
    for (const span of spans) span.replaceWith(...span.childNodes);
    t.content.normalize();
    return t.innerHTML.trim();
  };
  return texts.map((text, i) => [norm(renderMarkdown(text)), norm(servers[i])]);
}"""


# What is live in the page's render of the whole corpus.
SAFETY = """async (texts) => {
  const { renderMarkdown } = await import("/static/js/markdown.js");
  const t = document.createElement("template");
  t.innerHTML = texts.map(renderMarkdown).join("");
  const all = [...t.content.querySelectorAll("*")];
  const links = [...t.content.querySelectorAll("a")];
  return {
    scripts: t.content.querySelectorAll("script").length,
    images: t.content.querySelectorAll("img").length,
    handlers: all.filter((el) => [...el.attributes].some((a) => a.name.startsWith("on"))).length,
    bad_links: links.filter((a) => !/^(https?:|mailto:|\\/)/i.test(a.getAttribute("href"))).length,
    links_without_rel: links.filter((a) => a.rel !== "noopener nofollow").length,
    links: links.length,
  };
}"""


@pytest.fixture
def owner(app):
    return make_user(app, email="ada@example.com", name="Ada")


@pytest.fixture
def chat(app, live_server, page, owner):
    project = make_project(app, owner, name="Support bot")
    login(page, live_server, owner)
    page.goto(f"{live_server}/projects/{project}")
    chat_ready(page)
    return page


def test_the_page_renders_markdown_as_the_server_does(chat):
    names = list(CORPUS)
    texts = [CORPUS[name] for name in names]
    pairs = chat.evaluate(COMPARE, [texts, [render_markdown(text) for text in texts]])
    different = {name: pair for name, pair in zip(names, pairs, strict=True) if pair[0] != pair[1]}
    assert different == {}
    # The corpus does reach the dangerous parts, and none of them is live in the page's render.
    assert chat.evaluate(SAFETY, texts) == {
        "scripts": 0,
        "images": 0,
        "handlers": 0,
        "bad_links": 0,
        "links_without_rel": 0,
        "links": 6,  # ok, mail, rel, two autolinks, [one]: none of the bad ones
    }


def test_a_formatted_reply_is_formatted_while_it_streams(app, fake, chat):
    pieces = ["Here is **bold** and a table:\n\n", "| a | b |\n|---|---|\n| 1 | 2 |\n\n"]
    pieces += ["```python\n"]
    pieces += [f"x{i} = {i}\n" for i in range(30)] + ["```\n"]
    fake.script("responses", Scenario(deltas=pieces, token_delay_ms=60))
    chat.fill("#message", "Show me")
    chat.keyboard.press("Enter")
    reply = chat.locator(".msg-assistant").last
    wait_until(chat, "document.querySelector('.msg-assistant.streaming pre code')")
    assert "streaming" in reply.get_attribute("class")
    body = reply.locator(".msg-body")
    assert body.locator("strong").inner_text() == "bold"
    assert body.locator("table td").all_inner_texts() == ["1", "2"]
    assert "**" not in body.inner_text() and "|---|" not in body.inner_text()
    streamed_height = None
    while "streaming" in (reply.get_attribute("class") or ""):
        streamed_height = reply.bounding_box()["height"]
        chat.wait_for_timeout(20)
    reply_done(chat)
    # The server's HTML took over (Pygments' colours) without the bubble changing size.
    assert body.locator("pre code .hl-n").count() > 0
    assert abs(reply.bounding_box()["height"] - streamed_height) <= 2
